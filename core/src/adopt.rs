//! Moving unsent work from one account's store into another's.
//!
//! A phone can capture before anyone has signed in on it (a new worker with
//! no signal on the first day): those reports wait in a store of their own,
//! since a shared phone must never send one account's items under another's
//! session. When someone signs in, the shell may hand that work to the new
//! account: every report no server has seen moves, with its photos, audit
//! trail and queued operations, and goes out with that account's next sync.
//!
//! Crash-safe without a transaction across two databases: photo files are
//! copied first (durably, guarded from the target's sweeper), then the rows
//! are inserted in one target transaction (an incident already there is
//! skipped), then removed in one source transaction. A crash between the two
//! leaves the work in both stores; running the move again finds it in the
//! target and only removes it from the source. Nothing is ever in neither.

use rusqlite::types::Value;
use rusqlite::{Connection, Transaction, params_from_iter};
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::geo::GeoPoint;
use crate::model::audit;
use crate::photo::{IngestGuard, PhotoFormat, PhotoStore};

/// What a move took over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Reports and drafts moved.
    pub incidents: u32,
    /// Their queued operations (submits, photo uploads).
    pub operations: u32,
    /// Their photos (rows; the files are copied once per hash).
    pub photos: u32,
}

/// Incidents of this store that no server has seen: no server view, no
/// acknowledged operation, not discarded.
pub fn unseen_incidents(conn: &Connection) -> Result<Vec<Uuid>> {
    let mut stmt = conn.prepare(
        "SELECT id FROM incidents AS i
         WHERE i.server_version IS NULL AND i.status <> 'discarded'
           AND NOT EXISTS (SELECT 1 FROM outbox AS o WHERE o.entity_id = i.id AND o.state = 'acknowledged')
         ORDER BY i.created_corrected_ms",
    )?;
    let ids = stmt.query_map([], |row| row.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect())
}

/// The photo files (hash and format) of these incidents.
pub fn photo_files(conn: &Connection, ids: &[Uuid]) -> Result<Vec<(String, PhotoFormat)>> {
    let mut files = Vec::new();
    let mut stmt = conn.prepare("SELECT DISTINCT sha256, mime_type FROM photos WHERE incident_id = ?1")?;
    for id in ids {
        let rows = stmt.query_map([id.to_string()], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
        for row in rows {
            let (sha, mime) = row?;
            if let Some(format) = PhotoFormat::from_mime_type(&mime) {
                files.push((sha, format));
            }
        }
    }
    Ok(files)
}

/// Copy the photo files into `target`'s folder, each guarded from its
/// sweeper until the returned guards drop (after the rows commit).
pub fn copy_files(source: &PhotoStore, target: &PhotoStore, files: &[(String, PhotoFormat)]) -> Result<Vec<IngestGuard>> {
    files.iter().map(|(sha, format)| target.import_from(source, sha, *format)).collect()
}

/// Insert the incidents' rows into the target store (one transaction, the
/// caller's): the incident with `reporter` set to the adopting account, its
/// photos, its audit trail in order plus a line saying where it came from,
/// and its operations in their order (any in flight are pending again).
/// Incidents the target already has are skipped.
pub fn insert_into(
    source: &Connection,
    target: &Transaction,
    ids: &[Uuid],
    account: &str,
    now: Timestamp,
    location: Option<GeoPoint>,
) -> Result<Adopted> {
    let mut adopted = Adopted::default();
    for id in ids {
        let id_text = id.to_string();
        let exists: bool = target.query_row("SELECT EXISTS (SELECT 1 FROM incidents WHERE id = ?1)", [&id_text], |r| r.get(0))?;
        if exists {
            continue;
        }
        copy_rows(source, target, "incidents", "id = ?1", &id_text, &["reporter"], &[("reporter", Value::Text(account.to_owned()))])?;
        adopted.photos += copy_rows(source, target, "photos", "incident_id = ?1", &id_text, &[], &[])?;
        audit::copy_trail(source, target, *id)?;
        adopted.operations += copy_rows(
            source,
            target,
            "outbox",
            "(entity_id = ?1 OR entity_id IN (SELECT id FROM photos WHERE incident_id = ?1)) ORDER BY seq",
            &id_text,
            &["seq"],
            &[],
        )? as u32;
        audit::append(target, *id, "adopted", account, now, location, None)?;
        adopted.incidents += 1;
    }
    target.execute("UPDATE outbox SET state = 'pending' WHERE state = 'in_flight'", [])?;
    Ok(adopted)
}

/// Remove the moved incidents from the source store (one transaction, the
/// caller's). Their audit trail stays (it is append-only), with a line
/// saying the work moved.
pub fn remove_from(source: &Transaction, ids: &[Uuid], actor: &str, now: Timestamp) -> Result<()> {
    for id in ids {
        let id_text = id.to_string();
        source.execute(
            "DELETE FROM outbox WHERE entity_id = ?1 OR entity_id IN (SELECT id FROM photos WHERE incident_id = ?1)",
            [&id_text],
        )?;
        source.execute("DELETE FROM photos WHERE incident_id = ?1", [&id_text])?;
        source.execute("DELETE FROM incidents WHERE id = ?1", [&id_text])?;
        audit::append(source, *id, "moved_to_account", actor, now, None, None)?;
    }
    Ok(())
}

/// Copy the rows of `table` matching `filter` (with `?1` bound to `key`),
/// every column but `skip`, with `overrides` in place of their values.
/// Both stores run the same schema version (the same code opened them).
/// `table` and `filter` are constants of this module, never input.
fn copy_rows(
    source: &Connection,
    target: &Connection,
    table: &str,
    filter: &str,
    key: &str,
    skip: &[&str],
    overrides: &[(&str, Value)],
) -> Result<u32> {
    let mut select = source.prepare(&format!("SELECT * FROM {table} WHERE {filter}"))?;
    let columns: Vec<String> = select.column_names().map(str::to_owned).collect();
    let kept: Vec<usize> = (0..columns.len()).filter(|&i| !skip.contains(&columns[i].as_str())).collect();
    let mut names: Vec<&str> = kept.iter().map(|&i| columns[i].as_str()).collect();
    names.extend(overrides.iter().map(|(name, _)| *name));
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    let mut insert = target.prepare(&format!("INSERT INTO {table} ({}) VALUES ({})", names.join(", "), placeholders.join(", ")))?;
    let mut rows = select.query([key])?;
    let mut copied = 0;
    while let Some(row) = rows.next()? {
        let mut values: Vec<Value> = kept.iter().map(|&i| row.get::<_, Value>(i)).collect::<rusqlite::Result<_>>()?;
        values.extend(overrides.iter().map(|(_, value)| value.clone()));
        insert.execute(params_from_iter(values))?;
        copied += 1;
    }
    Ok(copied)
}
