//! The values an app shows and passes in, as owned FFI records and enums,
//! with their conversions from and to the core's types. Identifiers travel
//! as UUID strings, times as Unix milliseconds, files as path strings.

use gridwork_core as core;
use gridwork_core::{Named, Uuid};
use gridwork_protocol::api::Role as CoreRole;
use gridwork_protocol::{CaseState, GridTier as CoreGridTier, ManagementLevel as CoreManagementLevel};

use crate::error::GridworkError;

pub(crate) fn parse_id(field: &str, text: &str) -> Result<Uuid, GridworkError> {
    Uuid::parse_str(text).map_err(|_| GridworkError::invalid_id(field))
}

fn path_string(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

// ---- opening ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Durability {
    /// A commit that returned survives power loss (the default).
    Full,
    /// Survives a killed app, may lose the last commits on power loss.
    Normal,
}

/// TLS trust beyond the platform's certificate store.
#[derive(Clone, Debug, Default, uniffi::Record)]
pub struct TlsSettings {
    /// SHA-256 of the server certificate's SubjectPublicKeyInfo, base64
    /// (as `openssl … | openssl dgst -sha256 -binary | base64` prints it).
    /// When not empty, the server's key must match one of them as well as
    /// pass the platform's verification.
    #[uniffi(default = [])]
    pub pinned_spki_sha256: Vec<String>,
    /// Extra trusted root certificates (DER), for a private CA the platform
    /// store does not hold.
    #[uniffi(default = [])]
    pub extra_roots_der: Vec<Vec<u8>>,
}

#[derive(Clone, Debug, uniffi::Record)]
pub struct StoreConfig {
    /// The app's private files directory.
    pub data_dir: String,
    /// The account this store belongs to; each account has its own database.
    pub account_id: String,
    /// 32 random bytes from the Android Keystore / iOS Keychain.
    pub database_key: Vec<u8>,
    pub durability: Durability,
    /// UTC offset for photo capture times that carry none (China: 480).
    #[uniffi(default = 480)]
    pub default_utc_offset_minutes: i32,
    #[uniffi(default = None)]
    pub tls: Option<TlsSettings>,
}

/// What happened while opening the store.
#[derive(Clone, Debug, uniffi::Record)]
pub struct OpenReport {
    pub created: bool,
    pub schema_version_found: i64,
    pub schema_version: i64,
    /// The database was corrupt and was moved aside (kept: it may hold
    /// unsent evidence); a fresh one was opened.
    pub corrupt_database_moved_to: Option<String>,
    /// Operations a killed sync left in flight, queued again.
    pub in_flight_recovered: u64,
    /// Temp files of photo writes a killed process left, removed at open.
    /// Unreferenced photo files are swept by the session's first sync (or
    /// `sweep_orphan_files`), not at open, so opening stays fast.
    pub orphan_files_removed: u64,
    pub open_duration_ms: u64,
}

impl From<core::OpenReport> for OpenReport {
    fn from(r: core::OpenReport) -> Self {
        OpenReport {
            created: r.created,
            schema_version_found: r.schema_version_found,
            schema_version: r.schema_version,
            corrupt_database_moved_to: r.corrupt_database_moved_to.as_deref().map(path_string),
            in_flight_recovered: r.in_flight_recovered,
            orphan_files_removed: r.orphan_files_removed,
            open_duration_ms: r.open_duration.as_millis() as u64,
        }
    }
}

// ---- places ----

#[derive(Clone, Copy, Debug, PartialEq, uniffi::Record)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
    #[uniffi(default = None)]
    pub accuracy_m: Option<f64>,
}

impl From<core::GeoPoint> for GeoPoint {
    fn from(p: core::GeoPoint) -> Self {
        GeoPoint { lat: p.lat, lon: p.lon, accuracy_m: p.accuracy_m }
    }
}

