-- Undo 0030: drop referrals and their patient index.
DROP INDEX referral_patient_idx;
DROP TABLE referral;
