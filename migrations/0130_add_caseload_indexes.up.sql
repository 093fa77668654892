-- Release 5.1: indexes for the new clinician diary (appointments per member
-- of staff by time) and the team referral queue (open referrals only, so the
-- partial index stays small as closed referrals accumulate).
CREATE INDEX appointment_staff_idx ON appointment (staff_id, starts_at);
CREATE INDEX referral_open_team_idx ON referral (team) WHERE status = 'open';
