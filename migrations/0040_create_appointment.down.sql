-- Undo 0040: drop appointments and the patient timeline index.
DROP INDEX appointment_patient_idx;
DROP TABLE appointment;
