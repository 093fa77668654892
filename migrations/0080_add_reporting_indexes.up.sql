-- Release 5.0: indexes for the caseload and information-governance reports:
-- care plans due for review per patient, and "who accessed this record"
-- / "what did this user access" audit queries. Columns are unchanged.
CREATE INDEX care_plan_patient_idx ON care_plan (patient_id, review_on);
CREATE INDEX audit_log_entity_idx ON audit_log (entity, entity_id, at);
CREATE INDEX audit_log_staff_idx ON audit_log (staff_id, at);
