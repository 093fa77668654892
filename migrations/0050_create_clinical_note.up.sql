-- Release 5.0: clinical notes (progress notes, risk assessments, mental
-- state examinations, contact and discharge notes), newest-first per patient.
CREATE TABLE clinical_note (
    id BIGINT PRIMARY KEY,
    patient_id BIGINT NOT NULL REFERENCES patient (id),
    author_id BIGINT NOT NULL REFERENCES staff (id),
    written_at TIMESTAMP NOT NULL,
    note_type TEXT NOT NULL CHECK (note_type IN ('progress', 'risk-assessment', 'mental-state', 'contact', 'discharge')),
    body TEXT NOT NULL
);

CREATE INDEX clinical_note_patient_idx ON clinical_note (patient_id, written_at);
