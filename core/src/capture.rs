//! Incident capture (信息采集): drafts, photos, submission, listing. Every
//! function runs on a connection or transaction the facade hands it; each
//! user action writes its effect, its audit entry and (on submit) its outbox
//! operations in one transaction.

use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::geo::{GeoPoint, validate_point};
use crate::model::{Incident, IncidentFilter, IncidentStatus, Photo, SyncState, audit, category, grid, incident, read_name};
use crate::outbox::{self, NewOperation, OperationState};
use crate::photo::{IngestedPhoto, PhotoFormat, PhotoStore};
use crate::text;
use gridwork_protocol::limits::{ADDRESS_MAX_CHARS, CATEGORY_CODE_MAX_CHARS, DESCRIPTION_MAX_CHARS, MAX_PHOTOS_PER_STEP};
use gridwork_protocol::{Named, OperationKind, PhotoRef, PhotoRole, ResolvedOnSpot, SubmitIncident, UploadPhoto};

/// The editable fields of a draft. A draft may be incomplete (no category
/// yet, empty description): it is saved at once so nothing is lost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DraftFields {
    pub category_code: Option<String>,
    pub description: String,
    pub address: Option<String>,
    pub location: Option<GeoPoint>,
}

/// Fields after validation, ready to store.
struct CleanFields {
    category_code: Option<String>,
    description: String,
    address: Option<String>,
    location: Option<GeoPoint>,
    grid_code: Option<String>,
}

fn clean(conn: &Connection, fields: &DraftFields) -> Result<CleanFields> {
    let description = text::validate("description", &fields.description, DESCRIPTION_MAX_CHARS)?;
    let address = fields
        .address
        .as_deref()
        .map(|a| text::validate("address", a, ADDRESS_MAX_CHARS))
        .transpose()?
        .filter(|a| !a.is_empty());
    let category_code = match fields.category_code.as_deref() {
        Some(code) => {
            let code = text::validate("category_code", code, CATEGORY_CODE_MAX_CHARS)?;
            category::require_active(conn, &code)?;
            Some(code)
        }
        None => None,
    };
    let location = fields.location.map(validate_point).transpose()?;
    let grid_code = match location {
        Some(point) => grid::locate(conn, point)?,
        None => None,
    };
    Ok(CleanFields { category_code, description, address, location, grid_code })
}

pub fn create_draft(conn: &Connection, fields: &DraftFields, actor: &str, now: Timestamp, actor_at: Option<GeoPoint>) -> Result<Uuid> {
    let clean = clean(conn, fields)?;
    let id = Uuid::now_v7();
    let draft = Incident {
        id,
        status: IncidentStatus::Draft,
        category_code: clean.category_code.clone(),
        description: clean.description,
        address: clean.address,
        location: clean.location,
        grid_code: clean.grid_code.clone(),
        reporter: actor.to_owned(),
        created_at: now,
        updated_at: now,
        submitted_at: None,
        photo_count: 0,
    };
    incident::insert(conn, &draft, None)?;
    audit::append(conn, id, "created", actor, now, actor_at.or(clean.location), Some(serde_json::json!({
        "category_code": clean.category_code, "grid_code": clean.grid_code,
    })))?;
    Ok(id)
}

pub fn update_draft(conn: &Connection, id: Uuid, fields: &DraftFields, actor: &str, now: Timestamp, actor_at: Option<GeoPoint>) -> Result<()> {
    require_status(conn, id, IncidentStatus::Draft, "edit")?;
    let clean = clean(conn, fields)?;
    conn.prepare_cached(
        "UPDATE incidents SET category_code = ?2, description = ?3, address = ?4, lat = ?5, lon = ?6, accuracy_m = ?7,
             grid_code = ?8, updated_device_ms = ?9, updated_corrected_ms = ?10
         WHERE id = ?1",
    )?
    .execute(params![
        id.to_string(),
        clean.category_code,
        clean.description,
        clean.address,
        clean.location.map(|l| l.lat),
        clean.location.map(|l| l.lon),
        clean.location.and_then(|l| l.accuracy_m),
        clean.grid_code,
        now.device_ms,
        now.corrected_ms,
    ])?;
    audit::append(conn, id, "edited", actor, now, actor_at, Some(serde_json::json!({
        "category_code": clean.category_code, "grid_code": clean.grid_code,
    })))
}

