//! Sync: drain the outbox, upload photos resumably, pull changes.
//!
//! - [`engine`]: the sans-IO state machine that owns the sync policy: it
//!   takes events and answers with the next request.
//! - [`transport`]: the trait the runner talks through.
//! - [`http`]: the real transport (reqwest, rustls).
//! - [`runner`]: a plain loop performing the engine's requests against the
//!   store and the transport.
//! - [`apply`]: applies pulled changes, deferring over unacknowledged work.
//! - [`session`]: tokens, device id and pull cursor, in the encrypted store.

pub mod apply;
pub mod engine;
pub mod http;
pub mod runner;
pub mod server_url;
pub mod session;
pub mod tls;
pub mod transport;

pub use engine::{ErrorCounts, MeteredPolicy, SyncEngine, SyncReport, Trigger};
pub use tls::TlsConfig;
pub use transport::{Transport, TransportError};
