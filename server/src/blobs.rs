//! Resumable photo uploads addressed by SHA-256.
//!
//! A device announces a blob (with its case), asks where to resume, and
//! appends chunks at that offset, each with its own SHA-256. The server
//! keeps the received offset durably, and verifies the whole hash before
//! the blob becomes visible. Bytes live in a folder (embedded default) or
//! in the database (PostgreSQL: no server-local state).

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gridwork_protocol::Named;
use gridwork_protocol::api::{self, BlobStatus, MAX_BLOB_BYTES, Role};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::db::{Database, Tx};
use crate::error::{Result, ServerError};
use crate::cases::{self, BlobAccess};
use crate::params;

#[derive(Clone)]
pub enum BlobStore {
    /// `<dir>/partial/<sha>` while arriving, `<dir>/complete/<sha>` after.
    Folder { dir: PathBuf, locks: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>> },
    /// Chunks as rows of `blob_chunks`.
    Database,
}

pub fn validate_sha(sha256: &str) -> Result<()> {
    let ok = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok { Ok(()) } else { Err(ServerError::bad_request("invalid_sha256", "expected 64 lowercase hex digits")) }
}

fn status_row(tx: &mut dyn Tx, sha256: &str) -> Result<BlobStatus> {
    status(tx, sha256)?.ok_or_else(|| ServerError::not_found("blob"))
}

fn status(tx: &mut dyn Tx, sha256: &str) -> Result<Option<BlobStatus>> {
    Ok(tx.query_opt("SELECT size, received, complete FROM blobs WHERE sha256 = $1", params![sha256])?.map(|r| BlobStatus {
        sha256: sha256.to_owned(),
        size: r.int(0) as u64,
        offset: r.int(1) as u64,
        complete: r.int(2) != 0,
    }))
}

