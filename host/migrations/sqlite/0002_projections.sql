-- Projection versions and their documents.

CREATE TABLE projections (
    tenant_id      TEXT NOT NULL,
    name           TEXT NOT NULL,
    -- A build of the projection: a new plugin version or a rebuild makes a new one.
    version        INTEGER NOT NULL,
    plugin_version INTEGER NOT NULL,
    digest         TEXT NOT NULL,
    -- building | active | retired | failed
    status         TEXT NOT NULL,
    -- The last log position whose effects are in this version's documents.
    position       INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);

CREATE TABLE documents (
    tenant_id  TEXT NOT NULL,
    projection TEXT NOT NULL,
    version    INTEGER NOT NULL,
    key        TEXT NOT NULL,
    doc        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, projection, version, key)
);
