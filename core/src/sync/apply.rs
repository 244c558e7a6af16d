//! Applying pulled changes to the device store. Server state never lands
//! on an entity that still has unacknowledged local operations: it waits in
//! `remote_pending` and is applied once they are acknowledged.

use gridwork_protocol::api::{Change, ChangeBody, IncidentView};
use gridwork_protocol::{CaseState, GridTier, ManagementLevel, Named};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::error::Result;
use crate::model::IncidentStatus;

/// What a page changed, for observers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub incidents: u32,
    pub categories: u32,
    pub grids: u32,
    pub deferred: u32,
}

fn has_unacknowledged(conn: &Connection, entity_id: &str) -> Result<bool> {
    // The incident's own operations and its photos' uploads still on their
    // way. A parked one is not: it waits for the user, and the server's
    // state is what explains it.
    let count: i64 = conn.query_row(
        "SELECT count(*) FROM outbox WHERE state IN ('pending', 'in_flight')
           AND (entity_id = ?1 OR entity_id IN (SELECT id FROM photos WHERE incident_id = ?1))",
        [entity_id],
        |r| r.get(0),
    )?;
    Ok(count > 0)
}

pub fn apply_page(conn: &Connection, changes: &[Change]) -> Result<Applied> {
    let mut applied = Applied::default();
    for change in changes {
        match (change.entity_kind.as_str(), &change.body) {
            ("category", ChangeBody::Upsert { data }) => {
                upsert_category(conn, data)?;
                applied.categories += 1;
            }
            ("grid", ChangeBody::Upsert { data }) => {
                upsert_grid(conn, data)?;
                applied.grids += 1;
            }
            ("incident", body) => {
                if has_unacknowledged(conn, &change.entity_id)? {
                    let data = match body {
                        ChangeBody::Upsert { data } => data.clone(),
                        ChangeBody::Remove => Value::Null,
                    };
                    conn.execute(
                        "INSERT INTO remote_pending (entity_id, data) VALUES (?1, ?2) ON CONFLICT (entity_id) DO UPDATE SET data = ?2",
                        params![change.entity_id, data.to_string()],
                    )?;
                    applied.deferred += 1;
                    continue;
                }
                apply_incident(conn, &change.entity_id, body)?;
                applied.incidents += 1;
            }
            // Kinds a newer server sends that this build does not know.
            _ => {}
        }
    }
    Ok(applied)
}

/// Apply deferred server state for entities whose local operations are now
/// all acknowledged. Returns how many were applied.
pub fn apply_deferred(conn: &Connection) -> Result<u32> {
    let pending: Vec<(String, String)> = conn
        .prepare("SELECT entity_id, data FROM remote_pending")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut count = 0;
    for (id, data) in pending {
        if has_unacknowledged(conn, &id)? {
            continue;
        }
        let value: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
        let body = if value.is_null() { ChangeBody::Remove } else { ChangeBody::Upsert { data: value } };
        apply_incident(conn, &id, &body)?;
        conn.execute("DELETE FROM remote_pending WHERE entity_id = ?1", [&id])?;
        count += 1;
    }
    Ok(count)
}

