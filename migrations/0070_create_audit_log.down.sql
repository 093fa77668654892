-- Undo 0070: drop the audit trail.
DROP TABLE audit_log;
