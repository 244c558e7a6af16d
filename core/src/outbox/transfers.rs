//! What the sync runner reads and writes besides the operations' states:
//! which ready operations travel as pushed text and which as photo
//! uploads, resumable upload progress (`sync_uploads`) and the previews
//! sent ahead on metered links (`sync_previews`).

use gridwork_protocol::OperationKind;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Operation, ready_of_kinds};
use crate::error::Result;

/// Operations that travel in a push request.
pub(crate) const PUSHED_KINDS: [OperationKind; 2] = [OperationKind::SubmitIncident, OperationKind::TransitionIncident];
/// Operations that travel as a blob upload.
const UPLOAD_KINDS: [OperationKind; 1] = [OperationKind::UploadPhoto];

/// Sync asks for everything pending, whatever its next-attempt time: the
/// engine owns retry timing, and device clocks jump (a clock set back a day
/// must not hold a day's reports).
const ANY_TIME: i64 = i64::MAX;

/// Ready operations to push, in queue order, at most `limit`.
pub fn ready_operations(conn: &Connection, limit: u32) -> Result<Vec<Operation>> {
    ready_of_kinds(conn, ANY_TIME, limit, &PUSHED_KINDS)
}

/// Ready photo uploads, in queue order, at most `limit`.
pub fn ready_uploads(conn: &Connection, limit: u32) -> Result<Vec<Operation>> {
    ready_of_kinds(conn, ANY_TIME, limit, &UPLOAD_KINDS)
}

/// Whether anything is ready to send (photo uploads only when they may travel).
pub fn any_ready(conn: &Connection, uploads_allowed: bool) -> Result<bool> {
    Ok(!ready_operations(conn, 1)?.is_empty() || (uploads_allowed && !ready_uploads(conn, 1)?.is_empty()))
}

/// The server acknowledged an upload's bytes up to `offset`.
pub fn record_upload_progress(conn: &Connection, sha256: &str, size: u64, offset: u64, now_ms: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sync_uploads (sha256, size, uploaded_bytes, updated_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (sha256) DO UPDATE SET uploaded_bytes = ?3, updated_ms = ?4",
    )?
    .execute(params![sha256, size as i64, offset as i64, now_ms])?;
    Ok(())
}

/// Whether bytes of this blob were sent before (progress was recorded).
pub fn upload_started(conn: &Connection, sha256: &str) -> Result<bool> {
    Ok(conn.query_row("SELECT 1 FROM sync_uploads WHERE sha256 = ?1", [sha256], |_| Ok(())).optional()?.is_some())
}

/// The upload is done; its progress is no longer needed.
pub fn forget_upload(conn: &Connection, sha256: &str) -> Result<()> {
    conn.execute("DELETE FROM sync_uploads WHERE sha256 = ?1", [sha256])?;
    Ok(())
}

/// The long edge of the preview already sent for an original, if any.
pub fn preview_sent_edge(conn: &Connection, original_sha256: &str) -> Result<Option<u32>> {
    Ok(conn.query_row("SELECT long_edge FROM sync_previews WHERE sha256 = ?1", [original_sha256], |r| r.get(0)).optional()?)
}

/// A preview of this edge went ahead (`None`: none could or need be sent;
/// the original follows on an unmetered link).
pub fn record_preview(conn: &Connection, original_sha256: &str, preview_sha256: Option<&str>, long_edge: u32) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO sync_previews (sha256, preview_sha256, long_edge) VALUES (?1, ?2, ?3)",
        params![original_sha256, preview_sha256.unwrap_or(""), long_edge],
    )?;
    Ok(())
}
