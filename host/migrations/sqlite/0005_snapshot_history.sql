-- A stream keeps a bounded history of snapshots per component (not only the newest),
-- so that a read of an old version starts from the nearest snapshot below it.
CREATE TABLE snapshots_history (
    tenant_id     TEXT NOT NULL,
    stream_id     TEXT NOT NULL,
    plugin_digest TEXT NOT NULL,
    version       INTEGER NOT NULL,
    state         BLOB NOT NULL,
    PRIMARY KEY (tenant_id, stream_id, plugin_digest, version)
);
INSERT INTO snapshots_history (tenant_id, stream_id, plugin_digest, version, state)
SELECT tenant_id, stream_id, plugin_digest, version, state FROM snapshots;
DROP TABLE snapshots;
ALTER TABLE snapshots_history RENAME TO snapshots;
