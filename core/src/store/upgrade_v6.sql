-- Schema version 6: the audit trail is hash-chained (归档留痕). Each new
-- entry carries the hash of the entry before it and its own; entries from
-- before this version stay unchained at the start of the trail.
ALTER TABLE audit ADD COLUMN prev_hash TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
