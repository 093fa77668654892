-- Release 5.0: Care Programme Approach (CPA) care plans, each with a named
-- care coordinator and a review date.
CREATE TABLE care_plan (
    id BIGINT PRIMARY KEY,
    patient_id BIGINT NOT NULL REFERENCES patient (id),
    care_coordinator_id BIGINT NOT NULL REFERENCES staff (id),
    starts_on DATE NOT NULL,
    review_on DATE NOT NULL,
    cpa_level TEXT NOT NULL CHECK (cpa_level IN ('standard', 'enhanced')),
    summary TEXT NOT NULL
);
