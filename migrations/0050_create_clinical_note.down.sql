-- Undo 0050: drop clinical notes and their patient index.
DROP INDEX clinical_note_patient_idx;
DROP TABLE clinical_note;