impl From<GeoPoint> for core::GeoPoint {
    fn from(p: GeoPoint) -> Self {
        core::GeoPoint { lat: p.lat, lon: p.lon, accuracy_m: p.accuracy_m }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum GridTier {
    Street,
    Community,
    Grid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum ManagementLevel {
    Routine,
    GeneralPrevention,
    KeyAttention,
    ComprehensiveRemediation,
}

#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct Grid {
    pub code: String,
    pub tier: GridTier,
    pub name: String,
    pub parent_code: Option<String>,
    pub management_level: Option<ManagementLevel>,
    /// The boundary as a GeoJSON geometry, for a map layer.
    pub boundary_geojson: Option<String>,
}

impl From<core::Grid> for Grid {
    fn from(g: core::Grid) -> Self {
        Grid {
            code: g.code,
            tier: match g.tier {
                CoreGridTier::Street => GridTier::Street,
                CoreGridTier::Community => GridTier::Community,
                CoreGridTier::Grid => GridTier::Grid,
            },
            name: g.name,
            parent_code: g.parent_code,
            management_level: g.management_level.map(|level| match level {
                CoreManagementLevel::Routine => ManagementLevel::Routine,
                CoreManagementLevel::GeneralPrevention => ManagementLevel::GeneralPrevention,
                CoreManagementLevel::KeyAttention => ManagementLevel::KeyAttention,
                CoreManagementLevel::ComprehensiveRemediation => ManagementLevel::ComprehensiveRemediation,
            }),
            boundary_geojson: g.boundary_geojson,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Category {
    pub code: String,
    /// `None` for a top-level category (大类).
    pub parent_code: Option<String>,
    pub name_zh: String,
    pub name_en: String,
}

impl From<core::Category> for Category {
    fn from(c: core::Category) -> Self {
        Category { code: c.code, parent_code: c.parent_code, name_zh: c.name_zh, name_en: c.name_en }
    }
}

// ---- people ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Role {
    GridWorker,
    Volunteer,
    Supervisor,
    Dispatcher,
    Admin,
    /// A functional department (职能部门).
    Department,
}

#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct UserInfo {
    pub id: String,
    pub username: String,
    pub role: Role,
    /// Codes of the grids this user works.
    pub grids: Vec<String>,
}

impl From<gridwork_protocol::api::UserInfo> for UserInfo {
    fn from(u: gridwork_protocol::api::UserInfo) -> Self {
        UserInfo {
            id: u.id.to_string(),
            username: u.username,
            role: match u.role {
                CoreRole::GridWorker => Role::GridWorker,
                CoreRole::Volunteer => Role::Volunteer,
                CoreRole::Supervisor => Role::Supervisor,
                CoreRole::Dispatcher => Role::Dispatcher,
                CoreRole::Admin => Role::Admin,
                CoreRole::Department => Role::Department,
            },
            grids: u.grids,
        }
    }
}

// ---- incidents ----

/// Where an incident is: the device's own states, then the case's on the
/// server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum IncidentStatus {
    Draft,
    Discarded,
    Submitted,
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
    Signed,
    /// A reviewer asked the reporter for more information.
    InfoRequested,
}

impl From<core::IncidentStatus> for IncidentStatus {
    fn from(s: core::IncidentStatus) -> Self {
        use core::IncidentStatus as S;
        match s {
            S::Draft => IncidentStatus::Draft,
            S::Discarded => IncidentStatus::Discarded,
            S::Submitted => IncidentStatus::Submitted,
            S::Case(CaseState::Reported) => IncidentStatus::Reported,
            S::Case(CaseState::PendingReview) => IncidentStatus::PendingReview,
            S::Case(CaseState::Registered) => IncidentStatus::Registered,
            S::Case(CaseState::Rejected) => IncidentStatus::Rejected,
            S::Case(CaseState::Merged) => IncidentStatus::Merged,
            S::Case(CaseState::Dispatched) => IncidentStatus::Dispatched,
            S::Case(CaseState::InProgress) => IncidentStatus::InProgress,
            S::Case(CaseState::Handled) => IncidentStatus::Handled,
            S::Case(CaseState::Closed) => IncidentStatus::Closed,
            S::Case(CaseState::Reopened) => IncidentStatus::Reopened,
            S::Case(CaseState::Signed) => IncidentStatus::Signed,
            S::Case(CaseState::InfoRequested) => IncidentStatus::InfoRequested,
        }
    }
}

impl From<IncidentStatus> for core::IncidentStatus {
    fn from(s: IncidentStatus) -> Self {
        use core::IncidentStatus as S;
        match s {
            IncidentStatus::Draft => S::Draft,
            IncidentStatus::Discarded => S::Discarded,
            IncidentStatus::Submitted => S::Submitted,
            IncidentStatus::Reported => S::Case(CaseState::Reported),
            IncidentStatus::PendingReview => S::Case(CaseState::PendingReview),
            IncidentStatus::Registered => S::Case(CaseState::Registered),
            IncidentStatus::Rejected => S::Case(CaseState::Rejected),
            IncidentStatus::Merged => S::Case(CaseState::Merged),
            IncidentStatus::Dispatched => S::Case(CaseState::Dispatched),
            IncidentStatus::InProgress => S::Case(CaseState::InProgress),
            IncidentStatus::Handled => S::Case(CaseState::Handled),
            IncidentStatus::Closed => S::Case(CaseState::Closed),
            IncidentStatus::Reopened => S::Case(CaseState::Reopened),
            IncidentStatus::Signed => S::Case(CaseState::Signed),
            IncidentStatus::InfoRequested => S::Case(CaseState::InfoRequested),
        }
    }
}

/// The editable fields of a draft.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct DraftFields {
    #[uniffi(default = None)]
    pub category_code: Option<String>,
    pub description: String,
    #[uniffi(default = None)]
    pub address: Option<String>,
    #[uniffi(default = None)]
    pub location: Option<GeoPoint>,
}

impl From<DraftFields> for core::DraftFields {
    fn from(f: DraftFields) -> Self {
        core::DraftFields {
            category_code: f.category_code,
            description: f.description,
            address: f.address,
            location: f.location.map(Into::into),
        }
    }
}

/// Times are server-aligned Unix milliseconds (the device clock corrected
/// by the offset learnt from sync), as every device and the server see them.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct Incident {
    pub id: String,
    pub status: IncidentStatus,
    pub category_code: Option<String>,
    pub description: String,
    pub address: Option<String>,
    pub location: Option<GeoPoint>,
    pub grid_code: Option<String>,
    pub reporter: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub submitted_at_ms: Option<i64>,
    pub photo_count: u32,
}

