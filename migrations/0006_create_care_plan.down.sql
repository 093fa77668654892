-- Undo 0006: drop care plans.
DROP TABLE care_plan;
