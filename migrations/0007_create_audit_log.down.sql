-- Undo 0007: drop the audit trail.
DROP TABLE audit_log;