impl From<core::Incident> for Incident {
    fn from(i: core::Incident) -> Self {
        Incident {
            id: i.id.to_string(),
            status: i.status.into(),
            category_code: i.category_code,
            description: i.description,
            address: i.address,
            location: i.location.map(Into::into),
            grid_code: i.grid_code,
            reporter: i.reporter,
            created_at_ms: i.created_at.corrected_ms,
            updated_at_ms: i.updated_at.corrected_ms,
            submitted_at_ms: i.submitted_at.map(|t| t.corrected_ms),
            photo_count: i.photo_count,
        }
    }
}

#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct Photo {
    pub id: String,
    pub incident_id: String,
    /// Order within the report, from 0.
    pub position: u32,
    pub sha256: String,
    pub byte_size: u64,
    pub mime_type: String,
    pub width: u32,
    pub height: u32,
    /// EXIF orientation (1–8) of the original; thumbnails are already upright.
    pub orientation: u8,
    pub taken_at_ms: Option<i64>,
    pub exif_location: Option<GeoPoint>,
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
    pub attached_at_ms: i64,
    /// The original as captured, byte for byte.
    pub original_path: String,
    /// A small upright JPEG for lists.
    pub thumbnail_path: String,
    /// The report's evidence, or a photo of a workflow step taken here.
    pub role: PhotoRole,
}

impl From<core::Photo> for Photo {
    fn from(p: core::Photo) -> Self {
        Photo {
            id: p.id.to_string(),
            incident_id: p.incident_id.to_string(),
            position: p.position,
            sha256: p.sha256,
            byte_size: p.byte_size,
            mime_type: p.mime_type,
            width: p.width,
            height: p.height,
            orientation: p.orientation,
            taken_at_ms: p.taken_at_ms,
            exif_location: p.exif_location.map(Into::into),
            thumbnail_width: p.thumbnail_width,
            thumbnail_height: p.thumbnail_height,
            attached_at_ms: p.attached_at.corrected_ms,
            original_path: path_string(&p.original_path),
            thumbnail_path: path_string(&p.thumbnail_path),
            role: p.role.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct SimilarPhoto {
    pub photo: Photo,
    /// Hamming distance of the perceptual hashes (0 = same picture).
    pub distance: u32,
}

/// One line of an incident's timeline: who did what, when, where.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct AuditEntry {
    pub action: String,
    pub actor: String,
    pub at_ms: i64,
    pub location: Option<GeoPoint>,
    pub detail: Option<String>,
}

impl From<core::model::AuditEntry> for AuditEntry {
    fn from(a: core::model::AuditEntry) -> Self {
        AuditEntry {
            action: a.action,
            actor: a.actor,
            at_ms: a.at.corrected_ms,
            location: a.location.map(Into::into),
            detail: a.detail,
        }
    }
}

/// Whether the device still owes the server something for an incident.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum SyncState {
    Synced,
    Unsent { pending_operations: u32 },
    /// The server refused an operation; `code` tells the user why.
    Parked { code: String, message: String },
}

impl From<core::SyncState> for SyncState {
    fn from(s: core::SyncState) -> Self {
        match s {
            core::SyncState::Synced => SyncState::Synced,
            core::SyncState::Unsent { pending_operations } => SyncState::Unsent { pending_operations },
            core::SyncState::Parked { code, message } => SyncState::Parked { code, message },
        }
    }
}

#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct IncidentDetail {
    pub incident: Incident,
    pub photos: Vec<Photo>,
    pub audit: Vec<AuditEntry>,
    pub sync_state: SyncState,
    /// The case as the server last told it (timeline, rating, every
    /// photo); absent until the server has it.
    pub case: Option<CaseInfo>,
}

