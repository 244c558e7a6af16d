//! gridwork-ffi: the Gridwork core as Android and iOS call it (uniffi).
//!
//! Only FFI types live here: records and enums with owned fields, one error
//! type, one object over the core's facade ([`GridworkStore`]), callback
//! interfaces for observers and logging. The core knows nothing of them.
//!
//! Threading: the quick calls run on the caller's thread and never wait
//! behind a sync; the slow ones (`open_store`, `login`, `logout`, `sync`,
//! `attach_photo`, `photo_rendition`, `import_grids_geojson`,
//! `sweep_orphan_files`) are `async` and run on a thread of their own, so
//! a coroutine or Swift task only suspends. Observers are called on one
//! dispatch thread per store, never with a core lock held.

#[cfg(target_os = "android")]
mod android;
mod error;
mod logging;
mod observe;
mod offload;
mod records;
mod store;
#[cfg(test)]
mod tests;

pub use error::GridworkError;
pub use logging::{LogLevel, LogRecord, LogSink, set_log_sink};
pub use observe::{
    IncidentsObserver, OutboxObserver, ReferenceDataObserver, SessionObserver, SessionState, Subscription, SyncObserver,
    SyncStatus,
};
pub use records::*;
pub use store::{GridworkStore, open_store};

uniffi::setup_scaffolding!();

/// The library's version, for an app's "about" screen and bug reports.
#[uniffi::export]
pub fn core_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
