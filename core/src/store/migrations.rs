//! Schema migrations keyed on `PRAGMA user_version`.
//!
//! All pending steps run in one IMMEDIATE transaction, so a killed process
//! leaves either the old schema or the new one. A migration must carry
//! unsent outbox rows forward: steps alter or copy tables, never drop
//! outbox data.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};
use crate::model::category;

/// Each entry upgrades from version `index` to `index + 1`.
const STEPS: &[fn(&rusqlite::Transaction) -> Result<()>] = &[to_v1, to_v2, to_v3];

/// The schema version this build writes.
pub const LATEST_VERSION: i64 = STEPS.len() as i64;

pub fn read_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// Bring the database to [`LATEST_VERSION`]; returns the version found.
pub fn migrate(conn: &mut Connection) -> Result<i64> {
    let found = read_version(conn)?;
    if found > LATEST_VERSION {
        return Err(Error::DatabaseFromFuture { found, supported: LATEST_VERSION });
    }
    if found == LATEST_VERSION {
        return Ok(found);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read inside the write lock: another connection may have migrated.
    let found_locked = read_version(&tx)?;
    for step in &STEPS[found_locked.max(0) as usize..] {
        step(&tx)?;
    }
    tx.pragma_update(None, "user_version", LATEST_VERSION)?;
    tx.commit()?;
    Ok(found)
}

fn to_v2(tx: &rusqlite::Transaction) -> Result<()> {
    tx.execute_batch(include_str!("schema_v2.sql"))?;
    Ok(())
}

fn to_v3(tx: &rusqlite::Transaction) -> Result<()> {
    // Previews (thumbnails or renditions) sent ahead of originals on metered links.
    tx.execute_batch(
        "CREATE TABLE sync_previews (
             sha256         TEXT PRIMARY KEY,
             preview_sha256 TEXT NOT NULL,
             long_edge      INTEGER NOT NULL
         ) STRICT;",
    )?;
    Ok(())
}

/// Migrate only up to `target` (tests of later migrations start here).
pub fn migrate_to(conn: &mut Connection, target: i64) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = read_version(&tx)?;
    for step in &STEPS[found.max(0) as usize..target as usize] {
        step(&tx)?;
    }
    tx.pragma_update(None, "user_version", target)?;
    tx.commit()?;
    Ok(())
}

fn to_v1(tx: &rusqlite::Transaction) -> Result<()> {
    tx.execute_batch(include_str!("schema_v1.sql"))?;
    category::seed_default_table(tx)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::outbox::{self, NewOperation};
    use gridwork_protocol::OperationKind;

    #[test]
    fn upgrading_keeps_unsent_outbox_items_and_refuses_the_future() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate_to(&mut conn, 1).unwrap();
        assert_eq!(read_version(&conn).unwrap(), 1);
        let now = Timestamp { device_ms: 1, corrected_ms: 1 };
        let op = NewOperation {
            entity_id: uuid::Uuid::now_v7(),
            entity_kind: "incident",
            kind: OperationKind::SubmitIncident,
            payload: serde_json::json!({"x": 1}),
            depends_on: None,
            blob: None,
        };
        let op_id = outbox::enqueue(&conn, &op, now).unwrap();
        let before = outbox::unsent(&conn).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 1, "found version 1");
        assert_eq!(read_version(&conn).unwrap(), LATEST_VERSION);
        assert_eq!(outbox::unsent(&conn).unwrap(), before, "unsent items carried over unchanged");
        assert_eq!(outbox::get(&conn, op_id).unwrap().unwrap().payload, serde_json::json!({"x": 1}));
        // v2's tables exist.
        conn.execute("INSERT INTO sync_uploads (sha256, size, uploaded_bytes, updated_ms) VALUES ('a', 1, 0, 0)", []).unwrap();
        // A version from the future is refused, untouched.
        conn.pragma_update(None, "user_version", LATEST_VERSION + 1).unwrap();
        assert_eq!(migrate(&mut conn).unwrap_err().code(), "database_from_future");
        assert_eq!(read_version(&conn).unwrap(), LATEST_VERSION + 1);
    }
}
