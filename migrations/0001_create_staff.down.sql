-- Undo 0001: drop the staff directory (every table referencing it is gone by now).
DROP TABLE staff;
