//! The one error type of gridwork-core.
//!
//! Every variant has a stable machine code (`Error::code`) that the bindings,
//! the CLI and the shells match on; the human message never carries personal
//! data (no descriptions, names, coordinates or file paths).

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- database ---
    #[error("the database key is missing or empty")]
    DatabaseKeyMissing,
    #[error("the database key must be {expected} bytes, got {actual}")]
    DatabaseKeyLength { expected: usize, actual: usize },
    #[error("the database cannot be opened with this key")]
    DatabaseWrongKey,
    #[error(
        "the database was written by a newer version of Gridwork (schema {found}, this build supports up to {supported}); update the app"
    )]
    DatabaseFromFuture { found: i64, supported: i64 },
    #[error("the database is corrupt")]
    DatabaseCorrupt,
    #[error("the device storage is full")]
    StorageFull,
    #[error("this account's store is already open{}; one instance at a time", pid.map(|p| format!(" in process {p}")).unwrap_or_else(|| " elsewhere".into()))]
    StoreInUse { pid: Option<u32> },
    #[error("database error: {0}")]
    Database(String),
    #[error("file system error: {0}")]
    Io(String),

    // --- input ---
    #[error("text field `{field}` is not valid UTF-8")]
    TextInvalidUtf8 { field: &'static str },
    #[error("text field `{field}` contains a NUL or control character")]
    TextControlCharacter { field: &'static str },
    #[error("text field `{field}` is too long ({length} characters, at most {max})")]
    TextTooLong { field: &'static str, length: usize, max: usize },
    #[error("unknown category code")]
    UnknownCategory,
    #[error("location is not a valid WGS84 coordinate")]
    InvalidLocation,
    #[error("invalid GeoJSON: {0}")]
    InvalidGeoJson(String),
    #[error("invalid identifier")]
    InvalidId,
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("not allowed while the incident is {state}: {action}")]
    InvalidState { state: String, action: &'static str },
    #[error("incomplete incident: {0}")]
    Incomplete(&'static str),
    #[error("at most {max} photos per report")]
    TooManyPhotos { max: usize },
    #[error("your role may not {action} this case")]
    StepNotAllowed { action: &'static str },
    /// A workflow step whose note, rating or photos do not fit it; the code
    /// is the one the server would answer (`note_required`, `invalid_rating`, ...).
    #[error("{message}")]
    StepInvalid { code: &'static str, message: String },
    #[error("this device's store belongs to another account; sign in as its owner or open your own account")]
    AccountMismatch,

    // --- sync ---
    #[error("invalid server address: {0}")]
    InvalidServerUrl(String),
    #[error("not signed in; log in first")]
    NotLoggedIn,
    #[error("wrong user name or password")]
    AuthFailed,
    #[error("the server cannot be reached: {0}")]
    Network(String),
    #[error("the server refused: {message}")]
    Server { code: String, message: String },
    #[error("an administrator revoked this device: it no longer signs in or syncs")]
    DeviceRevoked,
    #[error("{operations} queued operations and {drafts} drafts have not reached the server; sync or export them first")]
    UnsentWork { operations: u64, drafts: u64 },
    #[error("this account's data was wiped from the device; open the store again")]
    StoreWiped,

    // --- photos ---
    #[error("photo file not found or not readable")]
    PhotoFileNotFound,
    #[error("photo file is empty")]
    PhotoEmpty,
    #[error("photo file is {actual} bytes, larger than the limit of {limit}")]
    PhotoTooLarge { actual: u64, limit: u64 },
    #[error("photo is {width}x{height} pixels, more than the limit allows")]
    PhotoTooManyPixels { width: u32, height: u32 },
    #[error("HEIC/HEIF photos are not supported; capture JPEG instead")]
    PhotoHeicUnsupported,
    #[error("photo format is not supported (JPEG, PNG and WebP are)")]
    PhotoUnsupportedFormat,
    #[error("photo file is truncated or corrupt: {0}")]
    PhotoCorrupt(String),
}

impl Error {
    /// Stable machine code. Never change an existing code; add new ones.
    pub fn code(&self) -> &'static str {
        match self {
            Error::DatabaseKeyMissing => "database_key_missing",
            Error::DatabaseKeyLength { .. } => "database_key_invalid",
            Error::DatabaseWrongKey => "database_wrong_key",
            Error::DatabaseFromFuture { .. } => "database_from_future",
            Error::DatabaseCorrupt => "database_corrupt",
            Error::StorageFull => "storage_full",
            Error::StoreInUse { .. } => "store_in_use",
            Error::Database(_) => "database_error",
            Error::Io(_) => "io_error",
            Error::TextInvalidUtf8 { .. } => "text_invalid_utf8",
            Error::TextControlCharacter { .. } => "text_control_character",
            Error::TextTooLong { .. } => "text_too_long",
            Error::UnknownCategory => "unknown_category",
            Error::InvalidLocation => "invalid_location",
            Error::InvalidGeoJson(_) => "invalid_geojson",
            Error::InvalidId => "invalid_id",
            Error::NotFound { .. } => "not_found",
            Error::InvalidState { .. } => "invalid_state",
            Error::Incomplete(_) => "incomplete",
            Error::TooManyPhotos { .. } => "too_many_photos",
            Error::StepNotAllowed { .. } => "step_not_allowed",
            Error::StepInvalid { code, .. } => code,
            Error::AccountMismatch => "account_mismatch",
            Error::InvalidServerUrl(_) => "invalid_server_url",
            Error::NotLoggedIn => "not_logged_in",
            Error::AuthFailed => "auth_failed",
            Error::Network(_) => "network_unavailable",
            Error::Server { .. } => "server_error",
            Error::DeviceRevoked => "device_revoked",
            Error::UnsentWork { .. } => "unsent_work",
            Error::StoreWiped => "store_wiped",
            Error::PhotoFileNotFound => "photo_file_not_found",
            Error::PhotoEmpty => "photo_empty",
            Error::PhotoTooLarge { .. } => "photo_too_large",
            Error::PhotoTooManyPixels { .. } => "photo_too_many_pixels",
            Error::PhotoHeicUnsupported => "photo_heic_unsupported",
            Error::PhotoUnsupportedFormat => "photo_unsupported_format",
            Error::PhotoCorrupt(_) => "photo_corrupt",
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode;
        if let rusqlite::Error::SqliteFailure(failure, _) = &error {
            match failure.code {
                ErrorCode::DiskFull => return Error::StorageFull,
                ErrorCode::DatabaseCorrupt => return Error::DatabaseCorrupt,
                ErrorCode::NotADatabase => return Error::DatabaseWrongKey,
                _ => {}
            }
        }
        // rusqlite messages name SQL, never bound values, so they carry no
        // personal data.
        Error::Database(error.to_string())
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::StorageFull => Error::StorageFull,
            // Only the kind: an io::Error's text may carry a path.
            kind => Error::Io(kind.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
