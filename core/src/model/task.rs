//! Tasks (待办): the cases waiting on this device's user, read from the
//! columns the server's view fills (assignee, deadline, since when), and a
//! case's server-side story (timeline, rating, photos) for the case screen.

use gridwork_protocol::api::{IncidentView, PhotoView, Role, TimelineEntry, UserInfo};
use gridwork_protocol::case::{current_limit, deadline_light};
use gridwork_protocol::stats::{Stats, StatsQuery};
use gridwork_protocol::{CaseAction, CaseState, DeadlineLight, Named, TimedStep};
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};
use uuid::Uuid;

use std::path::PathBuf;

use crate::error::Result;

/// Why a case is on someone's task list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// Dispatched to this user: sign, start, handle or hand back (处置).
    Handle,
    /// Handled by someone else in this user's grid: verify on site (核查).
    Verify,
    /// A volunteer's report in this user's grid: review it (核实).
    Review,
    /// A reviewer asked this user about their report: answer it.
    Answer,
}

impl TaskKind {
    pub const ALL: [TaskKind; 4] = [TaskKind::Handle, TaskKind::Verify, TaskKind::Review, TaskKind::Answer];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Handle => "handle",
            TaskKind::Verify => "verify",
            TaskKind::Review => "review",
            TaskKind::Answer => "answer",
        }
    }

    /// The steps whose note tells this kind of task what to do: the
    /// dispatcher's instruction or the rework's reason, the handler's
    /// result, the reporter's answer, the reviewer's question.
    fn note_of(self) -> &'static [&'static str] {
        match self {
            TaskKind::Handle => &["dispatch", "reopen"],
            TaskKind::Verify => &["handle"],
            TaskKind::Review => &["answer"],
            TaskKind::Answer => &["ask_info"],
        }
    }
}

/// One task as the task list shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub incident_id: Uuid,
    pub state: CaseState,
    pub kind: TaskKind,
    pub category_code: Option<String>,
    pub description: String,
    pub address: Option<String>,
    pub grid_code: Option<String>,
    /// The user name it is dispatched to, if a person.
    pub assignee: Option<String>,
    pub department: Option<String>,
    /// Server time (Unix ms) its current step is due: signing for it,
    /// handling it or verifying it (see `deadline_step`).
    pub deadline_ms: Option<i64>,
    /// The step `deadline_ms` is the limit of.
    pub deadline_step: Option<TimedStep>,
    /// How it stands against its deadline now (server-corrected time).
    pub light: Option<DeadlineLight>,
    /// What the last relevant step said: the dispatcher's instruction or
    /// the rework's reason (handle), the handler's result (verify), the
    /// reporter's answer (review), the reviewer's question (answer).
    pub note: Option<String>,
    /// Who reported the case (a user name).
    pub reporter: Option<String>,
    /// The thumbnail of the case's first photo, when it is on this device.
    pub thumbnail_path: Option<PathBuf>,
}

/// Filters for the task list; all optional, combined with AND.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskFilter {
    /// Only these states (empty: every state a task can be in).
    pub states: Vec<CaseState>,
    pub kind: Option<TaskKind>,
    pub light: Option<DeadlineLight>,
    pub limit: Option<u32>,
}

/// A case as the server tells it: enough for the case screen offline.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseInfo {
    pub state: CaseState,
    pub reporter: String,
    pub assignee: Option<String>,
    pub department: Option<String>,
    /// The handling deadline (处置时限), server time.
    pub deadline_ms: Option<i64>,
    /// The limit of the step besides handling the case waits for: signing
    /// while dispatched, verifying while handled.
    pub step_deadline_ms: Option<i64>,
    /// The step the case runs against a limit for now, and its light.
    pub deadline_step: Option<TimedStep>,
    pub light: Option<DeadlineLight>,
    pub rating: Option<u8>,
    pub merged_into: Option<Uuid>,
    /// Every photo of the case on the server: evidence, after, verification.
    pub photos: Vec<CasePhoto>,
    pub timeline: Vec<TimelineEntry>,
    pub version: i64,
}

