-- Cairn schema, PostgreSQL edition. Every row carries tenant_id.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    limits      TEXT NOT NULL DEFAULT '{}',
    -- The last position of the tenant's log; appends advance it in their transaction,
    -- which keeps positions gap-free and in commit order.
    head        BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);

CREATE TABLE events (
    tenant_id   TEXT NOT NULL,
    position    BIGINT NOT NULL,
    stream_id   TEXT NOT NULL,
    version     BIGINT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, position)
);
CREATE UNIQUE INDEX events_stream ON events (tenant_id, stream_id, version);
CREATE UNIQUE INDEX events_id ON events (tenant_id, event_id);

CREATE TABLE commands (
    tenant_id     TEXT NOT NULL,
    stream_id     TEXT NOT NULL,
    command_id    TEXT NOT NULL,
    first_version BIGINT NOT NULL,
    last_version  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, stream_id, command_id)
);

CREATE TABLE snapshots (
    tenant_id     TEXT NOT NULL,
    stream_id     TEXT NOT NULL,
    plugin_digest TEXT NOT NULL,
    version       BIGINT NOT NULL,
    state         BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, stream_id, plugin_digest)
);

CREATE TABLE plugins (
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    wasm        BYTEA NOT NULL,
    uploaded_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);
CREATE INDEX plugins_digest ON plugins (tenant_id, digest);