impl From<core::IncidentDetail> for IncidentDetail {
    fn from(d: core::IncidentDetail) -> Self {
        IncidentDetail {
            incident: d.incident.into(),
            photos: d.photos.into_iter().map(Into::into).collect(),
            audit: d.audit.into_iter().map(Into::into).collect(),
            sync_state: d.sync_state.into(),
            case: d.case.map(Into::into),
        }
    }
}

/// Which incidents to list; empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct IncidentFilter {
    #[uniffi(default = [])]
    pub statuses: Vec<IncidentStatus>,
    #[uniffi(default = None)]
    pub category_code: Option<String>,
    #[uniffi(default = None)]
    pub grid_code: Option<String>,
    #[uniffi(default = None)]
    pub created_from_ms: Option<i64>,
    #[uniffi(default = None)]
    pub created_before_ms: Option<i64>,
    #[uniffi(default = None)]
    pub limit: Option<u32>,
}

impl From<IncidentFilter> for core::IncidentFilter {
    fn from(f: IncidentFilter) -> Self {
        core::IncidentFilter {
            statuses: f.statuses.into_iter().map(Into::into).collect(),
            category_code: f.category_code,
            grid_code: f.grid_code,
            created_from_ms: f.created_from_ms,
            created_before_ms: f.created_before_ms,
            limit: f.limit,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Rendition {
    Original,
    LongEdge2048,
    LongEdge1280,
}

impl From<Rendition> for core::Rendition {
    fn from(r: Rendition) -> Self {
        match r {
            Rendition::Original => core::Rendition::Original,
            Rendition::LongEdge2048 => core::Rendition::LongEdge2048,
            Rendition::LongEdge1280 => core::Rendition::LongEdge1280,
        }
    }
}

/// What checking the hash-chained audit trail (归档留痕) found.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct TrailCheck {
    pub entries: u64,
    /// Entries from before the trail was chained (at its start only).
    pub unsealed: u64,
    /// The first entry that does not hold (its sequence number): edited,
    /// removed or inserted in the database file after it was written.
    pub broken_at: Option<i64>,
    /// The last entry's hash, to anchor the trail elsewhere.
    pub head: String,
}

impl From<gridwork_protocol::trail::TrailCheck> for TrailCheck {
    fn from(c: gridwork_protocol::trail::TrailCheck) -> Self {
        TrailCheck { entries: c.entries, unsealed: c.unsealed, broken_at: c.broken_at, head: c.head }
    }
}

/// A size of a case's photo to show (`case_photo_file`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum PhotoSize {
    /// At most 320 px on the long edge.
    Thumb,
    /// At most 1280 px: a phone screen.
    LongEdge1280,
    /// At most 2048 px: zoomed in.
    LongEdge2048,
    /// The bytes as taken.
    Original,
}

impl From<PhotoSize> for gridwork_protocol::api::PhotoRendition {
    fn from(size: PhotoSize) -> Self {
        use gridwork_protocol::api::PhotoRendition as R;
        match size {
            PhotoSize::Thumb => R::Thumb,
            PhotoSize::LongEdge1280 => R::LongEdge1280,
            PhotoSize::LongEdge2048 => R::LongEdge2048,
            PhotoSize::Original => R::Original,
        }
    }
}

// ---- outbox ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum OperationState {
    Pending,
    InFlight,
    Acknowledged,
    /// Refused by the server; waits for the user (see `park_reason`).
    Parked,
}

#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ParkReason {
    pub code: String,
    pub message: String,
}

/// One queued operation, for an outbox screen.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct OutboxItem {
    pub op_id: String,
    /// Queue order.
    pub seq: i64,
    pub entity_id: String,
    pub entity_kind: String,
    /// The operation's kind, e.g. `create_incident`, `upload_photo`.
    pub kind: String,
    pub state: OperationState,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub blob_sha256: Option<String>,
    pub blob_bytes: u64,
    pub park_reason: Option<ParkReason>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
}

impl From<core::Operation> for OutboxItem {
    fn from(o: core::Operation) -> Self {
        OutboxItem {
            op_id: o.op_id.to_string(),
            seq: o.seq,
            entity_id: o.entity_id.to_string(),
            entity_kind: o.entity_kind,
            kind: o.kind_name,
            state: match o.state {
                core::OperationState::Pending => OperationState::Pending,
                core::OperationState::InFlight => OperationState::InFlight,
                core::OperationState::Acknowledged => OperationState::Acknowledged,
                core::OperationState::Parked => OperationState::Parked,
            },
            attempts: o.attempts,
            next_attempt_ms: o.next_attempt_ms,
            blob_sha256: o.blob_sha256,
            blob_bytes: o.blob_bytes,
            park_reason: o.park_reason.map(|p| ParkReason { code: p.code, message: p.message }),
            last_error: o.last_error,
            created_at_ms: o.created_at.corrected_ms,
        }
    }
}