impl BlobStore {
    pub fn folder(dir: PathBuf) -> Result<BlobStore> {
        for sub in ["partial", "complete"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| ServerError::storage(format!("blob folder: {}", e.kind())))?;
        }
        Ok(BlobStore::Folder { dir, locks: Arc::default() })
    }

    /// Announce an upload. Answers at once when the blob is already here.
    /// `preview_of`: this blob is a smaller JPEG of that announced photo.
    pub fn create(&self, db: &Database, caller: &Caller, sha256: &str, size: u64, preview_of: Option<&str>, now_ms: i64) -> Result<BlobStatus> {
        validate_sha(sha256)?;
        if size == 0 || size > MAX_BLOB_BYTES {
            return Err(ServerError::bad_request("invalid_blob_size", format!("size must be 1..={MAX_BLOB_BYTES}")));
        }
        if let Some(original) = preview_of {
            validate_sha(original)?;
            if original == sha256 {
                return Err(ServerError::bad_request("invalid_preview", "a preview differs from its original"));
            }
            db.write(|tx| {
                if !cases::may_access_blob(tx, caller, original, BlobAccess::Upload)? {
                    return Err(ServerError::new(409, "blob_not_announced", "push the case announcing this photo first"));
                }
                // A preview is new bytes of the caller's own: never a blob
                // already here or announced as a photo (which would then be
                // reachable as "a preview of" the caller's photo), nor the
                // preview of another photo. Saying this reveals nothing the
                // caller did not name.
                let preview_of_this = tx
                    .query_opt("SELECT original_sha256 FROM blob_previews WHERE preview_sha256 = $1", params![sha256])?
                    .map(|r| r.text(0) == original);
                let taken = match preview_of_this {
                    Some(same) => !same,
                    None => {
                        tx.query_opt("SELECT 1 FROM blobs WHERE sha256 = $1", params![sha256])?.is_some()
                            || tx.query_opt("SELECT 1 FROM incident_photos WHERE sha256 = $1", params![sha256])?.is_some()
                    }
                };
                if taken {
                    return Err(ServerError::bad_request("invalid_preview", "a preview is new bytes, sent for one photo"));
                }
                tx.execute(
                    "INSERT INTO blob_previews (preview_sha256, original_sha256) VALUES ($1, $2) ON CONFLICT (preview_sha256) DO NOTHING",
                    params![sha256, original],
                )?;
                Ok(())
            })?;
        }
        db.write(|tx| {
            // Access first: whether a photo exists is itself not for everyone.
            let uploader = cases::may_access_blob(tx, caller, sha256, BlobAccess::Upload)?;
            let not_announced = || ServerError::new(409, "blob_not_announced", "push the case announcing this photo first");
            if !uploader && !cases::may_access_blob(tx, caller, sha256, BlobAccess::See)? {
                return Err(not_announced());
            }
            if let Some(existing) = status(tx, sha256)? {
                if existing.size != size {
                    return Err(ServerError::bad_request("blob_size_mismatch", "this hash was announced with another size"));
                }
                if existing.complete {
                    return status_for(tx, caller, existing);
                }
            }
            if !uploader {
                return Err(not_announced());
            }
            // A preview's size is its own; an original's must match its announcement.
            let announced = if preview_of.is_some() {
                None
            } else {
                tx.query_opt("SELECT byte_size FROM incident_photos WHERE sha256 = $1", params![sha256])?.map(|r| r.int(0) as u64)
            };
            if announced.is_some_and(|a| a != size) {
                return Err(ServerError::bad_request("blob_size_mismatch", "size differs from the announced photo"));
            }
            tx.execute(
                "INSERT INTO blobs (sha256, size, received, complete, created_at_ms) VALUES ($1, $2, 0, 0, $3) ON CONFLICT (sha256) DO NOTHING",
                params![sha256, size as i64, now_ms],
            )?;
            status(tx, sha256)?.ok_or_else(|| ServerError::internal("blob row vanished"))
        })
        .and_then(|status| {
            if status.complete || status.offset < status.size {
                return Ok(status);
            }
            self.finish_if_all_received(db, &status, now_ms)?;
            db.read(|tx| status_row(tx, sha256))
        })
    }

    /// Every byte arrived but verification never ran or did not finish (a
    /// crash between the last chunk and `finish`): run it now.
    fn finish_if_all_received(&self, db: &Database, status: &BlobStatus, now_ms: i64) -> Result<()> {
        if status.complete || status.offset < status.size {
            return Ok(());
        }
        let bytes = match self {
            BlobStore::Folder { dir, .. } => {
                let partial = dir.join("partial").join(&status.sha256);
                let complete = dir.join("complete").join(&status.sha256);
                let path = if partial.exists() { partial.clone() } else { complete };
                let bytes = fs::read(&path).map_err(|e| ServerError::storage(format!("blob read: {}", e.kind())))?;
                self.finish(db, &status.sha256, &bytes, now_ms, || {
                    if partial.exists() {
                        fs::rename(&partial, dir.join("complete").join(&status.sha256)).map_err(|e| ServerError::storage(format!("blob rename: {}", e.kind())))?;
                    }
                    Ok(())
                })?;
                return Ok(());
            }
            BlobStore::Database => db.read(|tx| read_chunks(tx, &status.sha256))?,
        };
        self.finish(db, &status.sha256, &bytes, now_ms, || Ok(()))
    }

    pub fn status(&self, db: &Database, caller: &Caller, sha256: &str) -> Result<BlobStatus> {
        validate_sha(sha256)?;
        db.read(|tx| {
            if !cases::may_access_blob(tx, caller, sha256, BlobAccess::Upload)? && !cases::may_access_blob(tx, caller, sha256, BlobAccess::See)? {
                return Err(ServerError::not_found("blob"));
            }
            let status = status(tx, sha256)?.ok_or_else(|| ServerError::not_found("blob"))?;
            if status.complete { status_for(tx, caller, status) } else { Ok(status) }
        })
    }

    /// [`BlobStore::append`], announcing the blob first when `announce_size`
    /// is given (the first chunk of a fresh upload: one request instead of
    /// two). When the announcement finds the blob complete, or already
    /// holding bytes (an attempt the device did not record), the chunk is
    /// not appended and the status says where to go on from.
    #[allow(clippy::too_many_arguments)] // append's arguments and the size
    pub fn append_announcing(
        &self,
        db: &Database,
        caller: &Caller,
        sha256: &str,
        announce_size: Option<u64>,
        offset: u64,
        chunk: &[u8],
        chunk_sha256: &str,
        now_ms: i64,
    ) -> Result<BlobStatus> {
        if let Some(size) = announce_size {
            if offset != 0 {
                return Err(ServerError::bad_request("invalid_query", "size announces a blob with its first chunk, at offset 0"));
            }
            let status = self.create(db, caller, sha256, size, None, now_ms)?;
            if status.complete || status.offset != offset {
                return Ok(status);
            }
        }
        self.append(db, caller, sha256, offset, chunk, chunk_sha256, now_ms)
    }

    /// Append one chunk at `offset`, which must be the current offset.
    #[allow(clippy::too_many_arguments)] // each argument is a distinct fact of the request
    pub fn append(&self, db: &Database, caller: &Caller, sha256: &str, offset: u64, chunk: &[u8], chunk_sha256: &str, now_ms: i64) -> Result<BlobStatus> {
        validate_sha(sha256)?;
        if hex::encode(Sha256::digest(chunk)) != chunk_sha256 {
            return Err(ServerError::bad_request("chunk_checksum_mismatch", "the chunk's SHA-256 does not match its bytes"));
        }
        if chunk.is_empty() {
            return Err(ServerError::bad_request("empty_chunk", "a chunk needs at least one byte"));
        }
        // In the folder store, one append per blob at a time from here on:
        // reading the offset and writing at it must not interleave with
        // another append, or a stale chunk could cut off a newer one.
        let folder_lock = match self {
            BlobStore::Folder { locks, .. } => Some(locks.lock().unwrap_or_else(|e| e.into_inner()).entry(sha256.to_owned()).or_default().clone()),
            BlobStore::Database => None,
        };
        let _held = folder_lock.as_ref().map(|lock| lock.lock().unwrap_or_else(|e| e.into_inner()));
        let current = db.read(|tx| {
            if !cases::may_access_blob(tx, caller, sha256, BlobAccess::Upload)? {
                return Err(ServerError::not_found("blob"));
            }
            status(tx, sha256)?.ok_or_else(|| ServerError::not_found("blob"))
        })?;
        if current.complete {
            let shown = db.read(|tx| status_for(tx, caller, current.clone()))?;
            return if shown.complete { Ok(shown) } else { self.prove(db, caller, &current, offset, chunk, now_ms) };
        }
        let me = caller.user_id.to_string();
        if current.offset == current.size {
            self.finish_if_all_received(db, &current, now_ms)?;
            return db.read(|tx| status_row(tx, sha256));
        }
        if offset != current.offset {
            return Err(ServerError::new(409, "offset_mismatch", format!("the upload continues at offset {}", current.offset)));
        }
        if offset + chunk.len() as u64 > current.size {
            return Err(ServerError::bad_request("chunk_past_end", "the chunk goes past the announced size"));
        }
        let end = offset + chunk.len() as u64;
        match self {
            BlobStore::Folder { dir, .. } => {
                let path = dir.join("partial").join(sha256);
                write_at(&path, offset, chunk)?;
                let advanced = db.write(|tx| {
                    let advanced =
                        tx.execute("UPDATE blobs SET received = $2 WHERE sha256 = $1 AND received = $3 AND complete = 0", params![sha256, end as i64, offset as i64])?;
                    if advanced == 1 {
                        extend_cover(tx, sha256, &me, offset, end)?;
                    }
                    Ok(advanced)
                })?;
                if advanced != 1 {
                    return Err(ServerError::new(409, "offset_mismatch", "another upload of this blob moved on; query the offset"));
                }
                if end == current.size {
                    let bytes = fs::read(&path).map_err(|e| ServerError::storage(format!("blob read: {}", e.kind())))?;
                    self.finish(db, sha256, &bytes, now_ms, || {
                        fs::rename(&path, dir.join("complete").join(sha256)).map_err(|e| ServerError::storage(format!("blob rename: {}", e.kind())))
                    })?;
                }
            }
            BlobStore::Database => {
                db.write(|tx| {
                    let advanced = tx.execute(
                        "UPDATE blobs SET received = $2 WHERE sha256 = $1 AND received = $3 AND complete = 0",
                        params![sha256, end as i64, offset as i64],
                    )?;
                    if advanced != 1 {
                        return Err(ServerError::new(409, "offset_mismatch", "another upload of this blob moved on; query the offset"));
                    }
                    tx.execute("INSERT INTO blob_chunks (sha256, start_at, data) VALUES ($1, $2, $3)", params![sha256, offset as i64, chunk.to_vec()])?;
                    extend_cover(tx, sha256, &me, offset, end)
                })?;
                if end == current.size {
                    let bytes = db.read(|tx| read_chunks(tx, sha256))?;
                    self.finish(db, sha256, &bytes, now_ms, || Ok(()))?;
                }
            }
        }
        db.read(|tx| status(tx, sha256))?.ok_or_else(|| ServerError::not_found("blob"))
    }

    /// Verify the whole hash; on a match the blob becomes visible, on a
    /// mismatch the upload starts over.
    fn finish(&self, db: &Database, sha256: &str, bytes: &[u8], now_ms: i64, publish: impl FnOnce() -> Result<()>) -> Result<()> {
        if hex::encode(Sha256::digest(bytes)) != sha256 {
            db.write(|tx| {
                tx.execute("UPDATE blobs SET received = 0 WHERE sha256 = $1", params![sha256])?;
                tx.execute("DELETE FROM blob_chunks WHERE sha256 = $1", params![sha256])?;
                tx.execute("UPDATE blob_possession SET covered = 0 WHERE sha256 = $1", params![sha256])?;
                Ok(())
            })?;
            if let BlobStore::Folder { dir, .. } = self {
                let _ = fs::remove_file(dir.join("partial").join(sha256));
            }
            return Err(ServerError::new(422, "blob_hash_mismatch", "the uploaded bytes do not hash to the announced SHA-256; upload again from offset 0"));
        }
        db.write(|tx| {
            // Only the verification that completes the blob announces it.
            if tx.execute("UPDATE blobs SET complete = 1 WHERE sha256 = $1 AND complete = 0", params![sha256])? == 1 {
                cases::evidence_arrived(tx, sha256, None, now_ms)?;
            }
            Ok(())
        })?;
        // Moving the verified file comes after the commit; if it fails, the
        // download still finds the bytes under partial/.
        publish()
    }

    /// The bytes of a complete blob, for callers who may see a case using it.
    pub fn download(&self, db: &Database, caller: &Caller, sha256: &str) -> Result<Vec<u8>> {
        validate_sha(sha256)?;
        // Whoever may see a case announcing the photo learns whether it is
        // here for them: only bytes that back a reference they see count,
        // so a hash announced without its bytes finds nothing more.
        let complete = db.read(|tx| {
            if !cases::may_access_blob(tx, caller, sha256, BlobAccess::See)? {
                return Err(ServerError::not_found("blob"));
            }
            Ok(status(tx, sha256)?.is_some_and(|s| s.complete) && cases::may_access_blob(tx, caller, sha256, BlobAccess::Download)?)
        })?;
        if !complete {
            return Err(ServerError::new(404, "blob_incomplete", "the photo has not fully arrived yet"));
        }
        match self {
            BlobStore::Folder { dir, .. } => fs::read(dir.join("complete").join(sha256))
                .or_else(|_| fs::read(dir.join("partial").join(sha256)))
                .map_err(|e| ServerError::storage(format!("blob read: {}", e.kind()))),
            BlobStore::Database => db.read(|tx| read_chunks(tx, sha256)),
        }
    }
}

