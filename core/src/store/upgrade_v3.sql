-- Schema version 3: previews (thumbnails or renditions) sent ahead of
-- originals on metered links.

CREATE TABLE sync_previews (
    sha256         TEXT PRIMARY KEY,
    preview_sha256 TEXT NOT NULL,
    long_edge      INTEGER NOT NULL
) STRICT;