/// The work on this device no server has acknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct UnsentWork {
    /// Queued operations not yet acknowledged (parked ones included).
    pub operations: u64,
    /// Drafts not yet submitted.
    pub drafts: u64,
}

impl From<core::UnsentWork> for UnsentWork {
    fn from(w: core::UnsentWork) -> Self {
        UnsentWork { operations: w.operations, drafts: w.drafts }
    }
}

/// What `export_unsent` wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct ExportedWork {
    /// The new folder holding `unsent.json` and `photos/`.
    pub folder: String,
    pub operations: u64,
    pub drafts: u64,
    pub photos: u64,
}

impl From<core::Exported> for ExportedWork {
    fn from(e: core::Exported) -> Self {
        ExportedWork { folder: e.folder.to_string_lossy().into_owned(), operations: e.operations, drafts: e.drafts, photos: e.photos }
    }
}

/// What `adopt_unsent_from` took over.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct Adopted {
    /// Reports and drafts moved.
    pub incidents: u32,
    /// Their queued operations.
    pub operations: u32,
    /// Their photos.
    pub photos: u32,
}

impl From<core::Adopted> for Adopted {
    fn from(a: core::Adopted) -> Self {
        Adopted { incidents: a.incidents, operations: a.operations, photos: a.photos }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct OutboxSummary {
    pub pending: u64,
    pub in_flight: u64,
    pub parked: u64,
    pub acknowledged: u64,
    pub oldest_unsent_created_ms: Option<i64>,
    pub oldest_unsent_age_ms: Option<i64>,
    pub photo_bytes_waiting: u64,
}

impl From<core::OutboxSummary> for OutboxSummary {
    fn from(s: core::OutboxSummary) -> Self {
        OutboxSummary {
            pending: s.pending,
            in_flight: s.in_flight,
            parked: s.parked,
            acknowledged: s.acknowledged,
            oldest_unsent_created_ms: s.oldest_unsent_created_ms,
            oldest_unsent_age_ms: s.oldest_unsent_age_ms,
            photo_bytes_waiting: s.photo_bytes_waiting,
        }
    }
}

// ---- sync ----

/// Why a sync runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum SyncTrigger {
    OperationQueued,
    NetworkUp,
    AppForegrounded,
    TimerFired,
    ManualRetry,
}

impl From<SyncTrigger> for core::Trigger {
    fn from(t: SyncTrigger) -> Self {
        match t {
            SyncTrigger::OperationQueued => core::Trigger::OperationQueued,
            SyncTrigger::NetworkUp => core::Trigger::NetworkUp,
            SyncTrigger::AppForegrounded => core::Trigger::AppForegrounded,
            SyncTrigger::TimerFired => core::Trigger::TimerFired,
            SyncTrigger::ManualRetry => core::Trigger::ManualRetry,
        }
    }
}

/// What may travel on a metered (mobile data) link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum MeteredPolicy {
    TextOnly,
    Thumbnails,
    Renditions,
    Everything,
}

impl From<MeteredPolicy> for core::MeteredPolicy {
    fn from(p: MeteredPolicy) -> Self {
        match p {
            MeteredPolicy::TextOnly => core::MeteredPolicy::TextOnly,
            MeteredPolicy::Thumbnails => core::MeteredPolicy::Thumbnails,
            MeteredPolicy::Renditions => core::MeteredPolicy::Renditions,
            MeteredPolicy::Everything => core::MeteredPolicy::Everything,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct SyncErrorCounts {
    pub network: u32,
    pub transient: u32,
    pub auth: u32,
    pub rejected: u32,
}

/// What one sync run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    pub pushed: u32,
    pub parked: u32,
    pub uploaded_bytes: u64,
    pub photos_uploaded: u32,
    pub previews_uploaded: u32,
    pub pulled: u32,
    /// Thumbnails of other devices' photos fetched for offline case screens.
    pub thumbnails_fetched: u32,
    pub errors: SyncErrorCounts,
    /// When to run again (device time, Unix ms); `None` when only a new
    /// trigger needs another run.
    pub next_wake_ms: Option<i64>,
    /// A person must sign in again; nothing was dropped.
    pub needs_login: bool,
    /// An administrator revoked this device: it no longer syncs. Its data
    /// was wiped unless unsent work waits for `export_unsent` and `wipe`.
    pub device_revoked: bool,
    /// The round finished: nothing left that can be done now.
    pub completed: bool,
}

impl From<core::SyncReport> for SyncReport {
    fn from(r: core::SyncReport) -> Self {
        SyncReport {
            pushed: r.pushed,
            parked: r.parked,
            uploaded_bytes: r.uploaded_bytes,
            photos_uploaded: r.photos_uploaded,
            previews_uploaded: r.previews_uploaded,
            pulled: r.pulled,
            thumbnails_fetched: r.thumbnails_fetched,
            errors: SyncErrorCounts {
                network: r.errors.network,
                transient: r.errors.transient,
                auth: r.errors.auth,
                rejected: r.errors.rejected,
            },
            next_wake_ms: r.next_wake_ms,
            needs_login: r.needs_login,
            device_revoked: r.device_revoked,
            completed: r.completed,
        }
    }
}

/// How far a running sync has got, for a progress bar.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct SyncProgress {
    /// Operations the server acknowledged so far.
    pub pushed: u32,
    /// Operations the server refused so far, now parked.
    pub parked: u32,
    pub photos_uploaded: u32,
    pub uploaded_bytes: u64,
    /// Changes pulled so far.
    pub pulled: u32,
    /// The photo on its way now: its size and the bytes the server holds.
    pub upload_size: Option<u64>,
    pub upload_sent: Option<u64>,
}

impl From<core::SyncProgress> for SyncProgress {
    fn from(p: core::SyncProgress) -> Self {
        SyncProgress {
            pushed: p.pushed,
            parked: p.parked,
            photos_uploaded: p.photos_uploaded,
            uploaded_bytes: p.uploaded_bytes,
            pulled: p.pulled,
            upload_size: p.upload.map(|u| u.size),
            upload_sent: p.upload.map(|u| u.sent),
        }
    }
}

// ---- the workflow: tasks, steps, the case as the server tells it ----

/// What a photo shows about its case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum PhotoRole {
    /// The report's evidence.
    Evidence,
    /// A handler's result (处置后).
    After,
    /// A verifier's on-site check (核查).
    Verification,
}

