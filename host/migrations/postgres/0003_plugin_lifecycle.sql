-- Aggregate and upcaster versions are verified by replaying history before they
-- serve, and one version of each is active (not simply the newest).

-- verifying | verified | rejected. Versions uploaded before verification existed
-- were served, so they count as verified.
ALTER TABLE plugins ADD COLUMN status TEXT NOT NULL DEFAULT 'verified';
-- The verification report (progress, failures, state differences), JSON.
ALTER TABLE plugins ADD COLUMN report TEXT;
-- The upcaster versions this version reads history through, JSON, fixed at upload.
ALTER TABLE plugins ADD COLUMN upcasters TEXT NOT NULL DEFAULT '[]';

CREATE TABLE plugin_activations (
    tenant_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    version      BIGINT NOT NULL,
    activated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Until now the newest version of an aggregate served.
INSERT INTO plugin_activations (tenant_id, name, version, activated_at)
SELECT tenant_id, name, MAX(version), 0 FROM plugins WHERE kind = 'aggregate'
GROUP BY tenant_id, name;