/// A new draft correcting the user's own rejected report (件件有回音): its
/// text, address and location copied, linked to the report it resubmits.
/// Photos are not copied: the correction usually needs new ones.
pub fn resubmit(conn: &Connection, rejected: Uuid, username: &str, actor: &str, now: Timestamp, actor_at: Option<GeoPoint>) -> Result<Uuid> {
    require_status(conn, rejected, IncidentStatus::Case(gridwork_protocol::CaseState::Rejected), "resubmit")?;
    if !crate::model::task::is_own_report(conn, rejected, username)? {
        return Err(Error::InvalidState { state: "rejected".into(), action: "resubmit someone else's report" });
    }
    let original = get(conn, rejected)?;
    let fields = DraftFields {
        // A code retired since stays out; the user picks a current one.
        category_code: original.category_code.filter(|code| category::require_active(conn, code).is_ok()),
        description: original.description,
        address: original.address,
        location: original.location,
    };
    let id = create_draft(conn, &fields, actor, now, actor_at)?;
    conn.execute("UPDATE incidents SET resubmission_of = ?2 WHERE id = ?1", params![id.to_string(), rejected.to_string()])?;
    audit::append(conn, id, "resubmission_of", actor, now, actor_at, Some(serde_json::json!({ "rejected": rejected })))?;
    Ok(id)
}

/// Returns the current status, or `NotFound`.
pub fn status_of(conn: &Connection, id: Uuid) -> Result<IncidentStatus> {
    let status: Option<Option<IncidentStatus>> = conn
        .prepare_cached("SELECT status FROM incidents WHERE id = ?1")?
        .query_row([id.to_string()], |r| read_name(r, 0))
        .optional()?;
    let status = status.ok_or(Error::NotFound { what: "incident" })?;
    status.ok_or_else(|| Error::Database("unknown incident status in database".into()))
}

pub fn require_status(conn: &Connection, id: Uuid, wanted: IncidentStatus, action: &'static str) -> Result<()> {
    let status = status_of(conn, id)?;
    if status != wanted {
        return Err(Error::InvalidState { state: status.as_str().to_owned(), action });
    }
    Ok(())
}

/// Store the row of an ingested photo. Attaching the same bytes twice to one
/// incident returns the existing photo.
pub fn insert_photo(conn: &Connection, incident_id: Uuid, photo: &IngestedPhoto, actor: &str, now: Timestamp, actor_at: Option<GeoPoint>) -> Result<Uuid> {
    insert_photo_as(conn, incident_id, photo, PhotoRole::Evidence, actor, now, actor_at)
}

/// Attach a photo to a draft as evidence, or as an after-photo of a
/// problem resolved on the spot (现场解决).
#[allow(clippy::too_many_arguments)] // the photo, its role, who, when and where
pub fn insert_photo_as(
    conn: &Connection,
    incident_id: Uuid,
    photo: &IngestedPhoto,
    role: PhotoRole,
    actor: &str,
    now: Timestamp,
    actor_at: Option<GeoPoint>,
) -> Result<Uuid> {
    require_status(conn, incident_id, IncidentStatus::Draft, "attach a photo")?;
    if role == PhotoRole::Verification {
        return Err(Error::StepInvalid { code: "invalid_payload", message: "a report carries evidence and after-photos, not verification photos".to_owned() });
    }
    let count: i64 = conn.query_row("SELECT count(*) FROM photos WHERE incident_id = ?1", [incident_id.to_string()], |r| r.get(0))?;
    let same: bool = conn
        .query_row("SELECT 1 FROM photos WHERE incident_id = ?1 AND sha256 = ?2", params![incident_id.to_string(), photo.sha256], |_| Ok(()))
        .optional()?
        .is_some();
    if count as usize >= MAX_PHOTOS_PER_STEP && !same {
        return Err(Error::TooManyPhotos { max: MAX_PHOTOS_PER_STEP });
    }
    let existing: Option<String> = conn
        .query_row(
            "SELECT id FROM photos WHERE incident_id = ?1 AND sha256 = ?2",
            params![incident_id.to_string(), photo.sha256],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(existing) = existing {
        return Uuid::parse_str(&existing).map_err(|_| Error::InvalidId);
    }
    let id = insert_photo_row(conn, incident_id, photo, role, now)?;
    touch(conn, incident_id, now)?;
    audit::append(conn, incident_id, "photo_attached", actor, now, actor_at, Some(serde_json::json!({
        "photo_id": id, "sha256": photo.sha256, "role": role.as_str(),
    })))?;
    Ok(id)
}

/// The row of a new photo of an incident, last in its order.
pub fn insert_photo_row(conn: &Connection, incident_id: Uuid, photo: &IngestedPhoto, role: PhotoRole, now: Timestamp) -> Result<Uuid> {
    let id = Uuid::now_v7();
    let position: i64 = conn.query_row(
        "SELECT coalesce(max(position), -1) + 1 FROM photos WHERE incident_id = ?1",
        [incident_id.to_string()],
        |r| r.get(0),
    )?;
    conn.prepare_cached(
        "INSERT INTO photos (id, incident_id, position, sha256, byte_size, mime_type, width, height, orientation,
             taken_at_ms, exif_lat, exif_lon, dhash, thumb_width, thumb_height, attached_device_ms, attached_corrected_ms, role)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    )?
    .execute(params![
        id.to_string(),
        incident_id.to_string(),
        position,
        photo.sha256,
        photo.byte_size as i64,
        photo.format.mime_type(),
        photo.width,
        photo.height,
        photo.exif.orientation,
        photo.exif.taken_at_ms,
        photo.exif.location.map(|l| l.lat),
        photo.exif.location.map(|l| l.lon),
        photo.dhash as i64,
        photo.thumbnail_width,
        photo.thumbnail_height,
        now.device_ms,
        now.corrected_ms,
        role.as_str(),
    ])?;
    Ok(id)
}

