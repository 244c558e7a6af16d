//! `Gridwork`: the one type the bindings, the CLI and the tests call.
//!
//! Owned types in and out, one error type with stable codes, `Send + Sync`;
//! the FFI layer wraps it (its records and callback traits live there). One
//! writer connection behind a mutex; photo decoding runs outside the lock so
//! a capture never blocks the list a worker is scrolling. Observers are told
//! after a change commits, with no lock held.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use gridwork_protocol::limits;
use uuid::Uuid;

use crate::capture::{self, DraftFields};
use crate::clock::{Clock, CorrectedClock, SystemClock, Timestamp};
use crate::error::{Error, Result};
use crate::geo::{GeoPoint, validate_point};
use crate::model::{Category, Grid, Incident, IncidentDetail, IncidentFilter, Photo, Task, TaskFilter, audit, category, fetched, grid, task};
use crate::steps::{self, StepInput};
use gridwork_protocol::PhotoRole;
use gridwork_protocol::api::PhotoRendition;
use gridwork_protocol::stats::{Stats, StatsQuery};
use crate::observe::{Change, ChangeObserver, Notifier, Subscription};
use crate::outbox::{self, Operation, OutboxSummary};
use crate::photo::{PhotoFormat, PhotoLimits, PhotoStore, Rendition};
use crate::store::{self, AccountPaths, Durability, OpenReport};
use crate::sync::http::HttpTransport;
use crate::sync::session::{self, Session};
use crate::sync::transport::{Transport, TransportError};
use crate::sync::engine::{Disposition, Event, FailureClass, classify};
use crate::sync::runner::SyncContext;
use crate::sync::{MeteredPolicy, SyncEngine, SyncReport, TlsConfig, Trigger, runner};

/// An account id names the store's folder (hashed); a device-only limit.
const ACCOUNT_ID_MAX_CHARS: usize = 200;

/// Everything needed to open one account's store.
#[derive(Clone, Debug)]
pub struct GridworkConfig {
    /// The app's private data directory.
    pub data_dir: PathBuf,
    /// The signed-in account; each account gets its own database and photos.
    pub account_id: String,
    /// 32 raw bytes from the platform keystore.
    pub database_key: Vec<u8>,
    pub photo_limits: PhotoLimits,
    pub durability: Durability,
    /// UTC offset for EXIF capture times that carry none (China: +480).
    pub default_utc_offset_minutes: i32,
    /// Trust beyond the platform's certificate store (extra roots, pins).
    pub tls: TlsConfig,
}

impl GridworkConfig {
    pub fn new(data_dir: impl Into<PathBuf>, account_id: impl Into<String>, database_key: Vec<u8>) -> Self {
        GridworkConfig {
            data_dir: data_dir.into(),
            account_id: account_id.into(),
            database_key,
            photo_limits: PhotoLimits::default(),
            durability: Durability::Full,
            default_utc_offset_minutes: 480,
            tls: TlsConfig::default(),
        }
    }
}

pub struct Gridwork {
    connection: Mutex<Connection>,
    /// Read-only connection for pure reads, so they never wait behind the
    /// writer (a sync applying a page).
    reader: Mutex<Connection>,
    photos: PhotoStore,
    clock: CorrectedClock,
    account_id: String,
    paths: AccountPaths,
    photo_limits: PhotoLimits,
    default_utc_offset_minutes: i32,
    tls: TlsConfig,
    device_location: Mutex<Option<GeoPoint>>,
    report: OpenReport,
    notifier: Arc<Notifier>,
    sync: SyncHandles,
    /// The account's data was wiped: the connections are empty and
    /// read-only, and writes are refused with `StoreWiped`.
    wiped: AtomicBool,
    /// Unreferenced photo files were swept this session (see
    /// [`Gridwork::sweep_orphan_files`]; the first sync does it).
    swept: AtomicBool,
    /// The account partition's lock; last, so it is released after the
    /// connections close.
    _lock: std::fs::File,
}

/// Sync state, split so that what the app calls while a run is going
/// (`set_network`, `logout`, `cancel_sync`, reads) never waits for the run.
struct SyncHandles {
    /// Held for a whole run: runs are serialized.
    engine: Mutex<SyncEngine>,
    /// The thread running a sync now, so a listener on it that calls
    /// `sync_now` queues a trigger instead of deadlocking.
    running_on: Mutex<Option<ThreadId>>,
    transport: Mutex<Option<Arc<dyn Transport>>>,
    /// Events for the engine from other threads, handed over at the next
    /// request boundary (or the next run).
    inbox: Mutex<Vec<Event>>,
    cancel: AtomicBool,
    /// Counts `cancel_sync` calls, so a cancel that arrives while a run is
    /// requested but not yet running (waiting for the engine, or for its
    /// worker thread) still stops it: see [`SyncTicket`].
    cancel_epoch: AtomicU64,
    /// How far the running sync has got (`None` between runs), so a
    /// progress bar reads it without waiting for the engine.
    progress: Mutex<Option<crate::observe::SyncProgress>>,
}

/// Taken when a sync is requested; the run returns at once, doing nothing,
/// if `cancel_sync` was called since (a Swift task cancelled before its
/// run started, say).
#[derive(Clone, Copy, Debug)]
pub struct SyncTicket(u64);

/// Marks the thread running a sync until dropped (even by a panic).
struct RunningOn<'a>(&'a Mutex<Option<ThreadId>>);

impl<'a> RunningOn<'a> {
    fn mark(slot: &'a Mutex<Option<ThreadId>>, thread: ThreadId) -> Self {
        *locked(slot) = Some(thread);
        RunningOn(slot)
    }
}