impl BlobStore {
    /// The largest complete preview of a photo, for callers who may see it.
    pub fn download_preview(&self, db: &Database, caller: &Caller, original_sha256: &str) -> Result<Vec<u8>> {
        let preview = db.read(|tx| {
            Ok(tx
                .query_opt(
                    "SELECT v.preview_sha256 FROM blob_previews v JOIN blobs b ON b.sha256 = v.preview_sha256
                     WHERE v.original_sha256 = $1 AND b.complete = 1 ORDER BY b.size DESC LIMIT 1",
                    params![original_sha256],
                )?
                .map(|r| r.text(0)))
        })?;
        match preview {
            Some(preview) => self.download(db, caller, &preview),
            None => Err(ServerError::new(404, "blob_incomplete", "the photo has not fully arrived yet")),
        }
    }
}

impl BlobStore {
    /// A chunk from an announcer who never showed the server the bytes of
    /// this blob, which is already here: matched against the stored bytes
    /// instead of stored. Once every byte has matched, their references are
    /// backed (see `cases::may_access_blob`). So a hash learned elsewhere
    /// grants nothing, and nothing tells the announcer whether the bytes
    /// were here before: the upload looks like any other.
    fn prove(&self, db: &Database, caller: &Caller, blob: &BlobStatus, offset: u64, chunk: &[u8], now_ms: i64) -> Result<BlobStatus> {
        let me = caller.user_id.to_string();
        let covered = db.read(|tx| covered(tx, &blob.sha256, &me))?;
        if offset != covered {
            return Err(ServerError::new(409, "offset_mismatch", format!("the upload continues at offset {covered}")));
        }
        let end = offset + chunk.len() as u64;
        if end > blob.size {
            return Err(ServerError::bad_request("chunk_past_end", "the chunk goes past the announced size"));
        }
        if self.read_range(db, &blob.sha256, offset, end)? != chunk {
            db.write(|tx| tx.execute("UPDATE blob_possession SET covered = 0 WHERE sha256 = $1 AND user_id = $2", params![blob.sha256.clone(), me.clone()]))?;
            return Err(ServerError::new(422, "blob_hash_mismatch", "the uploaded bytes do not hash to the announced SHA-256; upload again from offset 0"));
        }
        db.write(|tx| {
            extend_cover(tx, &blob.sha256, &me, offset, end)?;
            if end == blob.size {
                cases::evidence_arrived(tx, &blob.sha256, Some(&me), now_ms)?;
            }
            Ok(())
        })?;
        Ok(BlobStatus { offset: end, complete: end == blob.size, ..blob.clone() })
    }

