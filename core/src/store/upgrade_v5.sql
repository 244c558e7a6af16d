-- Schema version 5: photos of other devices fetched when a person asks to
-- see them (files under photos/fetched/, named by SHA-256 and rendition), a
-- cache bounded by size: the least recently used go first.
CREATE TABLE fetched_photos (
    sha256     TEXT NOT NULL,
    rendition  TEXT NOT NULL,
    file_name  TEXT NOT NULL,
    byte_size  INTEGER NOT NULL,
    used_ms    INTEGER NOT NULL,
    PRIMARY KEY (sha256, rendition)
) STRICT;
CREATE INDEX fetched_photos_used ON fetched_photos (used_ms);
