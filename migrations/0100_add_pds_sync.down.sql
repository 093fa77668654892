-- Undo 0100: remove PDS synchronisation (columns in reverse order of adding).
ALTER TABLE patient DROP COLUMN nhs_number_raw;
ALTER TABLE patient DROP COLUMN pds_checked_at;
ALTER TABLE patient DROP COLUMN pds_verified;
DROP INDEX pds_sync_last_checked_idx;
DROP TABLE pds_sync;
