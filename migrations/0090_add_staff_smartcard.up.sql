-- Release 5.1: NHS smartcard authentication for staff.
-- Records the smartcards issued to each member of staff (with their RBAC role
-- profile code) and a per-staff flag that makes smartcard login mandatory.
CREATE TABLE staff_smartcard (
    id BIGINT PRIMARY KEY,
    staff_id BIGINT NOT NULL REFERENCES staff (id),
    card_serial TEXT NOT NULL UNIQUE,
    role_profile_code TEXT NOT NULL,
    issued_on DATE NOT NULL,
    revoked_on DATE
);

CREATE INDEX staff_smartcard_staff_idx ON staff_smartcard (staff_id);

ALTER TABLE staff ADD COLUMN smartcard_required BOOLEAN NOT NULL DEFAULT FALSE;
