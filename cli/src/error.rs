//! The CLI's one error type: a stable machine code and a human message.
//!
//! Errors from the core keep the core's codes (`gridwork_core::Error::code`);
//! the few the command line adds itself (key files, argument shapes) get
//! their own codes here.

use std::borrow::Cow;

#[derive(Debug)]
pub struct CliError {
    pub code: Cow<'static, str>,
    pub message: String,
    /// The server's own code when the server refused (`server_error`).
    pub server_code: Option<String>,
}

impl CliError {
    pub fn new(code: &'static str, message: impl Into<String>) -> CliError {
        CliError { code: Cow::Borrowed(code), message: message.into(), server_code: None }
    }

    /// The same error said better (the code stays).
    pub fn with_message(mut self, message: impl Into<String>) -> CliError {
        self.message = message.into();
        self
    }

    /// Wrong command-line usage (exit status 2, like clap's own).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(INVALID_ARGUMENTS, message)
    }

    pub fn exit_code(&self) -> i32 {
        match self.code.as_ref() {
            INVALID_ARGUMENTS => 2,
            INTERRUPTED => sync_exit::INTERRUPTED,
            _ => 1,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(server_code) = &self.server_code {
            value["server_code"] = server_code.as_str().into();
        }
        value
    }
}

/// Exit statuses of `gridwork sync` besides 0 (the round completed) and the
/// error statuses 1 and 2, so a script can tell what to do next.
pub mod sync_exit {
    /// The server could not be reached (nothing lost: run again later).
    pub const UNREACHABLE: i32 = 3;
    /// No one is signed in on this account: `gridwork login`.
    pub const NOT_SIGNED_IN: i32 = 4;
    /// The session ended (signed out elsewhere, token revoked): log in again.
    pub const SESSION_ENDED: i32 = 5;
    /// The server refused operations: they are parked, see `gridwork outbox`.
    pub const REFUSED: i32 = 6;
    /// The round did not finish (time budget, server busy): run again.
    pub const UNFINISHED: i32 = 7;
    /// An administrator revoked this device: it no longer syncs. Its data
    /// was wiped, or waits for `gridwork logout --wipe --export DIR`.
    pub const DEVICE_REVOKED: i32 = 8;
    /// Stopped by Ctrl-C at a request boundary; what was sent is kept.
    pub const INTERRUPTED: i32 = 130;
}

/// Codes the CLI adds to the core's.
pub const INVALID_ARGUMENTS: &str = "invalid_arguments";
pub const KEY_FILE_UNREADABLE: &str = "key_file_unreadable";
pub const DEVICE_DIR_UNUSABLE: &str = "device_dir_unusable";
/// A typed id prefix matches more than one id.
pub const AMBIGUOUS_ID: &str = "ambiguous_id";
/// `--account` names no account this device holds.
pub const UNKNOWN_ACCOUNT: &str = "unknown_account";
/// Another gridwork process holds this account's store.
pub const DEVICE_BUSY: &str = "device_busy";
/// Ctrl-C stopped the command before it finished; what it says was kept is.
pub const INTERRUPTED: &str = "interrupted";

impl From<gridwork_core::Error> for CliError {
    fn from(error: gridwork_core::Error) -> Self {
        let server_code = match &error {
            gridwork_core::Error::Server { code, .. } => Some(code.clone()),
            _ => None,
        };
        CliError { code: Cow::Borrowed(error.code()), message: error.to_string(), server_code }
    }
}

pub type CliResult<T> = Result<T, CliError>;
