-- Command ids become idempotency keys scoped to the tenant (they were per stream):
-- each remembers the fingerprint of its request (aggregate, id, type, payload), so a
-- repeat with another request is refused, and a domain rejection is remembered and
-- replayed like a success. Rows written before this migration have no fingerprint and
-- answer a repeat on their own stream only.
ALTER TABLE commands ADD COLUMN fingerprint TEXT;
-- The rejection as JSON {"code", "message"}; NULL for an applied command.
ALTER TABLE commands ADD COLUMN rejection TEXT;
-- Unix milliseconds; what retention (--command-retention-days) measures. NULL for
-- rows written before this migration, which are kept.
ALTER TABLE commands ADD COLUMN recorded_at BIGINT;
CREATE INDEX commands_by_id ON commands (tenant_id, command_id);
