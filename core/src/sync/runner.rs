//! The sync runner: executes the engine's actions against the store and a
//! transport, within a time budget, and reports what happened. This is the
//! I/O edge; decisions live in [`super::engine`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use gridwork_protocol::api::OperationOutcome;
use gridwork_protocol::{OperationEnvelope, OperationKind, UploadPhoto};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::apply;
use super::engine::{Action, Event, FailureClass, Step, SyncEngine};
use super::session::{self, Session};
use super::transport::{Disposition, Transport, TransportError, classify};
use crate::error::{Error, Result};
use crate::facade::{ChangeKind, Gridwork};
use crate::outbox::{self, Operation, ParkReason};
use crate::photo::PhotoFormat;

pub const PUSH_BATCH: u32 = 100;

/// The runner asks the outbox for everything pending, whatever its
/// next-attempt time: the engine owns retry timing, and device clocks jump
/// (a clock set back a day must not hold a day's reports).
const ANY_TIME: i64 = i64::MAX;
pub const PULL_PAGE: u32 = 500;
/// Uploads start with small chunks, so a weak 2G/3G link loses little when
/// it drops, and double after every acknowledged chunk up to the server's
/// limit, so a good link needs few requests.
pub const FIRST_CHUNK_BYTES: usize = 256 * 1024;
pub const MAX_CHUNK_BYTES: usize = 4 * 1024 * 1024;
pub const MIN_CHUNK_BYTES: usize = 32 * 1024;

/// Failures seen in a run, by class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    pub network: u32,
    pub transient: u32,
    pub auth: u32,
    pub rejected: u32,
}

/// What one `sync_now` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Operations the server acknowledged (applied or duplicate).
    pub pushed: u32,
    /// Operations the server refused, now parked.
    pub parked: u32,
    pub uploaded_bytes: u64,
    pub photos_uploaded: u32,
    /// Previews (thumbnails or renditions) sent ahead on a metered link.
    pub previews_uploaded: u32,
    /// Changes pulled and applied (or deferred).
    pub pulled: u32,
    pub errors: ErrorCounts,
    /// When to run again (device time, Unix ms); `None` when the round
    /// finished and only a new trigger needs another.
    pub next_wake_ms: Option<i64>,
    /// A person must log in again; nothing was dropped.
    pub needs_login: bool,
    /// The round finished: nothing left that can be done now.
    pub completed: bool,
}

/// One `sync_now`: run the engine until it sleeps, idles or the budget ends.
pub(crate) fn run(gw: &Gridwork, transport: &dyn Transport, engine: &mut SyncEngine, budget: Duration) -> Result<SyncReport> {
    let started = Instant::now();
    let mut report = SyncReport::default();
    let mut rounds_progress = 0;
    let Some(mut session) = gw.with_connection(|c| session::load(c))? else {
        report.needs_login = true;
        return Ok(report);
    };
    // Runs are serialized: anything still in flight is left over from a run
    // that failed midway (a full disk while recording results, say).
    gw.with_connection(|c| outbox::recover_in_flight(c).map(|_| ()))?;
    loop {
        let now = gw.now().device_ms;
        if started.elapsed() >= budget {
            report.next_wake_ms = Some(now);
            break;
        }
        match engine.next_action(now) {
            Action::Run(Step::Push) => push_step(gw, transport, engine, &session, &mut report)?,
            Action::Run(Step::Upload) => upload_step(gw, transport, engine, &session, &mut report, started, budget)?,
            Action::Run(Step::Pull) => pull_step(gw, transport, engine, &session, &mut report)?,
            Action::RefreshToken => match transport.refresh(&session.refresh_token) {
                Ok(tokens) => {
                    session = Session::from_tokens(&session.server_url, tokens);
                    gw.with_connection(|c| session::save(c, &session))?;
                    engine.handle(Event::TokenProvided, now);
                }
                Err(error) => match classify(&error) {
                    Disposition::Retry(FailureClass::Auth) | Disposition::Reject { .. } => {
                        report.errors.auth += 1;
                        engine.handle(Event::RefreshFailed, now);
                    }
                    Disposition::Retry(class) => {
                        count(&mut report, class);
                        report.next_wake_ms = Some(now + super::engine::BASE_BACKOFF_MS * 5);
                        break;
                    }
                },
            },
            Action::NeedToken => {
                report.needs_login = true;
                gw.notify(ChangeKind::Session);
                break;
            }
            Action::SleepUntil(at) => {
                report.next_wake_ms = Some(at);
                break;
            }
            Action::WaitForNetwork { probe_at_ms } => {
                report.next_wake_ms = Some(probe_at_ms);
                break;
            }
            Action::Idle => {
                // Work that became ready during the round (an upload whose
                // case was acknowledged late, an operation queued meanwhile)
                // starts another round rather than waiting for a trigger.
                let ready = if engine.uploads_allowed() {
                    gw.with_connection(|c| outbox::ready(c, ANY_TIME, 1))?
                } else {
                    // Photos waiting for an unmetered link are not work for now.
                    gw.with_connection(|c| outbox::ready_of_kinds(c, ANY_TIME, 1, &[OperationKind::SubmitIncident, OperationKind::TransitionIncident]))?
                };
                if !ready.is_empty() && report.pushed + report.photos_uploaded + report.parked > rounds_progress {
                    rounds_progress = report.pushed + report.photos_uploaded + report.parked;
                    engine.handle(Event::Wake(super::engine::Trigger::OperationQueued), now);
                    continue;
                }
                report.completed = ready.is_empty();
                if !report.completed {
                    report.next_wake_ms = Some(now + super::engine::BASE_BACKOFF_MS);
                }
                break;
            }
        }
    }
    Ok(report)
}

