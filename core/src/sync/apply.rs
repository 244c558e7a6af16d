//! Applying pulled changes to the device store. Server state never lands
//! on an entity that still has unacknowledged local operations: it waits in
//! `remote_pending` and is applied once they are acknowledged.

use gridwork_protocol::api::{CategoryView, Change, ChangeBody, IncidentView};
use gridwork_protocol::{CaseState, GridTier, GridView, Named, OperationKind};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::outbox;
use crate::model::incident::{self, ServerCopy};
use crate::model::{Category, Grid, Incident, IncidentStatus, category, grid};

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
    has_operations(conn, entity_id, "state IN ('pending', 'in_flight')")
}

/// Any operation of the incident or its photos not acknowledged, parked ones included.
fn has_unsettled(conn: &Connection, entity_id: &str) -> Result<bool> {
    has_operations(conn, entity_id, "state != 'acknowledged'")
}

/// Whether an operation of the incident, or of one of its photos, is in a
/// state `state_condition` (SQL on `state`) accepts. Looked up by entity
/// (the outbox's entity index), never by state: called for every case a
/// pull or a push's echo brings, it must not scan a backlog of thousands
/// of pending operations each time (which made pushing 10,000 reports
/// quadratic).
fn has_operations(conn: &Connection, entity_id: &str, state_condition: &str) -> Result<bool> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE entity_id = ?1 AND {state_condition})
             OR EXISTS (SELECT 1 FROM photos p WHERE p.incident_id = ?1
                          AND EXISTS (SELECT 1 FROM outbox o WHERE o.entity_id = p.id AND o.{state_condition}))"
    );
    Ok(conn.prepare_cached(&sql)?.query_row([entity_id], |r| r.get(0))?)
}

pub fn apply_page(conn: &Connection, changes: &[Change]) -> Result<Applied> {
    let mut applied = Applied::default();
    for change in changes {
        match (change.entity_kind.as_str(), &change.body) {
            // A view this build cannot read is skipped; the next version of it may be.
            ("category", ChangeBody::Upsert { data }) => {
                if let Ok(view) = CategoryView::deserialize(data) {
                    upsert_category(conn, view)?;
                }
                applied.categories += 1;
            }
            ("grid", ChangeBody::Upsert { data }) => {
                if let Ok(view) = GridView::deserialize(data) {
                    upsert_grid(conn, view)?;
                }
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

/// The server refused an operation. A refused workflow step's photos are
/// held back with it, and the state the device predicted for the case gives
/// way to the server's last view (unless other steps are still on their way).
pub fn operation_refused(conn: &Connection, op_id: Uuid) -> Result<()> {
    let Some(op) = outbox::get(conn, op_id)? else { return Ok(()) };
    if op.kind != Some(OperationKind::TransitionIncident) {
        return Ok(());
    }
    outbox::park_dependents(conn, op_id)?;
    let id = op.entity_id.to_string();
    if has_unacknowledged(conn, &id)? {
        return Ok(());
    }
    let stored: Option<Option<String>> = conn.query_row("SELECT server_view FROM incidents WHERE id = ?1", [&id], |r| r.get(0)).optional()?;
    if let Some(view_json) = stored.flatten()
        && let Ok(view) = serde_json::from_str::<IncidentView>(&view_json)
    {
        incident::record_server_state(conn, op.entity_id, &view, ServerCopy { version: view.version, view_json: &view_json })?;
    }
    Ok(())
}

fn apply_incident(conn: &Connection, id: &str, body: &ChangeBody) -> Result<()> {
    let data = match body {
        ChangeBody::Remove => {
            // A case still carrying this device's refused work (a parked step
            // and its photos) stays: nothing the user did is dropped.
            if has_unsettled(conn, id)? {
                return Ok(());
            }
            // Out of this user's view now. Keep our own reports; forget others.
            conn.execute("DELETE FROM photos WHERE incident_id = ?1 AND incident_id IN (SELECT id FROM incidents WHERE server_view IS NOT NULL AND submitted_device_ms IS NULL)", [id])?;
            conn.execute("DELETE FROM incidents WHERE id = ?1 AND server_view IS NOT NULL AND submitted_device_ms IS NULL", [id])?;
            return Ok(());
        }
        ChangeBody::Upsert { data } => data,
    };
    // A state a newer server added shows as reported instead of hiding the case.
    let view = if data.get("state").and_then(Value::as_str).is_some_and(|state| CaseState::parse(state).is_none()) {
        let mut readable = data.clone();
        readable["state"] = CaseState::Reported.as_str().into();
        IncidentView::deserialize(readable)
    } else {
        IncidentView::deserialize(data)
    };
    let Ok(view) = view else {
        return Ok(()); // a shape this build cannot read; the next version of it may be
    };
    let Ok(id) = Uuid::parse_str(id) else { return Ok(()) };
    let known: Option<Option<i64>> =
        conn.prepare_cached("SELECT server_version FROM incidents WHERE id = ?1")?.query_row([id.to_string()], |r| r.get(0)).optional()?;
    let view_json = data.to_string();
    let server = ServerCopy { version: view.version, view_json: &view_json };
    match known {
        Some(version) if version.is_some_and(|v| v >= view.version) => {}
        Some(_) => incident::record_server_state(conn, id, &view, server)?,
        None => {
            // A category this device's table does not have is left out.
            let category: Option<String> =
                conn.prepare_cached("SELECT code FROM categories WHERE code = ?1")?.query_row([&view.category_code], |r| r.get(0)).optional()?;
            let pulled = Incident {
                id,
                status: IncidentStatus::Case(view.state),
                category_code: category,
                description: view.description.clone(),
                address: view.address.clone(),
                location: view.location,
                grid_code: view.grid_code.clone(),
                reporter: view.reporter.clone(),
                created_at: Timestamp { device_ms: view.reported_at_ms, corrected_ms: view.reported_at_ms },
                updated_at: Timestamp { device_ms: view.updated_at_ms, corrected_ms: view.updated_at_ms },
                submitted_at: None,
                photo_count: 0,
            };
            incident::insert(conn, &pulled, Some((&view, server)))?;
        }
    }
    Ok(())
}

fn upsert_category(conn: &Connection, view: CategoryView) -> Result<()> {
    if let Some(parent) = &view.parent_code {
        category::ensure_parent(conn, parent)?;
    }
    let row = Category { code: view.code, parent_code: view.parent_code, name_zh: view.name_zh, name_en: view.name_en };
    category::upsert(conn, &row, view.sort_order, view.active)
}

fn upsert_grid(conn: &Connection, view: GridView) -> Result<()> {
    if let Some(parent) = &view.parent_code {
        grid::ensure_parent(conn, parent, GridTier::Community, None)?;
    }
    grid::upsert(conn, &Grid::from_view(view))
}
