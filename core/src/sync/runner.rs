//! The sync runner: a plain loop that performs what the engine asks
//! against the store and a transport, and feeds back what happened. It
//! decides nothing about sync policy (that is [`super::engine`]); it owns
//! the I/O: reading and writing the store, reading photo files, talking to
//! the server, telling observers, and the run's time budget.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gridwork_protocol::api::{MAX_PUSH_BYTES, PhotoRendition};
use gridwork_protocol::{OperationEnvelope, UploadPhoto};
use log::{debug, info, warn};
use rusqlite::{Connection, TransactionBehavior};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::apply;
use super::engine::{Action, BlobJob, Event, PreviewOf, Record, SyncEngine, SyncReport, Verdict};
use super::session::{self, Session};
use super::transport::{Transport, TransportError};
use crate::capture;
use crate::model::task;
use crate::clock::CorrectedClock;
use crate::error::{Error, Result};
use crate::observe::{Change, Notifier, SyncProgress};
use crate::outbox::{self, Operation, transfers};
use crate::photo::{PhotoFormat, PhotoLimits, PhotoStore, Rendition, THUMBNAIL_LONG_EDGE};

/// What a run needs from the device, lent by the facade for the run.
pub(crate) struct SyncContext<'a> {
    pub writer: &'a Mutex<Connection>,
    pub photos: &'a PhotoStore,
    pub photo_limits: PhotoLimits,
    pub clock: &'a CorrectedClock,
    pub notifier: &'a Notifier,
    /// Events that arrived from other threads (network, policy), drained
    /// before every step.
    pub inbox: &'a Mutex<Vec<Event>>,
    /// Set to stop the run at the next request boundary.
    pub cancel: &'a AtomicBool,
    /// How far the run has got, for readers on other threads.
    pub progress: &'a Mutex<Option<SyncProgress>>,
}

impl SyncContext<'_> {
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        // A panic while holding the lock cannot leave a half-done change:
        // every change is one SQLite transaction, rolled back on drop.
        f(&mut self.writer.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Run `f` in one IMMEDIATE transaction.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
    }

    fn now(&self) -> i64 {
        self.clock.now().device_ms
    }

    /// Tell readers and observers how far the run has got, when it moved.
    fn publish(&self, progress: Option<SyncProgress>) {
        {
            let mut current = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            if *current == progress {
                return;
            }
            current.clone_from(&progress);
        }
        self.notifier.notify(Change::SyncProgress(progress));
    }

    fn drain_inbox(&self, engine: &mut SyncEngine) {
        let events = std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|e| e.into_inner()));
        for event in events {
            engine.handle(event, self.now());
        }
    }
}

/// One run: perform the engine's actions until it finishes or the budget
/// ends (then it stops at the next request boundary).
pub(crate) fn run(ctx: &SyncContext, transport: &dyn Transport, engine: &mut SyncEngine, trigger_event: Event, budget: Duration) -> Result<SyncReport> {
    let started = Instant::now();
    let Some(mut session) = ctx.with(|c| session::load(c))? else {
        // A revoked device says so on every sync, not "sign in".
        let device_revoked = ctx.with(|c| session::device_revoked(c))?;
        return Ok(SyncReport { needs_login: !device_revoked, device_revoked, ..SyncReport::default() });
    };
    // Runs are serialized: anything still in flight is left over from a run
    // that failed midway (a full disk while recording results, say).
    let recovered = ctx.with(|c| outbox::recover_in_flight(c))?;
    if recovered > 0 {
        info!("sync: {recovered} operations were in flight and are pending again");
    }
    engine.start_run(ctx.with(|c| session::pull_cursor(c))?);
    ctx.drain_inbox(engine);
    engine.handle(trigger_event, ctx.now());
    let mut stopping = false;
    let outcome = loop {
        ctx.drain_inbox(engine);
        if !stopping && (started.elapsed() >= budget || ctx.cancel.load(Ordering::Relaxed)) {
            stopping = true;
            debug!("sync: stopping at a request boundary (budget or cancel)");
            engine.handle(Event::Cancel, ctx.now());
        }
        let action = engine.poll(ctx.now());
        if action == Action::Finish {
            break Ok(());
        }
        if let Err(error) = perform(ctx, transport, engine, &mut session, action) {
            break Err(error);
        }
        ctx.publish(engine.progress());
    };
    let report = engine.finish_run();
    ctx.publish(None);
    outcome?;
    debug!(
        "sync: pushed {} parked {} photos {} previews {} pulled {} completed {}",
        report.pushed, report.parked, report.photos_uploaded, report.previews_uploaded, report.pulled, report.completed
    );
    Ok(report)
}