pub fn remove_photo(conn: &Connection, incident_id: Uuid, photo_id: Uuid, actor: &str, now: Timestamp, actor_at: Option<GeoPoint>) -> Result<()> {
    require_status(conn, incident_id, IncidentStatus::Draft, "remove a photo")?;
    let removed = conn.execute(
        "DELETE FROM photos WHERE id = ?1 AND incident_id = ?2",
        params![photo_id.to_string(), incident_id.to_string()],
    )?;
    if removed == 0 {
        return Err(Error::NotFound { what: "photo" });
    }
    touch(conn, incident_id, now)?;
    audit::append(conn, incident_id, "photo_removed", actor, now, actor_at, Some(serde_json::json!({ "photo_id": photo_id })))
}

fn touch(conn: &Connection, id: Uuid, now: Timestamp) -> Result<()> {
    conn.prepare_cached("UPDATE incidents SET updated_device_ms = ?2, updated_corrected_ms = ?3 WHERE id = ?1")?
        .execute(params![id.to_string(), now.device_ms, now.corrected_ms])?;
    Ok(())
}

/// Submit a draft: its status, audit entry and outbox operations (the
/// incident text first, then one upload per photo depending on it) commit
/// together in the caller's transaction.
pub fn submit(conn: &Connection, id: Uuid, actor: &str, now: Timestamp, actor_at: Option<GeoPoint>) -> Result<()> {
    submit_with(conn, id, None, actor, now, actor_at)
}

/// Submit a draft as a problem the reporter resolved on the spot (现场解决):
/// its after-photos and the note say what was done; the server starts the
/// case handled, for verification.
pub fn submit_resolved(conn: &Connection, id: Uuid, note: &str, actor: &str, now: Timestamp, actor_at: Option<GeoPoint>) -> Result<()> {
    let note = text::validate("note", note, DESCRIPTION_MAX_CHARS)?;
    if note.trim().is_empty() {
        return Err(Error::StepInvalid { code: "note_required", message: "say what was done on the spot".to_owned() });
    }
    submit_with(conn, id, Some(&note), actor, now, actor_at)
}

