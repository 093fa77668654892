-- Undo 0130: drop the diary and referral-queue indexes.
DROP INDEX referral_open_team_idx;
DROP INDEX appointment_staff_idx;
