//! The data model: grids, categories, incidents, photos and the audit trail.

pub mod audit;
pub mod category;
pub mod fetched;
pub mod grid;
pub mod incident;
pub mod short_id;
pub mod task;

use gridwork_protocol::Named;
use rusqlite::Row;

pub use audit::AuditEntry;
pub use category::Category;
pub use grid::{Grid, GridTier, ManagementLevel};
pub use incident::{Incident, IncidentDetail, IncidentFilter, IncidentStatus, Photo, SyncState};
pub use task::{CaseInfo, CasePhoto, Task, TaskFilter, TaskKind};

/// The one conversion of a stored name (incident status, grid tier and
/// level, operation kind and state) from an SQL text column; names are
/// written with `Named::as_str`. `None` for NULL or a name this build does
/// not know (a newer build wrote it): each caller says what that means.
pub fn read_name<T: Named>(row: &Row, index: usize) -> rusqlite::Result<Option<T>> {
    Ok(row.get::<_, Option<String>>(index)?.as_deref().and_then(T::parse))
}