    /// Bytes `start..end` of a complete blob.
    fn read_range(&self, db: &Database, sha256: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        let io = |e: std::io::Error| ServerError::storage(format!("blob read: {}", e.kind()));
        let mut bytes = vec![0; (end - start) as usize];
        match self {
            BlobStore::Folder { dir, .. } => {
                let path = dir.join("complete").join(sha256);
                let path = if path.exists() { path } else { dir.join("partial").join(sha256) };
                let mut file = fs::File::open(path).map_err(io)?;
                file.seek(SeekFrom::Start(start)).map_err(io)?;
                file.read_exact(&mut bytes).map_err(io)?;
            }
            BlobStore::Database => {
                let rows = db.read(|tx| tx.query("SELECT start_at, data FROM blob_chunks WHERE sha256 = $1 AND start_at < $2 ORDER BY start_at", params![sha256, end as i64]))?;
                for row in rows {
                    let (at, data) = (row.int(0) as u64, row.bytes(1));
                    let (from, to) = (start.max(at), end.min(at + data.len() as u64));
                    if from < to {
                        bytes[(from - start) as usize..(to - start) as usize].copy_from_slice(&data[(from - at) as usize..(to - at) as usize]);
                    }
                }
            }
        }
        Ok(bytes)
    }
}

/// A complete blob's status as this caller hears it: complete for whoever
/// may see it, unless they announced it themselves and never showed its
/// bytes; then, how far they have shown them (see `BlobStore::prove`).
fn status_for(tx: &mut dyn Tx, caller: &Caller, blob: BlobStatus) -> Result<BlobStatus> {
    let me = caller.user_id.to_string();
    let shown = covered(tx, &blob.sha256, &me)?;
    if shown >= blob.size || !cases::announced_by(tx, caller, &blob.sha256)? {
        return Ok(blob);
    }
    Ok(BlobStatus { offset: shown, complete: false, ..blob })
}

