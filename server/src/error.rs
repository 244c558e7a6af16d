//! The one error type of gridwork-server: an HTTP status, a stable machine
//! code and a human message. Messages never carry passwords, tokens or
//! report contents.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridwork_protocol::api::ErrorBody;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

pub type Result<T, E = ServerError> = std::result::Result<T, E>;

impl ServerError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ServerError {
        ServerError { status, code, message: message.into() }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ServerError {
        ServerError::new(400, code, message)
    }
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> ServerError {
        ServerError::new(401, code, message)
    }
    pub fn forbidden(message: impl Into<String>) -> ServerError {
        ServerError::new(403, "forbidden", message)
    }
    pub fn not_found(what: &str) -> ServerError {
        ServerError::new(404, "not_found", format!("{what} not found"))
    }
    pub fn conflict() -> ServerError {
        ServerError::new(409, "storage_conflict", "a concurrent change won; retry")
    }
    pub fn internal(message: impl Into<String>) -> ServerError {
        ServerError::new(500, "internal", message)
    }
    pub fn storage(message: impl Into<String>) -> ServerError {
        ServerError::new(503, "storage_unavailable", message)
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ServerError {}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        (status, Json(ErrorBody { code: self.code.to_owned(), message: self.message })).into_response()
    }
}
