//! Observers for the shells' reactive screens (Kotlin `Flow`, Swift
//! `AsyncStream`).
//!
//! Each observer receives the current value at once on subscribe, then a
//! fresh value after every change that concerns it. All callbacks of one
//! store come from one dispatch thread, in order, never with a core lock
//! held: a listener may call back into the store. Changes that arrive
//! while a value is being computed are coalesced into one delivery.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use gridwork_core::{Change, ChangeObserver, Gridwork};

use crate::records::{Category, Grid, IncidentFilter, Incident, OutboxSummary, SyncProgress, SyncReport, UserInfo};

#[uniffi::export(callback_interface)]
pub trait OutboxObserver: Send + Sync {
    fn on_outbox(&self, summary: OutboxSummary);
}

#[uniffi::export(callback_interface)]
pub trait IncidentsObserver: Send + Sync {
    fn on_incidents(&self, incidents: Vec<Incident>);
}

#[uniffi::export(callback_interface)]
pub trait SyncObserver: Send + Sync {
    fn on_sync(&self, status: SyncStatus);
}

#[uniffi::export(callback_interface)]
pub trait SessionObserver: Send + Sync {
    fn on_session(&self, session: SessionState);
}

#[uniffi::export(callback_interface)]
pub trait ReferenceDataObserver: Send + Sync {
    fn on_reference_data(&self, categories: Vec<Category>, grids: Vec<Grid>);
}

/// Whether a sync is running, and how the last one ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    pub running: bool,
    pub last_report: Option<SyncReport>,
    /// The error code of the last run when it failed as a whole.
    pub last_error_code: Option<String>,
    /// Device time (Unix ms) the last run ended.
    pub last_finished_at_ms: Option<i64>,
    /// How far the running sync has got; `None` when none runs.
    pub progress: Option<SyncProgress>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct SessionState {
    pub user: Option<UserInfo>,
    /// The session ended (refresh refused): sign in again; unsent work waits.
    pub needs_login: bool,
    /// An administrator revoked this device: no sign-in helps. Export the
    /// unsent work (`unsent_work`, `export_unsent`), then `wipe`.
    pub device_revoked: bool,
}

/// Ends a subscription on `cancel()` or when released: Kotlin's `close()`
/// (the generated objects are `AutoCloseable`), Swift's `deinit`, or Rust's
/// drop. The method is not called `close` because the generated Kotlin
/// class already has one (it releases the handle, which also cancels).
#[derive(uniffi::Object)]
pub struct Subscription {
    subscriber: Arc<Subscriber>,
    registry: Weak<Registry>,
}