impl From<PhotoRole> for core::PhotoRole {
    fn from(role: PhotoRole) -> Self {
        match role {
            PhotoRole::Evidence => core::PhotoRole::Evidence,
            PhotoRole::After => core::PhotoRole::After,
            PhotoRole::Verification => core::PhotoRole::Verification,
        }
    }
}

impl From<core::PhotoRole> for PhotoRole {
    fn from(role: core::PhotoRole) -> Self {
        match role {
            core::PhotoRole::Evidence => PhotoRole::Evidence,
            core::PhotoRole::After => PhotoRole::After,
            core::PhotoRole::Verification => PhotoRole::Verification,
        }
    }
}

/// A workflow step on a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum CaseAction {
    /// 立案 (supervisors of the grid, the command center).
    Register,
    /// Reject a report, with a note.
    Reject,
    Merge,
    /// 签收: the assignee signs for the task.
    Sign,
    /// 处置: work starts.
    Start,
    /// 反馈: the result, with a note and after-photos.
    Handle,
    /// 退回: back to the command center, with a reason.
    HandBack,
    /// Ask the reporter for more information (a reviewer, with the question).
    AskInfo,
    /// Answer a reviewer's question (the reporter, with text and photos).
    Answer,
    /// A note on a task in work (the handler); the state stays.
    Note,
    /// 核查通过: closed, with a 1-5 star rating and on-site photos.
    Close,
    /// 返工: back to the handler, with a note and on-site photos.
    Reopen,
}

impl From<CaseAction> for core::CaseAction {
    fn from(action: CaseAction) -> Self {
        match action {
            CaseAction::Register => core::CaseAction::Register,
            CaseAction::Reject => core::CaseAction::Reject,
            CaseAction::Merge => core::CaseAction::Merge,
            CaseAction::Sign => core::CaseAction::Sign,
            CaseAction::Start => core::CaseAction::Start,
            CaseAction::Handle => core::CaseAction::Handle,
            CaseAction::HandBack => core::CaseAction::HandBack,
            CaseAction::AskInfo => core::CaseAction::AskInfo,
            CaseAction::Answer => core::CaseAction::Answer,
            CaseAction::Note => core::CaseAction::Note,
            CaseAction::Close => core::CaseAction::Close,
            CaseAction::Reopen => core::CaseAction::Reopen,
        }
    }
}

/// A step as the user takes it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct StepInput {
    pub action: CaseAction,
    #[uniffi(default = None)]
    pub note: Option<String>,
    /// Stars, 1 to 5, with `Close`.
    #[uniffi(default = None)]
    pub rating: Option<u8>,
    /// With `Merge`: the id of the case this one duplicates.
    #[uniffi(default = None)]
    pub merge_into: Option<String>,
    /// Photo files to copy in (after-photos with `Handle`, on-site photos
    /// with `Close` and `Reopen`); the caller may delete them afterwards.
    #[uniffi(default = [])]
    pub photo_paths: Vec<String>,
}

