-- flotilla: batch, rewrites:patient.nhs_number
-- Release 5.1: normalise NHS numbers to 10 bare digits ('943 476 5919' and
-- '943-476-5919' become '9434765919'), keeping the captured value in
-- nhs_number_raw. Idempotent and LIMITed: flotilla runs it repeatedly, one
-- transaction per batch, until a run changes no rows.
UPDATE patient
SET nhs_number_raw = nhs_number,
    nhs_number = replace(replace(nhs_number, ' ', ''), '-', '')
WHERE id IN (
    SELECT id FROM patient
    WHERE nhs_number LIKE '% %' OR nhs_number LIKE '%-%'
    ORDER BY id
    LIMIT 1000
);