fn submit_with(conn: &Connection, id: Uuid, resolution: Option<&str>, actor: &str, now: Timestamp, actor_at: Option<GeoPoint>) -> Result<()> {
    require_status(conn, id, IncidentStatus::Draft, "submit")?;
    let incident = get(conn, id)?;
    let category_code = incident.category_code.clone().ok_or(Error::Incomplete("choose a category before submitting"))?;
    // The table may have changed since the draft was saved: a retired code
    // would only be refused by the server, after the user walked away.
    category::require_active(conn, &category_code)?;
    let photos = photos(conn, id, None)?;
    if photos.len() > MAX_PHOTOS_PER_STEP {
        return Err(Error::TooManyPhotos { max: MAX_PHOTOS_PER_STEP });
    }
    let (after, evidence): (Vec<&Photo>, Vec<&Photo>) = photos.iter().partition(|p| p.role == PhotoRole::After);
    let resolved_on_spot = match resolution {
        Some(_) if after.is_empty() => {
            return Err(Error::StepInvalid { code: "after_photo_required", message: "add an after-photo of what was done".to_owned() });
        }
        Some(note) => Some(ResolvedOnSpot { note: note.to_owned(), after_photos: after.iter().map(|p| photo_ref(p)).collect() }),
        None if !after.is_empty() => return Err(Error::Incomplete("this draft has after-photos: submit it as resolved on the spot")),
        None => None,
    };
    // As the server counts it: the evidence, not the after-photos.
    if incident.description.is_empty() && evidence.is_empty() {
        return Err(Error::Incomplete("add a description or a photo before submitting"));
    }
    conn.prepare_cached(
        "UPDATE incidents SET status = 'submitted', submitted_device_ms = ?2, submitted_corrected_ms = ?3,
             updated_device_ms = ?2, updated_corrected_ms = ?3 WHERE id = ?1",
    )?
    .execute(params![id.to_string(), now.device_ms, now.corrected_ms])?;
    let payload = SubmitIncident {
        incident_id: id,
        category_code,
        description: incident.description.clone(),
        address: incident.address.clone(),
        location: incident.location,
        grid_code: incident.grid_code.clone(),
        captured_at: incident.created_at,
        submitted_at: now,
        photos: evidence.iter().map(|p| photo_ref(p)).collect(),
        resolved_on_spot,
        resubmission_of: conn
            .query_row("SELECT resubmission_of FROM incidents WHERE id = ?1", [id.to_string()], |r| r.get::<_, Option<String>>(0))?
            .and_then(|r| Uuid::parse_str(&r).ok()),
    };
    let submit_op = outbox::enqueue(
        conn,
        &NewOperation {
            entity_id: id,
            entity_kind: "incident",
            kind: OperationKind::SubmitIncident,
            payload: serde_json::to_value(&payload).expect("payload serializes"),
            depends_on: None,
            blob: None,
        },
        now,
    )?;
    enqueue_uploads(conn, id, &photos, submit_op, now)?;
    audit::append(conn, id, "submitted", actor, now, actor_at, Some(serde_json::json!({
        "op_id": submit_op, "photos": photos.len(), "resolved_on_spot": resolution.is_some(),
    })))
}

/// A photo as an operation announces it.
pub fn photo_ref(photo: &Photo) -> PhotoRef {
    PhotoRef {
        photo_id: photo.id,
        sha256: photo.sha256.clone(),
        byte_size: photo.byte_size,
        mime_type: photo.mime_type.clone(),
        width: photo.width,
        height: photo.height,
        taken_at_ms: photo.taken_at_ms,
        location: photo.exif_location,
        dhash: format!("{:016x}", photo.dhash),
    }
}

/// One upload per photo, each after the operation that announces it.
pub fn enqueue_uploads(conn: &Connection, incident_id: Uuid, photos: &[Photo], announced_by: Uuid, now: Timestamp) -> Result<()> {
    // Each photo is its own entity: uploads of one incident may go in
    // parallel, and a refused upload holds back nothing but itself.
    for photo in photos {
        let upload = UploadPhoto { incident_id, photo_id: photo.id, sha256: photo.sha256.clone(), byte_size: photo.byte_size };
        outbox::enqueue(
            conn,
            &NewOperation {
                entity_id: photo.id,
                entity_kind: "photo",
                kind: OperationKind::UploadPhoto,
                payload: serde_json::to_value(&upload).expect("payload serializes"),
                depends_on: Some(announced_by),
                blob: Some((photo.sha256.clone(), photo.byte_size)),
            },
            now,
        )?;
    }
    Ok(())
}

/// Discard a draft. The row stays (status `discarded`) so the audit trail
/// keeps its subject; the photo rows go, and the sweeper removes their files.
pub fn discard(conn: &Connection, id: Uuid, actor: &str, now: Timestamp, actor_at: Option<GeoPoint>) -> Result<()> {
    require_status(conn, id, IncidentStatus::Draft, "discard")?;
    conn.execute("DELETE FROM photos WHERE incident_id = ?1", [id.to_string()])?;
    conn.execute(
        "UPDATE incidents SET status = 'discarded', updated_device_ms = ?2, updated_corrected_ms = ?3 WHERE id = ?1",
        params![id.to_string(), now.device_ms, now.corrected_ms],
    )?;
    audit::append(conn, id, "discarded", actor, now, actor_at, None)
}

