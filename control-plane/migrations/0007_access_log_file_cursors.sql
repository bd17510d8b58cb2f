-- How far the durable file log (Envoy's JSON lines, --access-log-file) has been ingested, per
-- file. A file is known by its inode, which survives the rename of a rotation, and by the hash
-- of its first line, which tells a new file that reuses a freed inode from the old one. The
-- offset always ends a line and moves in the same transaction as the rows it covers. Never edit
-- once landed.

CREATE TABLE access_log_file_cursors (
    inode         INTEGER PRIMARY KEY, -- st_ino, as a signed 64-bit value
    offset        INTEGER NOT NULL,    -- bytes ingested
    head_len      INTEGER NOT NULL,    -- length of the first line, its newline included
    head_sha256   TEXT    NOT NULL,    -- SHA-256 of those bytes, hex
    updated_at_ms INTEGER NOT NULL
);
