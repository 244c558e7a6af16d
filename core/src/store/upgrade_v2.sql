-- Schema version 2: sync state, upgrading a version 1 database.

-- The case as the server last described it (an IncidentView), and its version.
ALTER TABLE incidents ADD COLUMN server_version INTEGER;
ALTER TABLE incidents ADD COLUMN server_view TEXT;

-- Upload progress per photo hash, kept on the device as the server keeps it.
CREATE TABLE sync_uploads (
    sha256         TEXT PRIMARY KEY,
    size           INTEGER NOT NULL,
    uploaded_bytes INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL
) STRICT;

-- Server state that arrived while the entity still had unacknowledged local
-- operations; applied once they are acknowledged.
CREATE TABLE remote_pending (
    entity_id TEXT PRIMARY KEY,
    data      TEXT NOT NULL
) STRICT;