/// Apply changes from the server in one transaction, moving the pull
/// cursor with them when they are a pulled page, and tell observers.
fn apply_changes(ctx: &SyncContext, changes: &[gridwork_protocol::api::Change], cursor: Option<i64>) -> Result<()> {
    let applied = ctx.write(|c| {
        let applied = apply::apply_page(c, changes)?;
        if let Some(cursor) = cursor {
            session::set_pull_cursor(c, cursor)?;
        }
        Ok(applied)
    })?;
    if applied.incidents > 0 {
        let ids = changes.iter().filter(|c| c.entity_kind == "incident").filter_map(|c| Uuid::parse_str(&c.entity_id).ok()).collect();
        ctx.notifier.notify(Change::Incidents { ids });
    }
    if applied.categories > 0 {
        ctx.notifier.notify(Change::Categories);
    }
    if applied.grids > 0 {
        ctx.notifier.notify(Change::Grids);
    }
    Ok(())
}

fn perform(ctx: &SyncContext, transport: &dyn Transport, engine: &mut SyncEngine, session: &mut Session, action: Action) -> Result<()> {
    let token = session.access_token.clone();
    let event = match action {
        Action::Push { limit } => {
            let mut ops = ctx.with(|c| transfers::ready_operations(c, limit))?;
            within_push_bytes(&mut ops);
            if ops.is_empty() {
                Event::NothingReady
            } else {
                ctx.write(|c| ops.iter().try_for_each(|op| outbox::mark_in_flight(c, op.op_id)))?;
                let envelopes: Vec<OperationEnvelope> = ops.iter().filter_map(envelope).collect();
                debug!("sync: pushing {} operations", envelopes.len());
                let result = transport.push(&token, &envelopes);
                Event::Pushed { ops: ops.iter().map(|op| op.op_id).collect(), result }
            }
        }
        Action::NextUpload => next_upload(ctx)?,
        Action::NextPreview { long_edge } => next_preview(ctx, long_edge)?,
        Action::AnnounceBlob { sha256, size, preview_of } => Event::BlobReply(transport.blob_create(&token, &sha256, size, preview_of.as_deref())),
        Action::BlobStatus { sha256 } => Event::BlobReply(transport.blob_status(&token, &sha256)),
        Action::SendChunk { sha256, path, offset, len, announce_size } => match read_chunk(&path, offset, len) {
            Ok(bytes) => Event::BlobReply(transport.blob_chunk(&token, &sha256, offset, &bytes, announce_size)),
            Err(error) => {
                warn!("sync: a photo file cannot be read ({})", error.code());
                Event::UploadFileUnreadable { code: error.code().to_owned() }
            }
        },
        Action::Pull { cursor, limit, skip } => Event::Pulled(transport.pull(&token, cursor, limit, &skip)),
        Action::NextThumbnail { skip } => match ctx.with(|c| task::wanted_thumbnail(c, &skip))? {
            Some(sha256) => Event::ThumbnailWanted { sha256 },
            None => Event::NothingReady,
        },
        Action::FetchThumbnail { sha256 } => {
            // Bytes a phone cannot keep count as a refusal: skipped this run.
            let result = transport.photo(&token, &sha256, PhotoRendition::Thumb).and_then(|bytes| match crate::photo::check_thumbnail(&bytes) {
                Ok(()) => Ok(bytes),
                Err(error) => Err(TransportError::Http { status: 422, code: error.code().into(), message: "not a thumbnail".into(), retry_after_ms: None }),
            });
            Event::Thumbnail { sha256, result }
        }
        Action::RefreshToken => match transport.refresh(&session.refresh_token) {
            Ok(tokens) => {
                let refreshed = Session::from_tokens(&session.server_url, tokens);
                // A logout while the refresh was on its way wins.
                let kept = ctx.with(|c| match session::load(c)? {
                    Some(_) => session::save(c, &refreshed).map(|_| true),
                    None => Ok(false),
                })?;
                if !kept {
                    ctx.cancel.store(true, Ordering::Relaxed);
                }
                *session = refreshed;
                Event::TokenProvided
            }
            Err(error) => Event::RefreshFailed(error),
        },
        Action::CheckRemaining { uploads_allowed } => Event::Remaining { ready: ctx.with(|c| transfers::any_ready(c, uploads_allowed))? },
        Action::Record(record) => return perform_record(ctx, record),
        Action::NeedLogin => {
            info!("sync: paused until a new login");
            ctx.with(|c| session::mark_needs_login(c))?;
            ctx.notifier.notify(Change::Session { signed_in: true, needs_login: true });
            return Ok(());
        }
        Action::DeviceRevoked => {
            warn!("sync: this device was revoked by the server; the session ends");
            ctx.with(|c| session::mark_device_revoked(c))?;
            ctx.notifier.notify(Change::Session { signed_in: false, needs_login: false });
            return Ok(());
        }
        Action::Finish => return Ok(()),
    };
    engine.handle(event, ctx.now());
    Ok(())
}