impl Drop for RunningOn<'_> {
    fn drop(&mut self) {
        *locked(self.0) = None;
    }
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these cannot leave a half-done change:
    // store changes are SQLite transactions, rolled back on drop, and the
    // rest is plain values.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gridwork {
    pub fn open(config: GridworkConfig) -> Result<Gridwork> {
        Self::open_on(config, Box::new(SystemClock))
    }

    /// Open with an injected clock (tests, simulations).
    #[cfg(feature = "test-support")]
    pub fn open_with_clock(config: GridworkConfig, clock: Box<dyn Clock>) -> Result<Gridwork> {
        Self::open_on(config, clock)
    }

    fn open_on(config: GridworkConfig, clock: Box<dyn Clock>) -> Result<Gridwork> {
        let text_account = crate::text::validate("account_id", &config.account_id, ACCOUNT_ID_MAX_CHARS)?;
        if text_account.is_empty() {
            return Err(Error::Incomplete("an account id is required"));
        }
        let opened = store::open(&config.data_dir, &text_account, &config.database_key, config.durability, clock.now_ms())?;
        let mut report = opened.report;
        let connection = opened.connection;
        let offset = session::clock_offset(&connection)?;
        report.in_flight_recovered = outbox::recover_in_flight(&connection)?;
        let photos = PhotoStore::open(&opened.paths.photos)?;
        // No ingest can be running yet, so its temp files are leftovers of a
        // killed process. Photo files no row references are not looked for
        // here: listing every photo would make opening slower with every
        // photo kept; the first sync of the session sweeps them
        // (`sweep_orphan_files`), off the path the worker waits on.
        report.orphan_files_removed = photos.remove_leftover_temp_files()?;
        report.log();
        Ok(Gridwork {
            _lock: opened.lock,
            connection: Mutex::new(connection),
            reader: Mutex::new(opened.reader),
            photos,
            clock: CorrectedClock::new(clock, offset),
            account_id: text_account,
            paths: opened.paths,
            photo_limits: config.photo_limits,
            default_utc_offset_minutes: config.default_utc_offset_minutes,
            tls: config.tls,
            device_location: Mutex::new(None),
            report,
            notifier: Arc::default(),
            wiped: AtomicBool::new(false),
            swept: AtomicBool::new(false),
            sync: SyncHandles {
                engine: Mutex::new(SyncEngine::new(rand::random())),
                running_on: Mutex::new(None),
                transport: Mutex::new(None),
                inbox: Mutex::new(Vec::new()),
                cancel: AtomicBool::new(false),
                cancel_epoch: AtomicU64::new(0),
                progress: Mutex::new(None),
            },
        })
    }

    /// What happened at open: created, migrated, corrupt file moved aside,
    /// operations recovered, orphan files removed, time taken.
    pub fn open_report(&self) -> OpenReport {
        self.report.clone()
    }

    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    pub fn database_path(&self) -> &Path {
        &self.paths.database
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        locked(&self.connection)
    }

    /// The read-only connection, for methods that only read.
    fn read(&self) -> MutexGuard<'_, Connection> {
        locked(&self.reader)
    }

    /// Run `f` in one IMMEDIATE transaction.
    fn write<T>(&self, f: impl FnOnce(&Transaction, Timestamp, Option<GeoPoint>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        if self.wiped.load(Ordering::Acquire) {
            return Err(Error::StoreWiped);
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx, self.clock.now(), self.device_location())?;
        tx.commit()?;
        Ok(value)
    }

    /// Refuse with `StoreWiped` once the account's data was wiped: calls
    /// that read before they write would otherwise answer "not found" or
    /// "not signed in" about a store that is gone.
    fn ensure_not_wiped(&self) -> Result<()> {
        if self.wiped.load(Ordering::Acquire) { Err(Error::StoreWiped) } else { Ok(()) }
    }

    /// Direct access to the writer connection, for tests and benchmarks.
    #[cfg(feature = "test-support")]
    pub fn with_connection<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        f(&mut self.lock())
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    // ---- device context ----

    /// The shell's latest location fix, recorded in the audit trail of every
    /// action ("where"). `None` when unknown.
    pub fn set_device_location(&self, location: Option<GeoPoint>) -> Result<()> {
        let location = location.map(validate_point).transpose()?;
        *locked(&self.device_location) = location;
        Ok(())
    }

    fn device_location(&self) -> Option<GeoPoint> {
        *locked(&self.device_location)
    }

    /// Offset to server time in milliseconds (server minus device), kept
    /// from sync replies and applied to every timestamp written after.
    pub fn set_server_time_offset_ms(&self, offset_ms: i64) -> Result<()> {
        self.write(|tx, _, _| session::save_clock_offset(tx, offset_ms))?;
        self.clock.set_offset_ms(offset_ms);
        Ok(())
    }

    pub fn server_time_offset_ms(&self) -> i64 {
        self.clock.offset_ms()
    }

    // ---- reference data ----

    pub fn categories(&self) -> Result<Vec<Category>> {
        category::list_active(&self.read())
    }

    pub fn category_table_version(&self) -> Result<i64> {
        category::table_version(&self.read())
    }

    /// Replace the category table when `version` is newer; returns whether it did.
    pub fn replace_categories(&self, version: i64, categories: Vec<Category>) -> Result<bool> {
        for c in &categories {
            crate::text::validate("category", &c.code, limits::CATEGORY_CODE_MAX_CHARS)?;
            crate::text::validate("category", &c.name_zh, limits::CATEGORY_NAME_MAX_CHARS)?;
            crate::text::validate("category", &c.name_en, limits::CATEGORY_NAME_MAX_CHARS)?;
        }
        let replaced = self.write(|tx, _, _| category::replace_table(tx, version, &categories))?;
        if replaced {
            self.notifier.notify(Change::Categories);
        }
        Ok(replaced)
    }

    pub fn grids(&self) -> Result<Vec<Grid>> {
        grid::list(&self.read())
    }

    /// Import a GeoJSON FeatureCollection of grids (all or nothing).
    pub fn import_grids_geojson(&self, geojson: &str) -> Result<u32> {
        let imported = self.write(|tx, _, _| grid::import_geojson(tx, geojson).map(|n| n as u32))?;
        self.notifier.notify(Change::Grids);
        Ok(imported)
    }

    /// The grid containing a point, if any.
    pub fn locate_grid(&self, location: GeoPoint) -> Result<Option<String>> {
        grid::locate(&self.read(), validate_point(location)?)
    }

    // ---- capture ----

    /// Create a draft; it is durable when this returns.
    pub fn create_draft(&self, fields: DraftFields) -> Result<Incident> {
        let draft = self.write(|tx, now, at| {
            let id = capture::create_draft(tx, &fields, &self.account_id, now, at)?;
            capture::get(tx, id)
        })?;
        self.incident_changed(draft.id);
        Ok(draft)
    }

    fn incident_changed(&self, id: Uuid) {
        self.notifier.notify(Change::Incidents { ids: vec![id] });
    }

    /// Replace a draft's editable fields.
    pub fn update_draft(&self, incident_id: Uuid, fields: DraftFields) -> Result<Incident> {
        let draft = self.write(|tx, now, at| {
            capture::update_draft(tx, incident_id, &fields, &self.account_id, now, at)?;
            capture::get(tx, incident_id)
        })?;
        self.incident_changed(incident_id);
        Ok(draft)
    }

    /// Copy a photo into the store, process it and attach it to a draft.
    /// The file and its row are durable when this returns.
    pub fn attach_photo(&self, incident_id: Uuid, source: &Path) -> Result<Photo> {
        self.attach_photo_as(incident_id, source, PhotoRole::Evidence)
    }

    /// As [`Gridwork::attach_photo`], with a role: `After` for a problem the
    /// reporter resolves on the spot (then [`Gridwork::submit_resolved`]).
    pub fn attach_photo_as(&self, incident_id: Uuid, source: &Path, role: PhotoRole) -> Result<Photo> {
        self.ensure_not_wiped()?;
        // Fail fast before the expensive part.
        capture::require_status(&self.lock(), incident_id, crate::model::IncidentStatus::Draft, "attach a photo")?;
        let ingested = self.photos.ingest(source, self.photo_limits, self.default_utc_offset_minutes)?;
        let photo_id = match self.write(|tx, now, at| capture::insert_photo_as(tx, incident_id, &ingested, role, &self.account_id, now, at)) {
            Ok(photo_id) => photo_id,
            Err(error) => {
                self.abandon_photos(vec![ingested]);
                return Err(error);
            }
        };
        drop(ingested);
        self.incident_changed(incident_id);
        capture::photo(&self.lock(), photo_id, Some(&self.photos))
    }

    pub fn remove_photo(&self, incident_id: Uuid, photo_id: Uuid) -> Result<()> {
        self.write(|tx, now, at| capture::remove_photo(tx, incident_id, photo_id, &self.account_id, now, at))?;
        self.incident_changed(incident_id);
        Ok(())
    }

    /// Submit a draft: status, audit and outbox operations in one commit.
    pub fn submit(&self, incident_id: Uuid) -> Result<Incident> {
        self.submit_with(incident_id, None)
    }

    /// Submit a draft as resolved on the spot (现场解决): its evidence shows
    /// the problem, its after-photos and `note` what was done. The case goes
    /// to verification, not dispatch.
    pub fn submit_resolved(&self, incident_id: Uuid, note: &str) -> Result<Incident> {
        // Refused on the spot, as the server would: volunteers' reports are
        // reviewed first. Without a session the server decides at sync.
        if let Some(me) = session::load(&self.read())?.map(|s| s.user)
            && !gridwork_protocol::case::may_resolve_on_spot(me.role)
        {
            return Err(Error::StepNotAllowed { action: "resolve on the spot" });
        }
        self.submit_with(incident_id, Some(note))
    }

    fn submit_with(&self, incident_id: Uuid, resolution: Option<&str>) -> Result<Incident> {
        let incident = self.write(|tx, now, at| {
            match resolution {
                Some(note) => capture::submit_resolved(tx, incident_id, note, &self.account_id, now, at)?,
                None => capture::submit(tx, incident_id, &self.account_id, now, at)?,
            }
            capture::get(tx, incident_id)
        })?;
        self.notifier.notify(Change::Outbox);
        self.incident_changed(incident_id);
        Ok(incident)
    }

    /// A new draft correcting the user's own rejected report, linked to it:
    /// edit it, attach photos, submit it as any draft.
    pub fn resubmit(&self, rejected_id: Uuid) -> Result<Incident> {
        // Whose report it is comes from the session (before any login: only
        // reports this device sent).
        let username = session::load(&self.read())?.map(|s| s.user.username).unwrap_or_default();
        let draft = self.write(|tx, now, at| {
            let id = capture::resubmit(tx, rejected_id, &username, &self.account_id, now, at)?;
            capture::get(tx, id)
        })?;
        self.incident_changed(draft.id);
        Ok(draft)
    }

    pub fn discard_draft(&self, incident_id: Uuid) -> Result<()> {
        self.write(|tx, now, at| capture::discard(tx, incident_id, &self.account_id, now, at))?;
        self.incident_changed(incident_id);
        Ok(())
    }

    pub fn list_incidents(&self, filter: IncidentFilter) -> Result<Vec<Incident>> {
        capture::list(&self.read(), &filter)
    }

    /// Walk the whole audit trail (归档留痕) and check every link: an entry
    /// edited, removed or inserted in the database file since it was
    /// written is named (`broken_at`, its sequence number).
    pub fn verify_audit_trail(&self) -> Result<gridwork_protocol::trail::TrailCheck> {
        audit::verify(&self.read())
    }

    pub fn get_incident(&self, incident_id: Uuid) -> Result<IncidentDetail> {
        let mut conn = self.read();
        // One read transaction: the four reads see the same commit.
        let tx = conn.transaction()?;
        Ok(IncidentDetail {
            incident: capture::get(&tx, incident_id)?,
            photos: capture::photos(&tx, incident_id, Some(&self.photos))?,
            audit: audit::for_incident(&tx, incident_id)?,
            sync_state: capture::sync_state(&tx, incident_id)?,
            case: task::case_info(&tx, incident_id, self.clock.now().corrected_ms, &|sha| self.photos.thumbnail_path(sha))?,
        })
    }

    // ---- tasks and workflow steps ----

    /// The signed-in user's tasks (待办), soonest deadline first, with their
    /// deadline light on server-corrected time. Empty when not signed in.
    pub fn tasks(&self, filter: TaskFilter) -> Result<Vec<Task>> {
        let conn = self.read();
        let Some(me) = session::load(&conn)?.map(|s| s.user) else { return Ok(Vec::new()) };
        task::tasks(&conn, &me, &filter, self.clock.now().corrected_ms, &|sha| self.photos.thumbnail_path(sha))
    }

    /// A grid's or a person's figures (统计) for a period ending by now,
    /// computed here from the cases this device holds: equal to the server's
    /// for the user's own grids once synced; a person's own figures can miss
    /// cases that left their hands (handed back, re-dispatched elsewhere).
    pub fn stats(&self, query: &StatsQuery) -> Result<Stats> {
        // Figures up to now (server time): a deadline still ahead is not overdue yet.
        let query = StatsQuery { to_ms: query.to_ms.min(self.clock.now().corrected_ms + 1), ..query.clone() };
        task::stats(&self.read(), &query)
    }

    /// Take a workflow step on a case (sign, start, handle, hand back,
    /// close with a rating, reopen), with photos for the steps that carry
    /// them (after-photos with handle, on-site photos with close and reopen).
    /// Checked offline as the server would; queued for the next sync and
    /// shown in its new state at once. Photo files are copied in, as with
    /// [`Gridwork::attach_photo`]; the step and its photos commit together.
    pub fn take_step(&self, incident_id: Uuid, step: StepInput, photos: &[PathBuf]) -> Result<Incident> {
        self.ensure_not_wiped()?;
        let me = session::load(&self.read())?.map(|s| s.user).ok_or(Error::NotLoggedIn)?;
        // Fail fast before the expensive part.
        steps::check(&self.read(), incident_id, &step, photos.len(), &me)?;
        let mut ingested = Vec::with_capacity(photos.len());
        for source in photos {
            match self.photos.ingest(source, self.photo_limits, self.default_utc_offset_minutes) {
                Ok(photo) => ingested.push(photo),
                Err(error) => {
                    self.abandon_photos(ingested);
                    return Err(error);
                }
            }
        }
        let result = self.write(|tx, now, at| {
            steps::take(tx, incident_id, &step, &ingested, &me, &self.account_id, now, at)?;
            capture::get(tx, incident_id)
        });
        match result {
            Ok(incident) => {
                drop(ingested);
                self.notifier.notify(Change::Outbox);
                self.incident_changed(incident_id);
                Ok(incident)
            }
            Err(error) => {
                self.abandon_photos(ingested);
                Err(error)
            }
        }
    }

    /// Give up photos copied in for a write that did not commit; files
    /// another row references stay.
    fn abandon_photos(&self, ingested: Vec<crate::photo::IngestedPhoto>) {
        // When the rows cannot be read, keep the files: the sweeper decides later.
        let referenced = capture::referenced_hashes(&self.lock()).ok();
        for photo in ingested {
            let keep = referenced.as_ref().is_none_or(|r| r.contains(&photo.sha256));
            self.photos.abandon(photo, keep);
        }
    }

    pub fn similar_photos(&self, photo_id: Uuid, max_distance: u32) -> Result<Vec<(Photo, u32)>> {
        capture::similar_photos(&self.read(), photo_id, max_distance, Some(&self.photos))
    }

    /// The file to upload for a photo under a rendition policy (made and
    /// cached on first use).
    pub fn photo_upload_file(&self, photo_id: Uuid, rendition: Rendition) -> Result<PathBuf> {
        let photo = capture::photo(&self.lock(), photo_id, None)?;
        let format = PhotoFormat::from_mime_type(&photo.mime_type).unwrap_or(PhotoFormat::Jpeg);
        self.photos.rendition(&photo.sha256, format, photo.orientation, rendition, self.photo_limits)
    }

    /// A photo of a case as a file the app can show: this device's own (its
    /// original, a rendition made here, its thumbnail), a thumbnail sync
    /// kept, or else one fetched from the server now and kept in a cache
    /// bounded by size ([`crate::model::fetched::CACHE_MAX_BYTES`]). Only
    /// photos of cases this device holds are fetched (`not_found`
    /// otherwise); what the server sends is checked (an original must hash
    /// to `sha256`, a rendition must be a JPEG within its edge). Waits on the
    /// network, so call it off the UI thread; it never waits behind a sync
    /// unless the access token has to be refreshed.
    pub fn photo_file(&self, sha256: &str, rendition: PhotoRendition) -> Result<PathBuf> {
        self.ensure_not_wiped()?;
        if !task::is_sha256(sha256) {
            return Err(Error::InvalidId);
        }
        if let Some(path) = self.photo_here(sha256, rendition)? {
            return Ok(path);
        }
        let now_ms = self.clock.now().device_ms;
        let cached = fetched::lookup(&self.lock(), sha256, rendition, now_ms)?;
        if let Some(name) = cached {
            let path = self.photos.fetched_path(&name);
            if path.is_file() {
                return Ok(path);
            }
            fetched::forget(&self.lock(), sha256, rendition)?;
        }
        if task::cases_with_photo(&self.read(), sha256)?.is_empty() {
            return Err(Error::NotFound { what: "photo" });
        }
        let transport = self.transport()?.ok_or(Error::NotLoggedIn)?;
        let bytes = match self.with_access_token(transport.as_ref(), |token| transport.photo(token, sha256, rendition)) {
            // The district keeps originals (their EXIF holds the GPS
            // position) from this role: the largest rendition stands in.
            Err(Error::Server { code, .. }) if rendition == PhotoRendition::Original && code == gridwork_protocol::api::ORIGINAL_WITHHELD => {
                return self.photo_file(sha256, PhotoRendition::LongEdge2048);
            }
            other => other?,
        };
        let mut let_go = Vec::new();
        let name = self.photos.keep_fetched(sha256, rendition, &bytes, |name| {
            let_go = self.write(|tx, now, _| fetched::record(tx, sha256, rendition, name, bytes.len() as u64, now.device_ms, fetched::CACHE_MAX_BYTES))?;
            Ok(())
        })?;
        self.photos.remove_fetched(&let_go);
        Ok(self.photos.fetched_path(&name))
    }

    /// The file of a photo this device already has in that rendition.
    fn photo_here(&self, sha256: &str, rendition: PhotoRendition) -> Result<Option<PathBuf>> {
        let (own, kept_thumbnail) = {
            let conn = self.read();
            (capture::photo_by_hash(&conn, sha256)?, task::has_kept_thumbnail(&conn, sha256)?)
        };
        let Some(photo) = own else {
            return Ok((rendition == PhotoRendition::Thumb && kept_thumbnail).then(|| self.photos.thumbnail_path(sha256)));
        };
        let format = PhotoFormat::from_mime_type(&photo.mime_type).unwrap_or(PhotoFormat::Jpeg);
        let local = match rendition {
            PhotoRendition::Thumb => return Ok(Some(self.photos.thumbnail_path(sha256))),
            PhotoRendition::Original => Rendition::Original,
            PhotoRendition::LongEdge1280 => Rendition::LongEdge1280,
            PhotoRendition::LongEdge2048 => Rendition::LongEdge2048,
        };
        self.photos.rendition(sha256, format, photo.orientation, local, self.photo_limits).map(Some)
    }

    /// Call the server with the session's access token; refreshed first if
    /// it has expired by server time, and once more if the server says so.
    fn with_access_token<T>(&self, transport: &dyn Transport, call: impl Fn(&str) -> std::result::Result<T, TransportError>) -> Result<T> {
        let session = session::load(&self.read())?.ok_or(Error::NotLoggedIn)?;
        if self.needs_login()? {
            return Err(Error::NotLoggedIn);
        }
        let token = if session.access_expires_at_ms <= self.clock.now().corrected_ms {
            self.refresh_session(transport, &session)?
        } else {
            session.access_token.clone()
        };
        match call(&token) {
            Err(TransportError::Http { status: 401, .. }) => {
                let token = self.refresh_session(transport, &session)?;
                call(&token).map_err(transport_error)
            }
            other => other.map_err(transport_error),
        }
    }

    /// Spend the refresh token for a new pair, unless a sync already did
    /// since `seen` was read. Holds the engine, as a sync run does: a
    /// refresh token is spent once, so the two never refresh at once. A
    /// refused refresh ends the session as it does in a sync.
    fn refresh_session(&self, transport: &dyn Transport, seen: &Session) -> Result<String> {
        if *locked(&self.sync.running_on) == Some(std::thread::current().id()) {
            return Err(Error::InvalidState { state: "syncing".into(), action: "refresh the session from a sync observer" });
        }
        let _engine = locked(&self.sync.engine);
        let current = session::load(&self.read())?.ok_or(Error::NotLoggedIn)?;
        if current.access_token != seen.access_token {
            return Ok(current.access_token);
        }
        match transport.refresh(&current.refresh_token) {
            Ok(tokens) => {
                let refreshed = Session::from_tokens(&current.server_url, tokens);
                let conn = self.lock();
                // A logout while the refresh was on its way wins.
                if session::load(&conn)?.is_none() {
                    return Err(Error::NotLoggedIn);
                }
                session::save(&conn, &refreshed)?;
                Ok(refreshed.access_token)
            }
            Err(TransportError::Http { code, .. }) if code == gridwork_protocol::api::DEVICE_REVOKED => {
                session::mark_device_revoked(&self.lock())?;
                log::warn!("session: this device was revoked by the server");
                self.notifier.notify(Change::Session { signed_in: false, needs_login: false });
                // The wipe waits for the engine, held here.
                drop(_engine);
                *locked(&self.sync.transport) = None;
                self.wipe_after_revocation();
                Err(Error::DeviceRevoked)
            }
            Err(error) => match classify(&error) {
                Disposition::Retry(FailureClass::Auth) | Disposition::Reject { .. } => {
                    session::mark_needs_login(&self.lock())?;
                    log::info!("session: the server refused to refresh it; a new login is needed");
                    self.notifier.notify(Change::Session { signed_in: true, needs_login: true });
                    Err(Error::NotLoggedIn)
                }
                Disposition::Retry(_) => Err(transport_error(error)),
            },
        }
    }

    /// Take over the work of another account's store that no server has
    /// seen (reports and drafts, their photos, trail and queued
    /// operations): typically the "before sign-in" store, right after the
    /// first sign-in on a device. It goes out with this account's next
    /// sync and is gone from `source`. Safe to repeat after a crash (see
    /// [`crate::adopt`]). Both stores must be open in this process.
    pub fn adopt_unsent_from(&self, source: &Gridwork) -> Result<crate::Adopted> {
        if source.account_id == self.account_id {
            // Its own work is already here.
            return Ok(crate::Adopted::default());
        }
        // Source before target: the one order every adopt takes.
        let mut from = source.lock();
        let ids = crate::adopt::unseen_incidents(&from)?;
        if ids.is_empty() {
            return Ok(crate::Adopted::default());
        }
        let files = crate::adopt::photo_files(&from, &ids)?;
        let guards = crate::adopt::copy_files(&source.photos, &self.photos, &files)?;
        let adopted = self.write(|tx, now, at| crate::adopt::insert_into(&from, tx, &ids, &self.account_id, now, at))?;
        drop(guards);
        let tx = from.transaction_with_behavior(TransactionBehavior::Immediate)?;
        crate::adopt::remove_from(&tx, &ids, &source.account_id, source.clock.now())?;
        tx.commit()?;
        // The source's copies of the files now belong to no row there.
        source.photos.sweep(&capture::referenced_hashes(&from)?)?;
        drop(from);
        log::info!("adopt: {} incidents, {} operations, {} photos moved between accounts", adopted.incidents, adopted.operations, adopted.photos);
        source.notifier.notify(Change::Incidents { ids: ids.clone() });
        source.notifier.notify(Change::Outbox);
        self.notifier.notify(Change::Incidents { ids });
        self.notifier.notify(Change::Outbox);
        Ok(adopted)
    }

    /// The incidents (`IdKind::Incident`) or queued operations whose id
    /// starts with `prefix`, at most `limit`: what a typed short id may mean.
    pub fn ids_with_prefix(&self, kind: crate::model::short_id::IdKind, prefix: &str, limit: u32) -> Result<Vec<Uuid>> {
        crate::model::short_id::with_prefix(&self.read(), kind, prefix, limit)
    }

    /// The shortest prefix (at least `min` characters) naming this id alone
    /// among its kind on this device, for people to read and type.
    pub fn short_id(&self, kind: crate::model::short_id::IdKind, id: Uuid, min: usize) -> Result<String> {
        crate::model::short_id::shortest(&self.read(), kind, id, min)
    }

    /// Remove photo files no row references, and the thumbnails and
    /// fetched photos of cases no longer on this device; returns how many
    /// files went. The first sync of a session runs it (opening does not:
    /// it would cost a listing of every photo kept); an app may run it
    /// whenever it is idle. Safe beside captures and sync.
    pub fn sweep_orphan_files(&self) -> Result<u64> {
        // The listing, the slow part, leaves the connection free for
        // captures; the decision holds it, so no row can be committed
        // between reading the references and removing files (in-progress
        // ingests are protected by their guards).
        let candidates = self.photos.sweep_candidates()?;
        let conn = self.lock();
        task::forget_photos_of_cases_gone(&conn)?;
        let removed = self.photos.remove_orphans(candidates, &capture::referenced_hashes(&conn)?)?;
        drop(conn);
        self.swept.store(true, Ordering::Relaxed);
        Ok(removed)
    }

    // ---- observers ----

    /// Be told when incidents, the outbox, categories, grids or the session
    /// change. The subscription lasts until the handle is dropped.
    pub fn subscribe(&self, observer: Arc<dyn ChangeObserver>) -> Subscription {
        self.notifier.subscribe(observer)
    }

    // ---- sync ----

    /// Hand an event to the engine at the next request boundary.
    fn tell_engine(&self, event: Event) {
        locked(&self.sync.inbox).push(event);
    }

    /// Sign in to a server. Plain `http://` is accepted only to loopback
    /// unless `allow_insecure_http`. The session is kept in the encrypted
    /// store; sync resumes by itself if a pause for a new login was on.
    pub fn login(&self, server_url: &str, username: &str, password: &str, allow_insecure_http: bool) -> Result<gridwork_protocol::api::UserInfo> {
        let device_id = session::device_id(&self.lock())?;
        let transport: Arc<dyn Transport> = Arc::new(HttpTransport::new(server_url, &device_id, allow_insecure_http, &self.tls)?);
        let user = self.login_through(transport, server_url, username, password)?;
        // Remembered so later runs rebuild the same transport from the session.
        if allow_insecure_http {
            session::set_meta(&self.lock(), "allow_insecure_http", "1")?;
        }
        Ok(user)
    }

    /// Sign in through a given transport (fault injection, simulation).
    #[cfg(feature = "test-support")]
    pub fn login_with(&self, transport: Arc<dyn Transport>, server_url: &str, username: &str, password: &str) -> Result<gridwork_protocol::api::UserInfo> {
        self.login_through(transport, server_url, username, password)
    }

    fn login_through(&self, transport: Arc<dyn Transport>, server_url: &str, username: &str, password: &str) -> Result<gridwork_protocol::api::UserInfo> {
        self.ensure_not_wiped()?;
        if self.device_revoked()? {
            return Err(Error::DeviceRevoked);
        }
        let tokens = match transport.login(username, password).map_err(transport_error) {
            // Revoked before this store knew: remembered, and wiped when nothing unsent would be lost.
            Err(Error::DeviceRevoked) => {
                session::mark_device_revoked(&self.lock())?;
                self.wipe_after_revocation();
                return Err(Error::DeviceRevoked);
            }
            other => other?,
        };
        // A store is one person's on one server (AB岗: a shared phone must
        // never send one user's unsent work under another's session). The
        // server is named however it was written (localhost or 127.0.0.1,
        // with or without /v1); owners recorded before that normalisation
        // were the typed address.
        let url = crate::sync::server_url::parse(server_url)?;
        let owner = format!("{}@{}", tokens.user.id, url.identity());
        let typed_owner = format!("{}@{}", tokens.user.id, server_url.trim_end_matches('/'));
        let existing = session::owner(&self.lock())?;
        match existing {
            Some(existing) if existing != owner && existing != typed_owner => return Err(Error::AccountMismatch),
            Some(_) => {}
            None => session::set_meta(&self.lock(), "owner", &owner)?,
        }
        let session = Session::from_tokens(&url.base, tokens);
        session::save(&self.lock(), &session)?;
        *locked(&self.sync.transport) = Some(transport);
        self.tell_engine(Event::TokenProvided);
        log::info!("session: signed in");
        self.notifier.notify(Change::Session { signed_in: true, needs_login: false });
        Ok(session.user)
    }

    /// Use this transport for sync from now on (tests, simulation).
    #[cfg(feature = "test-support")]
    pub fn set_transport(&self, transport: Arc<dyn Transport>) {
        *locked(&self.sync.transport) = Some(transport);
    }

    /// The signed-in user, if any.
    pub fn session_user(&self) -> Result<Option<gridwork_protocol::api::UserInfo>> {
        Ok(session::load(&self.read())?.map(|s| s.user))
    }

    /// Whether the session has ended and only a new login helps: the
    /// server refused to refresh it (remembered across restarts), or its
    /// refresh token has expired by server time. Unsent work stays queued.
    pub fn needs_login(&self) -> Result<bool> {
        session::needs_login(&self.read(), self.clock.now().corrected_ms)
    }

    /// Forget the session on this device (unsent work stays queued). A
    /// running sync stops at its next request boundary.
    pub fn logout(&self) -> Result<()> {
        session::clear(&self.lock())?;
        *locked(&self.sync.transport) = None;
        self.cancel_sync();
        log::info!("session: signed out");
        self.notifier.notify(Change::Session { signed_in: false, needs_login: false });
        Ok(())
    }

    /// The shell reports connectivity; `metered` for mobile data. Never
    /// waits for a running sync: the engine hears it at the next request.
    pub fn set_network(&self, online: bool, metered: bool) {
        self.tell_engine(Event::NetworkChanged { online, metered });
        if online {
            self.tell_engine(Event::Wake(Trigger::NetworkUp));
        }
    }

    /// What may travel on metered links.
    pub fn set_metered_policy(&self, policy: MeteredPolicy) {
        self.tell_engine(Event::PolicyChanged(policy));
    }

    /// How far the running sync has got: what it has sent, uploaded and
    /// pulled so far and the photo on its way; `None` when none runs.
    /// Observers hear the same as `Change::SyncProgress`.
    pub fn sync_progress(&self) -> Option<crate::observe::SyncProgress> {
        locked(&self.sync.progress).clone()
    }

    /// Stop a running sync at its next request boundary: nothing is left
    /// half-done, and the next `sync_now` picks up the rest. A run requested
    /// before this call but not started yet does nothing; later requests are
    /// not affected.
    pub fn cancel_sync(&self) {
        self.sync.cancel_epoch.fetch_add(1, Ordering::SeqCst);
        if locked(&self.sync.running_on).is_some() {
            self.sync.cancel.store(true, Ordering::SeqCst);
        }
    }

    /// Take before handing a sync request to another thread; pass to
    /// [`Gridwork::sync_requested`].
    pub fn sync_ticket(&self) -> SyncTicket {
        SyncTicket(self.sync.cancel_epoch.load(Ordering::SeqCst))
    }

    /// Run sync for at most `budget`: push, upload, pull. Returns what it
    /// did and when to run again. Safe to call from a background job; calls
    /// are serialized. Called from an observer while this thread is already
    /// syncing, it only adds its trigger to the running sync and returns an
    /// empty report.
    pub fn sync_now(&self, trigger: Trigger, budget: Duration) -> Result<SyncReport> {
        self.sync_requested(self.sync_ticket(), trigger, budget)
    }

    /// `sync_now` for a request made when `ticket` was taken: a `cancel_sync`
    /// since then cancels this run too.
    pub fn sync_requested(&self, ticket: SyncTicket, trigger: Trigger, budget: Duration) -> Result<SyncReport> {
        self.ensure_not_wiped()?;
        let this_thread = std::thread::current().id();
        if *locked(&self.sync.running_on) == Some(this_thread) {
            self.tell_engine(Event::Wake(trigger));
            return Ok(SyncReport::default());
        }
        let mut engine = locked(&self.sync.engine);
        let Some(transport) = self.transport()? else {
            // A revoked device says so on every sync, not "sign in".
            let device_revoked = self.device_revoked()?;
            return Ok(SyncReport { needs_login: !device_revoked, device_revoked, ..SyncReport::default() });
        };
        let _running = RunningOn::mark(&self.sync.running_on, this_thread);
        // Reset, then look at the epoch: a cancel after the reset sets the
        // flag the run checks; one before it shows in the epoch.
        self.sync.cancel.store(false, Ordering::SeqCst);
        if self.sync.cancel_epoch.load(Ordering::SeqCst) != ticket.0 {
            log::debug!("sync: cancelled before it started");
            return Ok(SyncReport::default());
        }
        let context = SyncContext {
            writer: &self.connection,
            photos: &self.photos,
            photo_limits: self.photo_limits,
            clock: &self.clock,
            notifier: &self.notifier,
            inbox: &self.sync.inbox,
            cancel: &self.sync.cancel,
            progress: &self.sync.progress,
        };
        let report = runner::run(&context, transport.as_ref(), &mut engine, Event::Wake(trigger), budget)?;
        // The run is over: the wipe takes the engine itself.
        drop(engine);
        drop(_running);
        if report.device_revoked {
            *locked(&self.sync.transport) = None;
            self.wipe_after_revocation();
        } else if !self.swept.load(Ordering::Relaxed) {
            // Once a session, in the background job rather than at open:
            // files of discarded photos and of crashes go here.
            match self.sweep_orphan_files() {
                Ok(removed) => log::info!("store: {removed} unreferenced photo files removed"),
                Err(error) => log::warn!("store: the photo sweep failed ({}); the next sync tries again", error.code()),
            }
        }
        Ok(report)
    }

    // ---- leaving the device clean ----

    /// Whether the server revoked this device (a lost phone): it no longer
    /// signs in or syncs; [`Gridwork::export_unsent`] then [`Gridwork::wipe`].
    pub fn device_revoked(&self) -> Result<bool> {
        session::device_revoked(&self.read())
    }

    /// The work no server has acknowledged: queued operations and drafts.
    pub fn unsent_work(&self) -> Result<crate::UnsentWork> {
        crate::wipe::unsent_work(&self.read())
    }

    /// Write the unsent work (operations as they would be pushed, drafts,
    /// their photos) into a new folder inside `dir`, as plain files for the
    /// person to hand over; a wipe of exactly that work is then allowed.
    pub fn export_unsent(&self, dir: &Path) -> Result<crate::Exported> {
        let conn = self.lock();
        if self.wiped.load(Ordering::Acquire) {
            return Err(Error::StoreWiped);
        }
        let exported = crate::wipe::export(&conn, &self.photos, dir, self.clock.now().corrected_ms)?;
        log::info!("wipe: exported {} operations, {} drafts, {} photos", exported.operations, exported.drafts, exported.photos);
        Ok(exported)
    }

    /// Sign out and remove this account's data from the device: database,
    /// photos, everything pulled. Refused with `UnsentWork` while anything
    /// unsent is neither synced nor exported as it is now: never silently.
    /// Afterwards this store is empty and refuses writes; open it again for
    /// a fresh start. A crash midway is finished at the next open.
    pub fn wipe(&self) -> Result<()> {
        if *locked(&self.sync.running_on) == Some(std::thread::current().id()) {
            return Err(Error::InvalidState { state: "syncing".into(), action: "wipe from a sync observer" });
        }
        // A running sync stops at its next request boundary; the wipe waits
        // for it (engine before writer, the order a run takes), so nothing
        // writes into the folders being removed.
        self.cancel_sync();
        let _engine = locked(&self.sync.engine);
        let mut conn = self.lock();
        if self.wiped.load(Ordering::Acquire) {
            // An earlier wipe that failed midway (a file still being
            // written): finish it.
            drop(conn);
            if store::wipe_pending(&self.paths) {
                store::wipe_files(&self.paths)?;
            }
            return Ok(());
        }
        crate::wipe::check_wipe_allowed(&conn)?;
        *locked(&self.sync.transport) = None;
        self.wiped.store(true, Ordering::Release);
        *conn = store::empty_read_only()?;
        drop(conn);
        *self.read() = store::empty_read_only()?;
        store::wipe_files(&self.paths)?;
        log::info!("wipe: the account's data is gone from this device");
        self.notifier.notify(Change::Session { signed_in: false, needs_login: false });
        self.notifier.notify(Change::Outbox);
        self.notifier.notify(Change::Incidents { ids: Vec::new() });
        Ok(())
    }

    /// A revoked device wipes at once when nothing unsent would be lost;
    /// otherwise its work waits, encrypted, for the person to export it.
    fn wipe_after_revocation(&self) {
        match self.wipe() {
            Ok(()) => {}
            Err(Error::UnsentWork { operations, drafts }) => {
                log::warn!("wipe: revoked device keeps {operations} unsent operations and {drafts} drafts until they are exported");
            }
            Err(other) => log::warn!("wipe: after revocation it failed: {}", other.code()),
        }
    }

    /// The transport for the signed-in session, made from it when needed.
    fn transport(&self) -> Result<Option<Arc<dyn Transport>>> {
        if let Some(transport) = locked(&self.sync.transport).clone() {
            return Ok(Some(transport));
        }
        let conn = self.lock();
        let Some(session) = session::load(&conn)? else { return Ok(None) };
        let device_id = session::device_id(&conn)?;
        let insecure = session::get_meta(&conn, "allow_insecure_http")?.is_some();
        drop(conn);
        let transport: Arc<dyn Transport> = Arc::new(HttpTransport::new(&session.server_url, &device_id, insecure, &self.tls)?);
        *locked(&self.sync.transport) = Some(transport.clone());
        Ok(Some(transport))
    }

    // ---- outbox ----

    pub fn outbox_summary(&self) -> Result<OutboxSummary> {
        outbox::summary(&self.read(), self.clock.now().device_ms)
    }

    /// Every operation not yet acknowledged, in queue order.
    pub fn outbox_items(&self) -> Result<Vec<Operation>> {
        outbox::unsent(&self.read())
    }

    /// The user asks to try a parked operation again (after fixing what the
    /// server objected to).
    pub fn retry_parked(&self, op_id: Uuid) -> Result<()> {
        self.write(|tx, now, _| outbox::unpark(tx, op_id, now.device_ms))?;
        self.notifier.notify(Change::Outbox);
        Ok(())
    }
}

/// A failed request as the caller hears it.
fn transport_error(error: TransportError) -> Error {
    match error {
        TransportError::Http { status: 401, code, .. } if code == gridwork_protocol::api::DEVICE_REVOKED => Error::DeviceRevoked,
        TransportError::Http { status: 401, .. } => Error::AuthFailed,
        TransportError::Http { code, message, .. } => Error::Server { code, message },
        TransportError::Network(why) | TransportError::Malformed(why) => Error::Network(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn facade_is_send_and_sync() {
        assert_send_sync::<Gridwork>();
    }
}