#[uniffi::export]
impl Subscription {
    /// Stop the callbacks. At most a delivery already under way finishes.
    pub fn cancel(&self) {
        self.subscriber.active.store(false, Ordering::Release);
        if let Some(registry) = self.registry.upgrade() {
            locked(&registry.subscribers).retain(|s| s.id != self.subscriber.id);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Watch {
    Outbox,
    Incidents,
    Sync,
    Session,
    ReferenceData,
}

pub(crate) enum Observer {
    Outbox(Box<dyn OutboxObserver>),
    Incidents(IncidentFilter, Box<dyn IncidentsObserver>),
    Sync(Box<dyn SyncObserver>),
    Session(Box<dyn SessionObserver>),
    ReferenceData(Box<dyn ReferenceDataObserver>),
}

impl Observer {
    fn watch(&self) -> Watch {
        match self {
            Observer::Outbox(_) => Watch::Outbox,
            Observer::Incidents(..) => Watch::Incidents,
            Observer::Sync(_) => Watch::Sync,
            Observer::Session(_) => Watch::Session,
            Observer::ReferenceData(_) => Watch::ReferenceData,
        }
    }
}

struct Subscriber {
    id: u64,
    active: AtomicBool,
    observer: Observer,
}

enum Signal {
    Changed(Watch),
    /// Deliver the current value to a new subscriber.
    Snapshot(u64),
}

/// What the dispatch thread and the store share.
struct Registry {
    subscribers: Mutex<Vec<Arc<Subscriber>>>,
    sync: Mutex<SyncStatus>,
    needs_login: AtomicBool,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The observers of one store and the thread that calls them.
pub(crate) struct Dispatcher {
    registry: Arc<Registry>,
    signals: Sender<Signal>,
    next_id: AtomicU64,
}

impl Dispatcher {
    /// Start the dispatch thread; it ends when the store is gone.
    pub(crate) fn start(core: Weak<Gridwork>) -> Arc<Dispatcher> {
        // A session that ended before this process started (refused, or
        // its refresh token expired) shows as ended from the first snapshot.
        let needs_login = core.upgrade().and_then(|core| core.needs_login().ok()).unwrap_or(false);
        let registry = Arc::new(Registry {
            subscribers: Mutex::new(Vec::new()),
            sync: Mutex::new(SyncStatus::default()),
            needs_login: AtomicBool::new(needs_login),
        });
        let (signals, receiver) = channel();
        let thread_registry = registry.clone();
        let spawned = std::thread::Builder::new()
            .name("gridwork-observers".into())
            .spawn(move || dispatch(core, thread_registry, receiver));
        if spawned.is_err() {
            log::error!("cannot start the observer thread; observers will not be called");
        }
        Arc::new(Dispatcher { registry, signals, next_id: AtomicU64::new(1) })
    }

    pub(crate) fn subscribe(&self, observer: Observer) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let subscriber = Arc::new(Subscriber { id, active: AtomicBool::new(true), observer });
        locked(&self.registry.subscribers).push(subscriber.clone());
        let _ = self.signals.send(Signal::Snapshot(id));
        Subscription { subscriber, registry: Arc::downgrade(&self.registry) }
    }

    /// The core's changes, as the dispatcher hears them.
    pub(crate) fn listener(&self) -> Arc<dyn ChangeObserver> {
        Arc::new(CoreListener { registry: self.registry.clone(), signals: self.signals.clone() })
    }

    pub(crate) fn sync_status(&self) -> SyncStatus {
        locked(&self.registry.sync).clone()
    }

    pub(crate) fn sync_started(&self) {
        locked(&self.registry.sync).running = true;
        let _ = self.signals.send(Signal::Changed(Watch::Sync));
    }

    pub(crate) fn sync_finished(&self, report: Option<SyncReport>, error_code: Option<String>, at_ms: i64) {
        {
            let mut status = locked(&self.registry.sync);
            status.running = false;
            status.progress = None;
            if report.is_some() {
                status.last_report = report;
            }
            status.last_error_code = error_code;
            status.last_finished_at_ms = Some(at_ms);
        }
        let _ = self.signals.send(Signal::Changed(Watch::Sync));
    }
}

struct CoreListener {
    registry: Arc<Registry>,
    signals: Sender<Signal>,
}

impl ChangeObserver for CoreListener {
    fn changed(&self, change: &Change) {
        let watch = match change {
            Change::Incidents { .. } => Watch::Incidents,
            Change::Outbox => Watch::Outbox,
            Change::Categories | Change::Grids => Watch::ReferenceData,
            Change::Session { needs_login, .. } => {
                self.registry.needs_login.store(*needs_login, Ordering::Release);
                Watch::Session
            }
            Change::SyncProgress(progress) => {
                locked(&self.registry.sync).progress = progress.clone().map(SyncProgress::from);
                Watch::Sync
            }
        };
        let _ = self.signals.send(Signal::Changed(watch));
    }
}

fn dispatch(core: Weak<Gridwork>, registry: Arc<Registry>, receiver: Receiver<Signal>) {
    while let Ok(first) = receiver.recv() {
        // Coalesce everything already queued into one round of deliveries.
        let mut changed = HashSet::new();
        let mut snapshots = HashSet::new();
        for signal in std::iter::once(first).chain(receiver.try_iter()) {
            match signal {
                Signal::Changed(watch) => changed.insert(watch),
                Signal::Snapshot(id) => snapshots.insert(id),
            };
        }
        let Some(core) = core.upgrade() else { return };
        let subscribers: Vec<_> = locked(&registry.subscribers).clone();
        for subscriber in subscribers {
            if changed.contains(&subscriber.observer.watch()) || snapshots.contains(&subscriber.id) {
                deliver(&core, &registry, &subscriber);
            }
        }
    }
}

/// Compute the subscriber's value now and hand it over.
fn deliver(core: &Gridwork, registry: &Registry, subscriber: &Subscriber) {
    if !subscriber.active.load(Ordering::Acquire) {
        return;
    }
    let call = || -> gridwork_core::Result<()> {
        match &subscriber.observer {
            Observer::Outbox(o) => o.on_outbox(core.outbox_summary()?.into()),
            Observer::Incidents(filter, o) => {
                let incidents = core.list_incidents(filter.clone().into())?;
                o.on_incidents(incidents.into_iter().map(Into::into).collect())
            }
            Observer::Sync(o) => o.on_sync(locked(&registry.sync).clone()),
            Observer::Session(o) => o.on_session(SessionState {
                user: core.session_user()?.map(Into::into),
                needs_login: registry.needs_login.load(Ordering::Acquire),
                device_revoked: core.device_revoked()?,
            }),
            Observer::ReferenceData(o) => o.on_reference_data(
                core.categories()?.into_iter().map(Into::into).collect(),
                core.grids()?.into_iter().map(Into::into).collect(),
            ),
        }
        Ok(())
    };
    // A listener that throws must not end the dispatch thread.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => log::warn!("observer value not computed: {}", error.code()),
        Err(_) => log::warn!("an observer callback failed"),
    }
}