/// The meta key of the roles that get originals' renditions only.
const ORIGINALS_WITHHELD_KEY: &str = "originals_withheld_from";

/// The district's privacy policy for photo originals: the roles that see a
/// case's photos only as renditions (re-encoded, no EXIF: no GPS position,
/// time or camera). Empty by default. Kept in the database, so every server
/// instance applies the same policy.
pub fn originals_withheld_from(tx: &mut dyn Tx) -> Result<Vec<Role>> {
    let value = tx.query_opt("SELECT value FROM meta WHERE key = $1", params![ORIGINALS_WITHHELD_KEY])?.map(|r| r.text(0)).unwrap_or_default();
    Ok(value.split(',').filter_map(Role::parse).collect())
}

pub fn set_originals_withheld_from(tx: &mut dyn Tx, roles: &[Role]) -> Result<()> {
    let value = roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
        params![ORIGINALS_WITHHELD_KEY, value],
    )?;
    Ok(())
}

/// Refuse an original to a caller whose role the policy keeps originals
/// from, unless they showed the server every byte of it themselves (one
/// proven byte of someone else's photo, easily guessed, must not do).
pub fn check_original_allowed(tx: &mut dyn Tx, caller: &Caller, sha256: &str) -> Result<()> {
    if !originals_withheld_from(tx)?.contains(&caller.role) {
        return Ok(());
    }
    let size = status(tx, sha256)?.map_or(u64::MAX, |blob| blob.size);
    if covered(tx, sha256, &caller.user_id.to_string())? >= size {
        return Ok(());
    }
    Err(ServerError::new(
        403,
        api::ORIGINAL_WITHHELD,
        "this district shows originals (with their GPS position) to fewer roles; ask for rendition=2048",
    ))
}

