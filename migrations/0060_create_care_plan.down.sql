-- Undo 0060: drop care plans.
DROP TABLE care_plan;
