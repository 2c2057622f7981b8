-- 001: the initial tables. Applied once, at start-up, by collector/storage/migrations.py (never on the hot path).
-- All timestamps are UTC, stored as TIMESTAMP (no time zone) so no session setting can shift them.
-- No table holds an IP address, hostname, user agent, query string or free text: only catalogue values.
-- No PRIMARY KEY / UNIQUE constraints on ingest tables: ART indexes have known WAL-replay bugs after a
-- crash (duckdb#18732); batch_id uniqueness is enforced by the collector's dedup index instead.

CREATE TABLE batches (
    batch_id        UUID      NOT NULL,
    install_id      UUID      NOT NULL,
    product_name    VARCHAR   NOT NULL,
    product_version VARCHAR   NOT NULL,
    agent_version   VARCHAR   NOT NULL,
    created_at      TIMESTAMP NOT NULL,  -- sealed-at hour, from the batch
    received_at     TIMESTAMP NOT NULL,  -- truncated to the hour: arrival time is metadata too
    sha256          VARCHAR   NOT NULL,  -- hex SHA-256 of the decompressed request body
    body_bytes      INTEGER   NOT NULL,
    snapshot_count  INTEGER   NOT NULL
);

CREATE TABLE snapshots (
    install_id              UUID      NOT NULL,
    batch_id                UUID      NOT NULL,
    product_name            VARCHAR   NOT NULL,
    product_version         VARCHAR   NOT NULL,
    taken_at                TIMESTAMP NOT NULL,
    -- One column per catalogue metric (key with dots as underscores); NULL when not sent.
    os_family               VARCHAR,
    os_version              VARCHAR,
    host_cpu_logical_cores  INTEGER,
    host_cpu_usage_pct      INTEGER,
    host_memory_total_gib   INTEGER,
    host_disk_total_gib     INTEGER,
    host_disk_free_gib      INTEGER,
    usage_projects          BIGINT,
    usage_deployments       BIGINT
);

-- Spool segments already loaded, written in the same transaction as their rows: replay is idempotent.
CREATE TABLE loaded_segments (
    name      VARCHAR   NOT NULL,
    loaded_at TIMESTAMP NOT NULL,
    batches   INTEGER   NOT NULL
);

-- Bearer tokens for reports. Only the SHA-256 of a token is stored; the token is shown once.
CREATE TABLE tokens (
    token_id     VARCHAR   NOT NULL,  -- short public handle for list/revoke
    role         VARCHAR   NOT NULL,  -- 'analyst' | 'admin'
    token_sha256 VARCHAR   NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    revoked_at   TIMESTAMP
);
