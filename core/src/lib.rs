//! gridwork-core: the offline-first core of the Gridwork phone app.
//!
//! Everything a grid worker's phone does without a network lives here: an
//! encrypted on-device store, incident capture with photo evidence, and a
//! durable outbox for the sync engine. [`Gridwork`] is the one facade: the
//! CLI, the tests and the mobile bindings (`gridwork-ffi`) call it.

pub mod adopt;
pub mod capture;
pub mod clock;
pub mod error;
pub mod facade;
pub mod geo;
pub mod model;
pub mod observe;
pub mod outbox;
pub mod photo;
pub mod steps;
pub mod store;
pub mod sync;
pub mod text;
pub mod wipe;

pub use adopt::Adopted;
pub use capture::DraftFields;
pub use steps::StepInput;
pub use error::{Error, Result};
pub use facade::{Gridwork, GridworkConfig, SyncTicket};
pub use observe::{Change, ChangeKind, ChangeObserver, Subscription, SyncProgress, UploadPosition};
pub use sync::{MeteredPolicy, SyncReport, TlsConfig, Trigger};
pub use geo::GeoPoint;
pub use model::{CaseInfo, Category, Grid, Incident, IncidentDetail, IncidentFilter, IncidentStatus, Photo, SyncState, Task, TaskFilter, TaskKind};
pub use outbox::{Operation, OperationState, OutboxSummary, ParkReason};
pub use photo::{PhotoLimits, Rendition};
pub use store::{Durability, OpenReport};
pub use wipe::{Exported, UnsentWork};
pub use gridwork_protocol::stats::{Stats, StatsQuery};
pub use gridwork_protocol::{CaseAction, CaseState, DeadlineLight, Named, OperationKind, PhotoRole, TimedStep};
pub use uuid::Uuid;