fn count(report: &mut SyncReport, class: FailureClass) {
    match class {
        FailureClass::Network => report.errors.network += 1,
        FailureClass::Transient { .. } => report.errors.transient += 1,
        FailureClass::Auth => report.errors.auth += 1,
    }
}

fn write<T>(gw: &Gridwork, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    gw.with_connection(|conn| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    })
}

/// Keep the offset to server time from every reply (ignoring the round
/// trip: a second off is fine for field records).
fn observe_server_time(gw: &Gridwork, server_time_ms: i64) -> Result<()> {
    let offset = server_time_ms - gw.now().device_ms;
    if (offset - gw.server_time_offset_ms()).abs() > 1_000 {
        gw.set_server_time_offset_ms(offset)?;
    }
    Ok(())
}

fn envelope(op: &Operation) -> Option<OperationEnvelope> {
    Some(OperationEnvelope {
        op_id: op.op_id,
        entity_id: op.entity_id,
        kind: op.kind?,
        schema_version: op.payload_schema,
        payload: op.payload.clone(),
    })
}

fn push_step(gw: &Gridwork, transport: &dyn Transport, engine: &mut SyncEngine, session: &Session, report: &mut SyncReport) -> Result<()> {
    let now = gw.now().device_ms;
    let ops: Vec<Operation> =
        gw.with_connection(|c| outbox::ready_of_kinds(c, ANY_TIME, engine.push_batch, &[OperationKind::SubmitIncident, OperationKind::TransitionIncident]))?;
    if ops.is_empty() {
        engine.handle(Event::Succeeded { step: Step::Push, more: false }, now);
        return Ok(());
    }
    write(gw, |c| ops.iter().try_for_each(|op| outbox::mark_in_flight(c, op.op_id)))?;
    let envelopes: Vec<OperationEnvelope> = ops.iter().filter_map(envelope).collect();
    match transport.push(&session.access_token, &envelopes) {
        Ok(response) => {
            let now = gw.now().device_ms;
            let (acked, parked) = write(gw, |c| {
                let (mut acked, mut parked) = (0, 0);
                for op in &ops {
                    // A duplicate carries the first outcome: a replayed
                    // rejection is still a rejection.
                    let outcome = response.results.iter().find(|r| r.op_id == op.op_id).map(|r| match &r.outcome {
                        OperationOutcome::Duplicate { first } => first.as_ref(),
                        other => other,
                    });
                    match outcome {
                        Some(OperationOutcome::Applied { .. } | OperationOutcome::Duplicate { .. }) => {
                            outbox::acknowledge(c, op.op_id, now)?;
                            acked += 1;
                        }
                        Some(OperationOutcome::Rejected { code, message }) => {
                            outbox::park(c, op.op_id, &ParkReason { code: code.clone(), message: message.clone() })?;
                            parked += 1;
                        }
                        // Not answered: send again next time.
                        None => outbox::retry_later(c, op.op_id, now, "unanswered")?,
                    }
                }
                apply::apply_deferred(c)?;
                Ok((acked, parked))
            })?;
            report.pushed += acked;
            report.parked += parked;
            engine.push_batch = (engine.push_batch * 2).min(PUSH_BATCH);
            report.errors.rejected += parked;
            observe_server_time(gw, response.server_time_ms)?;
            gw.notify(ChangeKind::Outbox);
            engine.handle(Event::Succeeded { step: Step::Push, more: true }, now);
        }
        Err(error) => {
            let now = gw.now().device_ms;
            match classify(&error) {
                Disposition::Retry(class) => {
                    write(gw, |c| ops.iter().try_for_each(|op| outbox::retry_later(c, op.op_id, now, class_name(class))))?;
                    count(report, class);
                    engine.handle(Event::Failed { step: Step::Push, class }, now);
                }
                Disposition::Reject { code, message } => {
                    // The request as a whole was refused. Only a per-operation
                    // result may park an operation, so narrow it down: halve
                    // the batch until the refused operation travels alone,
                    // and park it only then.
                    if ops.len() == 1 {
                        write(gw, |c| outbox::park(c, ops[0].op_id, &ParkReason { code: code.clone(), message: message.clone() }))?;
                        report.parked += 1;
                        report.errors.rejected += 1;
                        engine.push_batch = PUSH_BATCH;
                        engine.handle(Event::Succeeded { step: Step::Push, more: true }, now);
                    } else {
                        write(gw, |c| ops.iter().try_for_each(|op| outbox::retry_later(c, op.op_id, now, "batch_refused")))?;
                        engine.push_batch = (ops.len() as u32 / 2).max(1);
                        engine.handle(Event::Succeeded { step: Step::Push, more: true }, now);
                    }
                }
            }
        }
    }
    Ok(())
}

