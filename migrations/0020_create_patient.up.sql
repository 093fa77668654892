-- Release 5.0: patient demographics.
-- nhs_number is stored as captured (release 5.1 normalises it); the name
-- index serves the "find patient" search screen.
CREATE TABLE patient (
    id BIGINT PRIMARY KEY,
    nhs_number TEXT NOT NULL,
    family_name TEXT NOT NULL,
    given_name TEXT NOT NULL,
    date_of_birth DATE NOT NULL,
    sex TEXT NOT NULL CHECK (sex IN ('F', 'M', 'U')),
    postcode TEXT,
    gp_practice_code TEXT,
    registered_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX patient_family_name_idx ON patient (family_name, given_name);