/// A photo of a case as the server knows it, with its thumbnail on this
/// device when there is one (this device's own photo, or one sync fetched).
#[derive(Clone, Debug, PartialEq)]
pub struct CasePhoto {
    pub photo_id: Uuid,
    /// A [`gridwork_protocol::PhotoRole`] name.
    pub role: String,
    pub sha256: String,
    pub byte_size: u64,
    /// Its bytes reached the server.
    pub arrived: bool,
    pub thumbnail_path: Option<PathBuf>,
}

/// The case's server view as last pulled, if any; `thumbnail_path` names
/// the file of a photo's thumbnail (the photo store's).
pub fn case_info(conn: &Connection, id: Uuid, now_ms: i64, thumbnail_path: &dyn Fn(&str) -> PathBuf) -> Result<Option<CaseInfo>> {
    let stored: Option<(Option<String>, Option<i64>)> = conn
        .prepare_cached("SELECT server_view, task_since_ms FROM incidents WHERE id = ?1")?
        .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((Some(json), since)) = stored else { return Ok(None) };
    let Ok(view) = serde_json::from_str::<IncidentView>(&json) else { return Ok(None) };
    let due = Due::of(view.state, since, &view, now_ms);
    Ok(Some(CaseInfo {
        deadline_step: due.step,
        light: due.light,
        step_deadline_ms: view.step_deadline_ms,
        state: view.state,
        reporter: view.reporter,
        assignee: view.assignee,
        department: view.department,
        deadline_ms: view.deadline_ms,
        rating: view.rating,
        merged_into: view.merged_into,
        photos: view.photos.into_iter().map(|p| case_photo(conn, thumbnail_path, p)).collect::<Result<_>>()?,
        timeline: view.timeline,
        version: view.version,
    }))
}

fn case_photo(conn: &Connection, thumbnail_path: &dyn Fn(&str) -> PathBuf, p: PhotoView) -> Result<CasePhoto> {
    Ok(CasePhoto {
        thumbnail_path: thumbnail_here(conn, &p.sha256)?.then(|| thumbnail_path(&p.sha256)),
        photo_id: p.photo_id,
        role: p.role,
        sha256: p.sha256,
        byte_size: p.byte_size,
        arrived: p.arrived,
    })
}

/// A hash as the server must send it; anything else never names a file.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The next photo, on a case in review or a task, whose thumbnail this
/// device lacks (its bytes or a preview reached the server), other than
/// `skip`. Closed history is not fetched.
pub fn wanted_thumbnail(conn: &Connection, skip: &[String]) -> Result<Option<String>> {
    let skip = serde_json::to_string(skip).expect("strings serialize");
    let mut stmt = conn.prepare_cached(
        "SELECT json_extract(p.value, '$.sha256') AS sha
         FROM incidents AS i, json_each(i.server_view, '$.photos') AS p
         WHERE i.status IN ('pending_review', 'info_requested', 'dispatched', 'signed', 'in_progress', 'reopened', 'handled')
           AND (json_extract(p.value, '$.arrived') OR json_extract(p.value, '$.preview_arrived'))
           AND sha NOT IN (SELECT sha256 FROM photos)
           AND sha NOT IN (SELECT sha256 FROM case_thumbnails)
           AND sha NOT IN (SELECT value FROM json_each(?1))
         ORDER BY i.id",
    )?;
    let mut rows = stmt.query([skip])?;
    while let Some(row) = rows.next()? {
        let sha: Option<String> = row.get(0)?;
        // A malformed hash from a server is never fetched (nor a file name).
        if let Some(sha) = sha.filter(|s| is_sha256(s)) {
            return Ok(Some(sha));
        }
    }
    Ok(None)
}

/// The cases this device holds whose server view lists this photo.
pub fn cases_with_photo(conn: &Connection, sha256: &str) -> Result<Vec<Uuid>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT i.id FROM incidents AS i, json_each(i.server_view, '$.photos') AS p WHERE json_extract(p.value, '$.sha256') = ?1",
    )?;
    let ids = stmt.query_map([sha256], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect())
}

