//! Wire types shared by the Gridwork device core and the sync server, and
//! the domain facts both apply, each defined once: case states and actions,
//! grid tiers and levels, geometry, text validation and limits.
//!
//! Operations are intents ("submit this incident"), not row overwrites: the
//! server validates each against its own state machine. Every operation
//! carries a device-made UUIDv7 `op_id`, which is its idempotency key, and a
//! payload schema version so an old server can refuse a payload it does not
//! understand instead of misreading it.

pub mod api;
pub mod case;
pub mod category;
pub mod geo;
pub mod grid;
pub mod limits;
pub mod names;
pub mod operation;
pub mod role;
pub mod stats;
pub mod text;
pub mod trail;
pub mod zone;

pub use case::{CaseAction, CaseState, DeadlineLight, PhotoRole, TimedStep};
pub use geo::GeoPoint;
pub use grid::{GridTier, GridView, ManagementLevel};
pub use names::{IntoEnumIterator, Named};
pub use operation::{
    CapturedAt, OperationEnvelope, OperationKind, PhotoRef, ResolvedOnSpot, SubmitIncident, TransitionIncident, UploadPhoto,
};

/// Version of the protocol as a whole (the `/v1` path prefix).
pub const PROTOCOL_VERSION: u32 = 1;

/// The default incident category table (大类/小类, Chinese and English),
/// modelled on the event classes of GB/T 30428.2, shared by devices and the
/// server; a [`category::CategoryTable`] in JSON.
pub const DEFAULT_CATEGORY_TABLE: &str = include_str!("default_categories.json");
