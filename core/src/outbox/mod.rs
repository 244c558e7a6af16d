//! The durable outbox: every change the server must hear about, as an
//! intent with a device-made UUIDv7 op id (the idempotency key).
//!
//! Ordering rule: operations on one entity are delivered in the order they
//! were queued. An operation is *ready* when it is pending, due, every
//! earlier operation on its entity is acknowledged, and the operation it
//! depends on (if any) is acknowledged. So a parked (rejected) operation
//! holds back only later operations on its own entity; every other entity's
//! work goes on.

pub mod transfers;

use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use gridwork_protocol::{Named, OperationKind};
use strum::{EnumString, IntoStaticStr};

use crate::model::read_name;

/// Where an operation is in its delivery. The names are stored in the
/// `outbox.state` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, IntoStaticStr, EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum OperationState {
    Pending,
    InFlight,
    Acknowledged,
    Parked,
}

impl Named for OperationState {}

/// Why the server refused an operation, in terms the user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkReason {
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewOperation {
    pub entity_id: Uuid,
    /// What kind of entity, e.g. "incident".
    pub entity_kind: &'static str,
    pub kind: OperationKind,
    pub payload: serde_json::Value,
    pub depends_on: Option<Uuid>,
    /// The photo this operation uploads, if any, and its size.
    pub blob: Option<(String, u64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    pub seq: i64,
    pub op_id: Uuid,
    pub entity_id: Uuid,
    pub entity_kind: String,
    /// `None` when a newer build queued a kind this build does not know.
    pub kind: Option<OperationKind>,
    pub kind_name: String,
    pub payload: serde_json::Value,
    pub payload_schema: u32,
    pub state: OperationState,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub depends_on: Option<Uuid>,
    pub blob_sha256: Option<String>,
    pub blob_bytes: u64,
    pub park_reason: Option<ParkReason>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
}

/// For an outbox screen: what is waiting, and since when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxSummary {
    pub pending: u64,
    pub in_flight: u64,
    pub parked: u64,
    pub acknowledged: u64,
    /// Device time the oldest unacknowledged operation was queued.
    pub oldest_unsent_created_ms: Option<i64>,
    /// Age of that operation at the time of the summary.
    pub oldest_unsent_age_ms: Option<i64>,
    /// Bytes of photos still to upload.
    pub photo_bytes_waiting: u64,
}

const COLUMNS: &str = "seq, op_id, entity_id, entity_kind, kind, payload, payload_schema, state, attempts,
    next_attempt_ms, depends_on, blob_sha256, blob_bytes, park_code, park_message, last_error,
    created_device_ms, created_corrected_ms";

