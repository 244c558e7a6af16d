//! Incidents (事件) as the device holds them.

use uuid::Uuid;

use crate::clock::Timestamp;
use crate::geo::GeoPoint;
use crate::model::AuditEntry;

/// Where an incident is in its life. The device owns `Draft`, `Discarded`
/// and `Submitted`; the rest follow the server's closed loop (GB/T 30428)
/// and arrive through sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IncidentStatus {
    /// Saved on the device, editable, not sent.
    Draft,
    /// Discarded by the user before submitting; kept for the audit trail.
    Discarded,
    /// Submitted by the user; queued in the outbox or sent.
    Submitted,
    /// The server has it (a grid worker's report, or a reviewed one).
    Reported,
    PendingReview,
    Registered,
    Rejected,
    Merged,
    Dispatched,
    InProgress,
    Handled,
    Closed,
    Reopened,
}

impl IncidentStatus {
    pub const ALL: [IncidentStatus; 13] = [
        IncidentStatus::Draft,
        IncidentStatus::Discarded,
        IncidentStatus::Submitted,
        IncidentStatus::Reported,
        IncidentStatus::PendingReview,
        IncidentStatus::Registered,
        IncidentStatus::Rejected,
        IncidentStatus::Merged,
        IncidentStatus::Dispatched,
        IncidentStatus::InProgress,
        IncidentStatus::Handled,
        IncidentStatus::Closed,
        IncidentStatus::Reopened,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Draft => "draft",
            IncidentStatus::Discarded => "discarded",
            IncidentStatus::Submitted => "submitted",
            IncidentStatus::Reported => "reported",
            IncidentStatus::PendingReview => "pending_review",
            IncidentStatus::Registered => "registered",
            IncidentStatus::Rejected => "rejected",
            IncidentStatus::Merged => "merged",
            IncidentStatus::Dispatched => "dispatched",
            IncidentStatus::InProgress => "in_progress",
            IncidentStatus::Handled => "handled",
            IncidentStatus::Closed => "closed",
            IncidentStatus::Reopened => "reopened",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

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
    pub original_path: std::path::PathBuf,
    pub thumbnail_path: std::path::PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IncidentDetail {
    pub incident: Incident,
    pub photos: Vec<Photo>,
    pub audit: Vec<AuditEntry>,
    pub sync_state: SyncState,
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