fn perform_record(ctx: &SyncContext, record: Record) -> Result<()> {
    let now = ctx.now();
    match record {
        Record::ThumbnailFetched { sha256, bytes } => {
            ctx.photos.keep_thumbnail(&sha256, &bytes, || ctx.write(|c| task::record_thumbnail(c, &sha256, now)))?;
            let ids = ctx.with(|c| task::cases_with_photo(c, &sha256))?;
            ctx.notifier.notify(Change::Incidents { ids });
        }
        Record::Verdicts(verdicts) => {
            ctx.write(|c| {
                for (op_id, verdict) in &verdicts {
                    match verdict {
                        Verdict::Acknowledge => outbox::acknowledge(c, *op_id, now)?,
                        Verdict::Park(reason) => {
                            // The code is the server's machine code; the
                            // message may quote the user's input, so it stays out.
                            warn!("sync: operation {op_id} parked: {}", reason.code);
                            outbox::park(c, *op_id, reason)?;
                            apply::operation_refused(c, *op_id)?
                        }
                        Verdict::RetryLater(why) => outbox::retry_later(c, *op_id, now, why)?,
                    }
                }
                apply::apply_deferred(c).map(|_| ())
            })?;
            ctx.notifier.notify(Change::Outbox);
        }
        Record::UploadStarted { op_id } => ctx.write(|c| outbox::mark_in_flight(c, op_id))?,
        Record::UploadProgress { sha256, size, offset } => ctx.with(|c| transfers::record_upload_progress(c, &sha256, size, offset, now))?,
        Record::UploadDone { op_id, sha256 } => {
            ctx.write(|c| {
                outbox::acknowledge(c, op_id, now)?;
                transfers::forget_upload(c, &sha256)?;
                apply::apply_deferred(c).map(|_| ())
            })?;
            ctx.notifier.notify(Change::Outbox);
        }
        Record::PreviewSent { original_sha256, preview_sha256, long_edge } => {
            ctx.with(|c| transfers::record_preview(c, &original_sha256, preview_sha256.as_deref(), long_edge))?
        }
        // One transaction per page: the cursor moves with the data.
        Record::ApplyPage(page) => apply_changes(ctx, &page.changes, Some(page.next_cursor))?,
        Record::ApplyEcho(changes) => apply_changes(ctx, &changes, None)?,
        Record::ServerTime(server_time_ms) => {
            // Ignoring the round trip: a second off is fine for field records.
            let offset = server_time_ms - now;
            if (offset - ctx.clock.offset_ms()).abs() > 1_000 {
                ctx.with(|c| session::save_clock_offset(c, offset))?;
                ctx.clock.set_offset_ms(offset);
            }
        }
    }
    Ok(())
}

