//! `GridworkStore`: one account's store on the phone, over the core facade.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gridwork_core::{Gridwork, GridworkConfig, TlsConfig};

use crate::error::GridworkError;
use crate::observe::{
    Dispatcher, IncidentsObserver, Observer, OutboxObserver, ReferenceDataObserver, SessionObserver, Subscription,
    SyncObserver, SyncStatus,
};
use crate::offload::offload;
use crate::records::{
    Adopted, CaseTask, ExportedWork, Category, DraftFields, Durability, GeoPoint, Grid, Incident, IncidentDetail, IncidentFilter, MeteredPolicy, OpenReport,
    OutboxItem, OutboxSummary, Photo, PhotoRole, PhotoSize, Rendition, SimilarPhoto, Stats, StatsQuery, StepInput, StoreConfig, SyncReport, SyncTrigger, TaskFilter, TrailCheck,
    TlsSettings, UnsentWork, UserInfo, parse_id,
};

type Result<T, E = GridworkError> = std::result::Result<T, E>;

#[derive(uniffi::Object)]
pub struct GridworkStore {
    core: Arc<Gridwork>,
    dispatcher: Arc<Dispatcher>,
    /// Keeps the dispatcher listening to the core for the store's life.
    _listening: gridwork_core::Subscription,
}

/// Open (or create) an account's encrypted store. Slow the first time
/// (key check, migrations, recovery of a killed sync), so it is async.
#[uniffi::export]
pub async fn open_store(config: StoreConfig) -> Result<Arc<GridworkStore>> {
    offload("open", move || {
        let core = Arc::new(Gridwork::open(core_config(config)?)?);
        let dispatcher = Dispatcher::start(Arc::downgrade(&core));
        let listening = core.subscribe(dispatcher.listener());
        Ok(Arc::new(GridworkStore { core, dispatcher, _listening: listening }))
    })
    .await
}

fn core_config(config: StoreConfig) -> Result<GridworkConfig> {
    let mut core = GridworkConfig::new(config.data_dir, config.account_id, config.database_key);
    core.durability = match config.durability {
        Durability::Full => gridwork_core::Durability::Full,
        Durability::Normal => gridwork_core::Durability::Normal,
    };
    core.default_utc_offset_minutes = config.default_utc_offset_minutes;
    core.tls = tls_config(config.tls.unwrap_or_default())?;
    Ok(core)
}

fn tls_config(settings: TlsSettings) -> Result<TlsConfig> {
    let pins = settings
        .pinned_spki_sha256
        .iter()
        .map(|pin| TlsConfig::parse_pin(pin))
        .collect::<gridwork_core::Result<Vec<_>>>()?;
    Ok(TlsConfig { pinned_spki_sha256: pins, extra_roots_der: settings.extra_roots_der })
}

fn device_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[uniffi::export]
impl GridworkStore {
    // ---- store ----

    /// What happened when the store was opened.
    pub fn open_report(&self) -> OpenReport {
        self.core.open_report().into()
    }

    pub fn account_id(&self) -> String {
        self.core.account_id().to_owned()
    }

    /// The latest location fix, recorded with every action; `None` when unknown.
    pub fn set_device_location(&self, location: Option<GeoPoint>) -> Result<()> {
        Ok(self.core.set_device_location(location.map(Into::into))?)
    }

    /// Remove photo files that no report references (after a crash).
    pub async fn sweep_orphan_files(&self) -> Result<u64> {
        let core = self.core.clone();
        offload("sweep", move || Ok(core.sweep_orphan_files()?)).await
    }

    /// Take over `source`'s work that no server has seen (reports and
    /// drafts with their photos, trail and queued operations), typically
    /// the store used before the first sign-in on this phone, right after
    /// it. It goes out with this account's next sync and leaves `source`.
    /// Safe to call again after a crash; a no-op on the same account.
    pub async fn adopt_unsent_from(&self, source: Arc<GridworkStore>) -> Result<Adopted> {
        let core = self.core.clone();
        offload("adopt", move || Ok(core.adopt_unsent_from(&source.core)?.into())).await
    }

    // ---- reference data ----

    pub fn categories(&self) -> Result<Vec<Category>> {
        Ok(self.core.categories()?.into_iter().map(Into::into).collect())
    }

