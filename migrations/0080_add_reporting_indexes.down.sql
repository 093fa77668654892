-- Undo 0080: drop the reporting indexes.
DROP INDEX audit_log_staff_idx;
DROP INDEX audit_log_entity_idx;
DROP INDEX care_plan_patient_idx;
