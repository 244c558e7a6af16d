//! Incidents (事件) as the device holds them.

use gridwork_protocol::api::IncidentView;
use gridwork_protocol::{CaseState, IntoEnumIterator, Named, PhotoRole};
use rusqlite::{Connection, params};
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::geo::GeoPoint;
use crate::model::AuditEntry;

/// Where an incident is in its life. The device owns `Draft`, `Discarded`
/// and `Submitted`; a case's state on the server ([`CaseState`], the closed
/// loop of GB/T 30428) arrives through sync. Stored as one name per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IncidentStatus {
    /// Saved on the device, editable, not sent.
    Draft,
    /// Discarded by the user before submitting; kept for the audit trail.
    Discarded,
    /// Submitted by the user; queued in the outbox or sent.
    Submitted,
    /// The server has it, in this state.
    Case(CaseState),
}

impl IncidentStatus {
    /// Every status: the device's own, then the server's.
    pub fn all() -> Vec<IncidentStatus> {
        let device = [IncidentStatus::Draft, IncidentStatus::Discarded, IncidentStatus::Submitted];
        device.into_iter().chain(CaseState::iter().map(IncidentStatus::Case)).collect()
    }
}

impl From<IncidentStatus> for &'static str {
    fn from(status: IncidentStatus) -> &'static str {
        match status {
            IncidentStatus::Draft => "draft",
            IncidentStatus::Discarded => "discarded",
            IncidentStatus::Submitted => "submitted",
            IncidentStatus::Case(state) => state.as_str(),
        }
    }
}

impl std::str::FromStr for IncidentStatus {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "draft" => Ok(IncidentStatus::Draft),
            "discarded" => Ok(IncidentStatus::Discarded),
            "submitted" => Ok(IncidentStatus::Submitted),
            _ => CaseState::parse(text).map(IncidentStatus::Case).ok_or(()),
        }
    }
}

impl Named for IncidentStatus {}

/// Whether the device still owes the server something for this incident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Nothing queued (a draft, or everything acknowledged).
    Synced,
    /// Operations or photo uploads are waiting to be sent.
    Unsent { pending_operations: u32 },
    /// The server refused an operation; the user can act on the reason.
    Parked { code: String, message: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    pub id: Uuid,
    pub status: IncidentStatus,
    pub category_code: Option<String>,
    pub description: String,
    pub address: Option<String>,
    pub location: Option<GeoPoint>,
    /// The grid whose boundary contains `location`; `None` when no location
    /// was given or no known grid contains it.
    pub grid_code: Option<String>,
    pub reporter: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub submitted_at: Option<Timestamp>,
    pub photo_count: u32,
}

/// What the server last sent about an incident: its version, and its view
/// as pulled (JSON), kept for the screens that show the case's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerCopy<'a> {
    pub version: i64,
    pub view_json: &'a str,
}

/// Insert an incident row: a draft made here (`server` None), or a case
/// this device first hears of from the server, with its server state and
/// task facts in the same statement (an initial pull does this for every
/// case, so the row is written once).
pub fn insert(conn: &Connection, incident: &Incident, server: Option<(&IncidentView, ServerCopy)>) -> Result<()> {
    let view = server.map(|(view, _)| view);
    conn.prepare_cached(
        "INSERT INTO incidents (id, status, category_code, description, address, lat, lon, accuracy_m, grid_code, reporter,
             created_device_ms, created_corrected_ms, updated_device_ms, updated_corrected_ms,
             submitted_device_ms, submitted_corrected_ms, server_version, server_view,
             assignee, department, deadline_ms, task_since_ms, rating)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
    )?
    .execute(params![
        incident.id.to_string(),
        incident.status.as_str(),
        incident.category_code,
        incident.description,
        incident.address,
        incident.location.map(|l| l.lat),
        incident.location.map(|l| l.lon),
        incident.location.and_then(|l| l.accuracy_m),
        incident.grid_code,
        incident.reporter,
        incident.created_at.device_ms,
        incident.created_at.corrected_ms,
        incident.updated_at.device_ms,
        incident.updated_at.corrected_ms,
        incident.submitted_at.map(|t| t.device_ms),
        incident.submitted_at.map(|t| t.corrected_ms),
        server.map(|(_, s)| s.version),
        server.map(|(_, s)| s.view_json),
        view.and_then(|v| v.assignee.as_deref()),
        view.and_then(|v| v.department.as_deref()),
        view.and_then(|v| v.deadline_ms),
        view.and_then(task_since_ms),
        view.and_then(|v| v.rating),
    ])?;
    Ok(())
}

