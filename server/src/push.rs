//! Push: a batch of operations, one result each. The batch's transaction
//! also records `(device, op_id)` and each outcome, so a replay returns the
//! first outcome and never applies twice (exactly-once effect over
//! at-least-once delivery).

use gridwork_protocol::api::{OperationOutcome, OperationResult, PushResponse};
use gridwork_protocol::{Named, OperationEnvelope, OperationKind, SubmitIncident, TransitionIncident};
use serde_json::Value as Json;
use uuid::Uuid;

use crate::auth::Caller;
use crate::cases::{self, Rejection};
use crate::db::{Database, Tx};
use crate::error::{Result, ServerError};
use crate::{changes, params, pull};

pub fn push(db: &Database, caller: &Caller, operations: &[Json], now_ms: i64) -> Result<PushResponse> {
    if operations.len() > gridwork_protocol::api::MAX_PUSH_OPERATIONS {
        return Err(ServerError::new(413, "batch_too_large", format!("at most {} operations per push", gridwork_protocol::api::MAX_PUSH_OPERATIONS)));
    }
    // An op id is needed to answer at all; without one the batch is malformed.
    let op_ids = operations
        .iter()
        .map(|raw| {
            raw.get("op_id")
                .and_then(Json::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| ServerError::bad_request("invalid_operation", "every operation needs a UUID op_id"))
        })
        .collect::<Result<Vec<_>>>()?;
    // One transaction for the batch: one durable commit instead of one per
    // operation. Every operation is validated before it writes, so a
    // rejection leaves no partial effect; a storage error rolls back the
    // whole batch and the device sends it again (nothing was acknowledged).
    let (results, (before, until)) = db.write(|tx| {
        // The change log is taken first (on SQLite the write transaction
        // alone does it; on PostgreSQL an advisory lock held to commit), so
        // every change in (before, until] is this push's own.
        tx.lock_change_log()?;
        let before = changes::newest(tx)?;
        let results = op_ids
            .iter()
            .zip(operations)
            .map(|(op_id, raw)| Ok(OperationResult { op_id: *op_id, outcome: apply_once(tx, caller, *op_id, raw, now_ms)? }))
            .collect::<Result<Vec<_>>>()?;
        let applied = results.iter().any(|r| matches!(r.outcome, OperationOutcome::Applied { .. }));
        Ok((results, (before, if applied { changes::newest(tx)? } else { before })))
    })?;
    // The echo is read after the commit, outside the change log's lock:
    // assembling views must not hold up other devices' pushes.
    let echo = if until > before { db.read(|tx| pull::echo(tx, caller, before, until, now_ms))? } else { None };
    Ok(PushResponse { results, server_time_ms: now_ms, echo })
}

fn apply_once(tx: &mut dyn Tx, caller: &Caller, op_id: Uuid, raw: &Json, now_ms: i64) -> Result<OperationOutcome> {
    let key = params![caller.device_id.clone(), op_id.to_string()];
    if let Some(row) = tx.query_opt("SELECT result FROM applied_ops WHERE device_id = $1 AND op_id = $2", key)? {
        let first: OperationOutcome = serde_json::from_str(&row.text(0)).map_err(|_| ServerError::internal("stored outcome unreadable"))?;
        if !matches!(first, OperationOutcome::Rejected { .. }) {
            return Ok(OperationOutcome::Duplicate { first: Box::new(first) });
        }
        // A rejection had no effect, so a resend is judged afresh: the user
        // may have been asked to retry after the cause went away (a category
        // restored, a case reopened).
        tx.execute("DELETE FROM applied_ops WHERE device_id = $1 AND op_id = $2", key)?;
    }
    let outcome = match apply(tx, caller, raw, now_ms)? {
        Ok(version) => OperationOutcome::Applied { entity_version: version },
        Err(Rejection { code, message }) => OperationOutcome::Rejected { code: code.to_owned(), message },
    };
    // A concurrent push of the same op id fails here on the primary key;
    // the transaction is retried and then finds the winner's outcome.
    tx.execute(
        "INSERT INTO applied_ops (device_id, op_id, user_id, result, applied_at_ms) VALUES ($1, $2, $3, $4, $5)",
        params![caller.device_id.clone(), op_id.to_string(), caller.user_id.to_string(), serde_json::to_string(&outcome).expect("serializes"), now_ms],
    )?;
    Ok(outcome)
}

fn apply(tx: &mut dyn Tx, caller: &Caller, raw: &Json, now_ms: i64) -> Result<cases::Outcome> {
    let kind_name = raw.get("kind").and_then(Json::as_str).unwrap_or("");
    let Some(kind) = OperationKind::parse(kind_name) else {
        return Ok(Err(Rejection::new("unknown_operation_kind", "this server does not know the operation kind")));
    };
    let envelope: OperationEnvelope = match serde_json::from_value(raw.clone()) {
        Ok(e) => e,
        Err(_) => return Ok(Err(Rejection::new("invalid_operation", "the operation envelope is malformed"))),
    };
    if envelope.schema_version == 0 || envelope.schema_version > kind.current_schema() {
        return Ok(Err(Rejection::new("unsupported_schema_version", format!("{} payload schema {} is not supported (up to {})", kind.as_str(), envelope.schema_version, kind.current_schema()))));
    }
    let invalid = || Ok(Err(Rejection::new("invalid_payload", "the payload does not match its kind")));
    match kind {
        OperationKind::SubmitIncident => {
            let Ok(report) = serde_json::from_value::<SubmitIncident>(envelope.payload) else { return invalid() };
            if report.incident_id != envelope.entity_id {
                return invalid();
            }
            cases::submit(tx, caller, &report, now_ms)
        }
        OperationKind::TransitionIncident => {
            let Ok(step) = serde_json::from_value::<TransitionIncident>(envelope.payload) else { return invalid() };
            if step.incident_id != envelope.entity_id {
                return invalid();
            }
            cases::transition(tx, caller, &step.incident_id.to_string(), &step.request, now_ms)
        }
        OperationKind::UploadPhoto => Ok(Err(Rejection::new("not_a_push_operation", "photos are uploaded through /v1/blobs"))),
    }
}
