-- 002: the report rollup. One row per install, product and UTC day, rebuilt from `snapshots` by
-- collector/reports/rollup.py after loads and before each report. Reports read only this table, so
-- they scan ~24x fewer rows than the raw snapshots. It holds install_id, so the data-subject DELETE
-- and the retention job remove its rows together with the raw ones (collector/web/installs.py, retention.py).

CREATE TABLE report_days (
    install_id          UUID    NOT NULL,
    product_name        VARCHAR NOT NULL,
    day                 DATE    NOT NULL,
    snapshots           INTEGER NOT NULL,
    -- The last non-NULL reading of the day for each gauge and label.
    product_version     VARCHAR,
    os_family           VARCHAR,
    os_version          VARCHAR,
    cpu_cores           INTEGER,
    memory_gib          INTEGER,
    disk_total_gib      INTEGER,
    disk_free_gib       INTEGER,
    projects            BIGINT,
    -- CPU usage: sum and count of the day's readings, so a period's mean per install is exact.
    cpu_pct_sum         BIGINT  NOT NULL,
    cpu_pct_count       INTEGER NOT NULL,
    -- Deployments: the sum of the per-snapshot deltas of the cumulative counter attributed to this
    -- day (a delta belongs to the day of the later of two consecutive readings; a drop is a reset
    -- and counts the new value; the install's first reading is the baseline and counts nothing).
    deployments_delta   BIGINT  NOT NULL,
    deployment_readings INTEGER NOT NULL,
    deployments_last    BIGINT  -- the day's last counter reading: the baseline when later days are rebuilt
);

-- Batches already folded into report_days (batch ids only). A batch not listed here marks its
-- install for a rebuild. Rows go when their batch goes (deletion, retention).
CREATE TABLE report_batches (
    batch_id    UUID      NOT NULL,
    received_at TIMESTAMP NOT NULL  -- copied from batches: lets a refresh look only at recent arrivals
);

-- Work tables of one refresh: filled and emptied inside the same transaction, so no other
-- transaction ever sees a row in them (they exist because DDL stays out of the hot path).
CREATE TABLE report_pending (
    batch_id UUID NOT NULL
);
CREATE TABLE report_rebuild (
    install_id   UUID    NOT NULL,
    product_name VARCHAR NOT NULL,
    from_day     DATE    NOT NULL,  -- the earliest day touched by the new batches
    baseline     BIGINT,            -- the last counter reading before from_day, if any
    new_snapshots BIGINT   NOT NULL   -- snapshots of the new batches found (checked against snapshot_count)
);
