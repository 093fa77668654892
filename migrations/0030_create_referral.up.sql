-- Release 5.0: referrals into community and mental-health teams.
-- One row per referral received; status tracks triage through to discharge.
CREATE TABLE referral (
    id BIGINT PRIMARY KEY,
    patient_id BIGINT NOT NULL REFERENCES patient (id),
    team TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('gp', 'a-and-e', 'self', 'police', 'school')),
    priority TEXT NOT NULL CHECK (priority IN ('routine', 'urgent', 'emergency')),
    received_on DATE NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'accepted', 'discharged', 'rejected'))
);

CREATE INDEX referral_patient_idx ON referral (patient_id);
