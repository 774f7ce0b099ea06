-- A stream keeps a bounded history of snapshots per component (not only the newest),
-- so that a read of an old version starts from the nearest snapshot below it.
ALTER TABLE snapshots DROP CONSTRAINT snapshots_pkey;
ALTER TABLE snapshots ADD PRIMARY KEY (tenant_id, stream_id, plugin_digest, version);
