-- 004: catalogue versions. Each batch records the catalogue version it was built against (NULL on rows
-- stored before this migration: they are all format 1, which means catalogue version 1).
-- Metrics without a typed column in `snapshots` (those a vendor adds in later catalogue versions) are rows
-- here, one per snapshot and metric: the key is a catalogue key and the value passed that key's checks, so
-- this table holds catalogue values only, like the others. collector/storage/rows.py loads it; data-subject
-- access and erasure (subjects.py) and retention (retention.py) cover it.

ALTER TABLE batches ADD COLUMN catalogue_version INTEGER;

CREATE TABLE snapshot_values (
    install_id UUID      NOT NULL,
    batch_id   UUID      NOT NULL,
    taken_at   TIMESTAMP NOT NULL,
    key        VARCHAR   NOT NULL,
    int_value  BIGINT,             -- the value of an `int` metric
    text_value VARCHAR             -- the value of an `enum` or `pattern` metric
);
