-- Aggregate streams become one-to-one with (aggregate, id): the category of an
-- aggregate's streams is its name with each '-' written '_' (names never hold '_'),
-- so `ev` id `a-1` is `ev-a-1` and `ev-a` id `1` is `ev_a-1`, where both used to be
-- `ev-a-1`. Names without a dash keep their streams as they were.
--
-- Streams written under the old mapping by an aggregate whose name holds a dash are
-- renamed here, once. This is the one place stored events are touched after their
-- commit, and only their stream id changes: positions, versions, ids and payloads stay.
-- A stream is renamed for the shortest aggregate name it matched, because that is
-- the aggregate that also reads it under the new mapping when the name has no dash
-- (such a stream, claimed by `ev` and `ev-a` alike, had both aggregates' events in it
-- and stays with `ev`). A stream is left where it is when its new name is already
-- taken by a stream the tenant wrote itself.
CREATE TABLE stream_renames AS
SELECT s.tenant_id, s.stream_id AS old_id,
       replace(p.name, '-', '_') || substr(s.stream_id, length(p.name) + 1) AS new_id
FROM (SELECT DISTINCT tenant_id, stream_id FROM events) s
JOIN (SELECT DISTINCT tenant_id, name FROM plugins
      WHERE kind = 'aggregate' AND name LIKE '%-%') p
  ON p.tenant_id = s.tenant_id
 AND substr(s.stream_id, 1, length(p.name) + 1) = p.name || '-'
WHERE NOT EXISTS (
    SELECT 1 FROM plugins q
    WHERE q.tenant_id = s.tenant_id AND q.kind = 'aggregate'
      AND length(q.name) < length(p.name)
      AND substr(s.stream_id, 1, length(q.name) + 1) = q.name || '-'
);

DELETE FROM stream_renames WHERE EXISTS (
    SELECT 1 FROM events e
    WHERE e.tenant_id = stream_renames.tenant_id AND e.stream_id = stream_renames.new_id
);

UPDATE events SET stream_id = (
    SELECT r.new_id FROM stream_renames r
    WHERE r.tenant_id = events.tenant_id AND r.old_id = events.stream_id
) WHERE EXISTS (
    SELECT 1 FROM stream_renames r
    WHERE r.tenant_id = events.tenant_id AND r.old_id = events.stream_id
);

UPDATE commands SET stream_id = (
    SELECT r.new_id FROM stream_renames r
    WHERE r.tenant_id = commands.tenant_id AND r.old_id = commands.stream_id
) WHERE EXISTS (
    SELECT 1 FROM stream_renames r
    WHERE r.tenant_id = commands.tenant_id AND r.old_id = commands.stream_id
);

UPDATE snapshots SET stream_id = (
    SELECT r.new_id FROM stream_renames r
    WHERE r.tenant_id = snapshots.tenant_id AND r.old_id = snapshots.stream_id
) WHERE EXISTS (
    SELECT 1 FROM stream_renames r
    WHERE r.tenant_id = snapshots.tenant_id AND r.old_id = snapshots.stream_id
);

DROP TABLE stream_renames;