/// Cut a batch to what one push may carry ([`MAX_PUSH_BYTES`], counted as
/// the server counts it, decompressed), keeping at least one operation:
/// long reports in a batch the engine grew would otherwise meet a 413 and
/// back off, batch after batch.
fn within_push_bytes(ops: &mut Vec<Operation>) {
    // The request's own braces and key, and a comma per operation.
    let mut total = 32;
    let keep = ops
        .iter()
        .take_while(|op| {
            total += envelope(op).and_then(|e| serde_json::to_vec(&e).ok()).map_or(0, |bytes| bytes.len()) + 1;
            total <= MAX_PUSH_BYTES
        })
        .count();
    ops.truncate(keep.max(1));
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

fn next_upload(ctx: &SyncContext) -> Result<Event> {
    let Some(op) = ctx.with(|c| transfers::ready_uploads(c, 1))?.into_iter().next() else {
        return Ok(Event::NothingReady);
    };
    let Ok(upload) = serde_json::from_value::<UploadPhoto>(op.payload.clone()) else {
        return Ok(Event::UploadUnreadable { op_id: op.op_id });
    };
    let format = ctx
        .with(|c| capture::photo(c, upload.photo_id, None))
        .ok()
        .and_then(|photo| PhotoFormat::from_mime_type(&photo.mime_type))
        .unwrap_or(PhotoFormat::Jpeg);
    let sent_before = ctx.with(|c| transfers::upload_started(c, &upload.sha256))?;
    Ok(Event::UploadSelected(BlobJob {
        op_id: op.op_id,
        path: ctx.photos.original_path(&upload.sha256, format),
        sha256: upload.sha256,
        size: upload.byte_size,
        preview: None,
        sent_before,
    }))
}

/// The next photo still waiting for its original with no preview of at
/// least `long_edge` sent yet; its preview is made (or found) on disk.
fn next_preview(ctx: &SyncContext, long_edge: u32) -> Result<Event> {
    // Bounded: a metered link previews at most this many photos a round.
    let candidates = ctx.with(|c| transfers::ready_uploads(c, 1000))?;
    for op in candidates {
        let Ok(upload) = serde_json::from_value::<UploadPhoto>(op.payload.clone()) else { continue };
        let sent = ctx.with(|c| transfers::preview_sent_edge(c, &upload.sha256))?;
        if sent.is_some_and(|sent| sent >= long_edge) {
            continue;
        }
        let unavailable = Event::PreviewUnavailable { original_sha256: upload.sha256.clone(), long_edge };
        let Ok(path) = preview_file(ctx, &upload, long_edge) else { return Ok(unavailable) };
        let Ok(bytes) = std::fs::read(&path) else { return Ok(unavailable) };
        return Ok(Event::UploadSelected(BlobJob {
            op_id: op.op_id,
            sha256: hex::encode(Sha256::digest(&bytes)),
            size: bytes.len() as u64,
            path,
            preview: Some(PreviewOf { original_sha256: upload.sha256, long_edge }),
            sent_before: false,
        }));
    }
    Ok(Event::NothingReady)
}

fn preview_file(ctx: &SyncContext, upload: &UploadPhoto, long_edge: u32) -> Result<std::path::PathBuf> {
    if long_edge <= THUMBNAIL_LONG_EDGE {
        return Ok(ctx.photos.thumbnail_path(&upload.sha256));
    }
    let photo = ctx.with(|c| capture::photo(c, upload.photo_id, None))?;
    let format = PhotoFormat::from_mime_type(&photo.mime_type).unwrap_or(PhotoFormat::Jpeg);
    ctx.photos.rendition(&photo.sha256, format, photo.orientation, Rendition::LongEdge1280, ctx.photo_limits)
}

fn read_chunk(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut file = File::open(path).map_err(|_| Error::PhotoFileNotFound)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut buffer = vec![0; len];
    file.read_exact(&mut buffer)?;
    Ok(buffer)
}