fn parse_uuid(text: String) -> rusqlite::Result<Uuid> {
    Uuid::parse_str(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn read_operation(row: &Row) -> rusqlite::Result<Operation> {
    let kind_name: String = row.get(4)?;
    let payload: String = row.get(5)?;
    let park_code: Option<String> = row.get(13)?;
    let park_message: Option<String> = row.get(14)?;
    Ok(Operation {
        seq: row.get(0)?,
        op_id: parse_uuid(row.get(1)?)?,
        entity_id: parse_uuid(row.get(2)?)?,
        entity_kind: row.get(3)?,
        kind: OperationKind::parse(&kind_name),
        kind_name,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        payload_schema: row.get(6)?,
        state: read_name(row, 7)?.unwrap_or(OperationState::Pending),
        attempts: row.get(8)?,
        next_attempt_ms: row.get(9)?,
        depends_on: row.get::<_, Option<String>>(10)?.map(parse_uuid).transpose()?,
        blob_sha256: row.get(11)?,
        blob_bytes: row.get::<_, i64>(12)? as u64,
        park_reason: park_code.map(|code| ParkReason { code, message: park_message.unwrap_or_default() }),
        last_error: row.get(15)?,
        created_at: Timestamp { device_ms: row.get(16)?, corrected_ms: row.get(17)? },
    })
}

/// Queue an operation. Call inside the transaction that writes the local
/// effect, so both commit or neither does.
pub fn enqueue(conn: &Connection, op: &NewOperation, now: Timestamp) -> Result<Uuid> {
    let op_id = Uuid::now_v7();
    conn.prepare_cached(
        "INSERT INTO outbox (op_id, entity_id, entity_kind, kind, payload, payload_schema, state, attempts,
             next_attempt_ms, depends_on, blob_sha256, blob_bytes, created_device_ms, created_corrected_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        op_id.to_string(),
        op.entity_id.to_string(),
        op.entity_kind,
        op.kind.as_str(),
        op.payload.to_string(),
        op.kind.current_schema(),
        now.device_ms,
        op.depends_on.map(|d| d.to_string()),
        op.blob.as_ref().map(|(sha, _)| sha.as_str()),
        op.blob.as_ref().map(|(_, bytes)| *bytes as i64).unwrap_or(0),
        now.device_ms,
        now.corrected_ms,
    ])?;
    Ok(op_id)
}

/// Operations that may be sent now, oldest first, at most `limit`.
pub fn ready(conn: &Connection, now_ms: i64, limit: u32) -> Result<Vec<Operation>> {
    ready_filtered(conn, now_ms, limit, None)
}

/// Like [`ready`], only operations of these kinds (so a sync step's limit
/// is not used up by another step's work).
pub fn ready_of_kinds(conn: &Connection, now_ms: i64, limit: u32, kinds: &[OperationKind]) -> Result<Vec<Operation>> {
    ready_filtered(conn, now_ms, limit, Some(kinds))
}

fn ready_filtered(conn: &Connection, now_ms: i64, limit: u32, kinds: Option<&[OperationKind]>) -> Result<Vec<Operation>> {
    let mut stmt = conn.prepare_cached(&ready_sql(kinds))?;
    let rows = stmt.query_map(params![now_ms, limit], read_operation)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The next ready operations, oldest first. Pending operations are read in
/// queue order from the `(state, seq)` index and the query stops at its
/// LIMIT, so a batch costs what it returns, not the whole backlog.
fn ready_sql(kinds: Option<&[OperationKind]>) -> String {
    let kind_clause = match kinds {
        Some(kinds) => format!(
            " AND o.kind IN ({})",
            kinds.iter().map(|k| format!("'{}'", k.as_str())).collect::<Vec<_>>().join(", ")
        ),
        None => String::new(),
    };
    // An entity's operations go in order: one waits while an earlier one is
    // not acknowledged. A refused (parked) workflow step is the exception:
    // each step is judged on the server's state of the case, so the next
    // one (taken on the state the refusal brought back) goes on its own.
    format!(
        "SELECT {COLUMNS} FROM outbox AS o
         WHERE o.state = 'pending' AND o.next_attempt_ms <= ?1{kind_clause}
           AND NOT EXISTS (SELECT 1 FROM outbox AS e
                           WHERE e.entity_id = o.entity_id AND e.seq < o.seq AND e.state != 'acknowledged'
                             AND NOT (e.state = 'parked' AND e.kind = 'transition_incident'))
           AND (o.depends_on IS NULL OR EXISTS (SELECT 1 FROM outbox AS d
                                                WHERE d.op_id = o.depends_on AND d.state = 'acknowledged'))
         ORDER BY o.seq LIMIT ?2"
    )
}

fn set_state(conn: &Connection, op_id: Uuid, from: &[OperationState], sql_set: &str, extra: &[&dyn rusqlite::ToSql]) -> Result<()> {
    let allowed = from.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ");
    let sql = format!("UPDATE outbox SET {sql_set} WHERE op_id = ?1 AND state IN ({allowed})");
    let id = op_id.to_string();
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&id];
    args.extend_from_slice(extra);
    let changed = conn.prepare_cached(&sql)?.execute(args.as_slice())?;
    if changed == 1 {
        return Ok(());
    }
    match get(conn, op_id)? {
        None => Err(Error::NotFound { what: "operation" }),
        Some(op) => Err(Error::InvalidState { state: op.state.as_str().to_owned(), action: "change outbox operation" }),
    }
}

/// The sync engine is sending this operation now.
pub fn mark_in_flight(conn: &Connection, op_id: Uuid) -> Result<()> {
    set_state(conn, op_id, &[OperationState::Pending], "state = 'in_flight', attempts = attempts + 1", &[])
}

/// The server applied it (or had applied it before: a duplicate).
pub fn acknowledge(conn: &Connection, op_id: Uuid, now_ms: i64) -> Result<()> {
    set_state(
        conn,
        op_id,
        &[OperationState::Pending, OperationState::InFlight],
        "state = 'acknowledged', acknowledged_ms = ?2, last_error = NULL",
        &[&now_ms],
    )
}

/// The server refused it for a reason retrying cannot fix.
pub fn park(conn: &Connection, op_id: Uuid, reason: &ParkReason) -> Result<()> {
    set_state(
        conn,
        op_id,
        &[OperationState::Pending, OperationState::InFlight],
        "state = 'parked', park_code = ?2, park_message = ?3",
        &[&reason.code, &reason.message],
    )
}

/// The park code of an operation held back because the one it depends on
/// was refused (a photo of a refused workflow step).
pub const DEPENDENCY_PARKED: &str = "dependency_parked";

/// Park the pending operations that wait on `op_id`, which was refused:
/// they cannot be sent without it, and a pending one would hold back its
/// entity's server state for ever. [`unpark`] of `op_id` releases them.
pub fn park_dependents(conn: &Connection, op_id: Uuid) -> Result<u64> {
    Ok(conn.execute(
        "UPDATE outbox SET state = 'parked', park_code = ?2, park_message = 'the step this belongs to was refused'
         WHERE depends_on = ?1 AND state = 'pending'",
        params![op_id.to_string(), DEPENDENCY_PARKED],
    )? as u64)
}

/// A photo's upload held back by a refused step follows `step` instead.
pub fn reattach_held_upload(conn: &Connection, photo_id: Uuid, step: Uuid, now_ms: i64) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET depends_on = ?2, state = 'pending', next_attempt_ms = ?4, park_code = NULL, park_message = NULL
         WHERE entity_id = ?1 AND state = 'parked' AND park_code = ?3",
        params![photo_id.to_string(), step.to_string(), DEPENDENCY_PARKED, now_ms],
    )?;
    Ok(())
}