/// Forget the thumbnails and fetched photos of cases no longer on this
/// device (out of the user's view): what was seen there is not kept after
/// the case is gone; the sweeper then removes their files. One pass over
/// the cases' photo lists, whatever the number of cases gone.
pub fn forget_photos_of_cases_gone(conn: &Connection) -> Result<u64> {
    let listed = "SELECT json_extract(p.value, '$.sha256') FROM incidents AS i, json_each(i.server_view, '$.photos') AS p
                  WHERE i.server_view IS NOT NULL AND json_valid(i.server_view)";
    let thumbnails = conn.execute(&format!("DELETE FROM case_thumbnails WHERE sha256 NOT IN ({listed})"), [])?;
    let fetched = conn.execute(&format!("DELETE FROM fetched_photos WHERE sha256 NOT IN ({listed})"), [])?;
    Ok((thumbnails + fetched) as u64)
}

/// A fetched thumbnail is kept.
pub fn record_thumbnail(conn: &Connection, sha256: &str, now_ms: i64) -> Result<()> {
    conn.execute("INSERT INTO case_thumbnails (sha256, fetched_ms) VALUES (?1, ?2) ON CONFLICT (sha256) DO NOTHING", rusqlite::params![sha256, now_ms])?;
    Ok(())
}

/// The limit a case runs against now (see [`current_limit`]) and its light:
/// measured from the last dispatch or rework (`since_ms`) for signing and
/// handling, from the last handle for verifying.
struct Due {
    step: Option<TimedStep>,
    deadline_ms: Option<i64>,
    light: Option<DeadlineLight>,
}

impl Due {
    fn of(state: CaseState, since_ms: Option<i64>, view: &IncidentView, now_ms: i64) -> Due {
        let Some((step, deadline)) = current_limit(state, view.deadline_ms, view.step_deadline_ms) else {
            return Due { step: None, deadline_ms: None, light: None };
        };
        let since = match step {
            TimedStep::Verify => view.timeline.iter().rev().find(|e| e.action == CaseAction::Handle.as_str()).map(|e| e.at_ms),
            TimedStep::Sign | TimedStep::Handle => since_ms,
        };
        Due { step: Some(step), deadline_ms: Some(deadline), light: Some(deadline_light(since.unwrap_or(deadline), deadline, now_ms)) }
    }
}

/// The states in which a case is this kind of task.
fn states_of(kind: TaskKind) -> &'static [CaseState] {
    match kind {
        TaskKind::Handle => &[CaseState::Dispatched, CaseState::Signed, CaseState::InProgress, CaseState::Reopened],
        TaskKind::Verify => &[CaseState::Handled],
        TaskKind::Review => &[CaseState::PendingReview],
        TaskKind::Answer => &[CaseState::InfoRequested],
    }
}

/// The rule for "the user's own report", in SQL over `incidents AS i` with
/// the user name as parameter `?N`: this device submitted it, or the server
/// names the user its reporter (a report sent from their other phone).
pub fn own_report_sql(param: usize) -> String {
    format!("(i.submitted_device_ms IS NOT NULL OR json_extract(i.server_view, '$.reporter') = ?{param})")
}

/// Whether the incident is the user's own report (see [`own_report_sql`]).
pub fn is_own_report(conn: &Connection, id: Uuid, username: &str) -> Result<bool> {
    let sql = format!("SELECT {} FROM incidents AS i WHERE i.id = ?1", own_report_sql(2));
    Ok(conn.query_row(&sql, rusqlite::params![id.to_string(), username], |r| r.get::<_, Option<bool>>(0))?.unwrap_or(false))
}

