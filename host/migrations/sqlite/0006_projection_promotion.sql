-- The build that takes over when it catches up: the newest requested one (an upload
-- or a rebuild), until a later promote or a newer build cancels it.
ALTER TABLE projections ADD COLUMN auto_promote BOOLEAN NOT NULL DEFAULT FALSE;
-- Builds under way were all going to take over; only the newest still may.
UPDATE projections SET auto_promote = TRUE WHERE status = 'building' AND version = (
    SELECT MAX(p.version) FROM projections p
    WHERE p.tenant_id = projections.tenant_id AND p.name = projections.name);
UPDATE projections SET status = 'retired' WHERE status = 'building' AND NOT auto_promote;
