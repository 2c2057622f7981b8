-- 007: report_groups counts only the periods that end on or before report_open.since; the later
-- ("open") periods are tallied from report_periods and report_days when a group report reads them, so
-- that folding in the batches that just arrived counts no groups (collector/reports/aggregates.py).
-- One row. A database whose report_groups already counts every period starts with since after its
-- newest week and month (everything held is closed); an empty one with every period open.
CREATE TABLE report_open (since DATE NOT NULL);
INSERT INTO report_open
SELECT coalesce(greatest(
    CAST(date_trunc('month', max(day)) + INTERVAL 1 MONTH AS DATE),
    CAST(date_trunc('week', max(day)) + INTERVAL 7 DAY AS DATE)
), DATE '0001-01-01')
FROM report_days;