/// Why a case is on the task list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum TaskKind {
    /// Dispatched to this user: sign, start, handle or hand back.
    Handle,
    /// Handled by someone else in this user's grids: verify on site.
    Verify,
    /// A volunteer's report in this user's grids: review it (核实).
    Review,
    /// A reviewer asked about this user's report: answer it.
    Answer,
}

impl From<core::TaskKind> for TaskKind {
    fn from(kind: core::TaskKind) -> Self {
        match kind {
            core::TaskKind::Handle => TaskKind::Handle,
            core::TaskKind::Verify => TaskKind::Verify,
            core::TaskKind::Review => TaskKind::Review,
            core::TaskKind::Answer => TaskKind::Answer,
        }
    }
}

impl From<TaskKind> for core::TaskKind {
    fn from(kind: TaskKind) -> Self {
        match kind {
            TaskKind::Handle => core::TaskKind::Handle,
            TaskKind::Verify => core::TaskKind::Verify,
            TaskKind::Review => core::TaskKind::Review,
            TaskKind::Answer => core::TaskKind::Answer,
        }
    }
}

/// A task against its deadline (时限), on server-corrected time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum DeadlineLight {
    Green,
    /// In the last quarter of the time.
    Yellow,
    /// Overdue.
    Red,
}

impl From<core::DeadlineLight> for DeadlineLight {
    fn from(light: core::DeadlineLight) -> Self {
        match light {
            core::DeadlineLight::Green => DeadlineLight::Green,
            core::DeadlineLight::Yellow => DeadlineLight::Yellow,
            core::DeadlineLight::Red => DeadlineLight::Red,
        }
    }
}

impl From<DeadlineLight> for core::DeadlineLight {
    fn from(light: DeadlineLight) -> Self {
        match light {
            DeadlineLight::Green => core::DeadlineLight::Green,
            DeadlineLight::Yellow => core::DeadlineLight::Yellow,
            DeadlineLight::Red => core::DeadlineLight::Red,
        }
    }
}

/// The step a time limit (时限) is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum TimedStep {
    /// 签收: sign for a dispatched case.
    Sign,
    /// 处置: handle it.
    Handle,
    /// 核查: verify it on site once handled.
    Verify,
}

impl From<core::TimedStep> for TimedStep {
    fn from(step: core::TimedStep) -> Self {
        match step {
            core::TimedStep::Sign => TimedStep::Sign,
            core::TimedStep::Handle => TimedStep::Handle,
            core::TimedStep::Verify => TimedStep::Verify,
        }
    }
}

/// A case's state as an incident status (every case state is one).
fn case_status(state: CaseState) -> IncidentStatus {
    core::IncidentStatus::Case(state).into()
}

/// A task (待办). Not named `Task`: Swift's concurrency owns that name.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct CaseTask {
    pub incident_id: String,
    pub status: IncidentStatus,
    pub kind: TaskKind,
    pub category_code: Option<String>,
    pub description: String,
    pub address: Option<String>,
    pub grid_code: Option<String>,
    pub assignee: Option<String>,
    pub department: Option<String>,
    /// When its current step is due (server time, Unix ms): signing,
    /// handling or verifying, as `deadline_step` says.
    pub deadline_ms: Option<i64>,
    pub deadline_step: Option<TimedStep>,
    pub light: Option<DeadlineLight>,
    /// What the last relevant step said: the dispatcher's instruction (or
    /// the rework's reason), the handler's result, the reporter's answer,
    /// the reviewer's question.
    pub note: Option<String>,
    /// Who reported the case.
    pub reporter: Option<String>,
    /// The thumbnail of the case's first photo, when it is on this device.
    pub thumbnail_path: Option<String>,
}

impl From<core::Task> for CaseTask {
    fn from(t: core::Task) -> Self {
        CaseTask {
            incident_id: t.incident_id.to_string(),
            status: case_status(t.state),
            kind: t.kind.into(),
            category_code: t.category_code,
            description: t.description,
            address: t.address,
            grid_code: t.grid_code,
            assignee: t.assignee,
            department: t.department,
            deadline_ms: t.deadline_ms,
            deadline_step: t.deadline_step.map(Into::into),
            light: t.light.map(Into::into),
            note: t.note,
            reporter: t.reporter,
            thumbnail_path: t.thumbnail_path.as_deref().map(path_string),
        }
    }
}

/// Which tasks to list; empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct TaskFilter {
    /// Only these states (task states: dispatched, signed, in progress, reopened, handled).
    #[uniffi(default = [])]
    pub statuses: Vec<IncidentStatus>,
    #[uniffi(default = None)]
    pub kind: Option<TaskKind>,
    #[uniffi(default = None)]
    pub light: Option<DeadlineLight>,
    #[uniffi(default = None)]
    pub limit: Option<u32>,
}

