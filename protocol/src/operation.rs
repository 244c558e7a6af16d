//! Operations a device queues in its outbox and pushes to the server.

use serde::{Deserialize, Serialize};
use strum::{EnumIter, EnumString, IntoStaticStr};
use uuid::Uuid;

use crate::geo::GeoPoint;
use crate::names::Named;

/// What an operation asks the server to do. The name is stable: it is
/// stored in device outboxes and sent on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumString, EnumIter)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum OperationKind {
    /// Report a new incident (信息采集). Text first; photos follow as blobs.
    SubmitIncident,
    /// Upload one photo's bytes, addressed by SHA-256. Never sent to the push
    /// endpoint itself: the device turns it into a resumable blob upload.
    UploadPhoto,
    /// Take a workflow step on a case: a supervisor's review decision, a
    /// worker's start or handle (with after-photos), a close or reopen.
    TransitionIncident,
}

impl Named for OperationKind {}

impl OperationKind {
    /// The newest payload schema version this code writes for the kind.
    pub fn current_schema(self) -> u32 {
        match self {
            OperationKind::SubmitIncident => SubmitIncident::SCHEMA_VERSION,
            OperationKind::UploadPhoto => UploadPhoto::SCHEMA_VERSION,
            OperationKind::TransitionIncident => TransitionIncident::SCHEMA_VERSION,
        }
    }
}

/// One operation as it travels in a push batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationEnvelope {
    pub op_id: Uuid,
    pub entity_id: Uuid,
    pub kind: OperationKind,
    pub schema_version: u32,
    /// Kind-specific payload, e.g. a serialized [`SubmitIncident`].
    pub payload: serde_json::Value,
}

/// Times as the device saw them and corrected by the last known offset to
/// server time. Both are kept because device clocks are often wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedAt {
    pub device_ms: i64,
    pub corrected_ms: i64,
}

/// A photo announced with an incident; its bytes follow as a blob upload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhotoRef {
    pub photo_id: Uuid,
    pub sha256: String,
    pub byte_size: u64,
    pub mime_type: String,
    pub width: u32,
    pub height: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<GeoPoint>,
    /// 64-bit difference hash as 16 hex digits, for duplicate detection.
    pub dhash: String,
}

impl PhotoRef {
    /// What is wrong with this reference's shape, if anything: hashes as
    /// lowercase hex of their length, positive dimensions, a WGS84 location.
    /// The server refuses such a reference (`invalid_payload`) rather than
    /// keep a value no device could have produced.
    pub fn shape_error(&self) -> Option<&'static str> {
        let lower_hex = |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !lower_hex(&self.sha256, 64) {
            Some("photo sha256 must be 64 lowercase hex digits")
        } else if !lower_hex(&self.dhash, 16) {
            Some("photo dhash must be 16 lowercase hex digits")
        } else if self.width == 0 || self.height == 0 {
            Some("photo width and height must be positive")
        } else if self.location.is_some_and(|l| !l.is_valid()) {
            Some("photo location is not a WGS84 coordinate")
        } else {
            None
        }
    }
}

/// Payload of [`OperationKind::SubmitIncident`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmitIncident {
    pub incident_id: Uuid,
    pub category_code: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<GeoPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_code: Option<String>,
    pub captured_at: CapturedAt,
    pub submitted_at: CapturedAt,
    /// The evidence: what the reporter saw (before, for a resolved report).
    pub photos: Vec<PhotoRef>,
    /// 能解决的问题现场解决: the reporter fixed it on the spot. The case
    /// starts handled by them and goes to verification, not dispatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_on_spot: Option<ResolvedOnSpot>,
    /// A corrected report of the reporter's own rejected one (件件有回音).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resubmission_of: Option<Uuid>,
}

/// What the reporter did on the spot, with after-photos.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResolvedOnSpot {
    pub note: String,
    pub after_photos: Vec<PhotoRef>,
}

impl SubmitIncident {
    pub const SCHEMA_VERSION: u32 = 1;
}

/// Payload of [`OperationKind::UploadPhoto`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UploadPhoto {
    pub incident_id: Uuid,
    pub photo_id: Uuid,
    pub sha256: String,
    pub byte_size: u64,
}

impl UploadPhoto {
    pub const SCHEMA_VERSION: u32 = 1;
}

/// Payload of [`OperationKind::TransitionIncident`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransitionIncident {
    pub incident_id: Uuid,
    #[serde(flatten)]
    pub request: TransitionRequest,
}

impl TransitionIncident {
    pub const SCHEMA_VERSION: u32 = 1;
}

/// A workflow step taken by a person through the API (not the outbox):
/// register, reject, merge, dispatch, sign, start, handle, hand back,
/// close (with a rating), reopen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransitionRequest {
    /// A [`crate::CaseAction`] name.
    pub action: String,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub deadline_ms: Option<i64>,
    #[serde(default)]
    pub merge_into: Option<Uuid>,
    /// Stars of a `close` (评价), see [`crate::case::RATING_STARS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    /// After-photos with a `handle` (处置反馈), on-site photos with a
    /// `close` or `reopen` (核查); their bytes follow as blobs.
    #[serde(default)]
    pub photos: Vec<PhotoRef>,
}

impl TransitionRequest {
    /// A step with nothing but its action; set what it carries.
    pub fn new(action: crate::CaseAction) -> TransitionRequest {
        TransitionRequest {
            action: action.as_str().to_owned(),
            note: None,
            assignee: None,
            department: None,
            deadline_ms: None,
            merge_into: None,
            rating: None,
            photos: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_strings_round_trip_and_are_stable() {
        assert_eq!(OperationKind::SubmitIncident.as_str(), "submit_incident");
        assert_eq!(OperationKind::UploadPhoto.as_str(), "upload_photo");
        crate::names::assert_names_match_serde::<OperationKind>();
        assert_eq!(OperationKind::parse("drop_table"), None);
    }

    #[test]
    fn submit_incident_tolerates_unknown_fields_from_newer_writers() {
        let json = serde_json::json!({
            "incident_id": "0190c2a0-0000-7000-8000-000000000001",
            "category_code": "0101",
            "description": "垃圾堆放",
            "captured_at": {"device_ms": 1, "corrected_ms": 2},
            "submitted_at": {"device_ms": 3, "corrected_ms": 4},
            "photos": [],
            "field_from_the_future": true
        });
        let parsed: SubmitIncident = serde_json::from_value(json).unwrap();
        assert_eq!(parsed.category_code, "0101");
        assert_eq!(parsed.location, None);
        assert_eq!(parsed.submitted_at.corrected_ms, 4);
    }
}
