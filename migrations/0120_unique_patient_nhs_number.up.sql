-- Release 5.1: one patient record per NHS number. Only possible now that
-- 0110 has normalised the numbers (before, '943 476 5919' and '9434765919'
-- could both exist). Also serves the PDS sync lookup by NHS number.
CREATE UNIQUE INDEX patient_nhs_number_key ON patient (nhs_number);
