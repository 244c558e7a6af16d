//! The change log behind incremental pull. Sequence numbers are commit
//! order: SQLite has one writer, and on PostgreSQL appends take a
//! transaction-scoped advisory lock held to commit.

use gridwork_protocol::api::{Change, ChangeBody, PullResponse};

use crate::auth::Caller;
use crate::db::{Tx, Value};
use crate::error::Result;
use crate::{cases, params, reference, scope};

/// Record that an entity changed: `now_visible` keys see the new state,
/// keys only in `was_visible` get a removal.
pub fn record(tx: &mut dyn Tx, kind: &str, id: &str, now_visible: &[String], was_visible: &[String], now_ms: i64) -> Result<i64> {
    tx.lock_change_log()?;
    let seq = tx.query_one("INSERT INTO changes (entity_kind, entity_id, at_ms) VALUES ($1, $2, $3) RETURNING seq", params![kind, id, now_ms])?.int(0);
    let mut written: Vec<&String> = Vec::new();
    for key in now_visible {
        // A key listed twice would collide on the (audience, seq) key.
        if written.contains(&key) {
            continue;
        }
        written.push(key);
        tx.execute("INSERT INTO change_audience (audience, seq, removal) VALUES ($1, $2, 0)", params![key, seq])?;
    }
    for key in was_visible.iter().filter(|k| !now_visible.contains(k)) {
        if written.contains(&key) {
            continue;
        }
        written.push(key);
        tx.execute("INSERT INTO change_audience (audience, seq, removal) VALUES ($1, $2, 1)", params![key, seq])?;
    }
    Ok(seq)
}

pub fn pull(tx: &mut dyn Tx, caller: &Caller, since: i64, limit: u32, now_ms: i64) -> Result<PullResponse> {
    let keys = scope::caller_keys(caller);
    let marks: Vec<String> = (0..keys.len()).map(|i| format!("${}", i + 3)).collect();
    let sql = format!(
        "SELECT c.seq, c.entity_kind, c.entity_id, MIN(a.removal)
         FROM change_audience a JOIN changes c ON c.seq = a.seq
         WHERE a.seq > $1 AND a.audience IN ({})
         GROUP BY c.seq, c.entity_kind, c.entity_id
         ORDER BY c.seq LIMIT $2",
        marks.join(", ")
    );
    let mut args: Vec<Value> = vec![since.into(), (limit as i64 + 1).into()];
    args.extend(keys.iter().map(Value::from));
    let mut rows = tx.query(&sql, &args)?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = rows.last().map(|r| r.int(0)).unwrap_or(since);

    // Within a page only an entity's last change matters.
    let mut changes = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let (seq, kind, id, removal) = (row.int(0), row.text(1), row.text(2), row.int(3) != 0);
        if rows[index + 1..].iter().any(|later| later.text(1) == kind && later.text(2) == id) {
            continue;
        }
        let body = if removal {
            Some(ChangeBody::Remove)
        } else {
            match kind.as_str() {
                "incident" => cases::load_view_for(tx, caller, &id)?.map(|view| ChangeBody::Upsert { data: serde_json::to_value(view).expect("serializes") }),
                other => reference::load(tx, other, &id)?.map(|data| ChangeBody::Upsert { data }),
            }
        };
        // No body: the entity has since left the caller's view; the change
        // that took it away follows.
        if let Some(body) = body {
            changes.push(Change { cursor: seq, entity_kind: kind, entity_id: id, body });
        }
    }
    Ok(PullResponse { changes, next_cursor, has_more, server_time_ms: now_ms })
}
