//! Workflow steps taken on the device (签收, 处置, 反馈, 退回, 核查): checked
//! offline with the same transition function the server runs, queued as one
//! `transition_incident` operation with its photos' uploads after it, and
//! shown at once in the state the step leads to. The server has the last
//! word: a refused step parks with the server's reason and the case goes
//! back to the server's state (see `sync::apply::operation_refused`).

use gridwork_protocol::api::{TransitionRequest, UserInfo};
use gridwork_protocol::case::{self, Relation};
use gridwork_protocol::limits::{DESCRIPTION_MAX_CHARS, MAX_PHOTOS_PER_STEP};
use gridwork_protocol::{CaseAction, Named, OperationKind, TransitionIncident};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::capture;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::geo::GeoPoint;
use crate::model::{IncidentStatus, audit};
use crate::outbox::{self, NewOperation};
use crate::photo::IngestedPhoto;
use crate::text;

/// A step as the user takes it; photos are already in the photo store.
#[derive(Clone, Debug, PartialEq)]
pub struct StepInput {
    pub action: CaseAction,
    pub note: Option<String>,
    /// Stars (1-5) with a `close` (核查通过, 评价).
    pub rating: Option<u8>,
    /// The case a `merge` folds this one into (a duplicate report).
    pub merge_into: Option<Uuid>,
}

impl StepInput {
    /// A step with nothing but its action; set what it carries.
    pub fn new(action: CaseAction) -> StepInput {
        StepInput { action, note: None, rating: None, merge_into: None }
    }
}

/// Check the step against the case as this device knows it, without
/// writing; the state it leads to. Cheap: the facade calls it before
/// processing photos.
pub fn check(conn: &Connection, incident_id: Uuid, input: &StepInput, photo_count: usize, me: &UserInfo) -> Result<gridwork_protocol::CaseState> {
    let CaseFacts { state, grid_code, assignee, is_reporter } = case_facts(conn, incident_id, me)?;
    let relation = Relation {
        role: me.role,
        in_grid: grid_code.as_ref().is_some_and(|g| me.grids.contains(g)),
        is_assignee: assignee.as_deref() == Some(me.username.as_str()),
        is_reporter,
    };
    let action = input.action.as_str();
    if input.action == CaseAction::Dispatch {
        // 派遣 names an assignee and a deadline: the command center's console does it.
        return Err(Error::StepInvalid { code: "dispatch_from_console", message: "dispatch from the command center's console".to_owned() });
    }
    let target = case::next_state(state, input.action, relation).map_err(|refusal| match refusal {
        case::Refusal::InvalidTransition => Error::InvalidState { state: state.as_str().to_owned(), action },
        case::Refusal::Forbidden => Error::StepNotAllowed { action },
    })?;
    if photo_count > MAX_PHOTOS_PER_STEP {
        return Err(Error::TooManyPhotos { max: MAX_PHOTOS_PER_STEP });
    }
    let has_note = input.note.as_deref().is_some_and(|n| !n.trim().is_empty());
    input.action.check_extras(has_note, input.rating, photo_count).map_err(|(code, message)| Error::StepInvalid { code, message })?;
    match (input.action, input.merge_into) {
        (CaseAction::Merge, None) => {
            return Err(Error::StepInvalid { code: "merge_target_required", message: "merge needs the case it duplicates".to_owned() });
        }
        (CaseAction::Merge, Some(target)) if target == incident_id => {
            return Err(Error::StepInvalid { code: "invalid_merge_target", message: "a case cannot be merged into itself".to_owned() });
        }
        (CaseAction::Merge, Some(target)) => {
            // The server merges only into a case the user may see: one this device holds.
            let target_state = conn
                .prepare_cached("SELECT status FROM incidents WHERE id = ?1")?
                .query_row([target.to_string()], |r| r.get::<_, String>(0))
                .optional()?
                .and_then(|s| IncidentStatus::parse(&s));
            if !matches!(target_state, Some(IncidentStatus::Case(state)) if state != gridwork_protocol::CaseState::Merged) {
                return Err(Error::StepInvalid {
                    code: "invalid_merge_target",
                    message: "merge into another, unmerged case you can see".to_owned(),
                });
            }
        }
        (_, Some(_)) => return Err(Error::StepInvalid { code: "invalid_payload", message: "only a merge names another case".to_owned() }),
        (_, None) => {}
    }
    Ok(target)
}

/// What decides whether this user may take a step on a case.
struct CaseFacts {
    state: gridwork_protocol::CaseState,
    grid_code: Option<String>,
    assignee: Option<String>,
    is_reporter: bool,
}

