-- Release 5.0: staff directory.
-- Every clinician and administrator who can see or write a record. Ids are
-- assigned by the application (no SERIAL/AUTOINCREMENT: the same script runs
-- on SQLite and PostgreSQL).
CREATE TABLE staff (
    id BIGINT PRIMARY KEY,
    staff_number TEXT NOT NULL UNIQUE,
    family_name TEXT NOT NULL,
    given_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('nurse', 'psychiatrist', 'psychologist', 'social-worker', 'therapist', 'admin')),
    team TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