/// The user's tasks, soonest deadline first (no deadline last), at `now_ms`
/// server time. A case the user's own device moved on (a step not yet sent)
/// shows in its new state. `thumbnail_path` names a photo's thumbnail file.
pub fn tasks(conn: &Connection, me: &UserInfo, filter: &TaskFilter, now_ms: i64, thumbnail_path: &dyn Fn(&str) -> PathBuf) -> Result<Vec<Task>> {
    let mut out = Vec::new();
    for kind in TaskKind::ALL {
        if filter.kind.is_some_and(|k| k != kind) {
            continue;
        }
        let states: Vec<&str> =
            states_of(kind).iter().filter(|s| filter.states.is_empty() || filter.states.contains(s)).map(|s| s.as_str()).collect();
        if states.is_empty() {
            continue;
        }
        let mut args: Vec<String> = states.iter().map(|s| (*s).to_owned()).collect();
        let marks = (1..=args.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let who = match kind {
            TaskKind::Handle => {
                args.push(me.username.clone());
                format!("i.assignee = ?{}", args.len())
            }
            // 核查 and 核实: supervisors and workers of the grid; the command center everywhere.
            TaskKind::Verify | TaskKind::Review => match me.role {
                Role::Dispatcher | Role::Admin => "1 = 1".to_owned(),
                Role::GridWorker | Role::Supervisor if !me.grids.is_empty() => {
                    let first = args.len() + 1;
                    args.extend(me.grids.iter().cloned());
                    let grids = (first..=args.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
                    args.push(me.username.clone());
                    // The handler never verifies their own work.
                    format!("i.grid_code IN ({grids}) AND i.assignee IS NOT ?{}", args.len())
                }
                _ => continue,
            },
            // Reports this device sent, or the server names this user their reporter.
            TaskKind::Answer => {
                args.push(me.username.clone());
                own_report_sql(args.len())
            }
        };
        let sql = format!(
            "SELECT i.id, i.status, i.category_code, i.description, i.address, i.grid_code, i.assignee, i.department,
                    i.task_since_ms, i.server_view
             FROM incidents AS i WHERE i.status IN ({marks}) AND {who}"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(args.iter()), |row| read_task(row, kind, now_ms))?;
        for row in rows {
            let (mut task, first_photo) = row?;
            if filter.light.is_none_or(|l| task.light == Some(l)) {
                task.thumbnail_path = match first_photo {
                    Some(sha) if thumbnail_here(conn, &sha)? => Some(thumbnail_path(&sha)),
                    _ => None,
                };
                out.push(task);
            }
        }
    }
    out.sort_by_key(|t| (t.deadline_ms.is_none(), t.deadline_ms, t.incident_id));
    if let Some(limit) = filter.limit {
        out.truncate(limit as usize);
    }
    Ok(out)
}

/// Whether sync kept a thumbnail of another device's photo.
pub fn has_kept_thumbnail(conn: &Connection, sha256: &str) -> Result<bool> {
    Ok(conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM case_thumbnails WHERE sha256 = ?1)")?.query_row([sha256], |r| r.get(0))?)
}

/// Whether this device holds a thumbnail of the photo: its own, or fetched.
fn thumbnail_here(conn: &Connection, sha256: &str) -> Result<bool> {
    Ok(is_sha256(sha256)
        && conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM photos WHERE sha256 = ?1) OR EXISTS (SELECT 1 FROM case_thumbnails WHERE sha256 = ?1)")?
            .query_row([sha256], |r| r.get(0))?)
}

/// A task, and the hash of its case's first photo.
fn read_task(row: &Row, kind: TaskKind, now_ms: i64) -> rusqlite::Result<(Task, Option<String>)> {
    let id: String = row.get(0)?;
    // The query matched task states only, which are stored by their case state's name.
    let status: String = row.get(1)?;
    let state = CaseState::parse(&status).unwrap_or(CaseState::Dispatched);
    let since_ms: Option<i64> = row.get(8)?;
    let view: Option<IncidentView> = row.get::<_, Option<String>>(9)?.and_then(|json| serde_json::from_str(&json).ok());
    // The state this device knows (a step taken here and not yet sent moves
    // it on) against the limits the server set.
    let due = view.as_ref().map(|v| Due::of(state, since_ms, v, now_ms));
    let first_photo = view.as_ref().and_then(|v| v.photos.first()).map(|p| p.sha256.clone());
    let task = Task {
        incident_id: Uuid::parse_str(&id).map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))?,
        state,
        kind,
        category_code: row.get(2)?,
        description: row.get(3)?,
        address: row.get(4)?,
        grid_code: row.get(5)?,
        assignee: row.get(6)?,
        department: row.get(7)?,
        deadline_ms: due.as_ref().and_then(|d| d.deadline_ms),
        deadline_step: due.as_ref().and_then(|d| d.step),
        light: due.and_then(|d| d.light),
        note: view.as_ref().and_then(|v| last_note(v, kind.note_of())),
        reporter: view.map(|v| v.reporter),
        thumbnail_path: None,
    };
    Ok((task, first_photo))
}

