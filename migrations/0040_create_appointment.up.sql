-- Release 5.0: appointments (clinic, home visit, phone or video contacts).
-- Indexed by patient and time for the patient's contact timeline.
CREATE TABLE appointment (
    id BIGINT PRIMARY KEY,
    patient_id BIGINT NOT NULL REFERENCES patient (id),
    staff_id BIGINT NOT NULL REFERENCES staff (id),
    starts_at TIMESTAMP NOT NULL,
    duration_minutes INTEGER NOT NULL,
    location TEXT NOT NULL CHECK (location IN ('clinic', 'home-visit', 'phone', 'video')),
    status TEXT NOT NULL CHECK (status IN ('booked', 'attended', 'dna', 'cancelled'))
);

CREATE INDEX appointment_patient_idx ON appointment (patient_id, starts_at);
