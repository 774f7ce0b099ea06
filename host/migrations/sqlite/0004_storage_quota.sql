-- A tenant's storage quota counts its compiled artifacts too: their size is recorded
-- when an upload compiles. Versions uploaded before this migration are estimated at
-- three times their upload, about what cranelift's output measures.
ALTER TABLE plugins ADD COLUMN artifact_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE plugins SET artifact_bytes = 3 * LENGTH(wasm);