fn class_name(class: FailureClass) -> &'static str {
    match class {
        FailureClass::Network => "network",
        FailureClass::Transient { .. } => "transient",
        FailureClass::Auth => "auth",
    }
}

enum UploadEnd {
    Complete,
    OutOfTime,
}

fn upload_step(
    gw: &Gridwork,
    transport: &dyn Transport,
    engine: &mut SyncEngine,
    session: &Session,
    report: &mut SyncReport,
    started: Instant,
    budget: Duration,
) -> Result<()> {
    let now = gw.now().device_ms;
    if !engine.originals_allowed() {
        return preview_step(gw, transport, engine, session, report, started, budget);
    }
    let op = gw.with_connection(|c| outbox::ready_of_kinds(c, ANY_TIME, 1, &[OperationKind::UploadPhoto]))?.into_iter().next();
    let Some(op) = op else {
        engine.handle(Event::Succeeded { step: Step::Upload, more: false }, now);
        return Ok(());
    };
    let upload: UploadPhoto = match serde_json::from_value(op.payload.clone()) {
        Ok(upload) => upload,
        Err(_) => {
            write(gw, |c| outbox::park(c, op.op_id, &ParkReason { code: "invalid_payload".into(), message: "unreadable upload".into() }))?;
            engine.handle(Event::Succeeded { step: Step::Upload, more: true }, now);
            return Ok(());
        }
    };
    let mime: Option<String> = gw.with_connection(|c| {
        Ok(c.query_row("SELECT mime_type FROM photos WHERE id = ?1", [upload.photo_id.to_string()], |r| r.get(0)).optional()?)
    })?;
    let format = mime.as_deref().and_then(PhotoFormat::from_mime_type).unwrap_or(PhotoFormat::Jpeg);
    let path = gw.photo_store().original_path(&upload.sha256, format);
    write(gw, |c| outbox::mark_in_flight(c, op.op_id))?;
    match upload_blob(gw, transport, session, &Blob { sha256: &upload.sha256, size: upload.byte_size, preview_of: None }, &path, report, started, budget) {
        Ok(UploadEnd::Complete) => {
            let now = gw.now().device_ms;
            write(gw, |c| {
                outbox::acknowledge(c, op.op_id, now)?;
                c.execute("DELETE FROM sync_uploads WHERE sha256 = ?1", [&upload.sha256])?;
                apply::apply_deferred(c)?;
                Ok(())
            })?;
            report.photos_uploaded += 1;
            gw.notify(ChangeKind::Outbox);
            engine.handle(Event::Succeeded { step: Step::Upload, more: true }, now);
        }
        Ok(UploadEnd::OutOfTime) => {
            let now = gw.now().device_ms;
            write(gw, |c| outbox::retry_later(c, op.op_id, now, "budget"))?;
        }
        Err(UploadFailure::Transport(error)) => {
            let now = gw.now().device_ms;
            match classify(&error) {
                Disposition::Retry(class) => {
                    write(gw, |c| outbox::retry_later(c, op.op_id, now, class_name(class)))?;
                    count(report, class);
                    engine.handle(Event::Failed { step: Step::Upload, class }, now);
                }
                Disposition::Reject { code, message } => {
                    write(gw, |c| {
                        outbox::park(c, op.op_id, &ParkReason { code, message })?;
                        apply::apply_deferred(c).map(|_| ())
                    })?;
                    report.parked += 1;
                    report.errors.rejected += 1;
                    engine.handle(Event::Succeeded { step: Step::Upload, more: true }, now);
                }
            }
        }
        Err(UploadFailure::Local(error)) => {
            let now = gw.now().device_ms;
            let reason = ParkReason { code: error.code().to_owned(), message: "the photo file cannot be read on this device".into() };
            write(gw, |c| outbox::park(c, op.op_id, &reason))?;
            report.parked += 1;
            engine.handle(Event::Succeeded { step: Step::Upload, more: true }, now);
        }
    }
    Ok(())
}

