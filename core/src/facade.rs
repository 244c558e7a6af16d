//! `Gridwork`: the one type the bindings, the CLI and the tests call.
//!
//! Shaped for uniffi as it is: owned types in and out, one error type with
//! stable codes, no generics or lifetimes, `Send + Sync`. One writer
//! connection behind a mutex; photo decoding runs outside the lock so a
//! capture never blocks the list a worker is scrolling.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use uuid::Uuid;

use crate::capture::{self, DraftFields};
use crate::clock::{Clock, CorrectedClock, SystemClock, Timestamp};
use crate::error::{Error, Result};
use crate::geo::{GeoPoint, validate_point};
use crate::model::{Category, Grid, Incident, IncidentDetail, IncidentFilter, Photo, audit, category, grid};
use crate::outbox::{self, Operation, OutboxSummary};
use crate::photo::{PhotoFormat, PhotoLimits, PhotoStore, Rendition};
use crate::store::{self, AccountPaths, Durability, OpenReport};

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
        }
    }
}

pub struct Gridwork {
    connection: Mutex<Connection>,
    photos: PhotoStore,
    clock: CorrectedClock,
    account_id: String,
    paths: AccountPaths,
    photo_limits: PhotoLimits,
    default_utc_offset_minutes: i32,
    device_location: Mutex<Option<GeoPoint>>,
    report: OpenReport,
}

const CLOCK_OFFSET_KEY: &str = "server_clock_offset_ms";

impl Gridwork {
    pub fn open(config: GridworkConfig) -> Result<Gridwork> {
        Self::open_with_clock(config, Box::new(SystemClock))
    }

