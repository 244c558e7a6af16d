//! Sync: drain the outbox, upload photos resumably, pull changes.
//!
//! - [`engine`]: the sans-IO state machine that decides what to do next.
//! - [`transport`]: the trait the runner talks through, and error classes.
//! - [`http`]: the real transport (reqwest, rustls).
//! - [`runner`]: executes the engine's actions against the store.
//! - [`apply`]: applies pulled changes, deferring over unacknowledged work.
//! - [`session`]: tokens, device id and pull cursor, in the encrypted store.

pub mod apply;
pub mod engine;
pub mod http;
pub mod runner;
pub mod session;
pub mod transport;

pub use engine::{MeteredPolicy, SyncEngine, Trigger};
pub use runner::{ErrorCounts, SyncReport};
pub use transport::{Transport, TransportError};
