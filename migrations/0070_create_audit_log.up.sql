-- Release 5.0: access audit trail (who viewed, created, updated or printed
-- which record). staff_id is nullable for system actions.
CREATE TABLE audit_log (
    id BIGINT PRIMARY KEY,
    at TIMESTAMP NOT NULL,
    staff_id BIGINT REFERENCES staff (id),
    action TEXT NOT NULL CHECK (action IN ('view', 'create', 'update', 'print')),
    entity TEXT NOT NULL,
    entity_id BIGINT NOT NULL
);