enum UploadFailure {
    Transport(TransportError),
    Local(Error),
}

impl From<TransportError> for UploadFailure {
    fn from(e: TransportError) -> Self {
        UploadFailure::Transport(e)
    }
}

/// On a metered link whose policy keeps originals for Wi-Fi: send a
/// preview (the 320 px thumbnail or a 1280 px rendition) of each photo not
/// yet previewed, so the command center sees the scene now. The upload
/// operation itself stays pending for the original.
fn preview_step(
    gw: &Gridwork,
    transport: &dyn Transport,
    engine: &mut SyncEngine,
    session: &Session,
    report: &mut SyncReport,
    started: Instant,
    budget: Duration,
) -> Result<()> {
    let now = gw.now().device_ms;
    let Some(edge) = engine.preview_edge() else {
        engine.handle(Event::Succeeded { step: Step::Upload, more: false }, now);
        return Ok(());
    };
    let candidates = gw.with_connection(|c| outbox::ready_of_kinds(c, ANY_TIME, 1000, &[OperationKind::UploadPhoto]))?;
    let mut next = None;
    for op in candidates {
        let Ok(upload) = serde_json::from_value::<UploadPhoto>(op.payload.clone()) else { continue };
        let sent = gw.with_connection(|c| {
            Ok(c.query_row("SELECT long_edge FROM sync_previews WHERE sha256 = ?1", [&upload.sha256], |r| r.get::<_, u32>(0)).optional()?)
        })?;
        if sent.is_none_or(|sent| sent < edge) {
            next = Some(upload);
            break;
        }
    }
    let Some(upload) = next else {
        engine.handle(Event::Succeeded { step: Step::Upload, more: false }, now);
        return Ok(());
    };
    let path = if edge <= crate::photo::THUMBNAIL_LONG_EDGE {
        Ok(gw.photo_store().thumbnail_path(&upload.sha256))
    } else {
        gw.photo_upload_file(upload.photo_id, crate::photo::Rendition::LongEdge1280)
    };
    let bytes = match path.as_ref().map_err(|_| ()).and_then(|p| std::fs::read(p).map_err(|_| ())) {
        Ok(bytes) => bytes,
        Err(_) => {
            // No preview can be made; the original will go on Wi-Fi.
            gw.with_connection(|c| {
                c.execute("INSERT OR REPLACE INTO sync_previews (sha256, preview_sha256, long_edge) VALUES (?1, '', ?2)", params![upload.sha256, edge])?;
                Ok(())
            })?;
            engine.handle(Event::Succeeded { step: Step::Upload, more: true }, now);
            return Ok(());
        }
    };
    let preview_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let blob = Blob {
        sha256: &preview_sha,
        size: bytes.len() as u64,
        preview_of: (preview_sha != upload.sha256).then_some(upload.sha256.as_str()),
    };
    let path = path.expect("read above");
    match upload_blob(gw, transport, session, &blob, &path, report, started, budget) {
        Ok(UploadEnd::Complete) => {
            gw.with_connection(|c| {
                c.execute(
                    "INSERT OR REPLACE INTO sync_previews (sha256, preview_sha256, long_edge) VALUES (?1, ?2, ?3)",
                    params![upload.sha256, preview_sha, edge],
                )?;
                Ok(())
            })?;
            report.previews_uploaded += 1;
            engine.handle(Event::Succeeded { step: Step::Upload, more: true }, gw.now().device_ms);
        }
        Ok(UploadEnd::OutOfTime) => {}
        Err(UploadFailure::Transport(error)) => {
            let now = gw.now().device_ms;
            match classify(&error) {
                Disposition::Retry(class) => {
                    count(report, class);
                    engine.handle(Event::Failed { step: Step::Upload, class }, now);
                }
                // A refused preview is not worth parking the evidence for:
                // note it as sent, the original follows on Wi-Fi.
                Disposition::Reject { .. } => {
                    gw.with_connection(|c| {
                        c.execute("INSERT OR REPLACE INTO sync_previews (sha256, preview_sha256, long_edge) VALUES (?1, '', ?2)", params![upload.sha256, edge])?;
                        Ok(())
                    })?;
                    report.errors.rejected += 1;
                    engine.handle(Event::Succeeded { step: Step::Upload, more: true }, now);
                }
            }
        }
        Err(UploadFailure::Local(_)) => {
            engine.handle(Event::Succeeded { step: Step::Upload, more: true }, now);
        }
    }
    Ok(())
}