fn apply_incident(conn: &Connection, id: &str, body: &ChangeBody) -> Result<()> {
    let data = match body {
        ChangeBody::Remove => {
            // Out of this user's view now. Keep our own reports; forget others.
            conn.execute("DELETE FROM photos WHERE incident_id = ?1 AND incident_id IN (SELECT id FROM incidents WHERE server_view IS NOT NULL AND submitted_device_ms IS NULL)", [id])?;
            conn.execute("DELETE FROM incidents WHERE id = ?1 AND server_view IS NOT NULL AND submitted_device_ms IS NULL", [id])?;
            return Ok(());
        }
        ChangeBody::Upsert { data } => data,
    };
    // A state a newer server added shows as reported instead of hiding the case.
    let mut readable = data.clone();
    if readable.get("state").and_then(Value::as_str).is_some_and(|state| CaseState::parse(state).is_none()) {
        readable["state"] = CaseState::Reported.as_str().into();
    }
    let Ok(view) = serde_json::from_value::<IncidentView>(readable) else {
        return Ok(()); // a shape this build cannot read; the next version of it may be
    };
    let known: Option<Option<i64>> = conn.query_row("SELECT server_version FROM incidents WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    let category: Option<String> =
        conn.query_row("SELECT code FROM categories WHERE code = ?1", [&view.category_code], |r| r.get(0)).optional()?;
    let status = IncidentStatus::Case(view.state).as_str();
    match known {
        Some(version) if version.is_some_and(|v| v >= view.version) => {}
        Some(_) => {
            conn.execute(
                "UPDATE incidents SET status = ?2, server_version = ?3, server_view = ?4, grid_code = coalesce(?5, grid_code) WHERE id = ?1",
                params![id, status, view.version, data.to_string(), view.grid_code],
            )?;
        }
        None => {
            conn.execute(
                "INSERT INTO incidents (id, status, category_code, description, address, lat, lon, accuracy_m, grid_code, reporter,
                     created_device_ms, created_corrected_ms, updated_device_ms, updated_corrected_ms, server_version, server_view)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?12, ?13, ?14)",
                params![
                    id,
                    status,
                    category,
                    view.description,
                    view.address,
                    view.location.map(|l| l.lat),
                    view.location.map(|l| l.lon),
                    view.location.and_then(|l| l.accuracy_m),
                    view.grid_code,
                    view.reporter,
                    view.reported_at_ms,
                    view.updated_at_ms,
                    view.version,
                    data.to_string(),
                ],
            )?;
        }
    }
    Ok(())
}

fn text(data: &Value, key: &str) -> Option<String> {
    data.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn upsert_category(conn: &Connection, data: &Value) -> Result<()> {
    let Some(code) = text(data, "code") else { return Ok(()) };
    let parent = text(data, "parent_code");
    if let Some(parent) = &parent {
        conn.execute("INSERT INTO categories (code, name_zh, name_en, sort_order) VALUES (?1, ?1, ?1, 0) ON CONFLICT DO NOTHING", [parent])?;
    }
    conn.execute(
        "INSERT INTO categories (code, parent_code, name_zh, name_en, sort_order, active) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (code) DO UPDATE SET parent_code = ?2, name_zh = ?3, name_en = ?4, sort_order = ?5, active = ?6",
        params![
            code,
            parent,
            text(data, "name_zh").unwrap_or_default(),
            text(data, "name_en").unwrap_or_default(),
            data.get("sort_order").and_then(Value::as_i64).unwrap_or(0),
            data.get("active").and_then(Value::as_bool).unwrap_or(true) as i64,
        ],
    )?;
    Ok(())
}

fn upsert_grid(conn: &Connection, data: &Value) -> Result<()> {
    let Some(code) = text(data, "code") else { return Ok(()) };
    let tier = text(data, "tier").as_deref().and_then(GridTier::parse).unwrap_or(GridTier::Grid).as_str();
    let level = text(data, "level").as_deref().and_then(ManagementLevel::parse).map(ManagementLevel::as_str);
    let boundary = data.get("boundary").filter(|b| !b.is_null());
    let bbox = boundary.and_then(|b| crate::geo::Boundary::from_json(b).ok()).map(|b| b.bounding_box());
    let parent = text(data, "parent_code");
    if let Some(parent) = &parent {
        conn.execute("INSERT INTO grids (code, tier, name) VALUES (?1, 'community', ?1) ON CONFLICT DO NOTHING", [parent])?;
    }
    conn.execute(
        "INSERT INTO grids (code, tier, name, parent_code, management_level, boundary_geojson, min_lon, min_lat, max_lon, max_lat)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (code) DO UPDATE SET tier = ?2, name = ?3, parent_code = ?4, management_level = ?5, boundary_geojson = ?6,
             min_lon = ?7, min_lat = ?8, max_lon = ?9, max_lat = ?10",
        params![
            code,
            tier,
            text(data, "name").unwrap_or_else(|| code.clone()),
            parent,
            level,
            boundary.filter(|_| bbox.is_some()).map(Value::to_string),
            bbox.map(|b| b.min_lon),
            bbox.map(|b| b.min_lat),
            bbox.map(|b| b.max_lon),
            bbox.map(|b| b.max_lat),
        ],
    )?;
    Ok(())
}
