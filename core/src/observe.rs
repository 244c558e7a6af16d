//! Change notification: observers hear, with a typed payload, whenever
//! something an app shows has changed.
//!
//! Observers are called on the thread that made the change, after its
//! transaction committed and with no core lock held, so a listener may call
//! back into the store (read, `set_network`, `logout`, even `sync_now`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// What changed, for screens that show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// These incidents changed on the device: a draft edited, a photo
    /// attached or removed, submitted, discarded, or new server state pulled.
    Incidents { ids: Vec<Uuid> },
    /// The outbox changed: work queued, sent, parked or retried.
    Outbox,
    Categories,
    Grids,
    /// Signed in or out, or a new login is needed.
    Session { signed_in: bool, needs_login: bool },
    /// A running sync moved on (a batch acknowledged, a photo chunk sent, a
    /// page pulled); `None` when the run ended.
    SyncProgress(Option<SyncProgress>),
}

/// How far a running sync has got, for a progress bar: what the run has
/// done so far (the counts of the report it will end with) and the photo
/// on its way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncProgress {
    /// Operations the server acknowledged so far.
    pub pushed: u32,
    /// Operations the server refused so far, now parked.
    pub parked: u32,
    pub photos_uploaded: u32,
    pub uploaded_bytes: u64,
    /// Changes pulled and applied so far.
    pub pulled: u32,
    pub upload: Option<UploadPosition>,
}

/// One photo upload: its size and how many of its bytes the server holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadPosition {
    pub size: u64,
    pub sent: u64,
}

/// The kind of a [`Change`], for listeners that only care which screen to refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Incidents,
    Outbox,
    Categories,
    Grids,
    Session,
    SyncProgress,
}

impl Change {
    pub fn kind(&self) -> ChangeKind {
        match self {
            Change::Incidents { .. } => ChangeKind::Incidents,
            Change::Outbox => ChangeKind::Outbox,
            Change::Categories => ChangeKind::Categories,
            Change::Grids => ChangeKind::Grids,
            Change::Session { .. } => ChangeKind::Session,
            Change::SyncProgress(_) => ChangeKind::SyncProgress,
        }
    }
}

/// Told when anything an app shows has changed. Keep it quick (post to the
/// UI thread).
pub trait ChangeObserver: Send + Sync {
    fn changed(&self, change: &Change);
}

/// The observers of one store.
#[derive(Default)]
pub(crate) struct Notifier {
    observers: Mutex<Vec<(u64, Arc<dyn ChangeObserver>)>>,
    next_id: AtomicU64,
}

impl Notifier {
    fn observers(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Arc<dyn ChangeObserver>)>> {
        self.observers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn subscribe(self: &Arc<Self>, observer: Arc<dyn ChangeObserver>) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.observers().push((id, observer));
        Subscription { id, notifier: self.clone() }
    }

    /// Tell every observer. The list is copied first, so an observer that
    /// subscribes or unsubscribes from its callback does not deadlock.
    pub(crate) fn notify(&self, change: Change) {
        let observers: Vec<_> = self.observers().iter().map(|(_, o)| o.clone()).collect();
        for observer in observers {
            observer.changed(&change);
        }
    }
}

/// Keeps an observer subscribed; dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    notifier: Arc<Notifier>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.notifier.observers().retain(|(id, _)| *id != self.id);
    }
}
