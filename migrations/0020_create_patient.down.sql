-- Undo 0020: drop patient demographics and the name-search index.
DROP INDEX patient_family_name_idx;
DROP TABLE patient;