/// How many bytes of the blob, from offset 0, this user has shown the server.
fn covered(tx: &mut dyn Tx, sha256: &str, user_id: &str) -> Result<u64> {
    Ok(tx.query_opt("SELECT covered FROM blob_possession WHERE sha256 = $1 AND user_id = $2", params![sha256, user_id])?.map_or(0, |r| r.int(0) as u64))
}

/// The user sent bytes `from..to`: what they have shown grows when the
/// chunk continues it.
fn extend_cover(tx: &mut dyn Tx, sha256: &str, user_id: &str, from: u64, to: u64) -> Result<()> {
    if from == 0 {
        tx.execute(
            "INSERT INTO blob_possession (sha256, user_id, covered) VALUES ($1, $2, $3)
             ON CONFLICT (sha256, user_id) DO UPDATE SET covered = $3 WHERE blob_possession.covered < $3",
            params![sha256, user_id, to as i64],
        )?;
    } else {
        tx.execute(
            "UPDATE blob_possession SET covered = $4 WHERE sha256 = $1 AND user_id = $2 AND covered >= $3 AND covered < $4",
            params![sha256, user_id, from as i64, to as i64],
        )?;
    }
    Ok(())
}

fn read_chunks(tx: &mut dyn Tx, sha256: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for row in tx.query("SELECT data FROM blob_chunks WHERE sha256 = $1 ORDER BY start_at", params![sha256])? {
        bytes.extend_from_slice(&row.bytes(0));
    }
    Ok(bytes)
}

/// Write at `offset`, dropping anything past it first (a crash after a
/// write but before the offset was recorded leaves such bytes), then fsync.
fn write_at(path: &PathBuf, offset: u64, chunk: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| ServerError::storage(format!("blob write: {}", e.kind()));
    let mut file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path).map_err(io)?;
    file.set_len(offset).map_err(io)?;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    file.write_all(chunk).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

