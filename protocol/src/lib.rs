//! Wire types shared by the Gridwork device core and the sync server.
//!
//! Operations are intents ("submit this incident"), not row overwrites: the
//! server validates each against its own state machine. Every operation
//! carries a device-made UUIDv7 `op_id`, which is its idempotency key, and a
//! payload schema version so an old server can refuse a payload it does not
//! understand instead of misreading it.

pub mod operation;

pub use operation::{
    CapturedAt, GeoPoint, OperationEnvelope, OperationKind, PhotoRef, SubmitIncident,
    UploadPhoto,
};

/// Version of the protocol as a whole (the `/v1` path prefix).
pub const PROTOCOL_VERSION: u32 = 1;
