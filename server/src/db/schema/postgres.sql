-- The server's schema on PostgreSQL (meta.schema_version 1). It declares the same
-- tables, columns and indexes as sqlite.sql in that dialect's types; a unit
-- test in db/mod.rs compares the two. Every statement is idempotent: it runs
-- at each start.

CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS user_grids (
    user_id TEXT NOT NULL,
    grid_code TEXT NOT NULL,
    PRIMARY KEY (user_id, grid_code)
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0,
    spent_at_ms BIGINT,
    -- Times a spent refresh token was presented again (one lost reply is forgiven).
    replays BIGINT NOT NULL DEFAULT 0
);
-- Devices an administrator revoked (a lost or stolen phone): every sign-in,
-- refresh and request from one is refused. Revoking again keeps the first time.
CREATE TABLE IF NOT EXISTS revoked_devices (
    device_id TEXT PRIMARY KEY,
    revoked_at_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS grids (
    code TEXT PRIMARY KEY,
    tier TEXT NOT NULL,
    name TEXT NOT NULL,
    parent_code TEXT,
    level TEXT,
    boundary TEXT
);
CREATE TABLE IF NOT EXISTS categories (
    code TEXT PRIMARY KEY,
    parent_code TEXT,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL,
    sort_order BIGINT NOT NULL,
    active BIGINT NOT NULL DEFAULT 1
);
-- 时限: hours a dispatched (or reworked) case of a category has to be handled,
-- when the dispatcher gives no deadline, and optionally hours to sign for it
-- once dispatched and to verify it once handled. A 大类's apply to its 小类.
CREATE TABLE IF NOT EXISTS category_deadlines (
    category_code TEXT PRIMARY KEY,
    handle_hours BIGINT NOT NULL,
    sign_hours BIGINT,
    verify_hours BIGINT
);

CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    category_code TEXT NOT NULL,
    description TEXT NOT NULL,
    address TEXT,
    lat DOUBLE PRECISION,
    lon DOUBLE PRECISION,
    accuracy_m DOUBLE PRECISION,
    grid_code TEXT,
    reporter_id TEXT NOT NULL,
    reporter_role TEXT NOT NULL,
    assignee_id TEXT,
    department TEXT,
    deadline_ms BIGINT,
    merged_into TEXT,
    version BIGINT NOT NULL,
    captured_device_ms BIGINT NOT NULL,
    captured_corrected_ms BIGINT NOT NULL,
    reported_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    rating BIGINT,
    resubmission_of TEXT,
    -- The time limit of the step the case waits for besides handling (签收, 核查).
    step_deadline_ms BIGINT
);
CREATE INDEX IF NOT EXISTS incidents_state ON incidents (state, reported_at_ms);
CREATE INDEX IF NOT EXISTS incidents_grid ON incidents (grid_code);
CREATE TABLE IF NOT EXISTS incident_photos (
    photo_id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    byte_size BIGINT NOT NULL,
    mime_type TEXT NOT NULL,
    role TEXT NOT NULL,
    position BIGINT NOT NULL,
    added_by TEXT
);
CREATE INDEX IF NOT EXISTS incident_photos_incident ON incident_photos (incident_id, position);
CREATE INDEX IF NOT EXISTS incident_photos_sha ON incident_photos (sha256);
CREATE TABLE IF NOT EXISTS timeline (
    seq BIGSERIAL PRIMARY KEY,
    incident_id TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    note TEXT,
    at_ms BIGINT NOT NULL,
    -- Hash-chained per case (归档留痕, protocol::trail): the previous entry's
    -- hash and this one's; absent only on entries from before version 6.
    prev_hash TEXT,
    hash TEXT
);
CREATE INDEX IF NOT EXISTS timeline_incident ON timeline (incident_id, seq);

CREATE TABLE IF NOT EXISTS applied_ops (
    device_id TEXT NOT NULL,
    op_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    result TEXT NOT NULL,
    applied_at_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, op_id)
);

CREATE TABLE IF NOT EXISTS changes (
    seq BIGSERIAL PRIMARY KEY,
    entity_kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS change_audience (
    audience TEXT NOT NULL,
    seq BIGINT NOT NULL,
    removal BIGINT NOT NULL,
    PRIMARY KEY (audience, seq)
);

CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    received BIGINT NOT NULL,
    complete BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
-- Previews (smaller JPEGs) of announced photos, sent ahead on metered links.
CREATE TABLE IF NOT EXISTS blob_previews (
    preview_sha256 TEXT PRIMARY KEY,
    original_sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS blob_previews_original ON blob_previews (original_sha256);
-- Who has shown the server a blob's bytes: `covered` bytes from offset 0,
-- sent in its upload or, when the blob was already here, matched against
-- it. A photo reference grants access only once its announcer covered the
-- whole blob (content addressing alone grants nothing).
CREATE TABLE IF NOT EXISTS blob_possession (
    sha256 TEXT NOT NULL,
    user_id TEXT NOT NULL,
    covered BIGINT NOT NULL,
    PRIMARY KEY (sha256, user_id)
);
CREATE TABLE IF NOT EXISTS blob_chunks (
    sha256 TEXT NOT NULL,
    start_at BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (sha256, start_at)
);
