//! The exports as a shell calls them, on a real encrypted store (the JVM
//! tests that drive the generated Kotlin come with the android/ module).
//! Unit tests rather than tests/: the crate builds no Rust library (see
//! Cargo.toml), so there is nothing for an integration test to link.

use std::future::Future;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::*;

/// A minimal executor: the exports' futures are woken from worker threads.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(value) => return value,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(50)),
        }
    }
}

fn config(dir: &std::path::Path, key: u8) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_string_lossy().into_owned(),
        account_id: "worker@test".into(),
        database_key: vec![key; 32],
        durability: Durability::Full,
        default_utc_offset_minutes: 480,
        tls: None,
    }
}

fn fields(description: &str) -> DraftFields {
    DraftFields {
        // A leaf of the built-in category table.
        category_code: Some(CATEGORY.into()),
        description: description.into(),
        address: None,
        location: Some(GeoPoint { lat: 31.2304, lon: 121.4737, accuracy_m: Some(8.0) }),
    }
}

const CATEGORY: &str = "0101";

struct Outbox(Mutex<std::sync::mpsc::Sender<OutboxSummary>>);
impl OutboxObserver for Outbox {
    fn on_outbox(&self, summary: OutboxSummary) {
        let _ = self.0.lock().unwrap().send(summary);
    }
}

fn outbox_observer() -> (Box<dyn OutboxObserver>, Receiver<OutboxSummary>) {
    let (tx, rx) = channel();
    (Box::new(Outbox(Mutex::new(tx))), rx)
}

#[test]
fn capture_submit_and_observe_through_the_exports() {
    let dir = tempfile::tempdir().unwrap();
    let store = block_on(open_store(config(dir.path(), 7))).unwrap();
    assert!(store.open_report().created);

    let (observer, summaries) = outbox_observer();
    let subscription = store.observe_outbox(observer);
    let first = summaries.recv_timeout(Duration::from_secs(5)).expect("snapshot on subscribe");
    assert_eq!(first.pending, 0);

    let draft = store.create_draft(fields("井盖缺失")).unwrap();
    assert_eq!(draft.status, IncidentStatus::Draft);
    let submitted = store.submit(draft.id.clone()).unwrap();
    assert_eq!(submitted.status, IncidentStatus::Submitted);
    let after = loop {
        let summary = summaries.recv_timeout(Duration::from_secs(5)).expect("an update after submit");
        if summary.pending > 0 {
            break summary;
        }
    };
    assert!(after.pending >= 1);
    assert_eq!(store.outbox_items().unwrap().len() as u64, after.pending);

    // Closed: no more callbacks.
    subscription.cancel();
    while summaries.try_recv().is_ok() {}
    store.submit(store.create_draft(fields("第二条")).unwrap().id).unwrap();
    assert!(summaries.recv_timeout(Duration::from_millis(500)).is_err());

    let detail = store.get_incident(submitted.id.clone()).unwrap();
    assert_eq!(detail.incident.description, "井盖缺失");
    assert!(matches!(detail.sync_state, SyncState::Unsent { .. }));
}

#[test]
fn errors_carry_the_variant_a_ui_branches_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = block_on(open_store(config(dir.path(), 7))).unwrap();
    let draft = store.create_draft(fields("x")).unwrap();

    match store.get_incident("not-a-uuid".into()) {
        Err(GridworkError::InvalidInput { code, field, .. }) => {
            assert_eq!(code, "invalid_id");
            assert_eq!(field.as_deref(), Some("incident_id"));
        }
        other => panic!("{other:?}"),
    }
    match store.create_draft(fields(&"长".repeat(100_000))) {
        Err(GridworkError::InvalidInput { code, field, .. }) => {
            assert_eq!(code, "text_too_long");
            assert_eq!(field.as_deref(), Some("description"));
        }
        other => panic!("{other:?}"),
    }
    let missing = dir.path().join("missing.jpg").to_string_lossy().into_owned();
    match block_on(store.attach_photo(draft.id.clone(), missing)) {
        Err(GridworkError::PhotoRefused { code, .. }) => assert_eq!(code, "photo_file_not_found"),
        other => panic!("{other:?}"),
    }
    store.submit(draft.id.clone()).unwrap();
    match store.update_draft(draft.id.clone(), fields("y")) {
        Err(GridworkError::InvalidState { code, .. }) => assert_eq!(code, "invalid_state"),
        other => panic!("{other:?}"),
    }
    match block_on(store.login("ftp://example.org".into(), "u".into(), "p".into(), false)) {
        Err(GridworkError::InvalidInput { field, .. }) => assert_eq!(field.as_deref(), Some("server_url")),
        other => panic!("{other:?}"),
    }
    // Not signed in: a sync says so and drops nothing.
    let report = block_on(store.sync(SyncTrigger::ManualRetry, 5_000)).unwrap();
    assert!(report.needs_login);
    assert!(!store.sync_status().running);
    assert_eq!(store.sync_status().last_report, Some(report));
    drop(store);

    match block_on(open_store(config(dir.path(), 8))) {
        Err(error @ GridworkError::WrongKey { .. }) => assert_eq!(error.code(), "database_wrong_key"),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("opened with the wrong key"),
    }
}
