-- The first day of the reporting time zone's current month: the charts' last (unfinished) month.
-- binds: 28800
SELECT toString(toStartOfMonth({today})) AS month
