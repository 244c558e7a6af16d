//! The transport: how the sync runner talks to a server. A thin trait so
//! tests can put fault injection or a simulated network behind it; the real
//! one is [`super::http::HttpTransport`].

use gridwork_protocol::OperationEnvelope;
use gridwork_protocol::api::{BlobStatus, PullResponse, PushResponse, TokenResponse};

use super::engine::FailureClass;

/// A failed request, as the transport saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// No connection, reset, timeout, truncated reply.
    Network(String),
    /// The server answered with an error body.
    Http { status: u16, code: String, message: String, retry_after_ms: Option<i64> },
    /// The server answered 2xx with a body we cannot read.
    Malformed(String),
}

/// How the runner should treat a failed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Retry the whole step later according to the class.
    Retry(FailureClass),
    /// The server refused this item for good: park it with this reason.
    Reject { code: String, message: String },
}

/// Map a failure to one of the four classes (network, transient, auth,
/// rejected). Unknown server behaviour is treated as transient: retrying
/// later never loses anything, parking might strand a report.
pub fn classify(error: &TransportError) -> Disposition {
    match error {
        TransportError::Network(_) => Disposition::Retry(FailureClass::Network),
        TransportError::Malformed(_) => Disposition::Retry(FailureClass::Transient { retry_after_ms: None }),
        TransportError::Http { status, code, message, retry_after_ms } => match *status {
            401 => Disposition::Retry(FailureClass::Auth),
            408 | 409 | 413 | 425 | 429 | 500..=599 => Disposition::Retry(FailureClass::Transient { retry_after_ms: *retry_after_ms }),
            // A 4xx without our error body came from something in between
            // (a captive portal, a firewall, a proxy): not the server's word.
            400..=499 if code.starts_with("http_") => Disposition::Retry(FailureClass::Transient { retry_after_ms: *retry_after_ms }),
            400..=499 => Disposition::Reject { code: code.clone(), message: message.clone() },
            _ => Disposition::Retry(FailureClass::Transient { retry_after_ms: *retry_after_ms }),
        },
    }
}

pub trait Transport: Send + Sync {
    fn login(&self, username: &str, password: &str) -> Result<TokenResponse, TransportError>;
    fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, TransportError>;
    fn push(&self, access_token: &str, operations: &[OperationEnvelope]) -> Result<PushResponse, TransportError>;
    fn pull(&self, access_token: &str, since: i64, limit: u32) -> Result<PullResponse, TransportError>;
    /// Announce a blob; `preview_of` names the original when this blob is a
    /// smaller preview sent ahead on a metered link.
    fn blob_create(&self, access_token: &str, sha256: &str, size: u64, preview_of: Option<&str>) -> Result<BlobStatus, TransportError>;
    fn blob_status(&self, access_token: &str, sha256: &str) -> Result<BlobStatus, TransportError>;
    fn blob_chunk(&self, access_token: &str, sha256: &str, offset: u64, chunk: &[u8]) -> Result<BlobStatus, TransportError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, code: &str) -> TransportError {
        TransportError::Http { status, code: code.into(), message: "m".into(), retry_after_ms: Some(5) }
    }

    #[test]
    fn four_classes() {
        assert_eq!(classify(&TransportError::Network("reset".into())), Disposition::Retry(FailureClass::Network));
        assert_eq!(classify(&http(401, "auth_expired")), Disposition::Retry(FailureClass::Auth));
        for status in [429, 500, 502, 503, 504, 409] {
            assert_eq!(classify(&http(status, "x")), Disposition::Retry(FailureClass::Transient { retry_after_ms: Some(5) }), "{status}");
        }
        assert_eq!(classify(&http(400, "invalid_payload")), Disposition::Reject { code: "invalid_payload".into(), message: "m".into() });
        assert_eq!(classify(&http(404, "not_found")), Disposition::Reject { code: "not_found".into(), message: "m".into() });
        // Something between device and server refused (no Gridwork error body), or a body limit.
        assert_eq!(classify(&http(403, "http_403")), Disposition::Retry(FailureClass::Transient { retry_after_ms: Some(5) }));
        assert_eq!(classify(&http(413, "body_too_large")), Disposition::Retry(FailureClass::Transient { retry_after_ms: Some(5) }));
        assert_eq!(
            classify(&TransportError::Malformed("truncated".into())),
            Disposition::Retry(FailureClass::Transient { retry_after_ms: None })
        );
    }
}