/// The note of the last of these steps in the case's timeline.
fn last_note(view: &IncidentView, actions: &[&str]) -> Option<String> {
    view.timeline.iter().rev().find(|e| actions.contains(&e.action.as_str())).and_then(|e| e.note.clone())
}

/// A grid's or a person's figures for a period, from the cases this device
/// holds as the server last told them: the same function the server runs,
/// so a grid's worker or supervisor gets the server's figures for it.
pub fn stats(conn: &Connection, query: &StatsQuery) -> Result<Stats> {
    let mut stmt = conn.prepare_cached("SELECT server_view FROM incidents WHERE server_view IS NOT NULL AND (?1 IS NULL OR grid_code = ?1)")?;
    let views: Vec<IncidentView> = stmt
        .query_map([query.grid_code.as_deref()], |r| r.get::<_, String>(0))?
        .filter_map(|json| json.ok().and_then(|json| serde_json::from_str(&json).ok()))
        .collect();
    Ok(gridwork_protocol::stats::compute(&views, query))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::apply;
    use gridwork_protocol::api::{Change, ChangeBody};
    use serde_json::json;

    fn store() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut conn).unwrap();
        conn
    }

    fn pulled(conn: &Connection, id: Uuid, state: &str, photos: serde_json::Value) {
        let view = json!({
            "id": id, "state": state, "category_code": "0602", "description": "d", "grid_code": "G-001",
            "reporter": "volunteer1", "reporter_role": "volunteer", "photos": photos, "missing_evidence": false,
            "version": 1, "reported_at_ms": 1, "updated_at_ms": 1, "timeline": [],
        });
        let change = Change { cursor: 1, entity_kind: "incident".into(), entity_id: id.to_string(), body: ChangeBody::Upsert { data: view } };
        apply::apply_page(conn, &[change]).unwrap();
    }

    fn photo(sha: &str) -> serde_json::Value {
        json!({"photo_id": Uuid::now_v7(), "sha256": sha, "byte_size": 10, "mime_type": "image/jpeg", "role": "evidence", "arrived": true})
    }

    /// A hostile or broken server's hash never becomes a file name, and only
    /// cases in review or in work want thumbnails.
    #[test]
    fn only_well_formed_hashes_of_open_cases_are_wanted() {
        let conn = store();
        let good = "ab".repeat(32);
        pulled(&conn, Uuid::now_v7(), "pending_review", json!([photo("../../../etc/passwd"), photo(&"AB".repeat(32))]));
        pulled(&conn, Uuid::now_v7(), "closed", json!([photo(&"cd".repeat(32))]));
        assert_eq!(wanted_thumbnail(&conn, &[]).unwrap(), None, "malformed hashes and closed history are not fetched");
        let case = Uuid::now_v7();
        pulled(&conn, case, "handled", json!([photo(&good)]));
        assert_eq!(wanted_thumbnail(&conn, &[]).unwrap(), Some(good.clone()));
        assert_eq!(wanted_thumbnail(&conn, std::slice::from_ref(&good)).unwrap(), None, "skipped for the run");
        record_thumbnail(&conn, &good, 5).unwrap();
        assert_eq!(wanted_thumbnail(&conn, &[]).unwrap(), None, "kept once");
        assert_eq!(cases_with_photo(&conn, &good).unwrap(), [case]);
        let info = case_info(&conn, case, 0, &|sha| PathBuf::from(format!("/thumbs/{sha}.jpg"))).unwrap().unwrap();
        assert_eq!(info.photos[0].thumbnail_path, Some(PathBuf::from(format!("/thumbs/{good}.jpg"))));
    }
}
