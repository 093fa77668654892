-- Undo 0010: drop the staff directory (every table referencing it is gone by now).
DROP TABLE staff;
