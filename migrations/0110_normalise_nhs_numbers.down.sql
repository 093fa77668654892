-- flotilla: batch
-- Undo 0110: restore NHS numbers as captured from nhs_number_raw and clear it,
-- 1000 patients per batch, until a run changes no rows.
UPDATE patient
SET nhs_number = nhs_number_raw,
    nhs_number_raw = NULL
WHERE id IN (
    SELECT id FROM patient
    WHERE nhs_number_raw IS NOT NULL
    ORDER BY id
    LIMIT 1000
);
