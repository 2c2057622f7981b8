-- 003: the rollup refresh no longer needs work tables (collector/reports/rollup.py computes its pending
-- batches inside each statement). On a lake, a work table's column statistics (min/max) would keep ids
-- that passed through it even after an erasure.
DROP TABLE report_pending;
DROP TABLE report_rebuild;