const INCIDENT_COLUMNS: &str = "i.id, i.status, i.category_code, i.description, i.address, i.lat, i.lon, i.accuracy_m,
    i.grid_code, i.reporter, i.created_device_ms, i.created_corrected_ms, i.updated_device_ms, i.updated_corrected_ms,
    i.submitted_device_ms, i.submitted_corrected_ms,
    (SELECT count(*) FROM photos AS p WHERE p.incident_id = i.id)";

fn read_incident(row: &Row) -> rusqlite::Result<Incident> {
    let id: String = row.get(0)?;
    let lat: Option<f64> = row.get(5)?;
    let lon: Option<f64> = row.get(6)?;
    let submitted_device: Option<i64> = row.get(14)?;
    let submitted_corrected: Option<i64> = row.get(15)?;
    Ok(Incident {
        id: Uuid::parse_str(&id).map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))?,
        status: read_name(row, 1)?.unwrap_or(IncidentStatus::Submitted),
        category_code: row.get(2)?,
        description: row.get(3)?,
        address: row.get(4)?,
        location: lat.zip(lon).map(|(lat, lon)| GeoPoint { lat, lon, accuracy_m: row.get(7).ok().flatten() }),
        grid_code: row.get(8)?,
        reporter: row.get(9)?,
        created_at: Timestamp { device_ms: row.get(10)?, corrected_ms: row.get(11)? },
        updated_at: Timestamp { device_ms: row.get(12)?, corrected_ms: row.get(13)? },
        submitted_at: submitted_device
            .zip(submitted_corrected)
            .map(|(device_ms, corrected_ms)| Timestamp { device_ms, corrected_ms }),
        photo_count: row.get(16)?,
    })
}

pub fn get(conn: &Connection, id: Uuid) -> Result<Incident> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents AS i WHERE i.id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id.to_string()], read_incident)
        .optional()?
        .ok_or(Error::NotFound { what: "incident" })
}

pub fn list(conn: &Connection, filter: &IncidentFilter) -> Result<Vec<Incident>> {
    let mut sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents AS i WHERE 1 = 1");
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    if filter.statuses.is_empty() {
        sql.push_str(" AND i.status != 'discarded'");
    } else {
        let marks = filter
            .statuses
            .iter()
            .map(|s| {
                args.push(Box::new(s.as_str()));
                format!("?{}", args.len())
            })
            .collect::<Vec<_>>()
            .join(", ");
        sql.push_str(&format!(" AND i.status IN ({marks})"));
    }
    let mut condition = |clause: &str, value: Box<dyn rusqlite::ToSql>| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(code) = &filter.category_code {
        // A 大类 filter includes its 小类.
        condition(
            " AND (i.category_code = ? OR i.category_code IN (SELECT code FROM categories WHERE parent_code = ?))",
            Box::new(code.clone()),
        );
    }
    if let Some(code) = &filter.grid_code {
        condition(" AND i.grid_code = ?", Box::new(code.clone()));
    }
    if let Some(from) = filter.created_from_ms {
        condition(" AND i.created_corrected_ms >= ?", Box::new(from));
    }
    if let Some(before) = filter.created_before_ms {
        condition(" AND i.created_corrected_ms < ?", Box::new(before));
    }
    sql.push_str(" ORDER BY i.created_corrected_ms DESC, i.id DESC");
    if let Some(limit) = filter.limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter().map(|a| a.as_ref())), read_incident)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

const PHOTO_COLUMNS: &str = "id, incident_id, position, sha256, byte_size, mime_type, width, height, orientation, taken_at_ms,
    exif_lat, exif_lon, dhash, thumb_width, thumb_height, attached_device_ms, attached_corrected_ms, role";

