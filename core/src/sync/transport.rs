//! The transport: how the sync runner talks to a server. A thin trait so
//! tests can put fault injection or a simulated network behind it; the real
//! one is the reqwest `HttpTransport` beside it. How a failure is treated is
//! the engine's policy (`engine::classify`), not the transport's.

use gridwork_protocol::OperationEnvelope;
use gridwork_protocol::api::{BlobStatus, PhotoRendition, PullResponse, PushResponse, SkipSpan, TokenResponse};

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

pub trait Transport: Send + Sync {
    fn login(&self, username: &str, password: &str) -> Result<TokenResponse, TransportError>;
    fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, TransportError>;
    fn push(&self, access_token: &str, operations: &[OperationEnvelope]) -> Result<PushResponse, TransportError>;
    /// A page of changes after `since`, leaving out those within `skip`.
    fn pull(&self, access_token: &str, since: i64, limit: u32, skip: &[SkipSpan]) -> Result<PullResponse, TransportError>;
    /// Announce a blob; `preview_of` names the original when this blob is a
    /// smaller preview sent ahead on a metered link.
    fn blob_create(&self, access_token: &str, sha256: &str, size: u64, preview_of: Option<&str>) -> Result<BlobStatus, TransportError>;
    fn blob_status(&self, access_token: &str, sha256: &str) -> Result<BlobStatus, TransportError>;
    /// Append a chunk at `offset`; with `announce_size`, announce the blob
    /// in the same request (the first chunk of a fresh upload).
    fn blob_chunk(&self, access_token: &str, sha256: &str, offset: u64, chunk: &[u8], announce_size: Option<u64>) -> Result<BlobStatus, TransportError>;
    /// A case's photo (another device's) as the server serves it: the
    /// thumbnail sync keeps for the case screens offline, or what a person
    /// asks to see.
    fn photo(&self, access_token: &str, sha256: &str, rendition: PhotoRendition) -> Result<Vec<u8>, TransportError>;
}
