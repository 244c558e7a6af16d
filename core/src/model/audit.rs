//! The append-only local audit trail (归档留痕): who did what to an incident,
//! when and where. Triggers in the schema refuse UPDATE and DELETE.

use rusqlite::{Connection, params};
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
    conn.prepare_cached(
        "INSERT INTO audit (incident_id, action, actor, device_ms, corrected_ms, lat, lon, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        incident_id.to_string(),
        action,
        actor,
        at.device_ms,
        at.corrected_ms,
        location.map(|l| l.lat),
        location.map(|l| l.lon),
        detail.map(|d| d.to_string()),
    ])?;
    Ok(())
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
