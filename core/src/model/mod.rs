//! The data model: grids, categories, incidents, photos and the audit trail.

pub mod audit;
pub mod category;
pub mod grid;
pub mod incident;

pub use audit::AuditEntry;
pub use category::Category;
pub use grid::{Grid, GridTier, ManagementLevel};
pub use incident::{Incident, IncidentDetail, IncidentFilter, IncidentStatus, Photo, SyncState};
