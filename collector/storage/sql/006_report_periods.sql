-- 006: pre-aggregates over report_days, so that no report scans one row per install and day
-- (collector/reports/aggregates.py maintains them; docs/reports.md, "How reports stay fast").
-- Every row of report_periods and report_installs carries an install id: the data-subject DELETE and
-- retention remove them with the install's other rows. report_groups holds counts only.

-- One row per install and week (starting Monday) or calendar month: each gauge's and label's last
-- reading in the period, the sums of the period's days. product_name NULL is the install's products
-- together (what a report without a product filter counts), so each install has one row per period
-- either way. period_kind 'day' rows exist only for the rare install-day with more than one product:
-- report_days already holds one row per product and day.
CREATE TABLE report_periods (
    period_kind         VARCHAR NOT NULL,  -- 'day', 'week' or 'month' (UTC)
    period              DATE    NOT NULL,  -- the period's first day
    install_id          UUID    NOT NULL,
    product_name        VARCHAR,           -- NULL: every product of the install together
    last_day            DATE    NOT NULL,
    version_label       VARCHAR,           -- product_version; 'product_name product_version' when product_name is NULL
    os_family           VARCHAR,
    os_version          VARCHAR,
    cpu_cores           INTEGER,
    memory_gib          INTEGER,
    disk_total_gib      INTEGER,
    disk_free_gib       INTEGER,
    projects            BIGINT,
    cpu_pct_sum         BIGINT  NOT NULL,
    cpu_pct_count       BIGINT  NOT NULL,
    deployments_delta   BIGINT  NOT NULL,
    deployment_readings BIGINT  NOT NULL
);

-- Each install's first and last day held, per product and (product_name NULL) over its products.
CREATE TABLE report_installs (
    install_id   UUID    NOT NULL,
    product_name VARCHAR,
    first_day    DATE    NOT NULL,
    last_day     DATE    NOT NULL
);

-- How many installs each group holds per period, for the reports that count installs per group
-- (active-installs, versions, os-families, os-versions, hardware). Kept as signed deltas: a refresh
-- subtracts what the installs it touches contributed and adds what they contribute now; compaction
-- sums the rows up from time to time. A group's installs is the sum of its rows.
CREATE TABLE report_groups (
    generation   BIGINT  NOT NULL,  -- 0: a delta; n > 0: written by the n-th compaction
    period_kind  VARCHAR NOT NULL,
    period       DATE    NOT NULL,
    product_name VARCHAR,           -- NULL: every product together
    report       VARCHAR NOT NULL,
    dimension    VARCHAR NOT NULL,  -- hardware's dimension; '' for the others
    label        VARCHAR NOT NULL,  -- the group ('' for active-installs; a bucket's upper bound for hardware)
    installs     BIGINT  NOT NULL
);

-- A build of the three tables above from report_days, still to do (no row: nothing to build). A
-- database that already held report_days when this migration ran is built in the background, one
-- slice of installs per transaction, installs up to `done_through` being done; reports answer 503
-- with Retry-After until it is finished.
CREATE TABLE report_builds (
    name         VARCHAR NOT NULL,
    done_through UUID,               -- NULL: no install built yet
    done         BIGINT  NOT NULL,   -- installs built so far
    installs     BIGINT  NOT NULL    -- installs to build (as counted when the build began)
);
INSERT INTO report_builds
SELECT 'periods', NULL, 0, count(DISTINCT install_id) FROM report_days HAVING count(*) > 0;

-- The earliest snapshot of each batch, so that folding new batches in reads only the snapshots from
-- there on (NULL for batches stored before this migration: their fold assumes 32 days before created_at).
ALTER TABLE batches ADD COLUMN first_taken_at TIMESTAMP;
