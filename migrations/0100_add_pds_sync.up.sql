-- Release 5.1: Spine demographics (PDS) synchronisation.
-- pds_sync holds one row per patient checked against the Personal
-- Demographics Service (outcome: pending, matched, updated, not-found, ...).
-- patient gains its verification state, plus nhs_number_raw, which keeps the
-- NHS number as captured so that 0110 (normalisation) can be undone.
-- The new columns carry no UNIQUE/index so that SQLite can drop them again.
CREATE TABLE pds_sync (
    patient_id BIGINT PRIMARY KEY REFERENCES patient (id),
    last_checked_at TIMESTAMP,
    serial_change_number INTEGER,
    outcome TEXT NOT NULL DEFAULT 'pending'
);

CREATE INDEX pds_sync_last_checked_idx ON pds_sync (last_checked_at);

ALTER TABLE patient ADD COLUMN pds_verified BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE patient ADD COLUMN pds_checked_at TIMESTAMP;
ALTER TABLE patient ADD COLUMN nhs_number_raw TEXT;