    pub fn grids(&self) -> Result<Vec<Grid>> {
        Ok(self.core.grids()?.into_iter().map(Into::into).collect())
    }

    /// Import grids from a GeoJSON FeatureCollection (all or nothing);
    /// returns how many.
    pub async fn import_grids_geojson(&self, geojson: String) -> Result<u32> {
        let core = self.core.clone();
        offload("import-grids", move || Ok(core.import_grids_geojson(&geojson)?)).await
    }

    /// The code of the grid containing `location`, if any.
    pub fn locate_grid(&self, location: GeoPoint) -> Result<Option<String>> {
        Ok(self.core.locate_grid(location.into())?)
    }

    // ---- capture ----

    /// Create a draft; durable when this returns.
    pub fn create_draft(&self, fields: DraftFields) -> Result<Incident> {
        Ok(self.core.create_draft(fields.into())?.into())
    }

    pub fn update_draft(&self, incident_id: String, fields: DraftFields) -> Result<Incident> {
        let id = parse_id("incident_id", &incident_id)?;
        Ok(self.core.update_draft(id, fields.into())?.into())
    }

    /// Copy the photo at `source_path` into the store (the original is kept
    /// byte for byte), make its thumbnail and attach it to a draft. The
    /// caller may delete its file once this returns. Cancelling the caller
    /// does not stop the copy: the photo is attached or not, never half.
    pub async fn attach_photo(&self, incident_id: String, source_path: String) -> Result<Photo> {
        let id = parse_id("incident_id", &incident_id)?;
        let core = self.core.clone();
        offload("attach-photo", move || Ok(core.attach_photo(id, std::path::Path::new(&source_path))?.into())).await
    }

    pub fn remove_photo(&self, incident_id: String, photo_id: String) -> Result<()> {
        let incident = parse_id("incident_id", &incident_id)?;
        let photo = parse_id("photo_id", &photo_id)?;
        Ok(self.core.remove_photo(incident, photo)?)
    }

    /// Submit a draft: it is queued for the server in the same commit.
    pub fn submit(&self, incident_id: String) -> Result<Incident> {
        let id = parse_id("incident_id", &incident_id)?;
        Ok(self.core.submit(id)?.into())
    }

    /// As `attach_photo`, with a role: `After` for a problem the reporter
    /// resolves on the spot (then `submit_resolved`).
    pub async fn attach_photo_as(&self, incident_id: String, source_path: String, role: PhotoRole) -> Result<Photo> {
        let id = parse_id("incident_id", &incident_id)?;
        let core = self.core.clone();
        offload("attach-photo", move || Ok(core.attach_photo_as(id, std::path::Path::new(&source_path), role.into())?.into())).await
    }

    /// Submit a draft as resolved on the spot (现场解决): its after-photos
    /// and `note` say what was done; the case goes to verification.
    pub fn submit_resolved(&self, incident_id: String, note: String) -> Result<Incident> {
        let id = parse_id("incident_id", &incident_id)?;
        Ok(self.core.submit_resolved(id, &note)?.into())
    }

    /// A new draft correcting the user's own rejected report, linked to it.
    pub fn resubmit(&self, rejected_id: String) -> Result<Incident> {
        let id = parse_id("rejected_id", &rejected_id)?;
        Ok(self.core.resubmit(id)?.into())
    }

    pub fn discard_draft(&self, incident_id: String) -> Result<()> {
        let id = parse_id("incident_id", &incident_id)?;
        Ok(self.core.discard_draft(id)?)
    }

    // ---- reading ----

    pub fn list_incidents(&self, filter: IncidentFilter) -> Result<Vec<Incident>> {
        Ok(self.core.list_incidents(filter.into())?.into_iter().map(Into::into).collect())
    }

    /// An incident with its photos, timeline and sync state.
    pub fn get_incident(&self, incident_id: String) -> Result<IncidentDetail> {
        let id = parse_id("incident_id", &incident_id)?;
        Ok(self.core.get_incident(id)?.into())
    }

    // ---- tasks and workflow steps ----

    /// A grid's or a person's figures (统计) for a period, computed on the
    /// device from the cases it holds (the server's, once synced).
    pub fn stats(&self, query: StatsQuery) -> Result<Stats> {
        Ok(self.core.stats(&query.into())?.into())
    }

