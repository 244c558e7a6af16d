//! The append-only local audit trail (归档留痕): who did what to an incident,
//! when and where. Triggers in the schema refuse UPDATE and DELETE, and the
//! trail is hash-chained ([`gridwork_protocol::trail`]): an entry edited in
//! the database file afterwards is named by [`verify`].

use gridwork_protocol::trail::{self, Sealed, TrailCheck};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::geo::GeoPoint;

#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub action: String,
    pub actor: String,
    pub at: Timestamp,
    pub location: Option<GeoPoint>,
    /// Small JSON object with action-specific facts (never free text).
    pub detail: Option<String>,
}

pub fn append(
    conn: &Connection,
    incident_id: Uuid,
    action: &str,
    actor: &str,
    at: Timestamp,
    location: Option<GeoPoint>,
    detail: Option<serde_json::Value>,
) -> Result<()> {
    let row = Row {
        incident_id: incident_id.to_string(),
        action: action.to_owned(),
        actor: actor.to_owned(),
        device_ms: at.device_ms,
        corrected_ms: at.corrected_ms,
        lat: location.map(|l| l.lat),
        lon: location.map(|l| l.lon),
        detail: detail.map(|d| d.to_string()),
    };
    insert(conn, &row)
}

/// An entry's facts as stored.
struct Row {
    incident_id: String,
    action: String,
    actor: String,
    device_ms: i64,
    corrected_ms: i64,
    lat: Option<f64>,
    lon: Option<f64>,
    detail: Option<String>,
}

impl Row {
    const COLUMNS: &'static str = "incident_id, action, actor, device_ms, corrected_ms, lat, lon, detail";

    fn read(r: &rusqlite::Row) -> rusqlite::Result<Row> {
        Ok(Row {
            incident_id: r.get(0)?,
            action: r.get(1)?,
            actor: r.get(2)?,
            device_ms: r.get(3)?,
            corrected_ms: r.get(4)?,
            lat: r.get(5)?,
            lon: r.get(6)?,
            detail: r.get(7)?,
        })
    }

    /// What the chain hashes, in a fixed order.
    fn facts(&self) -> serde_json::Value {
        serde_json::json!([self.incident_id, self.action, self.actor, self.device_ms, self.corrected_ms, self.lat, self.lon, self.detail])
    }
}

/// Append an entry linked to the last one (the chain's start if the last
/// is unchained or there is none).
fn insert(conn: &Connection, row: &Row) -> Result<()> {
    let last: Option<Option<String>> = conn.prepare_cached("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1")?.query_row([], |r| r.get(0)).optional()?;
    let prev = last.flatten().unwrap_or_else(|| trail::GENESIS.to_owned());
    let hash = trail::entry_hash(&prev, &row.facts());
    conn.prepare_cached(
        "INSERT INTO audit (incident_id, action, actor, device_ms, corrected_ms, lat, lon, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![row.incident_id, row.action, row.actor, row.device_ms, row.corrected_ms, row.lat, row.lon, row.detail, prev, hash])?;
    Ok(())
}

/// Copy an incident's trail from another store into this one's chain, in
/// order (work moving between accounts, see `adopt`).
pub fn copy_trail(source: &Connection, target: &Connection, incident_id: Uuid) -> Result<u64> {
    let sql = format!("SELECT {} FROM audit WHERE incident_id = ?1 ORDER BY seq", Row::COLUMNS);
    let rows = source.prepare(&sql)?.query_map([incident_id.to_string()], Row::read)?.collect::<rusqlite::Result<Vec<_>>>()?;
    for row in &rows {
        insert(target, row)?;
    }
    Ok(rows.len() as u64)
}

/// Walk the whole trail in order and check every link.
pub fn verify(conn: &Connection) -> Result<TrailCheck> {
    let sql = format!("SELECT {}, seq, prev_hash, hash FROM audit ORDER BY seq", Row::COLUMNS);
    let mut stmt = conn.prepare(&sql)?;
    // Streamed: a trail of years is walked without holding it.
    let mut failed = None;
    let entries = stmt
        .query_map([], |r| Ok(Sealed { facts: Row::read(r)?.facts(), seq: r.get(8)?, prev_hash: r.get(9)?, hash: r.get(10)? }))?
        .map_while(|entry| entry.map_err(|e| failed = Some(e)).ok());
    let check = trail::verify(entries);
    match failed {
        Some(error) => Err(error.into()),
        None => Ok(check),
    }
}

pub fn for_incident(conn: &Connection, incident_id: Uuid) -> Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT action, actor, device_ms, corrected_ms, lat, lon, detail FROM audit WHERE incident_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([incident_id.to_string()], |r| {
        let lat: Option<f64> = r.get(4)?;
        let lon: Option<f64> = r.get(5)?;
        Ok(AuditEntry {
            action: r.get(0)?,
            actor: r.get(1)?,
            at: Timestamp { device_ms: r.get(2)?, corrected_ms: r.get(3)? },
            location: lat.zip(lon).map(|(lat, lon)| GeoPoint { lat, lon, accuracy_m: None }),
            detail: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
