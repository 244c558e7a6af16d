//! The schema, keyed on `PRAGMA user_version`, in the shape of
//! application-services' `open_database`: a new database is created whole
//! at the latest version (`schema.sql`); an old one is upgraded one version
//! at a time (`upgrade_v2.sql`, `upgrade_v3.sql`, ...). All schema text lives
//! in those files.
//!
//! Creating or upgrading runs in one IMMEDIATE transaction, so a killed
//! process leaves either the old schema or the new one. An upgrade must
//! carry unsent outbox rows forward: steps alter or copy tables, never drop
//! outbox data.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{Error, Result};
use crate::model::category;

/// The latest schema, whole: what a new database is created with.
const LATEST_SCHEMA: &str = include_str!("schema.sql");

/// Entry `i` upgrades a database from version `i + 1` to `i + 2`.
const UPGRADES: &[&str] = &[include_str!("upgrade_v2.sql"), include_str!("upgrade_v3.sql"), include_str!("upgrade_v4.sql"), include_str!("upgrade_v5.sql"), include_str!("upgrade_v6.sql"), include_str!("upgrade_v7.sql")];

/// The schema version this build writes.
pub const LATEST_VERSION: i64 = UPGRADES.len() as i64 + 1;

pub fn read_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

fn refuse_future(found: i64) -> Result<()> {
    if found > LATEST_VERSION {
        return Err(Error::DatabaseFromFuture { found, supported: LATEST_VERSION });
    }
    Ok(())
}

/// Bring the database to [`LATEST_VERSION`]: create it if new (version 0),
/// upgrade it if old. Returns the version found.
pub fn migrate(conn: &mut Connection) -> Result<i64> {
    let found = read_version(conn)?;
    refuse_future(found)?;
    if found == LATEST_VERSION {
        return Ok(found);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read inside the write lock: another connection may have migrated.
    let found_locked = read_version(&tx)?;
    refuse_future(found_locked)?;
    if found_locked == 0 {
        create_latest(&tx)?;
    } else {
        for version in found_locked..LATEST_VERSION {
            upgrade_from(&tx, version)?;
        }
    }
    tx.pragma_update(None, "user_version", LATEST_VERSION)?;
    tx.commit()?;
    Ok(found)
}

fn create_latest(tx: &Transaction) -> Result<()> {
    log::info!("store: creating schema v{LATEST_VERSION}");
    tx.execute_batch(LATEST_SCHEMA)?;
    category::seed_default_table(tx)?;
    Ok(())
}

/// One step: `version` to `version + 1`.
fn upgrade_from(tx: &Transaction, version: i64) -> Result<()> {
    log::info!("store: upgrading schema v{version} to v{}", version + 1);
    tx.execute_batch(UPGRADES[(version - 1) as usize])?;
    Ok(())
}

/// A database at an older version, for tests of the upgrades: version 1
/// as it shipped, then upgraded up to `target`.
#[cfg(test)]
pub(crate) fn create_at(conn: &mut Connection, target: i64) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    assert_eq!(read_version(&tx)?, 0, "starts from an empty database");
    tx.execute_batch(include_str!("schema_v1.sql"))?;
    category::seed_default_table(&tx)?;
    for version in 1..target {
        upgrade_from(&tx, version)?;
    }
    tx.pragma_update(None, "user_version", target)?;
    tx.commit()?;
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
        create_at(&mut conn, 1).unwrap();
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

    /// Every table's columns, every index's columns and every trigger, in a
    /// form that does not depend on how the schema was reached (an ALTER
    /// TABLE leaves different CREATE text than a CREATE with the column).
    fn shape(conn: &Connection) -> Vec<String> {
        let mut shape = Vec::new();
        let mut objects = conn.prepare("SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").unwrap();
        let objects: Vec<(String, String, String)> =
            objects.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<rusqlite::Result<_>>().unwrap();
        for (kind, name, table) in objects {
            let pragma = match kind.as_str() {
                "table" => "table_xinfo",
                "index" => "index_xinfo",
                _ => {
                    shape.push(format!("{kind} {name} on {table}"));
                    continue;
                }
            };
            let mut columns = conn.prepare(&format!("SELECT * FROM pragma_{pragma}(?1)")).unwrap();
            let count = columns.column_count();
            let rows = columns
                .query_map([&name], |r| (0..count).map(|i| r.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}"))).collect::<rusqlite::Result<Vec<_>>>())
                .unwrap();
            for row in rows {
                shape.push(format!("{kind} {name} on {table}: {}", row.unwrap().join(" ")));
            }
        }
        shape
    }

    #[test]
    fn a_created_database_and_an_upgraded_one_have_the_same_schema() {
        let mut created = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut created).unwrap(), 0, "new database");
        let mut upgraded = Connection::open_in_memory().unwrap();
        create_at(&mut upgraded, 1).unwrap();
        assert_eq!(migrate(&mut upgraded).unwrap(), 1);
        assert_eq!(read_version(&created).unwrap(), read_version(&upgraded).unwrap());
        assert_eq!(shape(&created), shape(&upgraded));
        let categories = "SELECT code, parent_code, name_zh, name_en, sort_order, active FROM categories ORDER BY code";
        let rows = |conn: &Connection| -> Vec<String> {
            let mut stmt = conn.prepare(categories).unwrap();
            stmt.query_map([], |r| Ok(format!("{:?}", (r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(4)?, r.get::<_, i64>(5)?))))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert_eq!(rows(&created), rows(&upgraded), "the same seeded category table");
    }

    /// A trail written before version 6 stays readable and checks as
    /// unchained entries at the start; new entries chain after them.
    #[test]
    fn an_older_trail_is_kept_and_the_chain_begins_after_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        create_at(&mut conn, 5).unwrap();
        conn.execute_batch(
            "INSERT INTO audit (incident_id, action, actor, device_ms, corrected_ms) VALUES ('i1', 'created', 'w', 1, 1), ('i1', 'submitted', 'w', 2, 2)",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let at = crate::clock::Timestamp { device_ms: 3, corrected_ms: 3 };
        crate::model::audit::append(&conn, uuid::Uuid::nil(), "synced", "w", at, None, None).unwrap();
        let check = crate::model::audit::verify(&conn).unwrap();
        assert_eq!((check.entries, check.unsealed, check.broken_at), (3, 2, None));
    }
}