/// Only a case the server has can take a step. The user reported it if this
/// device submitted it, or the server names them its reporter.
fn case_facts(conn: &Connection, id: Uuid, me: &UserInfo) -> Result<CaseFacts> {
    let row: Option<(String, Option<String>, Option<String>)> = conn
        .prepare_cached("SELECT status, grid_code, assignee FROM incidents WHERE id = ?1")?
        .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let (status, grid_code, assignee) = row.ok_or(Error::NotFound { what: "incident" })?;
    let is_reporter = crate::model::task::is_own_report(conn, id, &me.username)?;
    match IncidentStatus::parse(&status) {
        Some(IncidentStatus::Case(state)) => Ok(CaseFacts { state, grid_code, assignee, is_reporter }),
        _ => Err(Error::InvalidState { state: status, action: "take a workflow step on" }),
    }
}

/// Take the step: its photos' rows, the operation, the uploads after it, the
/// predicted state and the audit entry, in the caller's transaction.
#[allow(clippy::too_many_arguments)] // the step, its photos, who (role and audit name), when and where
pub fn take(
    conn: &Connection,
    incident_id: Uuid,
    input: &StepInput,
    photos: &[IngestedPhoto],
    me: &UserInfo,
    actor: &str,
    now: Timestamp,
    actor_at: Option<GeoPoint>,
) -> Result<Uuid> {
    let target = check(conn, incident_id, input, photos.len(), me)?;
    let note = input.note.as_deref().map(|n| text::validate("note", n, DESCRIPTION_MAX_CHARS)).transpose()?.filter(|n| !n.is_empty());
    let role = input.action.rule().photos;
    let mut rows = Vec::with_capacity(photos.len());
    let mut reused = Vec::new();
    for photo in photos {
        let role = role.ok_or(Error::StepInvalid { code: "invalid_payload", message: format!("{} carries no photos", input.action.as_str()) })?;
        // The same bytes already on the case (a refused step taken again):
        // its row serves this step too; the server keeps one reference.
        let existing: Option<String> = conn
            .query_row("SELECT id FROM photos WHERE incident_id = ?1 AND sha256 = ?2", params![incident_id.to_string(), photo.sha256], |r| r.get(0))
            .optional()?;
        let id = match existing {
            Some(id) => {
                let id = Uuid::parse_str(&id).map_err(|_| Error::InvalidId)?;
                reused.push(id);
                id
            }
            None => capture::insert_photo_row(conn, incident_id, photo, role, now)?,
        };
        rows.push(capture::photo(conn, id, None)?);
    }
    let request = TransitionRequest {
        note,
        rating: input.rating,
        merge_into: input.merge_into,
        photos: rows.iter().map(capture::photo_ref).collect(),
        ..TransitionRequest::new(input.action)
    };
    let payload = TransitionIncident { incident_id, request };
    let op_id = outbox::enqueue(
        conn,
        &NewOperation {
            entity_id: incident_id,
            entity_kind: "incident",
            kind: OperationKind::TransitionIncident,
            payload: serde_json::to_value(&payload).expect("payload serializes"),
            depends_on: None,
            blob: None,
        },
        now,
    )?;
    let new_rows: Vec<_> = rows.iter().filter(|p| !reused.contains(&p.id)).cloned().collect();
    capture::enqueue_uploads(conn, incident_id, &new_rows, op_id, now)?;
    // A reused photo's upload, held back with a refused step, now follows
    // this one (one upload per photo: a second would wait behind the first).
    for photo in &reused {
        outbox::reattach_held_upload(conn, *photo, op_id, now.device_ms)?;
    }
    // What the device shows until the server answers: the state the step
    // leads to; a hand-back leaves the handler's hands, a close carries its rating.
    let hand_back = input.action == CaseAction::HandBack;
    conn.prepare_cached(
        "UPDATE incidents SET status = ?2, updated_device_ms = ?3, updated_corrected_ms = ?4,
             assignee = CASE WHEN ?5 THEN NULL ELSE assignee END,
             rating = coalesce(?6, rating)
         WHERE id = ?1",
    )?
    .execute(params![
        incident_id.to_string(),
        IncidentStatus::Case(target).as_str(),
        now.device_ms,
        now.corrected_ms,
        hand_back,
        input.rating,
    ])?;
    audit::append(conn, incident_id, "step", actor, now, actor_at, Some(serde_json::json!({
        "action": input.action.as_str(), "op_id": op_id, "photos": rows.len(), "rating": input.rating,
    })))?;
    Ok(op_id)
}
