//! Leaving a device clean without losing work: what no server has seen
//! yet, exporting it to a folder the person chooses, and the rule a wipe
//! follows (sign-out with wipe, a device the server revoked). Unsent work
//! is never wiped silently: a wipe is refused while any queued operation
//! or draft is neither acknowledged by the server nor exported as it is
//! now.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::outbox;
use crate::photo::{PhotoFormat, PhotoStore};
use crate::store::files;
use crate::sync::session;

/// The meta key holding the fingerprint of the unsent work last exported.
const EXPORTED_META: &str = "exported_unsent";

/// The work on this device no server has acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsentWork {
    pub operations: u64,
    pub drafts: u64,
    /// Changes when anything unsent is added, edited or sent: an export
    /// covers the work as it was when exported, not what came after.
    fingerprint: String,
}

impl UnsentWork {
    pub fn is_empty(&self) -> bool {
        self.operations == 0 && self.drafts == 0
    }
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    /// The folder made for this export, inside the one given.
    pub folder: PathBuf,
    pub operations: u64,
    pub drafts: u64,
    pub photos: u64,
}

pub fn unsent_work(conn: &Connection) -> Result<UnsentWork> {
    let mut hasher = Sha256::new();
    let mut operations = 0;
    let mut stmt = conn.prepare("SELECT op_id, state FROM outbox WHERE state != 'acknowledged' ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        operations += 1;
        hasher.update(format!("op {} {}\n", row.get::<_, String>(0)?, row.get::<_, String>(1)?).as_bytes());
    }
    // A draft by everything an edit can change (not by its time alone: two
    // edits can fall in one millisecond, or the clock can be set back).
    let mut drafts = 0;
    let mut stmt = conn.prepare(
        "SELECT d.id, d.category_code, d.description, d.address, d.lat, d.lon, d.grid_code,
                (SELECT group_concat(p.sha256 || ':' || p.role, ',') FROM (SELECT sha256, role FROM photos WHERE incident_id = d.id ORDER BY position) AS p)
         FROM incidents d WHERE d.status = 'draft' ORDER BY d.id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        drafts += 1;
        let fields = serde_json::json!([
            row.get::<_, String>(0)?,
            row.get::<_, Option<String>>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, Option<String>>(3)?,
            row.get::<_, Option<f64>>(4)?,
            row.get::<_, Option<f64>>(5)?,
            row.get::<_, Option<String>>(6)?,
            row.get::<_, Option<String>>(7)?,
        ]);
        hasher.update(format!("draft {fields}\n").as_bytes());
    }
    Ok(UnsentWork { operations, drafts, fingerprint: hex::encode(hasher.finalize()) })
}

/// Whether the account's data may be wiped now: nothing unsent, or the
/// unsent work exactly as it was last exported.
pub fn check_wipe_allowed(conn: &Connection) -> Result<()> {
    let work = unsent_work(conn)?;
    if work.is_empty() || session::get_meta(conn, EXPORTED_META)?.as_deref() == Some(work.fingerprint.as_str()) {
        return Ok(());
    }
    Err(Error::UnsentWork { operations: work.operations, drafts: work.drafts })
}