/// The server's state of an incident the device holds, with the task facts
/// the task list reads from columns. The grid the server knows wins; without
/// one the device's own pick stays.
pub fn record_server_state(conn: &Connection, id: Uuid, view: &IncidentView, server: ServerCopy) -> Result<()> {
    let task_since_ms = task_since_ms(view);
    conn.prepare_cached(
        "UPDATE incidents SET status = ?2, server_version = ?3, server_view = ?4, grid_code = coalesce(?5, grid_code),
             assignee = ?6, department = ?7, deadline_ms = ?8, task_since_ms = ?9, rating = ?10
         WHERE id = ?1",
    )?
    .execute(params![
        id.to_string(),
        IncidentStatus::Case(view.state).as_str(),
        server.version,
        server.view_json,
        view.grid_code,
        view.assignee,
        view.department,
        view.deadline_ms,
        task_since_ms,
        view.rating,
    ])?;
    Ok(())
}

/// A task runs from its last dispatch or rework: the deadline light
/// measures from there.
fn task_since_ms(view: &IncidentView) -> Option<i64> {
    view.timeline.iter().rev().find(|e| matches!(e.action.as_str(), "dispatch" | "reopen")).map(|e| e.at_ms)
}

/// Photo evidence metadata, as stored in columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Photo {
    pub id: Uuid,
    pub incident_id: Uuid,
    pub position: u32,
    pub sha256: String,
    pub byte_size: u64,
    pub mime_type: String,
    /// Stored pixel size (before applying orientation).
    pub width: u32,
    pub height: u32,
    /// EXIF orientation 1–8 (1 when absent).
    pub orientation: u8,
    pub taken_at_ms: Option<i64>,
    pub exif_location: Option<GeoPoint>,
    /// 64-bit perceptual difference hash.
    pub dhash: u64,
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
    pub attached_at: Timestamp,
    /// Evidence of the report, or a photo of a workflow step taken here.
    pub role: PhotoRole,
    pub original_path: std::path::PathBuf,
    pub thumbnail_path: std::path::PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IncidentDetail {
    pub incident: Incident,
    pub photos: Vec<Photo>,
    pub audit: Vec<AuditEntry>,
    pub sync_state: SyncState,
    /// The case as the server last told it (timeline, rating, every photo);
    /// `None` until the server has it.
    pub case: Option<super::CaseInfo>,
}

/// Filters for listing incidents; all optional, combined with AND.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IncidentFilter {
    /// Empty means every status except `Discarded`.
    pub statuses: Vec<IncidentStatus>,
    pub category_code: Option<String>,
    pub grid_code: Option<String>,
    /// Created at or after, corrected Unix milliseconds.
    pub created_from_ms: Option<i64>,
    /// Created before, corrected Unix milliseconds.
    pub created_before_ms: Option<i64>,
    /// At most this many, newest first; `None` for all.
    pub limit: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        let names: Vec<&str> = IncidentStatus::all().into_iter().map(IncidentStatus::as_str).collect();
        assert_eq!(names.len(), 15);
        assert_eq!(&names[..4], ["draft", "discarded", "submitted", "reported"]);
        for status in IncidentStatus::all() {
            assert_eq!(IncidentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(IncidentStatus::parse("Draft"), None);
    }
}
