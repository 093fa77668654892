-- Undo 0090: remove smartcard authentication (the flag column is neither
-- indexed nor unique, so SQLite can drop it).
ALTER TABLE staff DROP COLUMN smartcard_required;
DROP INDEX staff_smartcard_staff_idx;
DROP TABLE staff_smartcard;
