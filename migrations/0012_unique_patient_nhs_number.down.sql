-- Undo 0012: drop the unique NHS number index (before 0011's down restores
-- the as-captured numbers).
DROP INDEX patient_nhs_number_key;
