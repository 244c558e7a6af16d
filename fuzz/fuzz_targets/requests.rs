//! What the server decodes from a device, hostile: every request body type,
//! each operation's payload by its kind, and the checks the server applies
//! before it stores anything (text rules, photo reference shapes, path
//! parameters). Any input ends in a typed refusal, never a panic.
#![no_main]

use gridwork_protocol::api::{CreateBlobRequest, LoginRequest, PushRequest, RefreshRequest, TransitionRequest};
use gridwork_protocol::{SubmitIncident, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = serde_json::from_slice::<LoginRequest>(bytes);
    let _ = serde_json::from_slice::<RefreshRequest>(bytes);
    let _ = serde_json::from_slice::<CreateBlobRequest>(bytes);
    if let Ok(step) = serde_json::from_slice::<TransitionRequest>(bytes) {
        if let Some(note) = &step.note {
            let _ = text::clean(note, 2_000);
        }
    }
    if let Ok(push) = serde_json::from_slice::<PushRequest>(bytes) {
        for op in push.operations.iter() {
            if let Ok(report) = serde_json::from_value::<SubmitIncident>(op.payload.clone()) {
                let _ = text::clean(&report.description, 2_000);
                for photo in &report.photos {
                    let _ = photo.shape_error();
                }
            }
        }
    }
    // Path parameters arrive as text: ids and hashes.
    if let Ok(segment) = std::str::from_utf8(bytes) {
        let _ = uuid::Uuid::parse_str(segment);
        let _ = gridwork_protocol::api::PhotoRendition::from_query(Some(segment));
        let _ = text::clean(segment, 128);
    }
});
