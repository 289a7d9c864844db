-- The metric definition of the newest yearly rows (the page shows the one in force).
SELECT definition FROM patient_status WHERE period_kind = 'YEAR'
ORDER BY period_start DESC LIMIT 1