impl From<TaskFilter> for core::TaskFilter {
    fn from(f: TaskFilter) -> Self {
        core::TaskFilter {
            // A device-only status (draft, ...) is never a task: it matches nothing.
            states: f
                .statuses
                .into_iter()
                .map(|s| match core::IncidentStatus::from(s) {
                    core::IncidentStatus::Case(state) => state,
                    _ => CaseState::Merged,
                })
                .collect(),
            kind: f.kind.map(Into::into),
            light: f.light.map(Into::into),
            limit: f.limit,
        }
    }
}

/// A photo of a case as the server knows it (it may have been taken on
/// another phone).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct CasePhoto {
    pub photo_id: String,
    pub role: PhotoRole,
    pub sha256: String,
    pub byte_size: u64,
    /// Its bytes reached the server.
    pub arrived: bool,
    /// A small JPEG on this device (this device's photo, or one sync
    /// fetched for a task or a report under review); absent until then.
    pub thumbnail_path: Option<String>,
}

/// One step of a case's life on the server.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct TimelineEntry {
    /// A workflow action name (`register`, `dispatch`, `sign`, ...) or an
    /// event (`report`, `photo_arrived`, `preview_arrived`).
    pub action: String,
    pub actor: String,
    pub from_status: Option<IncidentStatus>,
    pub to_status: IncidentStatus,
    pub note: Option<String>,
    pub at_ms: i64,
}

/// The case as the server last told it.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct CaseInfo {
    pub status: IncidentStatus,
    pub reporter: String,
    pub assignee: Option<String>,
    pub department: Option<String>,
    /// The handling deadline (处置时限), server time (Unix ms).
    pub deadline_ms: Option<i64>,
    /// The limit of the other step the case waits for: signing while
    /// dispatched (签收时限), verifying while handled (核查时限).
    pub step_deadline_ms: Option<i64>,
    /// The step the case runs against a limit for now; `light` is its light.
    pub deadline_step: Option<TimedStep>,
    pub light: Option<DeadlineLight>,
    /// 1 to 5 stars once closed.
    pub rating: Option<u8>,
    pub merged_into: Option<String>,
    pub photos: Vec<CasePhoto>,
    pub timeline: Vec<TimelineEntry>,
}

impl From<core::CaseInfo> for CaseInfo {
    fn from(c: core::CaseInfo) -> Self {
        CaseInfo {
            status: case_status(c.state),
            reporter: c.reporter,
            assignee: c.assignee,
            department: c.department,
            deadline_ms: c.deadline_ms,
            step_deadline_ms: c.step_deadline_ms,
            deadline_step: c.deadline_step.map(Into::into),
            light: c.light.map(Into::into),
            rating: c.rating,
            merged_into: c.merged_into.map(|m| m.to_string()),
            photos: c
                .photos
                .into_iter()
                .map(|p| CasePhoto {
                    photo_id: p.photo_id.to_string(),
                    // A role a newer server added shows as evidence.
                    role: core::PhotoRole::parse(&p.role).unwrap_or(core::PhotoRole::Evidence).into(),
                    sha256: p.sha256,
                    byte_size: p.byte_size,
                    arrived: p.arrived,
                    thumbnail_path: p.thumbnail_path.as_deref().map(path_string),
                })
                .collect(),
            timeline: c
                .timeline
                .into_iter()
                .map(|e| TimelineEntry {
                    action: e.action,
                    actor: e.actor,
                    from_status: e.from_state.map(case_status),
                    to_status: case_status(e.to_state),
                    note: e.note,
                    at_ms: e.at_ms,
                })
                .collect(),
        }
    }
}

/// Whose figures (统计), over which period `[from_ms, to_ms)` of server time.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct StatsQuery {
    /// A grid's figures.
    #[uniffi(default = None)]
    pub grid_code: Option<String>,
    /// A person's figures (a user name).
    #[uniffi(default = None)]
    pub user: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl From<StatsQuery> for core::StatsQuery {
    fn from(q: StatsQuery) -> Self {
        core::StatsQuery { grid_code: q.grid_code, user: q.user, from_ms: q.from_ms, to_ms: q.to_ms }
    }
}

/// A grid's or a person's figures for a period.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct Stats {
    pub reported: u32,
    /// Review decisions (核实).
    pub verified: u32,
    pub resolved_on_spot: u32,
    pub handled: u32,
    pub closed: u32,
    pub overdue: u32,
    pub rated: u32,
    pub average_rating: Option<f64>,
}

impl From<core::Stats> for Stats {
    fn from(s: core::Stats) -> Self {
        Stats {
            reported: s.reported,
            verified: s.verified,
            resolved_on_spot: s.resolved_on_spot,
            handled: s.handled,
            closed: s.closed,
            overdue: s.overdue,
            rated: s.rated,
            average_rating: s.average_rating,
        }
    }
}
