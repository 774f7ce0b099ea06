-- Projection versions and their documents.

CREATE TABLE projections (
    tenant_id      TEXT NOT NULL,
    name           TEXT NOT NULL,
    -- A build of the projection: a new plugin version or a rebuild makes a new one.
    version        BIGINT NOT NULL,
    plugin_version BIGINT NOT NULL,
    digest         TEXT NOT NULL,
    -- building | active | retired | failed
    status         TEXT NOT NULL,
    -- The last log position whose effects are in this version's documents.
    position       BIGINT NOT NULL DEFAULT 0,
    error          TEXT,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);

CREATE TABLE documents (
    tenant_id  TEXT NOT NULL,
    projection TEXT NOT NULL,
    version    BIGINT NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    doc        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, projection, version, key)
);
