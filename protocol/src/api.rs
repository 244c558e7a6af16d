//! Request and response bodies of the `/v1` HTTP API (docs/protocol.md).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{CaseState, GeoPoint, OperationEnvelope};

/// The body of a workflow step over HTTP; the same step also travels as a
/// `transition_incident` operation, whose payload carries it.
pub use crate::operation::TransitionRequest;

/// A user's role, defined with the workflow it decides (`crate::role`).
pub use crate::role::Role;

/// Header carrying the device id on every request.
pub const DEVICE_ID_HEADER: &str = "x-gridwork-device";

/// The error code (status 401) of every sign-in, refresh and request from
/// a device an administrator revoked (a lost or stolen phone): the device
/// stops syncing and wipes what it holds once nothing unsent would be lost.
pub const DEVICE_REVOKED: &str = "device_revoked";

/// The error code (status 403) of an original photo asked for by a role the
/// district's privacy policy keeps originals from: their EXIF holds the GPS
/// position, time and camera. The 2048 px rendition, re-encoded without any
/// metadata, stands in; the uploader always gets their own original.
pub const ORIGINAL_WITHHELD: &str = "original_withheld";

/// A photo as `GET /v1/blobs/{sha256}?rendition=` serves it: the original
/// bytes, or a JPEG whose long edge is at most 320, 1280 or 2048 pixels
/// (orientation applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PhotoRendition {
    Original,
    Thumb,
    LongEdge1280,
    LongEdge2048,
}

impl PhotoRendition {
    pub const ALL: [PhotoRendition; 4] = [PhotoRendition::Original, PhotoRendition::Thumb, PhotoRendition::LongEdge1280, PhotoRendition::LongEdge2048];

    /// Its `rendition=` query value.
    pub fn as_query(self) -> &'static str {
        match self {
            PhotoRendition::Original => "original",
            PhotoRendition::Thumb => "thumb",
            PhotoRendition::LongEdge1280 => "1280",
            PhotoRendition::LongEdge2048 => "2048",
        }
    }

    /// The query value (`320` is `thumb`); none is the original.
    pub fn from_query(text: Option<&str>) -> Option<PhotoRendition> {
        match text {
            None | Some("original") => Some(PhotoRendition::Original),
            Some("thumb") | Some("320") => Some(PhotoRendition::Thumb),
            Some("1280") => Some(PhotoRendition::LongEdge1280),
            Some("2048") => Some(PhotoRendition::LongEdge2048),
            Some(_) => None,
        }
    }

    /// The most bytes a device reads of it.
    pub fn max_bytes(self) -> u64 {
        match self {
            PhotoRendition::Original => crate::limits::PHOTO_MAX_BYTES,
            _ => crate::limits::RENDITION_MAX_BYTES,
        }
    }

    /// The long edge bound in pixels; none for the original.
    pub fn long_edge(self) -> Option<u32> {
        match self {
            PhotoRendition::Original => None,
            PhotoRendition::Thumb => Some(320),
            PhotoRendition::LongEdge1280 => Some(1280),
            PhotoRendition::LongEdge2048 => Some(2048),
        }
    }
}

/// Limits the server enforces and devices respect.
pub const MAX_PUSH_OPERATIONS: usize = 500;
pub const MAX_PUSH_BYTES: usize = 4 << 20;
pub const MAX_JSON_BODY_BYTES: usize = 4 << 20;
pub const MAX_BLOB_CHUNK_BYTES: usize = 4 << 20;
/// Every blob is a photo or a smaller preview of one.
pub const MAX_BLOB_BYTES: u64 = crate::limits::PHOTO_MAX_BYTES;
pub const MAX_PULL_LIMIT: u32 = 1000;
/// The most spans a pull may ask to skip (see [`SkipSpan`]).
pub const MAX_PULL_SKIPS: usize = 32;
/// JSON bodies of at least this many bytes travel gzip-compressed, both
/// ways: a device compresses a push this large, and the server compresses
/// replies this large to a device that accepts gzip. Photos never are (they
/// are compressed already). The limits above count the bytes as they are
/// once decompressed.
pub const COMPRESS_MIN_BYTES: usize = 1024;

/// Every error reply: a stable machine code and a human message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}


#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    pub grids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Server time (Unix ms) the access token stops working.
    pub access_expires_at_ms: i64,
    pub refresh_expires_at_ms: i64,
    pub user: UserInfo,
    pub server_time_ms: i64,
}

/// Borrowed when a device sends it, so a batch is not copied to be sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushRequest<'a> {
    pub operations: Cow<'a, [OperationEnvelope]>,
}

/// What became of one pushed operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OperationOutcome {
    /// Applied now; the entity is at `entity_version`.
    Applied { entity_version: i64 },
    /// Seen before from this device: the first outcome, replayed.
    Duplicate { first: Box<OperationOutcome> },
    /// Refused; retrying the same operation will not help.
    Rejected { code: String, message: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationResult {
    pub op_id: Uuid,
    #[serde(flatten)]
    pub outcome: OperationOutcome,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushResponse {
    pub results: Vec<OperationResult>,
    pub server_time_ms: i64,
    /// What the push changed, as the caller sees it; absent when it applied
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<Echo>,
}

/// Exactly what pull would bring for the cursors in `span`: the changes a
/// push recorded (and any committed just before them), each with the
/// entity's current view as the caller sees it. A device applies them at
/// once and asks pull to skip the span, so its own writes do not come back
/// as downloads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Echo {
    pub span: SkipSpan,
    pub changes: Vec<Change>,
}

/// The cursors `after < cursor <= until`, which a device already has from
/// an [`Echo`]. In a pull query: `skip=after-until,after-until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipSpan {
    pub after: i64,
    pub until: i64,
}

