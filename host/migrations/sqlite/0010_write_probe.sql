-- One row that `/readyz` rewrites while the store is known to be full: when the write
-- succeeds again, space has returned and the host is ready without a restart.
CREATE TABLE write_probe (
    id         INTEGER PRIMARY KEY,
    -- Unix milliseconds.
    written_at BIGINT NOT NULL,
    -- Enough bytes that the write needs new pages, as an append would.
    filler     BLOB NOT NULL
);
