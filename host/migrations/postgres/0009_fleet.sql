-- The hosts serving from this database, for `GET /admin/hosts`: each writes its row at
-- start, renews `heartbeat_at` every few seconds, and deletes it on a graceful stop. A
-- row whose heartbeat is old belongs to a host that died.
CREATE TABLE hosts (
    host_id      TEXT PRIMARY KEY,
    -- Unix milliseconds.
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

-- Which host runs each projection build's worker (PostgreSQL fleets; a lone SQLite
-- host runs them all without leases). The owner renews `expires_at` every few seconds;
-- another host may take a lease only once it has expired, or when its owner hands it
-- back. The checkpoint guard keeps effects exactly once even if two ever overlap.
CREATE TABLE projection_leases (
    tenant_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    build      BIGINT NOT NULL,
    owner      TEXT NOT NULL,
    -- Unix milliseconds.
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name, build)
);