    /// The signed-in user's tasks (待办), soonest deadline first.
    pub fn tasks(&self, filter: TaskFilter) -> Result<Vec<CaseTask>> {
        Ok(self.core.tasks(filter.into())?.into_iter().map(Into::into).collect())
    }

    /// Take a workflow step on a case (sign, start, handle, hand back,
    /// close with a rating, reopen), checked offline as the server would,
    /// queued for the next sync and shown in its new state at once. Photo
    /// files are copied in; like `attach_photo`, cancelling the caller does
    /// not stop it: the step is taken whole or not at all.
    pub async fn take_step(&self, incident_id: String, step: StepInput) -> Result<Incident> {
        let id = parse_id("incident_id", &incident_id)?;
        let core = self.core.clone();
        offload("take-step", move || {
            let photos: Vec<std::path::PathBuf> = step.photo_paths.iter().map(std::path::PathBuf::from).collect();
            let merge_into = step.merge_into.as_deref().map(|m| parse_id("merge_into", m)).transpose()?;
            let input = gridwork_core::StepInput { note: step.note, rating: step.rating, merge_into, ..gridwork_core::StepInput::new(step.action.into()) };
            Ok(core.take_step(id, input, &photos)?.into())
        })
        .await
    }

    /// Photos that look like this one (possible duplicate reports).
    pub fn similar_photos(&self, photo_id: String, max_distance: u32) -> Result<Vec<SimilarPhoto>> {
        let id = parse_id("photo_id", &photo_id)?;
        let similar = self.core.similar_photos(id, max_distance)?;
        Ok(similar.into_iter().map(|(photo, distance)| SimilarPhoto { photo: photo.into(), distance }).collect())
    }

    /// The path of a photo's rendition (made and cached on first use).
    pub async fn photo_rendition(&self, photo_id: String, rendition: Rendition) -> Result<String> {
        let id = parse_id("photo_id", &photo_id)?;
        let core = self.core.clone();
        offload("rendition", move || Ok(core.photo_upload_file(id, rendition.into())?.to_string_lossy().into_owned())).await
    }

    /// A photo of a case (any device's, by its `CasePhoto.sha256`) as a
    /// file to show: this device's own, a thumbnail sync kept, or fetched
    /// from the server now and kept in a bounded cache. Only photos of
    /// cases this device holds; what the server sends is checked.
    pub async fn case_photo_file(&self, sha256: String, size: PhotoSize) -> Result<String> {
        let core = self.core.clone();
        offload("case_photo_file", move || Ok(core.photo_file(&sha256, size.into())?.to_string_lossy().into_owned())).await
    }

    /// Walk the whole audit trail and check every link (off the UI thread:
    /// it reads the whole trail).
    pub async fn verify_audit_trail(&self) -> Result<TrailCheck> {
        let core = self.core.clone();
        offload("verify_audit_trail", move || Ok(core.verify_audit_trail()?.into())).await
    }

    // ---- session ----

    /// Sign in. Plain `http://` only to loopback unless `allow_insecure_http`.
    pub async fn login(&self, server_url: String, username: String, password: String, allow_insecure_http: bool) -> Result<UserInfo> {
        let core = self.core.clone();
        offload("login", move || Ok(core.login(&server_url, &username, &password, allow_insecure_http)?.into())).await
    }

    /// Forget the session (unsent work stays queued for the next login of
    /// the same account). A running sync stops at its next request.
    pub async fn logout(&self) -> Result<()> {
        let core = self.core.clone();
        offload("logout", move || Ok(core.logout()?)).await
    }

    /// Whether an administrator revoked this device (a lost phone): it no
    /// longer signs in or syncs. Export what is unsent, then `wipe`.
    pub fn device_revoked(&self) -> Result<bool> {
        Ok(self.core.device_revoked()?)
    }

    /// What no server has acknowledged yet: queued operations and drafts.
    pub fn unsent_work(&self) -> Result<UnsentWork> {
        Ok(self.core.unsent_work()?.into())
    }

    /// Write the unsent work into a new folder inside `dir` (`unsent.json`:
    /// operations as they would be pushed and drafts; `photos/`: their
    /// originals), as plain files for the person to hand over. A `wipe` of
    /// exactly that work is allowed afterwards.
    pub async fn export_unsent(&self, dir: String) -> Result<ExportedWork> {
        let core = self.core.clone();
        offload("export_unsent", move || Ok(core.export_unsent(std::path::Path::new(&dir))?.into())).await
    }