/// Write the unsent work into a new folder inside `dir`: `unsent.json`
/// (every queued operation as it would be pushed, with its state, and
/// every draft's fields) and `photos/` (the originals they name). Plain
/// files, for the person to hand over: the app puts them where the person
/// chose. Records the export, so a wipe of exactly this work is allowed.
pub fn export(conn: &Connection, photos: &PhotoStore, dir: &Path, now_ms: i64) -> Result<Exported> {
    let work = unsent_work(conn)?;
    let folder = new_folder(dir, now_ms)?;
    let photo_dir = folder.join("photos");
    fs::create_dir(&photo_dir)?;

    let operations: Vec<serde_json::Value> = outbox::unsent(conn)?
        .into_iter()
        .map(|op| {
            json!({
                "op_id": op.op_id,
                "entity_id": op.entity_id,
                "kind": op.kind_name,
                "schema_version": op.payload_schema,
                "payload": op.payload,
                "state": <&'static str>::from(op.state),
                "created_at_ms": op.created_at.corrected_ms,
            })
        })
        .collect();

    let mut drafts = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT id, category_code, description, address, lat, lon, accuracy_m, grid_code, created_corrected_ms, updated_corrected_ms
         FROM incidents WHERE status = 'draft' ORDER BY created_corrected_ms",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        drafts.push(json!({
            "id": row.get::<_, String>(0)?,
            "category_code": row.get::<_, Option<String>>(1)?,
            "description": row.get::<_, String>(2)?,
            "address": row.get::<_, Option<String>>(3)?,
            "lat": row.get::<_, Option<f64>>(4)?,
            "lon": row.get::<_, Option<f64>>(5)?,
            "accuracy_m": row.get::<_, Option<f64>>(6)?,
            "grid_code": row.get::<_, Option<String>>(7)?,
            "created_at_ms": row.get::<_, i64>(8)?,
            "updated_at_ms": row.get::<_, i64>(9)?,
        }));
    }

    // The photos of drafts, of incidents with unsent operations, and of
    // unsent uploads (an upload is the photo's own operation: its report
    // may be acknowledged while the photo still waits for Wi-Fi).
    let mut copied = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT DISTINCT p.sha256, p.mime_type, p.incident_id FROM photos p
         WHERE p.incident_id IN (SELECT id FROM incidents WHERE status = 'draft')
            OR p.incident_id IN (SELECT entity_id FROM outbox WHERE state != 'acknowledged')
            OR p.id IN (SELECT entity_id FROM outbox WHERE state != 'acknowledged')
            OR p.sha256 IN (SELECT blob_sha256 FROM outbox WHERE state != 'acknowledged' AND blob_sha256 IS NOT NULL)
         ORDER BY p.sha256",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let sha256: String = row.get(0)?;
        let format = PhotoFormat::from_mime_type(&row.get::<_, String>(1)?).unwrap_or(PhotoFormat::Jpeg);
        let name = format!("{sha256}.{}", format.extension());
        let target = photo_dir.join(&name);
        if !target.exists() {
            fs::copy(photos.original_path(&sha256, format), &target)?;
            fs::File::open(&target)?.sync_all()?;
        }
        copied.push(json!({ "sha256": sha256, "incident_id": row.get::<_, String>(2)?, "file": format!("photos/{name}") }));
    }

    let document = json!({
        "format": "gridwork-unsent/1",
        "exported_at_ms": now_ms,
        "operations": operations,
        "drafts": drafts,
        "photos": copied,
    });
    let text = serde_json::to_vec_pretty(&document).expect("JSON values serialize");
    let partial = folder.join("unsent.json.partial");
    let mut file = fs::File::create(&partial)?;
    file.write_all(&text)?;
    file.sync_all()?;
    fs::rename(&partial, folder.join("unsent.json"))?;
    files::sync_dir(&photo_dir)?;
    files::sync_dir(&folder)?;
    files::sync_dir(dir)?;

    session::set_meta(conn, EXPORTED_META, &work.fingerprint)?;
    Ok(Exported { folder, operations: work.operations, drafts: work.drafts, photos: copied.len() as u64 })
}

/// `gridwork-unsent-<ms>`, or with a suffix if that exists: an export
/// never writes into an earlier one.
fn new_folder(dir: &Path, now_ms: i64) -> Result<PathBuf> {
    fs::create_dir_all(dir)?;
    for attempt in 0..100 {
        let name = if attempt == 0 { format!("gridwork-unsent-{now_ms}") } else { format!("gridwork-unsent-{now_ms}-{attempt}") };
        match fs::create_dir(dir.join(&name)) {
            Ok(()) => return Ok(dir.join(name)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::InvalidState { state: "full of exports".into(), action: "export into this folder" })
}