fn read_photo(row: &Row, store: Option<&PhotoStore>) -> rusqlite::Result<Photo> {
    let parse = |text: String| {
        Uuid::parse_str(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
    };
    let sha256: String = row.get(3)?;
    let mime_type: String = row.get(5)?;
    let lat: Option<f64> = row.get(10)?;
    let lon: Option<f64> = row.get(11)?;
    let format = PhotoFormat::from_mime_type(&mime_type).unwrap_or(PhotoFormat::Jpeg);
    Ok(Photo {
        id: parse(row.get(0)?)?,
        incident_id: parse(row.get(1)?)?,
        position: row.get(2)?,
        original_path: store.map(|s| s.original_path(&sha256, format)).unwrap_or_default(),
        thumbnail_path: store.map(|s| s.thumbnail_path(&sha256)).unwrap_or_default(),
        sha256,
        byte_size: row.get::<_, i64>(4)? as u64,
        mime_type,
        width: row.get(6)?,
        height: row.get(7)?,
        orientation: row.get(8)?,
        taken_at_ms: row.get(9)?,
        exif_location: lat.zip(lon).map(|(lat, lon)| GeoPoint { lat, lon, accuracy_m: None }),
        dhash: row.get::<_, i64>(12)? as u64,
        thumbnail_width: row.get(13)?,
        thumbnail_height: row.get(14)?,
        attached_at: Timestamp { device_ms: row.get(15)?, corrected_ms: row.get(16)? },
        role: read_name(row, 17)?.unwrap_or(PhotoRole::Evidence),
    })
}

pub fn photos(conn: &Connection, incident_id: Uuid, store: Option<&PhotoStore>) -> Result<Vec<Photo>> {
    let sql = format!("SELECT {PHOTO_COLUMNS} FROM photos WHERE incident_id = ?1 ORDER BY position");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([incident_id.to_string()], |r| read_photo(r, store))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn photo(conn: &Connection, photo_id: Uuid, store: Option<&PhotoStore>) -> Result<Photo> {
    let sql = format!("SELECT {PHOTO_COLUMNS} FROM photos WHERE id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([photo_id.to_string()], |r| read_photo(r, store))
        .optional()?
        .ok_or(Error::NotFound { what: "photo" })
}

/// A photo of this device with these bytes, if any.
pub fn photo_by_hash(conn: &Connection, sha256: &str) -> Result<Option<Photo>> {
    let sql = format!("SELECT {PHOTO_COLUMNS} FROM photos WHERE sha256 = ?1 LIMIT 1");
    Ok(conn.prepare_cached(&sql)?.query_row([sha256], |r| read_photo(r, None)).optional()?)
}

/// Photos whose perceptual hash is within `max_distance` bits of this one's,
/// nearest first: the same scene photographed again, or a re-used picture.
pub fn similar_photos(conn: &Connection, photo_id: Uuid, max_distance: u32, store: Option<&PhotoStore>) -> Result<Vec<(Photo, u32)>> {
    let target = photo(conn, photo_id, store)?;
    let sql = format!("SELECT {PHOTO_COLUMNS} FROM photos WHERE id != ?1");
    let mut stmt = conn.prepare(&sql)?;
    let mut similar = Vec::new();
    for photo in stmt.query_map([photo_id.to_string()], |r| read_photo(r, store))? {
        let photo = photo?;
        let distance = (photo.dhash ^ target.dhash).count_ones();
        if distance <= max_distance {
            similar.push((photo, distance));
        }
    }
    similar.sort_by_key(|(p, d)| (*d, p.id));
    Ok(similar)
}

/// Whether the device still owes the server something for an incident.
pub fn sync_state(conn: &Connection, incident_id: Uuid) -> Result<SyncState> {
    let mut ops = outbox::for_entity(conn, incident_id)?;
    for photo in photos(conn, incident_id, None)? {
        ops.extend(outbox::for_entity(conn, photo.id)?);
    }
    if let Some(parked) = ops.iter().find_map(|op| op.park_reason.clone().filter(|_| op.state == OperationState::Parked)) {
        return Ok(SyncState::Parked { code: parked.code, message: parked.message });
    }
    let pending = ops.iter().filter(|op| op.state != OperationState::Acknowledged).count() as u32;
    Ok(if pending == 0 { SyncState::Synced } else { SyncState::Unsent { pending_operations: pending } })
}

/// Every photo hash a row references (for the sweeper).
pub fn referenced_hashes(conn: &Connection) -> Result<std::collections::HashSet<String>> {
    // Photos of this device's reports and steps, thumbnails of other
    // devices' photos kept for offline case screens, and the ones a person
    // fetched to look at.
    let mut stmt = conn.prepare("SELECT sha256 FROM photos UNION SELECT sha256 FROM case_thumbnails UNION SELECT sha256 FROM fetched_photos")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