    /// Open with an injected clock (tests, simulations).
    pub fn open_with_clock(config: GridworkConfig, clock: Box<dyn Clock>) -> Result<Gridwork> {
        let text_account = crate::text::validate("account_id", &config.account_id, 200)?;
        if text_account.is_empty() {
            return Err(Error::Incomplete("an account id is required"));
        }
        let opened = store::open(&config.data_dir, &text_account, &config.database_key, config.durability)?;
        let mut report = opened.report;
        let connection = opened.connection;
        let offset: Option<String> = connection
            .query_row("SELECT value FROM meta WHERE key = ?1", [CLOCK_OFFSET_KEY], |r| r.get(0))
            .optional()?;
        report.in_flight_recovered = outbox::recover_in_flight(&connection)?;
        let photos = PhotoStore::open(&opened.paths.photos)?;
        // No ingest can be running yet, so temp files are leftovers of a
        // killed process too.
        report.orphan_files_removed = photos.sweep(&capture::referenced_hashes(&connection)?, true)?;
        Ok(Gridwork {
            connection: Mutex::new(connection),
            photos,
            clock: CorrectedClock::new(clock, offset.and_then(|o| o.parse().ok()).unwrap_or(0)),
            account_id: text_account,
            paths: opened.paths,
            photo_limits: config.photo_limits,
            default_utc_offset_minutes: config.default_utc_offset_minutes,
            device_location: Mutex::new(None),
            report,
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
        // A panic while holding the lock cannot leave a half-done change:
        // every change is one SQLite transaction, rolled back on drop.
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` in one IMMEDIATE transaction.
    fn write<T>(&self, f: impl FnOnce(&Transaction, Timestamp, Option<GeoPoint>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx, self.clock.now(), self.device_location())?;
        tx.commit()?;
        Ok(value)
    }

    /// Direct access to the writer connection, for the sync engine, tests and
    /// benchmarks. Not part of the FFI surface.
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
        *self.device_location.lock().unwrap_or_else(|e| e.into_inner()) = location;
        Ok(())
    }

    fn device_location(&self) -> Option<GeoPoint> {
        *self.device_location.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offset to server time in milliseconds (server minus device), kept
    /// from sync replies and applied to every timestamp written after.
    pub fn set_server_time_offset_ms(&self, offset_ms: i64) -> Result<()> {
        self.write(|tx, _, _| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
                rusqlite::params![CLOCK_OFFSET_KEY, offset_ms.to_string()],
            )?;
            Ok(())
        })?;
        self.clock.set_offset_ms(offset_ms);
        Ok(())
    }

    pub fn server_time_offset_ms(&self) -> i64 {
        self.clock.offset_ms()
    }

    // ---- reference data ----

    pub fn categories(&self) -> Result<Vec<Category>> {
        category::list_active(&self.lock())
    }

    pub fn category_table_version(&self) -> Result<i64> {
        category::table_version(&self.lock())
    }

    /// Replace the category table when `version` is newer; returns whether it did.
    pub fn replace_categories(&self, version: i64, categories: Vec<Category>) -> Result<bool> {
        for c in &categories {
            crate::text::validate("category", &c.code, 32)?;
            crate::text::validate("category", &c.name_zh, 100)?;
            crate::text::validate("category", &c.name_en, 100)?;
        }
        self.write(|tx, _, _| category::replace_table(tx, version, &categories))
    }

    pub fn grids(&self) -> Result<Vec<Grid>> {
        grid::list(&self.lock())
    }

    /// Import a GeoJSON FeatureCollection of grids (all or nothing).
    pub fn import_grids_geojson(&self, geojson: &str) -> Result<u32> {
        self.write(|tx, _, _| grid::import_geojson(tx, geojson).map(|n| n as u32))
    }

    /// The grid containing a point, if any.
    pub fn locate_grid(&self, location: GeoPoint) -> Result<Option<String>> {
        grid::locate(&self.lock(), validate_point(location)?)
    }

    // ---- capture ----

    /// Create a draft; it is durable when this returns.
    pub fn create_draft(&self, fields: DraftFields) -> Result<Incident> {
        self.write(|tx, now, at| {
            let id = capture::create_draft(tx, &fields, &self.account_id, now, at)?;
            capture::get(tx, id)
        })
    }

    /// Replace a draft's editable fields.
    pub fn update_draft(&self, incident_id: Uuid, fields: DraftFields) -> Result<Incident> {
        self.write(|tx, now, at| {
            capture::update_draft(tx, incident_id, &fields, &self.account_id, now, at)?;
            capture::get(tx, incident_id)
        })
    }

    /// Copy a photo into the store, process it and attach it to a draft.
    /// The file and its row are durable when this returns.
    pub fn attach_photo(&self, incident_id: Uuid, source: &Path) -> Result<Photo> {
        // Fail fast before the expensive part.
        capture::require_status(&self.lock(), incident_id, crate::model::IncidentStatus::Draft, "attach a photo")?;
        let ingested = self.photos.ingest(source, self.photo_limits, self.default_utc_offset_minutes)?;
        let photo_id = match self.write(|tx, now, at| capture::insert_photo(tx, incident_id, &ingested, &self.account_id, now, at)) {
            Ok(photo_id) => photo_id,
            Err(error) => {
                let referenced = capture::referenced_hashes(&self.lock()).map(|r| r.contains(&ingested.sha256)).unwrap_or(true);
                self.photos.abandon(ingested, referenced);
                return Err(error);
            }
        };
        drop(ingested);
        capture::photo(&self.lock(), photo_id, Some(&self.photos))
    }

    pub fn remove_photo(&self, incident_id: Uuid, photo_id: Uuid) -> Result<()> {
        self.write(|tx, now, at| capture::remove_photo(tx, incident_id, photo_id, &self.account_id, now, at))
    }

    /// Submit a draft: status, audit and outbox operations in one commit.
    pub fn submit(&self, incident_id: Uuid) -> Result<Incident> {
        self.write(|tx, now, at| {
            capture::submit(tx, incident_id, &self.account_id, now, at)?;
            capture::get(tx, incident_id)
        })
    }

    pub fn discard_draft(&self, incident_id: Uuid) -> Result<()> {
        self.write(|tx, now, at| capture::discard(tx, incident_id, &self.account_id, now, at))
    }

    pub fn list_incidents(&self, filter: IncidentFilter) -> Result<Vec<Incident>> {
        capture::list(&self.lock(), &filter)
    }

    pub fn get_incident(&self, incident_id: Uuid) -> Result<IncidentDetail> {
        let conn = self.lock();
        Ok(IncidentDetail {
            incident: capture::get(&conn, incident_id)?,
            photos: capture::photos(&conn, incident_id, Some(&self.photos))?,
            audit: audit::for_incident(&conn, incident_id)?,
            sync_state: capture::sync_state(&conn, incident_id)?,
        })
    }

    pub fn similar_photos(&self, photo_id: Uuid, max_distance: u32) -> Result<Vec<(Photo, u32)>> {
        capture::similar_photos(&self.lock(), photo_id, max_distance, Some(&self.photos))
    }

    /// The file to upload for a photo under a rendition policy (made and
    /// cached on first use).
    pub fn photo_upload_file(&self, photo_id: Uuid, rendition: Rendition) -> Result<PathBuf> {
        let photo = capture::photo(&self.lock(), photo_id, None)?;
        let format = PhotoFormat::from_mime_type(&photo.mime_type).unwrap_or(PhotoFormat::Jpeg);
        self.photos.rendition(&photo.sha256, format, photo.orientation, rendition, self.photo_limits)
    }

    /// Remove photo files no row references; returns how many.
    pub fn sweep_orphan_files(&self) -> Result<u64> {
        let conn = self.lock();
        // Holding the connection lock: no row can be committed meanwhile,
        // and in-progress ingests are protected by their guards.
        self.photos.sweep(&capture::referenced_hashes(&conn)?, false)
    }

    // ---- outbox ----

    pub fn outbox_summary(&self) -> Result<OutboxSummary> {
        outbox::summary(&self.lock(), self.clock.now().device_ms)
    }

    /// Every operation not yet acknowledged, in queue order.
    pub fn outbox_items(&self) -> Result<Vec<Operation>> {
        outbox::unsent(&self.lock())
    }

    /// The user asks to try a parked operation again (after fixing what the
    /// server objected to).
    pub fn retry_parked(&self, op_id: Uuid) -> Result<()> {
        self.write(|tx, now, _| outbox::unpark(tx, op_id, now.device_ms))
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
