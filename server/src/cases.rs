//! Cases (案卷) on the server: reports arriving from devices, the workflow
//! steps taken on them, their timeline (归档留痕) and their photos' arrival.

use gridwork_protocol::api::{IncidentView, PhotoView, Role, TimelineEntry, TransitionRequest};
use gridwork_protocol::limits::{ADDRESS_MAX_CHARS, DEPARTMENT_MAX_CHARS, DESCRIPTION_MAX_CHARS, MAX_PHOTOS_PER_STEP, PHOTO_MAX_BYTES, PHOTO_MIME_TYPES};
use gridwork_protocol::case::{self, Relation};
use gridwork_protocol::trail;
use gridwork_protocol::stats::{Stats, StatsQuery};
use gridwork_protocol::{CaseAction, CaseState, GeoPoint, Named, PhotoRef, PhotoRole, SubmitIncident};
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::{Dialect, Row, Tx, Value};
use crate::error::{Result, ServerError};
use crate::scope::{CaseScope, can_see, case_audience};
use crate::{changes, params, reference, text};

/// Why an operation was refused: stable code, human message. Returned as a
/// value (not an error) so it is recorded and replayed like any outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(code: &'static str, message: impl Into<String>) -> Rejection {
        Rejection { code, message: message.into() }
    }
}

impl From<ServerError> for Rejection {
    fn from(e: ServerError) -> Self {
        Rejection { code: e.code, message: e.message }
    }
}

pub type Outcome = std::result::Result<i64, Rejection>;

#[derive(Clone, Debug)]
struct CaseRow {
    id: String,
    state: CaseState,
    category_code: String,
    description: String,
    address: Option<String>,
    location: Option<GeoPoint>,
    grid_code: Option<String>,
    reporter_id: String,
    reporter_role: Role,
    assignee_id: Option<String>,
    department: Option<String>,
    deadline_ms: Option<i64>,
    /// The time limit of the step the case waits for besides handling:
    /// signing a dispatched case, verifying a handled one.
    step_deadline_ms: Option<i64>,
    merged_into: Option<String>,
    rating: Option<u8>,
    resubmission_of: Option<String>,
    version: i64,
    reported_at_ms: i64,
    updated_at_ms: i64,
}

impl CaseRow {
    fn scope(&self) -> CaseScope {
        CaseScope {
            state: self.state,
            grid_code: self.grid_code.clone(),
            reporter_id: self.reporter_id.clone(),
            assignee_id: self.assignee_id.clone(),
        }
    }
}

const CASE_COLUMNS: &str = "id, state, category_code, description, address, lat, lon, accuracy_m, grid_code, reporter_id,
    reporter_role, assignee_id, department, deadline_ms, merged_into, version, reported_at_ms, updated_at_ms, rating, resubmission_of,
    step_deadline_ms";

fn read_case(r: &Row) -> Result<CaseRow> {
    Ok(CaseRow {
        id: r.text(0),
        state: CaseState::parse(&r.text(1)).ok_or_else(|| ServerError::internal("unknown case state"))?,
        category_code: r.text(2),
        description: r.text(3),
        address: r.opt_text(4),
        location: r.opt_real(5).zip(r.opt_real(6)).map(|(lat, lon)| GeoPoint { lat, lon, accuracy_m: r.opt_real(7) }),
        grid_code: r.opt_text(8),
        reporter_id: r.text(9),
        reporter_role: Role::parse(&r.text(10)).unwrap_or(Role::GridWorker),
        assignee_id: r.opt_text(11),
        department: r.opt_text(12),
        deadline_ms: r.opt_int(13),
        merged_into: r.opt_text(14),
        version: r.int(15),
        reported_at_ms: r.int(16),
        updated_at_ms: r.int(17),
        rating: r.opt_int(18).and_then(|stars| u8::try_from(stars).ok()),
        resubmission_of: r.opt_text(19),
        step_deadline_ms: r.opt_int(20),
    })
}

