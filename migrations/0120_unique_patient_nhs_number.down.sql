-- Undo 0120: drop the unique NHS number index (before 0110's down restores
-- the as-captured numbers).
DROP INDEX patient_nhs_number_key;
