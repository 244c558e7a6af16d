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
const STEPS: &[fn(&rusqlite::Transaction) -> Result<()>] = &[to_v1, to_v2];

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