fn load(tx: &mut dyn Tx, id: &str, for_update: bool) -> Result<Option<CaseRow>> {
    let lock = if for_update && tx.dialect() == Dialect::Postgres { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {CASE_COLUMNS} FROM incidents WHERE id = $1{lock}");
    tx.query_opt(&sql, params![id])?.as_ref().map(read_case).transpose()
}

/// `$first, $first+1, …` for `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

fn view(tx: &mut dyn Tx, case: &CaseRow) -> Result<IncidentView> {
    views(tx, std::slice::from_ref(case))?.pop().ok_or_else(|| ServerError::internal("a case without its view"))
}

/// Cases per batch of [`views`]: one bind parameter per case, well under
/// SQLite's and PostgreSQL's limits on parameters per statement.
const VIEW_BATCH: usize = 500;

/// The views of `cases`, in their order, with one query per table (photos,
/// user names, timelines) per [`VIEW_BATCH`] cases: a pull page of 500
/// cases is three queries, not two thousand.
fn views(tx: &mut dyn Tx, cases: &[CaseRow]) -> Result<Vec<IncidentView>> {
    let mut out = Vec::with_capacity(cases.len());
    for batch in cases.chunks(VIEW_BATCH) {
        out.extend(views_batch(tx, batch)?);
    }
    Ok(out)
}

fn views_batch(tx: &mut dyn Tx, cases: &[CaseRow]) -> Result<Vec<IncidentView>> {
    use std::collections::HashMap;
    if cases.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Value> = cases.iter().map(|c| Value::from(c.id.clone())).collect();
    let mut photos: HashMap<String, Vec<PhotoView>> = HashMap::new();
    let photo_rows = tx.query(
        &format!(
            "SELECT p.incident_id, p.photo_id, p.sha256, p.byte_size, p.mime_type, p.role, CASE WHEN {} THEN 1 ELSE 0 END,
                    (SELECT COUNT(*) FROM blob_previews v WHERE v.original_sha256 = p.sha256 AND {})
             FROM incident_photos p WHERE p.incident_id IN ({}) ORDER BY p.incident_id, p.position",
            shown_sql("p.sha256"),
            shown_sql("v.preview_sha256"),
            placeholders(1, ids.len()),
        ),
        &ids,
    )?;
    for r in &photo_rows {
        photos.entry(r.text(0)).or_default().push(PhotoView {
            photo_id: Uuid::parse_str(&r.text(1)).unwrap_or_default(),
            sha256: r.text(2),
            byte_size: r.int(3) as u64,
            mime_type: r.text(4),
            role: r.text(5),
            arrived: r.int(6) != 0,
            preview_arrived: r.int(7) > 0,
        });
    }
    let user_ids: Vec<Value> = {
        let mut wanted: Vec<&String> = cases.iter().flat_map(|c| std::iter::once(&c.reporter_id).chain(c.assignee_id.as_ref())).collect();
        wanted.sort();
        wanted.dedup();
        wanted.into_iter().map(|id| Value::from(id.clone())).collect()
    };
    let names: HashMap<String, String> = tx
        .query(&format!("SELECT id, username FROM users WHERE id IN ({})", placeholders(1, user_ids.len())), &user_ids)?
        .iter()
        .map(|r| (r.text(0), r.text(1)))
        .collect();
    let name = |id: &str| names.get(id).cloned().unwrap_or_default();
    let mut timelines: HashMap<String, Vec<TimelineEntry>> = HashMap::new();
    let timeline_rows = tx.query(
        &format!(
            "SELECT incident_id, seq, action, actor, from_state, to_state, note, at_ms FROM timeline
             WHERE incident_id IN ({}) ORDER BY incident_id, seq",
            placeholders(1, ids.len())
        ),
        &ids,
    )?;
    for r in &timeline_rows {
        timelines.entry(r.text(0)).or_default().push(timeline_entry(r, 1)?);
    }
    cases
        .iter()
        .map(|case| {
            let photos = photos.remove(&case.id).unwrap_or_default();
            Ok(IncidentView {
                id: Uuid::parse_str(&case.id).map_err(|_| ServerError::internal("bad case id"))?,
                state: case.state,
                category_code: case.category_code.clone(),
                description: case.description.clone(),
                address: case.address.clone(),
                location: case.location,
                grid_code: case.grid_code.clone(),
                reporter: name(&case.reporter_id),
                reporter_role: case.reporter_role,
                assignee: case.assignee_id.as_deref().map(name),
                department: case.department.clone(),
                deadline_ms: case.deadline_ms,
                step_deadline_ms: case.step_deadline_ms,
                merged_into: case.merged_into.as_deref().and_then(|m| Uuid::parse_str(m).ok()),
                rating: case.rating,
                resubmission_of: case.resubmission_of.as_deref().and_then(|m| Uuid::parse_str(m).ok()),
                missing_evidence: photos.iter().any(|p| !p.arrived),
                photos,
                version: case.version,
                reported_at_ms: case.reported_at_ms,
                updated_at_ms: case.updated_at_ms,
                timeline: timelines.remove(&case.id).unwrap_or_default(),
            })
        })
        .collect()
}

/// The views of those of `ids` the caller may see, by id, in one query per
/// table (a pull page).
pub fn load_views_for(tx: &mut dyn Tx, caller: &Caller, ids: &[String]) -> Result<std::collections::HashMap<String, IncidentView>> {
    let mut visible = Vec::with_capacity(ids.len());
    for batch in ids.chunks(VIEW_BATCH) {
        let args: Vec<Value> = batch.iter().map(|id| Value::from(id.clone())).collect();
        for row in &tx.query(&format!("SELECT {CASE_COLUMNS} FROM incidents WHERE id IN ({})", placeholders(1, args.len())), &args)? {
            let case = read_case(row)?;
            if can_see(caller, &case.scope()) {
                visible.push(case);
            }
        }
    }
    Ok(views(tx, &visible)?.into_iter().map(|v| (v.id.to_string(), v)).collect())
}

/// The case as `caller` may see it; `None` if it does not exist or is out
/// of the caller's scope (indistinguishable on purpose).
pub fn load_view_for(tx: &mut dyn Tx, caller: &Caller, id: &str) -> Result<Option<IncidentView>> {
    match load(tx, id, false)? {
        Some(case) if can_see(caller, &case.scope()) => Ok(Some(view(tx, &case)?)),
        _ => Ok(None),
    }
}

/// The case right after the caller's own step on it. A step may take the
/// case out of the caller's scope (a hand-back leaves the handler's tasks);
/// the caller still gets the state their step produced, once.
pub fn view_after_step(tx: &mut dyn Tx, id: &str) -> Result<IncidentView> {
    match load(tx, id, false)? {
        Some(case) => view(tx, &case),
        None => Err(ServerError::not_found("incident")),
    }
}

/// Ids of cases starting with `prefix` (lower-case hex and dashes, as ids
/// are stored), at most `limit`: an admin names a case as the device shows it.
pub fn ids_with_prefix(tx: &mut dyn Tx, prefix: &str, limit: u32) -> Result<Vec<String>> {
    // The prefix is hex and dashes only (checked by the caller), so it holds
    // no LIKE wildcard.
    let rows = tx.query("SELECT id FROM incidents WHERE id LIKE $1 ORDER BY id LIMIT $2", params![format!("{prefix}%"), i64::from(limit)])?;
    Ok(rows.iter().map(|row| row.text(0)).collect())
}

/// Every case the caller may see, newest first, optionally by state and grid.
pub fn list_for(tx: &mut dyn Tx, caller: &Caller, state: Option<&str>, grid: Option<&str>, limit: u32) -> Result<Vec<IncidentView>> {
    let rows = tx.query(
        &format!(
            "SELECT {CASE_COLUMNS} FROM incidents WHERE ($1 = '' OR state = $1) AND ($2 = '' OR grid_code = $2)
             ORDER BY reported_at_ms DESC, id DESC"
        ),
        params![state.unwrap_or(""), grid.unwrap_or("")],
    )?;
    let mut visible = Vec::new();
    for row in rows {
        let case = read_case(&row)?;
        if can_see(caller, &case.scope()) {
            visible.push(case);
            if visible.len() >= limit as usize {
                break;
            }
        }
    }
    views(tx, &visible)
}

pub fn timeline(tx: &mut dyn Tx, caller: &Caller, id: &str) -> Result<Vec<TimelineEntry>> {
    // Only the scope check and the timeline: not the whole view.
    match load(tx, id, false)? {
        Some(case) if can_see(caller, &case.scope()) => timeline_of(tx, id),
        _ => Err(ServerError::not_found("incident")),
    }
}

fn timeline_of(tx: &mut dyn Tx, id: &str) -> Result<Vec<TimelineEntry>> {
    tx.query("SELECT seq, action, actor, from_state, to_state, note, at_ms FROM timeline WHERE incident_id = $1 ORDER BY seq", params![id])?
        .iter()
        .map(|r| timeline_entry(r, 0))
        .collect()
}

/// A timeline entry from a row whose columns from `at` on are seq, action,
/// actor, from_state, to_state, note, at_ms.
fn timeline_entry(r: &Row, at: usize) -> Result<TimelineEntry> {
    let state = |text: String| CaseState::parse(&text).ok_or_else(|| ServerError::internal("unknown case state"));
    Ok(TimelineEntry {
        seq: r.int(at),
        action: r.text(at + 1),
        actor: r.text(at + 2),
        from_state: r.opt_text(at + 3).map(state).transpose()?,
        to_state: state(r.text(at + 4))?,
        note: r.opt_text(at + 5),
        at_ms: r.int(at + 6),
    })
}

/// What a timeline entry's hash covers, in a fixed order.
fn timeline_facts(id: &str, action: &str, actor: &str, from: Option<&str>, to: &str, note: Option<&str>, at_ms: i64) -> serde_json::Value {
    serde_json::json!([id, action, actor, from, to, note, at_ms])
}

/// Append to a case's timeline, linked to its last entry. Callers hold the
/// case's row (a transition, a photo arriving) or create it, so one case's
/// entries are appended one at a time.
#[allow(clippy::too_many_arguments)] // one column each
fn append_timeline(tx: &mut dyn Tx, id: &str, action: &str, actor: &str, from: Option<CaseState>, to: CaseState, note: Option<&str>, now_ms: i64) -> Result<()> {
    let last = tx.query_opt("SELECT hash FROM timeline WHERE incident_id = $1 ORDER BY seq DESC LIMIT 1", params![id])?;
    let prev = last.and_then(|r| r.opt_text(0)).unwrap_or_else(|| trail::GENESIS.to_owned());
    let from = from.map(CaseState::as_str);
    let hash = trail::entry_hash(&prev, &timeline_facts(id, action, actor, from, to.as_str(), note, now_ms));
    tx.execute(
        "INSERT INTO timeline (incident_id, action, actor, from_state, to_state, note, at_ms, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        params![id, action, actor, from, to.as_str(), note, now_ms, prev, hash],
    )?;
    Ok(())
}

/// A case's timeline with its chain, for an inspector (the command
/// center's console): every entry with the facts its hash covers, its link
/// and its hash, and what walking the chain found. `None` if no such case.
pub fn trail_export(tx: &mut dyn Tx, id: &str) -> Result<Option<TrailExport>> {
    if load(tx, id, false)?.is_none() {
        return Ok(None);
    }
    let rows = tx.query("SELECT seq, action, actor, from_state, to_state, note, at_ms, prev_hash, hash FROM timeline WHERE incident_id = $1 ORDER BY seq", params![id])?;
    let entries: Vec<ChainedEntry> = rows
        .iter()
        .map(|r| ChainedEntry {
            seq: r.int(0),
            facts: timeline_facts(id, &r.text(1), &r.text(2), r.opt_text(3).as_deref(), &r.text(4), r.opt_text(5).as_deref(), r.int(6)),
            prev_hash: r.opt_text(7),
            hash: r.opt_text(8),
        })
        .collect();
    let check = trail::verify(entries.iter().map(|e| trail::Sealed { seq: e.seq, facts: e.facts.clone(), prev_hash: e.prev_hash.clone(), hash: e.hash.clone() }));
    Ok(Some(TrailExport { case_id: id.to_owned(), hashing: TRAIL_HASHING, entries, check }))
}

/// How an inspector recomputes the chain without this server.
const TRAIL_HASHING: &str = "hash = hex(SHA-256(prev_hash || \"\\n\" || compact JSON of facts)); facts = [case_id, action, actor, from_state, to_state, note, at_ms]; the first prev_hash is 64 zeros";

/// A case's chained timeline, as exported.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrailExport {
    pub case_id: String,
    pub hashing: &'static str,
    pub entries: Vec<ChainedEntry>,
    pub check: trail::TrailCheck,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ChainedEntry {
    pub seq: i64,
    pub facts: serde_json::Value,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

fn validate_photos(tx: &mut dyn Tx, incident_id: &str, photos: &[PhotoRef]) -> std::result::Result<(), Rejection> {
    if photos.len() > MAX_PHOTOS_PER_STEP {
        return Err(Rejection::new("too_many_photos", format!("at most {MAX_PHOTOS_PER_STEP} photos per step")));
    }
    for photo in photos {
        if let Some(why) = photo.shape_error() {
            return Err(Rejection::new("invalid_payload", why));
        }
        if photo.byte_size == 0 || photo.byte_size > PHOTO_MAX_BYTES {
            return Err(Rejection::new("invalid_payload", "photo byte_size out of range"));
        }
        if !PHOTO_MIME_TYPES.contains(&photo.mime_type.as_str()) {
            return Err(Rejection::new("invalid_payload", "photo mime_type must be image/jpeg, image/png or image/webp"));
        }
        let existing = tx.query_opt("SELECT incident_id FROM incident_photos WHERE photo_id = $1", params![photo.photo_id.to_string()]).map_err(Rejection::from)?;
        if existing.is_some_and(|r| r.text(0) != incident_id) {
            return Err(Rejection::new("photo_exists", "a photo with this id belongs to another case"));
        }
    }
    Ok(())
}

/// Record the photos a step announces, with who announced them: only they
/// (or the command center) may upload the bytes.
fn insert_photos(tx: &mut dyn Tx, incident_id: &str, photos: &[PhotoRef], role: PhotoRole, added_by: &Caller) -> Result<()> {
    let start = tx.query_one("SELECT COALESCE(MAX(position), -1) + 1 FROM incident_photos WHERE incident_id = $1", params![incident_id])?.int(0);
    for (i, photo) in photos.iter().enumerate() {
        tx.execute(
            "INSERT INTO incident_photos (photo_id, incident_id, sha256, byte_size, mime_type, role, position, added_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (photo_id) DO NOTHING",
            params![
                photo.photo_id.to_string(),
                incident_id,
                photo.sha256.clone(),
                photo.byte_size as i64,
                photo.mime_type.clone(),
                role.as_str(),
                start + i as i64,
                added_by.user_id.to_string()
            ],
        )?;
    }
    Ok(())
}

fn record_case_change(tx: &mut dyn Tx, before: Option<&CaseScope>, after: &CaseRow, now_ms: i64) -> Result<()> {
    let was = before.map(case_audience).unwrap_or_default();
    changes::record(tx, "incident", &after.id, &case_audience(&after.scope()), &was, now_ms)?;
    Ok(())
}

/// 信息采集: a report from a device. Validates everything before writing.
pub fn submit(tx: &mut dyn Tx, caller: &Caller, report: &SubmitIncident, now_ms: i64) -> Result<Outcome> {
    let id = report.incident_id.to_string();
    if load(tx, &id, false)?.is_some() {
        return Ok(Err(Rejection::new("incident_exists", "a case with this id already exists")));
    }
    if !reference::category_is_active(tx, &report.category_code)? {
        return Ok(Err(Rejection::new("unknown_category", "the category is not in the current table")));
    }
    let description = match text::clean("description", &report.description, DESCRIPTION_MAX_CHARS) {
        Ok(d) => d,
        Err(e) => return Ok(Err(e.into())),
    };
    let address = match report.address.as_deref().map(|a| text::clean("address", a, ADDRESS_MAX_CHARS)).transpose() {
        Ok(a) => a,
        Err(e) => return Ok(Err(e.into())),
    };
    if report.location.is_some_and(|l| !l.is_valid()) {
        return Ok(Err(Rejection::new("invalid_location", "location is not a WGS84 coordinate")));
    }
    if description.is_empty() && report.photos.is_empty() {
        return Ok(Err(Rejection::new("incomplete", "a report needs a description or a photo")));
    }
    if let Err(rejection) = validate_photos(tx, &id, &report.photos) {
        return Ok(Err(rejection));
    }
    // 件件有回音: a corrected report of the reporter's own rejected one.
    if let Some(original) = report.resubmission_of {
        match load(tx, &original.to_string(), false)? {
            Some(first) if first.reporter_id == caller.user_id.to_string() && first.state == CaseState::Rejected => {}
            _ => return Ok(Err(Rejection::new("invalid_resubmission", "only your own rejected report can be resubmitted"))),
        }
    }
    // 现场解决: the reporter's result, checked like a handle step's.
    let resolution = match &report.resolved_on_spot {
        None => None,
        Some(_) if !case::may_resolve_on_spot(caller.role) => {
            return Ok(Err(Rejection::new("forbidden", "your role may not report a problem as resolved on the spot")));
        }
        Some(resolved) => {
            let note = match text::clean("note", &resolved.note, DESCRIPTION_MAX_CHARS) {
                Ok(n) if !n.is_empty() => n,
                Ok(_) => return Ok(Err(Rejection::new("note_required", "a resolution on the spot needs a note"))),
                Err(e) => return Ok(Err(e.into())),
            };
            if resolved.after_photos.is_empty() {
                return Ok(Err(Rejection::new("after_photo_required", "a resolution on the spot needs an after-photo")));
            }
            if report.photos.len() + resolved.after_photos.len() > MAX_PHOTOS_PER_STEP {
                return Ok(Err(Rejection::new("too_many_photos", format!("at most {MAX_PHOTOS_PER_STEP} photos per step"))));
            }
            if let Err(rejection) = validate_photos(tx, &id, &resolved.after_photos) {
                return Ok(Err(rejection));
            }
            Some((note, &resolved.after_photos))
        }
    };
    // The device picked the grid offline. A location decides over it (the
    // same point-in-polygon the device ran, on the server's boundaries): a
    // report cannot place itself in another grid than where it stands.
    // Without a location, or with no boundaries to test, the device's code
    // stands if the server knows it.
    let located = match report.location {
        Some(point) => reference::locate_grid(tx, point)?,
        None => reference::Located::NoBoundaries,
    };
    let grid_code = match located {
        reference::Located::In(code) => Some(code),
        reference::Located::Outside => None,
        reference::Located::NoBoundaries => match &report.grid_code {
            Some(code) if reference::grid_exists(tx, code)? => Some(code.clone()),
            _ => None,
        },
    };
    let reported = case::initial_state(caller.role);
    // Resolved on the spot, the case starts handled by its reporter: the
    // grid's verifiers see it as a task to verify, not to dispatch.
    let state = if resolution.is_some() { CaseState::Handled } else { reported };
    let case = CaseRow {
        id: id.clone(),
        state,
        category_code: report.category_code.clone(),
        description,
        address,
        location: report.location,
        grid_code,
        reporter_id: caller.user_id.to_string(),
        reporter_role: caller.role,
        assignee_id: resolution.as_ref().map(|_| caller.user_id.to_string()),
        department: None,
        deadline_ms: None,
        step_deadline_ms: match resolution {
            Some(_) => reference::time_limits(tx, &report.category_code)?.and_then(|l| l.verify_by(now_ms)),
            None => None,
        },
        merged_into: None,
        rating: None,
        resubmission_of: report.resubmission_of.map(|r| r.to_string()),
        version: 1,
        reported_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    tx.execute(
        &format!("INSERT INTO incidents ({CASE_COLUMNS}, captured_device_ms, captured_corrected_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"),
        params![
            case.id.clone(),
            state.as_str(),
            case.category_code.clone(),
            case.description.clone(),
            case.address.clone(),
            case.location.map(|l| l.lat),
            case.location.map(|l| l.lon),
            case.location.and_then(|l| l.accuracy_m),
            case.grid_code.clone(),
            case.reporter_id.clone(),
            caller.role.as_str(),
            case.assignee_id.clone(),
            None::<String>,
            None::<i64>,
            None::<String>,
            1i64,
            now_ms,
            now_ms,
            None::<i64>,
            case.resubmission_of.clone(),
            case.step_deadline_ms,
            report.captured_at.device_ms,
            report.captured_at.corrected_ms,
        ],
    )?;
    insert_photos(tx, &id, &report.photos, PhotoRole::Evidence, caller)?;
    append_timeline(tx, &id, "report", &caller.username, None, reported, None, now_ms)?;
    if let Some((note, after_photos)) = &resolution {
        insert_photos(tx, &id, after_photos, PhotoRole::After, caller)?;
        append_timeline(tx, &id, CaseAction::Handle.as_str(), &caller.username, Some(reported), state, Some(note), now_ms)?;
    }
    record_case_change(tx, None, &case, now_ms)?;
    Ok(Ok(1))
}

/// A workflow step on a case, validated against the caller and the state.
pub fn transition(tx: &mut dyn Tx, caller: &Caller, id: &str, request: &TransitionRequest, now_ms: i64) -> Result<Outcome> {
    let Some(action) = CaseAction::parse(&request.action) else {
        return Ok(Err(Rejection::new("unknown_action", "unknown workflow action")));
    };
    let Some(mut case) = load(tx, id, true)? else {
        return Ok(Err(Rejection::new("not_found", "incident not found")));
    };
    let before = case.scope();
    if !can_see(caller, &before) {
        // Out of scope looks exactly like absent.
        return Ok(Err(Rejection::new("not_found", "incident not found")));
    }
    let relation = Relation {
        role: caller.role,
        in_grid: caller.in_grid(case.grid_code.as_deref()),
        is_assignee: case.assignee_id.as_deref() == Some(caller.user_id.to_string().as_str()),
        is_reporter: case.reporter_id == caller.user_id.to_string(),
    };
    let target = match case::next_state(case.state, action, relation) {
        Ok(target) => target,
        Err(case::Refusal::InvalidTransition) => {
            return Ok(Err(Rejection::new("invalid_transition", moved_on(tx, &case, action)?)));
        }
        Err(refusal) => return Ok(Err(Rejection::new(refusal.code(), refusal.message(action, case.state)))),
    };
    let note = match request.note.as_deref().map(|n| text::clean("note", n, DESCRIPTION_MAX_CHARS)).transpose() {
        Ok(n) => n.filter(|n| !n.is_empty()),
        Err(e) => return Ok(Err(e.into())),
    };
    if let Err((code, message)) = action.check_extras(note.is_some(), request.rating, request.photos.len()) {
        return Ok(Err(Rejection::new(code, message)));
    }
    if let Some(role) = action.rule().photos.filter(|_| !request.photos.is_empty()) {
        if let Err(rejection) = validate_photos(tx, id, &request.photos) {
            return Ok(Err(rejection));
        }
        insert_photos(tx, id, &request.photos, role, caller)?;
    }
    let limits = reference::time_limits(tx, &case.category_code)?;
    match action {
        CaseAction::Dispatch => {
            let assignee = match &request.assignee {
                Some(name) => match tx.query_opt("SELECT id, role FROM users WHERE username = $1 AND disabled = 0", params![name.clone()])? {
                    Some(r) if matches!(Role::parse(&r.text(1)), Some(Role::GridWorker | Role::Supervisor | Role::Department)) => Some(r.text(0)),
                    _ => return Ok(Err(Rejection::new("unknown_assignee", "no grid worker, supervisor or department with that user name"))),
                },
                None => None,
            };
            let department = match request.department.as_deref().map(|d| text::clean("department", d, DEPARTMENT_MAX_CHARS)).transpose() {
                Ok(d) => d.filter(|d| !d.is_empty()),
                Err(e) => return Ok(Err(e.into())),
            };
            if assignee.is_none() && department.is_none() {
                return Ok(Err(Rejection::new("assignee_required", "dispatch needs an assignee or a department")));
            }
            case.assignee_id = assignee;
            case.department = department;
            case.deadline_ms = match request.deadline_ms {
                Some(deadline) => Some(deadline),
                None => limits.as_ref().map(|l| l.handle_by(now_ms)),
            };
        }
        CaseAction::Merge => {
            let Some(into) = request.merge_into else {
                return Ok(Err(Rejection::new("merge_target_required", "merge needs merge_into")));
            };
            let into = into.to_string();
            // A target the caller cannot see is treated like no target at all.
            match load(tx, &into, false)? {
                Some(target) if target.id != case.id && target.state != CaseState::Merged && can_see(caller, &target.scope()) => {
                    case.merged_into = Some(into)
                }
                _ => return Ok(Err(Rejection::new("invalid_merge_target", "merge target must be another, unmerged case"))),
            }
        }
        // 退回: back to the command center, which dispatches it again.
        CaseAction::HandBack => {
            case.assignee_id = None;
            case.department = None;
            case.deadline_ms = None;
        }
        CaseAction::Close => case.rating = request.rating,
        // 返工 is a new task on the same case: a new deadline from the table,
        // if it has one; the rating of the close it undoes no longer stands.
        CaseAction::Reopen => {
            case.rating = None;
            if let Some(limits) = &limits {
                case.deadline_ms = Some(limits.handle_by(now_ms));
            }
        }
        _ => {}
    }
    // The time limit of the step besides handling starts when the case
    // enters it (签收 after a dispatch, 核查 after a handle) and ends with it;
    // a step that keeps the state (a note) keeps it.
    if target != case.state {
        case.step_deadline_ms = match target {
            CaseState::Dispatched => limits.as_ref().and_then(|l| l.sign_by(now_ms)),
            CaseState::Handled => limits.as_ref().and_then(|l| l.verify_by(now_ms)),
            _ => None,
        };
    }
    let from = case.state;
    case.state = target;
    case.version += 1;
    case.updated_at_ms = now_ms;
    tx.execute(
        "UPDATE incidents SET state = $2, assignee_id = $3, department = $4, deadline_ms = $5, merged_into = $6, version = $7, updated_at_ms = $8,
             rating = $9, step_deadline_ms = $10 WHERE id = $1",
        params![
            case.id.clone(),
            target.as_str(),
            case.assignee_id.clone(),
            case.department.clone(),
            case.deadline_ms,
            case.merged_into.clone(),
            case.version,
            now_ms,
            case.rating.map(i64::from),
            case.step_deadline_ms
        ],
    )?;
    append_timeline(tx, id, action.as_str(), &caller.username, Some(from), target, note.as_deref(), now_ms)?;
    record_case_change(tx, Some(&before), &case, now_ms)?;
    Ok(Ok(case.version))
}

/// A grid's or a person's figures (统计) for a period, from the same
/// function devices run over the cases they hold. The command center may
/// ask for anything; others for their own grids or themselves.
pub fn stats(tx: &mut dyn Tx, caller: &Caller, query: &StatsQuery) -> Result<Stats> {
    let command_center = matches!(caller.role, Role::Dispatcher | Role::Admin);
    // A grid's figures for those who see every case of it.
    let grid_staff = |grid: &str| matches!(caller.role, Role::GridWorker | Role::Supervisor) && caller.in_grid(Some(grid));
    let allowed = command_center
        || match (&query.grid_code, &query.user) {
            (Some(grid), None) => grid_staff(grid),
            (None, Some(user)) => *user == caller.username,
            (Some(grid), Some(user)) => grid_staff(grid) && *user == caller.username,
            (None, None) => false,
        };
    if !allowed {
        return Err(ServerError::new(403, "forbidden", "ask for your own grids' or your own figures"));
    }
    // Every case the figures may draw on: the grid's, or those the person
    // reported, was dispatched, or acted on.
    let ids: Vec<String> = match (&query.grid_code, &query.user) {
        (Some(grid), _) => tx.query("SELECT id FROM incidents WHERE grid_code = $1", params![grid.clone()])?,
        (None, Some(user)) => tx.query(
            "SELECT id FROM incidents WHERE reporter_id IN (SELECT id FROM users WHERE username = $1)
                OR assignee_id IN (SELECT id FROM users WHERE username = $1)
                OR id IN (SELECT incident_id FROM timeline WHERE actor = $1)",
            params![user.clone()],
        )?,
        (None, None) => tx.query("SELECT id FROM incidents", params![])?,
    }
    .iter()
    .map(|r| r.text(0))
    .collect();
    let mut views = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(case) = load(tx, &id, false)? {
            views.push(view(tx, &case)?);
        }
    }
    Ok(gridwork_protocol::stats::compute(&views, query))
}

/// Why a step does not apply, in words a user reads on their phone: who
/// took the case where it is now (two reviewers, two verifiers: the first
/// one's decision stands; or a step asked of a case already past it).
fn moved_on(tx: &mut dyn Tx, case: &CaseRow, action: CaseAction) -> Result<String> {
    let last = tx.query_opt(
        "SELECT action, actor FROM timeline WHERE incident_id = $1 AND action <> 'report' AND action NOT LIKE '%_arrived' ORDER BY seq DESC LIMIT 1",
        params![case.id.clone()],
    )?;
    let generic = case::Refusal::InvalidTransition.message(action, case.state);
    Ok(match last {
        Some(row) => format!("{generic}: its last step was \"{}\" by {}; your {} was not applied", row.text(0), row.text(1), action.as_str()),
        None => generic,
    })
}

/// A blob's bytes now back references to it (its upload finished, or an
/// announcer showed the bytes of a blob already here): each case whose
/// reference they back changes (its missing-evidence flag may clear), with
/// a timeline entry.
pub fn evidence_arrived(tx: &mut dyn Tx, sha256: &str, shown_by: Option<&str>, now_ms: i64) -> Result<()> {
    let original = original_of_preview(tx, sha256)?;
    let (announced, action) = match &original {
        Some(original) => (original.as_str(), "preview_arrived"),
        None => (sha256, "photo_arrived"),
    };
    for id in cases_shown(tx, announced, sha256, shown_by)? {
        let Some(mut case) = load(tx, &id, true)? else { continue };
        case.version += 1;
        case.updated_at_ms = now_ms;
        tx.execute("UPDATE incidents SET version = $2, updated_at_ms = $3 WHERE id = $1", params![id.clone(), case.version, now_ms])?;
        append_timeline(tx, &id, action, "system", Some(case.state), case.state, Some(&announced[..12]), now_ms)?;
        let scope = case.scope();
        record_case_change(tx, Some(&scope), &case, now_ms)?;
    }
    Ok(())
}

/// The photo a blob is a preview of; none for a blob announced as a photo
/// itself (a photo is never reached as someone's preview).
fn original_of_preview(tx: &mut dyn Tx, sha256: &str) -> Result<Option<String>> {
    if tx.query_opt("SELECT 1 FROM incident_photos WHERE sha256 = $1", params![sha256])?.is_some() {
        return Ok(None);
    }
    Ok(tx.query_opt("SELECT original_sha256 FROM blob_previews WHERE preview_sha256 = $1", params![sha256])?.map(|r| r.text(0)))
}

/// The cases whose references to `announced` the bytes of `blob` (the
/// photo or a preview of it) now back: all of them, or those `shown_by`
/// announced (who just showed the bytes).
fn cases_shown(tx: &mut dyn Tx, announced: &str, blob: &str, shown_by: Option<&str>) -> Result<Vec<String>> {
    let sql = format!("SELECT DISTINCT p.incident_id FROM incident_photos p WHERE p.sha256 = $1 AND {} AND ($3 = '' OR p.added_by = $3)", shown_sql("$2"));
    Ok(tx.query(&sql, params![announced, blob, shown_by.unwrap_or("")])?.iter().map(|r| r.text(0)).collect())
}

/// SQL, true when the photo reference `p` (a row of `incident_photos`) is
/// backed by the bytes of blob `{blob}` (the photo, or a preview of it):
/// they have arrived, and its announcer (or the command center) has shown
/// the server every one of them. Content addressing alone grants nothing:
/// a hash seen elsewhere, announced in one's own report, backs nothing
/// until its bytes are shown. References from before schema 3 name no
/// announcer and stand.
fn shown_sql(blob: &str) -> String {
    format!(
        "(p.added_by IS NULL OR EXISTS (SELECT 1 FROM blob_possession o JOIN blobs ob ON ob.sha256 = o.sha256 JOIN users ou ON ou.id = o.user_id
          WHERE o.sha256 = {blob} AND ob.complete = 1 AND o.covered >= ob.size AND (o.user_id = p.added_by OR ou.role IN ('{}', '{}'))))",
        Role::Dispatcher.as_str(),
        Role::Admin.as_str(),
    )
}

