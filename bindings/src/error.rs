//! The one error type an app sees, converted from the core's in one place.
//!
//! Every variant carries `code` (the core's stable machine code, which a UI
//! may switch on for finer cases) and `detail` (English, no personal data);
//! the variants are the few situations a UI handles differently.

use gridwork_core::Error as CoreError;

#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum GridworkError {
    /// The database key is missing, malformed or not the one this store was
    /// made with.
    #[error("{code}: {detail}")]
    WrongKey { code: String, detail: String },
    /// The device is out of space; nothing was written.
    #[error("{code}: {detail}")]
    StorageFull { code: String, detail: String },
    /// Input refused; `field` names it when one field is at fault.
    #[error("{code}: {detail}")]
    InvalidInput { code: String, detail: String, field: Option<String> },
    #[error("{code}: {detail}")]
    NotFound { code: String, detail: String },
    /// The action does not fit the incident's state (editing a submitted
    /// report, say).
    #[error("{code}: {detail}")]
    InvalidState { code: String, detail: String },
    /// The store on this device belongs to another account.
    #[error("{code}: {detail}")]
    AccountMismatch { code: String, detail: String },
    /// The photo was not accepted (format, size, corrupt, too many).
    #[error("{code}: {detail}")]
    PhotoRefused { code: String, detail: String },
    #[error("{code}: {detail}")]
    NotSignedIn { code: String, detail: String },
    /// Wrong user name or password.
    #[error("{code}: {detail}")]
    AuthFailed { code: String, detail: String },
    /// An administrator revoked this device (a lost phone): no sign-in or
    /// sync from it is accepted. Export unsent work, then wipe.
    #[error("{code}: {detail}")]
    DeviceRevoked { code: String, detail: String },
    /// A wipe would lose work no server has seen: sync it, or export it
    /// (`export_unsent`) and wipe again.
    #[error("{code}: {detail}")]
    UnsentWork { code: String, detail: String, operations: u64, drafts: u64 },
    /// The server could not be reached; try again later.
    #[error("{code}: {detail}")]
    Network { code: String, detail: String },
    /// The server answered with a refusal; `server_code` is its stable code.
    #[error("{code}: {detail}")]
    ServerRefused { code: String, detail: String, server_code: String },
    /// The database or file system failed in a way the user cannot fix
    /// from this screen (corrupt, from a newer app, I/O).
    #[error("{code}: {detail}")]
    Storage { code: String, detail: String },
    /// A bug in Gridwork (a panic, a lost worker thread). Logged.
    #[error("{code}: {detail}")]
    Internal { code: String, detail: String },
}

impl GridworkError {
    /// The stable machine code, whatever the variant.
    pub fn code(&self) -> &str {
        match self {
            GridworkError::WrongKey { code, .. }
            | GridworkError::StorageFull { code, .. }
            | GridworkError::InvalidInput { code, .. }
            | GridworkError::NotFound { code, .. }
            | GridworkError::InvalidState { code, .. }
            | GridworkError::AccountMismatch { code, .. }
            | GridworkError::PhotoRefused { code, .. }
            | GridworkError::NotSignedIn { code, .. }
            | GridworkError::AuthFailed { code, .. }
            | GridworkError::DeviceRevoked { code, .. }
            | GridworkError::UnsentWork { code, .. }
            | GridworkError::Network { code, .. }
            | GridworkError::ServerRefused { code, .. }
            | GridworkError::Storage { code, .. }
            | GridworkError::Internal { code, .. } => code,
        }
    }

    pub(crate) fn internal(detail: &str) -> Self {
        log::error!("internal: {detail}");
        GridworkError::Internal { code: "internal".into(), detail: detail.into() }
    }

    /// An identifier from the app that is not a UUID.
    pub(crate) fn invalid_id(field: &str) -> Self {
        GridworkError::InvalidInput {
            code: "invalid_id".into(),
            detail: "not a valid identifier".into(),
            field: Some(field.into()),
        }
    }
}

impl From<CoreError> for GridworkError {
    fn from(error: CoreError) -> Self {
        let code = error.code().to_owned();
        // Core messages carry no personal data (see gridwork_core::error).
        let detail = error.to_string();
        let input = |field: Option<&str>| GridworkError::InvalidInput {
            code: code.clone(),
            detail: detail.clone(),
            field: field.map(str::to_owned),
        };
        match error {
            CoreError::DatabaseKeyMissing | CoreError::DatabaseKeyLength { .. } | CoreError::DatabaseWrongKey => {
                GridworkError::WrongKey { code, detail }
            }
            CoreError::StorageFull => GridworkError::StorageFull { code, detail },
            CoreError::TextInvalidUtf8 { field }
            | CoreError::TextControlCharacter { field }
            | CoreError::TextTooLong { field, .. } => input(Some(field)),
            CoreError::UnknownCategory => input(Some("category_code")),
            CoreError::InvalidLocation => input(Some("location")),
            CoreError::InvalidGeoJson(_) => input(Some("geojson")),
            CoreError::InvalidId => input(Some("id")),
            CoreError::InvalidServerUrl(_) => input(Some("server_url")),
            CoreError::Incomplete(_) => input(None),
            CoreError::NotFound { .. } => GridworkError::NotFound { code, detail },
            CoreError::InvalidState { .. } => GridworkError::InvalidState { code, detail },
            // Two stores over one account: the app should share one.
            CoreError::StoreInUse { .. } => GridworkError::InvalidState { code, detail },
            CoreError::StepNotAllowed { .. } => GridworkError::InvalidState { code, detail },
            CoreError::StepInvalid { code: step_code, .. } => input(Some(match step_code {
                "note_required" => "note",
                "invalid_rating" => "rating",
                _ => "photos",
            })),
            CoreError::AccountMismatch => GridworkError::AccountMismatch { code, detail },
            CoreError::TooManyPhotos { .. }
            | CoreError::PhotoFileNotFound
            | CoreError::PhotoEmpty
            | CoreError::PhotoTooLarge { .. }
            | CoreError::PhotoTooManyPixels { .. }
            | CoreError::PhotoHeicUnsupported
            | CoreError::PhotoUnsupportedFormat
            | CoreError::PhotoCorrupt(_) => GridworkError::PhotoRefused { code, detail },
            CoreError::NotLoggedIn => GridworkError::NotSignedIn { code, detail },
            CoreError::AuthFailed => GridworkError::AuthFailed { code, detail },
            CoreError::DeviceRevoked => GridworkError::DeviceRevoked { code, detail },
            CoreError::UnsentWork { operations, drafts } => GridworkError::UnsentWork { code, detail, operations, drafts },
            // The app holds a store it wiped: release it, open a new one.
            CoreError::StoreWiped => GridworkError::InvalidState { code, detail },
            CoreError::Network(_) => GridworkError::Network { code, detail },
            CoreError::Server { code: server_code, .. } => GridworkError::ServerRefused { code, detail, server_code },
            CoreError::DatabaseFromFuture { .. } | CoreError::DatabaseCorrupt | CoreError::Database(_) | CoreError::Io(_) => {
                // Unexpected on a healthy phone: worth a line in the log.
                log::error!("storage failure: {detail}");
                GridworkError::Storage { code, detail }
            }
        }
    }
}