    /// Sign out and remove this account's data from the device (database,
    /// photos, everything pulled). `UnsentWork` while anything unsent is
    /// neither synced nor exported: never silently. The store is then empty
    /// and refuses writes; release it and open a new one.
    pub async fn wipe(&self) -> Result<()> {
        let core = self.core.clone();
        offload("wipe", move || Ok(core.wipe()?)).await
    }

    pub fn session_user(&self) -> Result<Option<UserInfo>> {
        Ok(self.core.session_user()?.map(Into::into))
    }

    // ---- sync ----

    /// Connectivity from the platform; `metered` on mobile data. Never waits.
    pub fn set_network(&self, online: bool, metered: bool) {
        self.core.set_network(online, metered);
    }

    pub fn set_metered_policy(&self, policy: MeteredPolicy) {
        self.core.set_metered_policy(policy.into());
    }

    /// Push, upload and pull for at most `budget_ms`. Cancelling the calling
    /// coroutine or task stops the run at its next request boundary; nothing
    /// is left half-done and the next sync finishes the work.
    pub async fn sync(&self, trigger: SyncTrigger, budget_ms: u64) -> Result<SyncReport> {
        let core = self.core.clone();
        let dispatcher = self.dispatcher.clone();
        // Taken now, on the first poll: a `cancel_sync` from here on (Swift's
        // task cancellation handler, which cannot drop this future) cancels
        // this run even if it has not reached the engine yet.
        let ticket = self.core.sync_ticket();
        let cancel_core = self.core.clone();
        offload("sync", move || {
            dispatcher.sync_started();
            let result = core.sync_requested(ticket, trigger.into(), Duration::from_millis(budget_ms));
            let result = result.map(SyncReport::from).map_err(GridworkError::from);
            match &result {
                Ok(report) => dispatcher.sync_finished(Some(report.clone()), None, device_now_ms()),
                Err(error) => dispatcher.sync_finished(None, Some(error.code().to_owned()), device_now_ms()),
            }
            result
        })
        // Kotlin's cancellation drops the future: the same as a cancel_sync.
        .on_cancel(move || cancel_core.cancel_sync())
        .await
    }

    /// Stop a running sync at its next request boundary.
    pub fn cancel_sync(&self) {
        self.core.cancel_sync();
    }

    pub fn sync_status(&self) -> SyncStatus {
        self.dispatcher.sync_status()
    }

    // ---- outbox ----

    pub fn outbox_summary(&self) -> Result<OutboxSummary> {
        Ok(self.core.outbox_summary()?.into())
    }

    /// Every operation not yet acknowledged, in queue order.
    pub fn outbox_items(&self) -> Result<Vec<OutboxItem>> {
        Ok(self.core.outbox_items()?.into_iter().map(Into::into).collect())
    }

    /// Try a parked operation again (after the user fixed the cause).
    pub fn retry_parked(&self, op_id: String) -> Result<()> {
        let id = parse_id("op_id", &op_id)?;
        Ok(self.core.retry_parked(id)?)
    }

    // ---- observers ----

    pub fn observe_outbox(&self, observer: Box<dyn OutboxObserver>) -> Arc<Subscription> {
        Arc::new(self.dispatcher.subscribe(Observer::Outbox(observer)))
    }

    pub fn observe_incidents(&self, filter: IncidentFilter, observer: Box<dyn IncidentsObserver>) -> Arc<Subscription> {
        Arc::new(self.dispatcher.subscribe(Observer::Incidents(filter, observer)))
    }

    pub fn observe_sync(&self, observer: Box<dyn SyncObserver>) -> Arc<Subscription> {
        Arc::new(self.dispatcher.subscribe(Observer::Sync(observer)))
    }

    pub fn observe_session(&self, observer: Box<dyn SessionObserver>) -> Arc<Subscription> {
        Arc::new(self.dispatcher.subscribe(Observer::Session(observer)))
    }

    pub fn observe_reference_data(&self, observer: Box<dyn ReferenceDataObserver>) -> Arc<Subscription> {
        Arc::new(self.dispatcher.subscribe(Observer::ReferenceData(observer)))
    }
}