/// What a caller wants to do with a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobAccess {
    /// Send its bytes: they announced this photo in a step, or are the
    /// command center.
    Upload,
    /// Learn about it: they may see a case announcing it.
    See,
    /// Have its bytes: they may see a case whose reference to the photo
    /// its bytes back (see [`shown_sql`]).
    Download,
}

/// Whether the caller may do this with the blob.
pub fn may_access_blob(tx: &mut dyn Tx, caller: &Caller, sha256: &str, access: BlobAccess) -> Result<bool> {
    // A preview is accessible as its original is.
    let original = original_of_preview(tx, sha256)?;
    let blob = sha256;
    let sha256 = original.as_deref().unwrap_or(sha256);
    let me = caller.user_id.to_string();
    let command_center = matches!(caller.role, Role::Dispatcher | Role::Admin);
    let announced = if access == BlobAccess::Download {
        let sql = format!("SELECT p.incident_id, p.added_by FROM incident_photos p WHERE p.sha256 = $1 AND ({} OR {})", shown_sql("p.sha256"), shown_sql("$2"));
        tx.query(&sql, params![sha256, blob])?
    } else {
        tx.query("SELECT p.incident_id, p.added_by FROM incident_photos p WHERE p.sha256 = $1", params![sha256])?
    };
    for row in announced {
        let Some(case) = load(tx, &row.text(0), false)? else { continue };
        let allowed = if access == BlobAccess::Upload {
            match row.opt_text(1) {
                Some(added_by) => added_by == me || command_center,
                // Announced before schema 3 recorded who: the reporter or the assignee.
                None => case.reporter_id == me || case.assignee_id.as_deref() == Some(me.as_str()) || command_center,
            }
        } else {
            can_see(caller, &case.scope())
        };
        if allowed {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the caller announced this photo (or the original of this
/// preview) in a report or step of their own.
pub fn announced_by(tx: &mut dyn Tx, caller: &Caller, sha256: &str) -> Result<bool> {
    let original = original_of_preview(tx, sha256)?;
    let sha256 = original.as_deref().unwrap_or(sha256);
    Ok(tx.query_opt("SELECT 1 FROM incident_photos WHERE sha256 = $1 AND added_by = $2", params![sha256, caller.user_id.to_string()])?.is_some())
}