/// Sending failed in a way worth retrying; try again at `next_attempt_ms`.
pub fn retry_later(conn: &Connection, op_id: Uuid, next_attempt_ms: i64, error_class: &str) -> Result<()> {
    set_state(
        conn,
        op_id,
        &[OperationState::InFlight, OperationState::Pending],
        "state = 'pending', next_attempt_ms = ?2, last_error = ?3",
        &[&next_attempt_ms, &error_class],
    )
}

/// The user asked to try a parked operation again; what it held back comes
/// too. A photo held back by its refused step is retried through that step.
pub fn unpark(conn: &Connection, op_id: Uuid, now_ms: i64) -> Result<()> {
    if let Some(op) = get(conn, op_id)?
        && op.state == OperationState::Parked
        && op.park_reason.as_ref().is_some_and(|r| r.code == DEPENDENCY_PARKED)
        && let Some(step) = op.depends_on
    {
        return unpark(conn, step, now_ms);
    }
    set_state(
        conn,
        op_id,
        &[OperationState::Parked],
        "state = 'pending', next_attempt_ms = ?2, park_code = NULL, park_message = NULL",
        &[&now_ms],
    )?;
    conn.execute(
        "UPDATE outbox SET state = 'pending', next_attempt_ms = ?3, park_code = NULL, park_message = NULL
         WHERE depends_on = ?1 AND state = 'parked' AND park_code = ?2",
        params![op_id.to_string(), DEPENDENCY_PARKED, now_ms],
    )?;
    Ok(())
}

/// After a restart nothing is in flight: whatever was, goes back to pending
/// (the server deduplicates by op id if it had arrived). Returns how many.
pub fn recover_in_flight(conn: &Connection) -> Result<u64> {
    Ok(conn.execute("UPDATE outbox SET state = 'pending' WHERE state = 'in_flight'", [])? as u64)
}

pub fn get(conn: &Connection, op_id: Uuid) -> Result<Option<Operation>> {
    let sql = format!("SELECT {COLUMNS} FROM outbox WHERE op_id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([op_id.to_string()], read_operation).optional()?)
}

/// Every operation not yet acknowledged, in queue order (for the outbox screen).
pub fn unsent(conn: &Connection) -> Result<Vec<Operation>> {
    let sql = format!("SELECT {COLUMNS} FROM outbox WHERE state != 'acknowledged' ORDER BY seq");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], read_operation)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// All operations on one entity, in queue order.
pub fn for_entity(conn: &Connection, entity_id: Uuid) -> Result<Vec<Operation>> {
    let sql = format!("SELECT {COLUMNS} FROM outbox WHERE entity_id = ?1 ORDER BY seq");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([entity_id.to_string()], read_operation)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn summary(conn: &Connection, now_ms: i64) -> Result<OutboxSummary> {
    let mut summary = OutboxSummary::default();
    let mut stmt = conn.prepare_cached("SELECT state, count(*) FROM outbox GROUP BY state")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let count = row.get::<_, i64>(1)? as u64;
        match read_name(row, 0)?.unwrap_or(OperationState::Pending) {
            OperationState::Pending => summary.pending = count,
            OperationState::InFlight => summary.in_flight = count,
            OperationState::Parked => summary.parked = count,
            OperationState::Acknowledged => summary.acknowledged = count,
        }
    }
    let (oldest, bytes): (Option<i64>, i64) = conn.query_row(
        "SELECT min(created_device_ms), coalesce(sum(blob_bytes), 0) FROM outbox WHERE state != 'acknowledged'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    summary.oldest_unsent_created_ms = oldest;
    summary.oldest_unsent_age_ms = oldest.map(|t| (now_ms - t).max(0));
    summary.photo_bytes_waiting = bytes as u64;
    Ok(summary)
}

#[cfg(test)]
mod proptests;
