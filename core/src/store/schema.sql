-- The latest schema (version 4), whole: what a new database is created with.
-- An old database reaches the same schema through upgrade_v2.sql, upgrade_v3.sql,
-- ... one version at a time; a test checks both paths agree. A new version
-- changes this file and adds its upgrade file.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- Street (街道) -> community (社区) -> grid (网格).
CREATE TABLE grids (
    code             TEXT PRIMARY KEY,
    tier             TEXT NOT NULL CHECK (tier IN ('street', 'community', 'grid')),
    name             TEXT NOT NULL,
    parent_code      TEXT REFERENCES grids(code),
    management_level TEXT CHECK (management_level IN
                        ('routine', 'general_prevention', 'key_attention', 'comprehensive_remediation')),
    boundary_geojson TEXT,
    min_lon REAL, min_lat REAL, max_lon REAL, max_lat REAL
) STRICT;
CREATE INDEX grids_bbox ON grids (tier, min_lon, max_lon);

-- Versioned code table of 大类 (parent_code NULL) and 小类.
CREATE TABLE categories (
    code        TEXT PRIMARY KEY,
    parent_code TEXT REFERENCES categories(code),
    name_zh     TEXT NOT NULL,
    name_en     TEXT NOT NULL,
    sort_order  INTEGER NOT NULL,
    active      INTEGER NOT NULL DEFAULT 1
) STRICT;

CREATE TABLE incidents (
    id                   TEXT PRIMARY KEY,
    status               TEXT NOT NULL,
    category_code        TEXT REFERENCES categories(code),
    description          TEXT NOT NULL DEFAULT '',
    address              TEXT,
    lat                  REAL,
    lon                  REAL,
    accuracy_m           REAL,
    grid_code            TEXT,
    reporter             TEXT NOT NULL,
    created_device_ms    INTEGER NOT NULL,
    created_corrected_ms INTEGER NOT NULL,
    updated_device_ms    INTEGER NOT NULL,
    updated_corrected_ms INTEGER NOT NULL,
    submitted_device_ms    INTEGER,
    submitted_corrected_ms INTEGER,
    -- The case as the server last described it (an IncidentView), and its version.
    server_version       INTEGER,
    server_view          TEXT,
    -- A task's facts from the server view, in columns for the task list:
    -- who it is dispatched to (a user name), the department, the deadline,
    -- since when it runs (its last dispatch or rework), the rating once closed.
    assignee             TEXT,
    department           TEXT,
    deadline_ms          INTEGER,
    task_since_ms        INTEGER,
    rating               INTEGER,
    -- A draft correcting a rejected report of this user's: the report it resubmits.
    resubmission_of      TEXT
) STRICT;
CREATE INDEX incidents_status ON incidents (status, created_corrected_ms);
CREATE INDEX incidents_created ON incidents (created_corrected_ms);
CREATE INDEX incidents_grid ON incidents (grid_code, created_corrected_ms);

-- Photo evidence. Files live under photos/ named by SHA-256; metadata lives
-- here so queries never open an image.
CREATE TABLE photos (
    id            TEXT PRIMARY KEY,
    incident_id   TEXT NOT NULL REFERENCES incidents(id),
    position      INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    byte_size     INTEGER NOT NULL,
    mime_type     TEXT NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    orientation   INTEGER NOT NULL DEFAULT 1,
    taken_at_ms   INTEGER,
    exif_lat      REAL,
    exif_lon      REAL,
    dhash         INTEGER NOT NULL,
    thumb_width   INTEGER NOT NULL,
    thumb_height  INTEGER NOT NULL,
    attached_device_ms    INTEGER NOT NULL,
    attached_corrected_ms INTEGER NOT NULL,
    -- A PhotoRole name: the report's evidence, a handler's after-photo, a verifier's.
    role          TEXT NOT NULL DEFAULT 'evidence',
    UNIQUE (incident_id, sha256)
) STRICT;
CREATE INDEX photos_incident ON photos (incident_id, position);
CREATE INDEX photos_sha ON photos (sha256);
CREATE INDEX incidents_tasks ON incidents (status, deadline_ms);

-- Append-only trail of every action on an incident (归档留痕).
CREATE TABLE audit (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id   TEXT NOT NULL,
    action        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    device_ms     INTEGER NOT NULL,
    corrected_ms  INTEGER NOT NULL,
    lat           REAL,
    lon           REAL,
    detail        TEXT,
    -- Hash-chained (归档留痕): the previous entry's hash and this one's
    -- (protocol::trail); absent only on entries from before version 6.
    prev_hash     TEXT,
    hash          TEXT
) STRICT;
CREATE INDEX audit_incident ON audit (incident_id, seq);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END;

-- Durable outbox of operations waiting for the server.
CREATE TABLE outbox (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    op_id                TEXT NOT NULL UNIQUE,
    entity_id            TEXT NOT NULL,
    entity_kind          TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    payload              TEXT NOT NULL,
    payload_schema       INTEGER NOT NULL,
    state                TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'acknowledged', 'parked')),
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms      INTEGER NOT NULL,
    depends_on           TEXT REFERENCES outbox(op_id),
    blob_sha256          TEXT,
    blob_bytes           INTEGER NOT NULL DEFAULT 0,
    park_code            TEXT,
    park_message         TEXT,
    last_error           TEXT,
    created_device_ms    INTEGER NOT NULL,
    created_corrected_ms INTEGER NOT NULL,
    acknowledged_ms      INTEGER
) STRICT;
CREATE INDEX outbox_entity ON outbox (entity_id, seq);
-- Ordered by queue position: the next batch is read in order and no more.
CREATE INDEX outbox_state ON outbox (state, seq);

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

-- Previews (thumbnails or renditions) sent ahead of originals on metered links.
CREATE TABLE sync_previews (
    sha256         TEXT PRIMARY KEY,
    preview_sha256 TEXT NOT NULL,
    long_edge      INTEGER NOT NULL
) STRICT;

-- Thumbnails of other devices' photos on the cases this user works (files
-- under photos/thumbs/ named by SHA-256), fetched by sync for offline screens.
CREATE TABLE case_thumbnails (
    sha256     TEXT PRIMARY KEY,
    fetched_ms INTEGER NOT NULL
) STRICT;

-- Photos of other devices fetched when a person asks to see them (files
-- under photos/fetched/, named by SHA-256 and rendition), a cache bounded by
-- size: the least recently used go first.
CREATE TABLE fetched_photos (
    sha256     TEXT NOT NULL,
    rendition  TEXT NOT NULL,
    file_name  TEXT NOT NULL,
    byte_size  INTEGER NOT NULL,
    used_ms    INTEGER NOT NULL,
    PRIMARY KEY (sha256, rendition)
) STRICT;
CREATE INDEX fetched_photos_used ON fetched_photos (used_ms);