impl SkipSpan {
    pub fn contains(&self, cursor: i64) -> bool {
        self.after < cursor && cursor <= self.until
    }

    /// The query value for these spans (empty for none).
    pub fn to_query(spans: &[SkipSpan]) -> String {
        spans.iter().map(|s| format!("{}-{}", s.after, s.until)).collect::<Vec<_>>().join(",")
    }

    /// Read a query value back: at most [`MAX_PULL_SKIPS`] spans, each of
    /// non-negative cursors with `after < until`. None when malformed.
    pub fn parse_query(value: &str) -> Option<Vec<SkipSpan>> {
        if value.is_empty() {
            return Some(Vec::new());
        }
        let spans = value
            .split(',')
            .map(|part| {
                let (after, until) = part.split_once('-')?;
                let span = SkipSpan { after: after.parse().ok()?, until: until.parse().ok()? };
                (span.after >= 0 && span.after < span.until).then_some(span)
            })
            .collect::<Option<Vec<_>>>()?;
        (spans.len() <= MAX_PULL_SKIPS).then_some(spans)
    }
}

/// One change in the caller's view, in commit order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub cursor: i64,
    /// "incident", "grid", "category".
    pub entity_kind: String,
    pub entity_id: String,
    #[serde(flatten)]
    pub body: ChangeBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ChangeBody {
    /// The entity as the caller may now see it.
    Upsert { data: serde_json::Value },
    /// The entity left the caller's scope or was deleted.
    Remove,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PullResponse {
    pub changes: Vec<Change>,
    /// Pass back as `since` for the next page.
    pub next_cursor: i64,
    pub has_more: bool,
    pub server_time_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateBlobRequest {
    pub sha256: String,
    pub size: u64,
    /// Set when this blob is a preview (a smaller JPEG) of an announced
    /// photo, sent ahead of the original on a metered link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_of: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlobStatus {
    pub sha256: String,
    pub size: u64,
    /// Bytes received so far; the next chunk starts here.
    pub offset: u64,
    /// The whole blob arrived and its hash was verified.
    pub complete: bool,
}

/// A category as devices pull it (entity kind `category`). Codes that left
/// the table stay, inactive: old cases still name them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryView {
    pub code: String,
    pub parent_code: Option<String>,
    pub name_zh: String,
    pub name_en: String,
    pub sort_order: i64,
    pub active: bool,
}

/// A photo of a case as the server knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhotoView {
    pub photo_id: Uuid,
    pub sha256: String,
    pub byte_size: u64,
    pub mime_type: String,
    /// A [`crate::PhotoRole`] name.
    pub role: String,
    pub arrived: bool,
    /// A smaller preview has arrived (the original may still be on its way).
    #[serde(default)]
    pub preview_arrived: bool,
}

/// A case (案卷) as pulled by devices and listed by the admin CLI.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentView {
    pub id: Uuid,
    pub state: CaseState,
    pub category_code: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<GeoPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_code: Option<String>,
    pub reporter: String,
    pub reporter_role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
    /// The time limit (server time, Unix ms) of the step the case waits for
    /// besides handling: signing for it while dispatched (签收时限), verifying
    /// it while handled (核查时限). Absent when the category sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_deadline_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<Uuid>,
    /// The rejected report this one corrects and resubmits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resubmission_of: Option<Uuid>,
    /// The verifier's satisfaction rating (评价, 1 to 5 stars) once closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    pub photos: Vec<PhotoView>,
    /// Photos announced but not all uploaded yet.
    pub missing_evidence: bool,
    pub version: i64,
    pub reported_at_ms: i64,
    pub updated_at_ms: i64,
    /// Every step so far, oldest first, so a device shows the whole case
    /// offline (the dispatcher's note is the `dispatch` entry's).
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub seq: i64,
    /// A [`crate::CaseAction`] name, or an event that is not a workflow step
    /// (`report`, `photo_arrived`, `preview_arrived`).
    pub action: String,
    pub actor: String,
    /// `None` for the report that created the case.
    pub from_state: Option<CaseState>,
    pub to_state: CaseState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renditions_read_back_from_their_query_value() {
        for rendition in PhotoRendition::ALL {
            assert_eq!(PhotoRendition::from_query(Some(rendition.as_query())), Some(rendition));
        }
        assert_eq!(PhotoRendition::from_query(None), Some(PhotoRendition::Original));
        assert_eq!(PhotoRendition::from_query(Some("320")), Some(PhotoRendition::Thumb));
        assert_eq!(PhotoRendition::from_query(Some("640")), None);
        assert_eq!(PhotoRendition::Thumb.long_edge(), Some(320));
    }

    #[test]
    fn skip_spans_read_back_and_refuse_what_is_malformed() {
        let spans = vec![SkipSpan { after: 0, until: 500 }, SkipSpan { after: 700, until: 701 }];
        assert_eq!(SkipSpan::to_query(&spans), "0-500,700-701");
        assert_eq!(SkipSpan::parse_query("0-500,700-701"), Some(spans));
        assert_eq!(SkipSpan::parse_query(""), Some(Vec::new()));
        for bad in ["5-5", "6-5", "-1-5", "a-b", "5", "1-2,", "1-2-3"] {
            assert_eq!(SkipSpan::parse_query(bad), None, "{bad}");
        }
        let too_many = vec!["1-2"; MAX_PULL_SKIPS + 1].join(",");
        assert_eq!(SkipSpan::parse_query(&too_many), None);
        assert!(SkipSpan { after: 10, until: 20 }.contains(20) && !SkipSpan { after: 10, until: 20 }.contains(10));
    }
}