/// A blob to upload: its hash and size, and the original it previews.
struct Blob<'a> {
    sha256: &'a str,
    size: u64,
    preview_of: Option<&'a str>,
}

/// Resumable upload: ask the server where it stands (it is the authority on
/// what it holds), then append chunks from there, recording progress on the
/// device after every acknowledged chunk.
#[allow(clippy::too_many_arguments)]
fn upload_blob(
    gw: &Gridwork,
    transport: &dyn Transport,
    session: &Session,
    upload: &Blob,
    path: &std::path::Path,
    report: &mut SyncReport,
    started: Instant,
    budget: Duration,
) -> std::result::Result<UploadEnd, UploadFailure> {
    let local = |e: std::io::Error| UploadFailure::Local(Error::from(e));
    let mut status = transport.blob_create(&session.access_token, upload.sha256, upload.size, upload.preview_of)?;
    let mut file = File::open(path).map_err(|_| UploadFailure::Local(Error::PhotoFileNotFound))?;
    let mut chunk_bytes = FIRST_CHUNK_BYTES;
    let mut ceiling = MAX_CHUNK_BYTES;
    let mut buffer = Vec::new();
    let mut restarted = false;
    let mut damaged = 0;
    while !status.complete {
        if started.elapsed() >= budget {
            return Ok(UploadEnd::OutOfTime);
        }
        let offset = status.offset;
        if offset >= upload.size {
            // The server holds every byte but has not finished verifying:
            // ask again later (announcing it again completes it).
            return Err(TransportError::Malformed("upload awaits the server's verification".into()).into());
        }
        file.seek(SeekFrom::Start(offset)).map_err(local)?;
        let wanted = (upload.size - offset).min(chunk_bytes as u64) as usize;
        buffer.resize(wanted, 0);
        file.read_exact(&mut buffer[..wanted]).map_err(local)?;
        match transport.blob_chunk(&session.access_token, upload.sha256, offset, &buffer[..wanted]) {
            Ok(next) => {
                report.uploaded_bytes += next.offset.saturating_sub(offset);
                status = next;
                chunk_bytes = (chunk_bytes * 2).min(ceiling);
                let now = gw.now().device_ms;
                let progress = (upload.sha256, upload.size as i64, status.offset as i64, now);
                gw.with_connection(|c| {
                    c.execute(
                        "INSERT INTO sync_uploads (sha256, size, uploaded_bytes, updated_ms) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (sha256) DO UPDATE SET uploaded_bytes = ?3, updated_ms = ?4",
                        params![progress.0, progress.1, progress.2, progress.3],
                    )?;
                    Ok(())
                })
                .map_err(UploadFailure::Local)?;
            }
            // Someone (an earlier, killed attempt) moved the offset: ask.
            Err(TransportError::Http { code, .. }) if code == "offset_mismatch" => {
                status = transport.blob_status(&session.access_token, upload.sha256)?;
            }
            // Something on the way (a proxy) takes smaller bodies only.
            Err(TransportError::Http { status: 413, .. }) if chunk_bytes > MIN_CHUNK_BYTES => {
                chunk_bytes = (chunk_bytes / 2).max(MIN_CHUNK_BYTES);
                ceiling = chunk_bytes;
            }
            // The chunk was damaged on the way: send it again (a few times;
            // after that it is a transient failure, never a reason to park).
            Err(TransportError::Http { code, .. }) if code == "chunk_checksum_mismatch" => {
                damaged += 1;
                if damaged > 3 {
                    return Err(TransportError::Malformed("chunks keep arriving damaged".into()).into());
                }
            }
            // The bytes on the server did not hash right: start over once.
            Err(TransportError::Http { code, .. }) if code == "blob_hash_mismatch" && !restarted => {
                restarted = true;
                status = transport.blob_status(&session.access_token, upload.sha256)?;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(UploadEnd::Complete)
}

fn pull_step(gw: &Gridwork, transport: &dyn Transport, engine: &mut SyncEngine, session: &Session, report: &mut SyncReport) -> Result<()> {
    let cursor = gw.with_connection(|c| session::pull_cursor(c))?;
    match transport.pull(&session.access_token, cursor, PULL_PAGE) {
        Ok(page) => {
            // One transaction per page: the cursor moves with the data.
            let applied = write(gw, |c| {
                let applied = apply::apply_page(c, &page.changes)?;
                session::set_pull_cursor(c, page.next_cursor)?;
                Ok(applied)
            })?;
            report.pulled += page.changes.len() as u32;
            observe_server_time(gw, page.server_time_ms)?;
            if applied.incidents > 0 {
                gw.notify(ChangeKind::Incidents);
            }
            if applied.categories > 0 {
                gw.notify(ChangeKind::Categories);
            }
            if applied.grids > 0 {
                gw.notify(ChangeKind::Grids);
            }
            engine.handle(Event::Succeeded { step: Step::Pull, more: page.has_more }, gw.now().device_ms);
        }
        Err(error) => {
            let now = gw.now().device_ms;
            match classify(&error) {
                Disposition::Retry(class) => {
                    count(report, class);
                    engine.handle(Event::Failed { step: Step::Pull, class }, now);
                }
                // A refused pull has nothing to park; try again later.
                Disposition::Reject { .. } => {
                    report.errors.rejected += 1;
                    engine.handle(Event::Failed { step: Step::Pull, class: FailureClass::Transient { retry_after_ms: None } }, now);
                }
            }
        }
    }
    Ok(())
}
