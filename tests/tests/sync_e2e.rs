//! End to end over real HTTP on loopback against the real server: capture
//! offline, come online, everything arrives once with byte-identical
//! photos; server-side steps (dispatch, close) arrive on the device.

use std::time::Duration;

use gridwork_core::{CaseState, DraftFields, GeoPoint, IncidentFilter, IncidentStatus, SyncState, Trigger};
use gridwork_tests::server::{LocalServer, PASSWORD, default_policy};
use gridwork_tests::*;

fn capture(gw: &gridwork_core::Gridwork, photos_dir: &std::path::Path, seed: u32, photos: u32) -> gridwork_core::Uuid {
    let draft = gw
        .create_draft(DraftFields {
            category_code: Some("0602".into()),
            description: format!("楼道堆物 #{seed}"),
            location: Some(GeoPoint { lat: 31.23, lon: 121.465, accuracy_m: Some(5.0) }),
            ..Default::default()
        })
        .unwrap();
    for p in 0..photos {
        let bytes = jpeg_bytes(&scene(900, 600, seed * 10 + p), 85, None);
        gw.attach_photo(draft.id, &write_file(photos_dir, &format!("p{seed}-{p}.jpg"), &bytes)).unwrap();
    }
    gw.submit(draft.id).unwrap();
    draft.id
}

#[test]
fn offline_captures_arrive_once_with_identical_photos_and_server_steps_come_back() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device_dir = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    gw.import_grids_geojson(&two_grids_geojson()).unwrap();
    let user = gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    assert_eq!(user.username, "worker1");

    // In a basement: no network. Capture three reports with photos.
    gw.set_network(false, false);
    let ids: Vec<_> = (0..3).map(|i| capture(&gw, photos.path(), i, 2)).collect();
    let offline = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(10)).unwrap();
    assert_eq!((offline.pushed, offline.photos_uploaded), (0, 0));
    assert!(offline.next_wake_ms.is_some(), "an offline round schedules another");
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 0);
    assert_eq!(gw.outbox_summary().unwrap().pending, 9);

    // Back upstairs.
    gw.set_network(true, false);
    let report = gw.sync_now(Trigger::NetworkUp, Duration::from_secs(60)).unwrap();
    assert!(report.completed, "{report:?}");
    assert_eq!(report.pushed, 3);
    assert_eq!(report.photos_uploaded, 6);
    assert!(report.pulled > 0, "categories, grids and the cases themselves");
    let summary = gw.outbox_summary().unwrap();
    assert_eq!((summary.pending, summary.in_flight, summary.parked, summary.photo_bytes_waiting), (0, 0, 0, 0));

    // On the server: each once, photos byte-identical.
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 3);
    assert_eq!(server.count("SELECT COUNT(*) FROM applied_ops"), 3);
    for id in &ids {
        let local = gw.get_incident(*id).unwrap();
        assert_eq!(local.sync_state, SyncState::Synced);
        assert_eq!(local.incident.status, IncidentStatus::Case(CaseState::Reported), "pulled back from the server");
        let remote = server.photos(&id.to_string());
        assert_eq!(remote.len(), 2);
        for (photo, (sha, arrived)) in local.photos.iter().zip(&remote) {
            assert!(arrived);
            assert_eq!(&photo.sha256, sha);
            assert_eq!(sha256_hex(&server.blob_bytes(sha)), photo.sha256, "byte-identical");
            assert_eq!(std::fs::read(&photo.original_path).unwrap(), server.blob_bytes(sha));
        }
    }

    // A second sync sends nothing again.
    let again = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(10)).unwrap();
    assert_eq!((again.pushed, again.photos_uploaded), (0, 0));
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 3);

    // The command center registers and dispatches one to this worker, then closes another.
    assert_eq!(server.step(&ids[0].to_string(), "register", None), "registered");
    assert_eq!(server.step(&ids[0].to_string(), "dispatch", Some("worker1")), "dispatched");
    server.step(&ids[1].to_string(), "register", None);
    server.step(&ids[1].to_string(), "dispatch", Some("worker1"));
    server.step(&ids[1].to_string(), "handle", None);
    server.step(&ids[1].to_string(), "close", None);
    let pulled = gw.sync_now(Trigger::AppForegrounded, Duration::from_secs(10)).unwrap();
    assert!(pulled.pulled >= 2);
    assert_eq!(gw.get_incident(ids[0]).unwrap().incident.status, IncidentStatus::Case(CaseState::Dispatched));
    assert_eq!(gw.get_incident(ids[1]).unwrap().incident.status, IncidentStatus::Case(CaseState::Closed));
    assert_eq!(gw.get_incident(ids[2]).unwrap().incident.status, IncidentStatus::Case(CaseState::Reported));
    assert_eq!(gw.list_incidents(IncidentFilter::default()).unwrap().len(), 3);
    // The device learned the offset to server time.
    assert!(gw.server_time_offset_ms().abs() < 5_000);
}

/// A push's reply carries the server's view of what it changed, so the
/// device's own reports do not come back as downloads: after the first
/// sync, a sync of new reports pulls nothing, yet every report shows the
/// server's state, and a change someone else makes still arrives.
#[test]
fn pushed_reports_take_the_server_view_from_the_reply_not_from_a_pull() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device_dir = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    let first = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(30)).unwrap();
    assert!(first.completed && first.pulled > 0, "categories and grids: {first:?}");

    let ids: Vec<_> = (0..12).map(|i| capture(&gw, photos.path(), 100 + i, 0)).collect();
    let report = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(30)).unwrap();
    assert!(report.completed, "{report:?}");
    assert_eq!((report.pushed, report.pulled), (12, 0), "nothing of its own pulled back: {report:?}");
    for id in &ids {
        let local = gw.get_incident(*id).unwrap();
        assert_eq!(local.sync_state, SyncState::Synced);
        assert_eq!(local.incident.status, IncidentStatus::Case(CaseState::Reported), "the server's view, from the push reply");
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 12);

    // Someone else's step is pulled as before.
    server.step(&ids[3].to_string(), "register", None);
    let later = gw.sync_now(Trigger::AppForegrounded, Duration::from_secs(30)).unwrap();
    assert_eq!(later.pulled, 1, "{later:?}");
    assert_eq!(gw.get_incident(ids[3]).unwrap().incident.status, IncidentStatus::Case(CaseState::Registered));

    // A fresh device of the same worker pulls every report: skipping is
    // per run, never a gap in what the server holds.
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open(fresh_dir.path(), "worker1");
    fresh.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    assert!(fresh.sync_now(Trigger::ManualRetry, Duration::from_secs(30)).unwrap().completed);
    assert_eq!(fresh.list_incidents(IncidentFilter::default()).unwrap().len(), 12);
}

/// Opening lists no photo folder (it would grow slower with every photo
/// kept); the session's first sync sweeps what no row references.
#[test]
fn the_first_sync_of_a_session_sweeps_unreferenced_photo_files() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device_dir = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    let kept = capture(&gw, photos.path(), 7, 1);
    let original = gw.get_incident(kept).unwrap().photos[0].original_path.clone();
    let stray = original.parent().unwrap().join(format!("{}.jpg", "ab".repeat(32)));
    std::fs::write(&stray, b"a discarded photo").unwrap();
    drop(gw);
    let gw = open(device_dir.path(), "worker1");
    assert!(stray.exists(), "not at open");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    assert!(gw.sync_now(Trigger::ManualRetry, Duration::from_secs(30)).unwrap().completed);
    assert!(!stray.exists(), "swept by the first sync");
    assert!(original.exists());
    std::fs::write(&stray, b"another").unwrap();
    gw.sync_now(Trigger::ManualRetry, Duration::from_secs(30)).unwrap();
    assert!(stray.exists(), "once a session");
}

#[test]
fn a_rejected_operation_parks_only_its_entity() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device_dir = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    // A category only this device knows: the server will refuse the report.
    gw.replace_categories(
        2,
        vec![
            gridwork_core::Category { code: "0602".into(), parent_code: None, name_zh: "楼道堆物".into(), name_en: "Clutter".into() },
            gridwork_core::Category { code: "LOCAL-ONLY".into(), parent_code: None, name_zh: "本地".into(), name_en: "Local".into() },
        ],
    )
    .unwrap();
    let refused = gw.create_draft(DraftFields { category_code: Some("LOCAL-ONLY".into()), description: "x".into(), ..Default::default() }).unwrap();
    gw.submit(refused.id).unwrap();
    let fine = gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "y".into(), ..Default::default() }).unwrap();
    gw.submit(fine.id).unwrap();
    let report = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(20)).unwrap();
    assert_eq!((report.pushed, report.parked), (1, 1), "{report:?}");
    match gw.get_incident(refused.id).unwrap().sync_state {
        SyncState::Parked { code, .. } => assert_eq!(code, "unknown_category"),
        other => panic!("expected parked, got {other:?}"),
    }
    assert_eq!(gw.get_incident(fine.id).unwrap().sync_state, SyncState::Synced);
    assert_eq!(gw.outbox_summary().unwrap().parked, 1);
}

#[test]
fn expired_token_mid_sync_is_refreshed_and_nothing_is_dropped() {
    let server_dir = tempfile::tempdir().unwrap();
    let policy = gridwork_server::auth::TokenPolicy { access_ttl_ms: 1_000, refresh_ttl_ms: 2_500 };
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", policy);
    server.seed();
    let device_dir = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    let first = gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "a".into(), ..Default::default() }).unwrap();
    gw.submit(first.id).unwrap();
    std::thread::sleep(Duration::from_millis(1_200)); // the access token expires
    let report = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(20)).unwrap();
    assert_eq!(report.pushed, 1, "refreshed and carried on: {report:?}");
    assert!(!report.needs_login);

    // Now let the refresh token expire too: sync pauses and asks for a login.
    std::thread::sleep(Duration::from_millis(2_700));
    let second = gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "b".into(), ..Default::default() }).unwrap();
    gw.submit(second.id).unwrap();
    let paused = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(20)).unwrap();
    assert!(paused.needs_login, "{paused:?}");
    assert_eq!(gw.outbox_summary().unwrap().pending, 1, "nothing dropped while paused");
    let still = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(5)).unwrap();
    assert!(still.needs_login && still.pushed == 0);
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    let resumed = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(20)).unwrap();
    assert_eq!(resumed.pushed, 1);
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 2);
}

#[test]
fn server_restart_mid_sync_converges() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let addr = server.addr.to_string();
    let device_dir = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    let ids: Vec<_> = (0..4).map(|i| capture(&gw, photos.path(), i + 20, 1)).collect();
    server.stop();
    let down = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(10)).unwrap();
    assert_eq!(down.pushed, 0);
    assert!(down.errors.network > 0 && down.next_wake_ms.is_some(), "{down:?}");
    // The server comes back on the same address and data.
    let server = LocalServer::start(server_dir.path(), &addr, default_policy());
    gw.set_network(true, false);
    let report = gw.sync_now(Trigger::NetworkUp, Duration::from_secs(60)).unwrap();
    assert!(report.completed, "{report:?}");
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 4);
    for id in ids {
        assert!(server.photos(&id.to_string()).iter().all(|(_, arrived)| *arrived));
    }
}

#[test]
fn observers_hear_about_changes_until_they_unsubscribe() {
    use std::sync::{Arc, Mutex};
    struct Recorder(Mutex<Vec<gridwork_core::ChangeKind>>);
    impl gridwork_core::ChangeObserver for Recorder {
        fn changed(&self, change: &gridwork_core::Change) {
            self.0.lock().unwrap().push(change.kind());
        }
    }
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device_dir = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
    let subscription = gw.subscribe(recorder.clone());
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    let draft = gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "x".into(), ..Default::default() }).unwrap();
    gw.submit(draft.id).unwrap();
    gw.sync_now(Trigger::OperationQueued, Duration::from_secs(20)).unwrap();
    let seen = recorder.0.lock().unwrap().clone();
    for kind in [
        gridwork_core::ChangeKind::Session,
        gridwork_core::ChangeKind::Outbox,
        gridwork_core::ChangeKind::Incidents,
        gridwork_core::ChangeKind::Categories,
        gridwork_core::ChangeKind::Grids,
        gridwork_core::ChangeKind::SyncProgress,
    ] {
        assert!(seen.contains(&kind), "{kind:?} missing from {seen:?}");
    }
    drop(subscription);
    let count = recorder.0.lock().unwrap().len();
    let draft = gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "y".into(), ..Default::default() }).unwrap();
    gw.submit(draft.id).unwrap();
    gw.sync_now(Trigger::OperationQueued, Duration::from_secs(20)).unwrap();
    assert_eq!(recorder.0.lock().unwrap().len(), count, "nothing after unsubscribing");
}

#[test]
fn on_a_metered_link_previews_go_ahead_and_originals_wait_for_wifi() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device_dir = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    let caller = gridwork_server::admin::system_caller();
    let view = |id: &gridwork_core::Uuid| {
        server.db.read(|tx| gridwork_server::cases::load_view_for(tx, &caller, &id.to_string())).unwrap().expect("case on server")
    };

    // Text only: the report goes, no photo bytes.
    gw.set_metered_policy(gridwork_core::MeteredPolicy::TextOnly);
    gw.set_network(true, true);
    // A photo larger than the 1280 rendition, so every preview differs from it.
    let first = gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "大件".into(), ..Default::default() }).unwrap().id;
    let big = jpeg_bytes(&scene(2400, 1800, 40), 90, None);
    gw.attach_photo(first, &write_file(photos.path(), "big.jpg", &big)).unwrap();
    gw.submit(first).unwrap();
    let report = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(20)).unwrap();
    assert_eq!((report.pushed, report.photos_uploaded, report.previews_uploaded, report.uploaded_bytes), (1, 0, 0, 0), "{report:?}");
    assert!(report.completed, "photos waiting for Wi-Fi are not work for now");
    assert!(!view(&first).photos[0].arrived && !view(&first).photos[0].preview_arrived);

    // Thumbnails: a 320 px preview of each photo goes ahead.
    gw.set_metered_policy(gridwork_core::MeteredPolicy::Thumbnails);
    let report = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(20)).unwrap();
    assert_eq!((report.photos_uploaded, report.previews_uploaded), (0, 1), "{report:?}");
    let on_server = view(&first);
    assert!(on_server.photos[0].preview_arrived && !on_server.photos[0].arrived && on_server.missing_evidence);
    let thumb_bytes = report.uploaded_bytes;
    assert!(thumb_bytes > 0 && thumb_bytes < 100_000, "a thumbnail, not the photo: {thumb_bytes}");
    // Again: nothing more to send on this link.
    let again = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(20)).unwrap();
    assert_eq!((again.previews_uploaded, again.uploaded_bytes), (0, 0));
    // Renditions: a larger preview for the same photo.
    gw.set_metered_policy(gridwork_core::MeteredPolicy::Renditions);
    let bigger = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(20)).unwrap();
    assert_eq!(bigger.previews_uploaded, 1);
    assert_eq!(gw.get_incident(first).unwrap().sync_state, gridwork_core::SyncState::Unsent { pending_operations: 1 }, "the original is still owed");

    // Wi-Fi: the original follows, byte-identical.
    gw.set_network(true, false);
    let wifi = gw.sync_now(Trigger::NetworkUp, Duration::from_secs(20)).unwrap();
    assert_eq!(wifi.photos_uploaded, 1, "{wifi:?}");
    let on_server = view(&first);
    assert!(on_server.photos[0].arrived && !on_server.missing_evidence);
    let local = gw.get_incident(first).unwrap();
    assert_eq!(std::fs::read(&local.photos[0].original_path).unwrap(), server.blob_bytes(&local.photos[0].sha256));
    assert_eq!(local.sync_state, gridwork_core::SyncState::Synced);
    let timeline = server.db.read(|tx| gridwork_server::cases::timeline(tx, &caller, &first.to_string())).unwrap();
    let actions: Vec<_> = timeline.iter().map(|t| t.action.as_str()).collect();
    assert_eq!(actions, ["report", "preview_arrived", "preview_arrived", "photo_arrived"]);
}

#[test]
fn a_store_belongs_to_the_first_account_that_signs_in() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device_dir = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "shared-phone");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    let draft = gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "worker1's".into(), ..Default::default() }).unwrap();
    gw.submit(draft.id).unwrap();
    // Another person on the same phone, over the same store (AB岗): refused.
    let error = gw.login(&server.url(), "supervisor1", PASSWORD, false).unwrap_err();
    assert_eq!(error.code(), "account_mismatch");
    assert_eq!(gw.session_user().unwrap().unwrap().username, "worker1");
    // The rightful owner again is fine, and the work goes under their name.
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    gw.sync_now(Trigger::OperationQueued, Duration::from_secs(20)).unwrap();
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents i JOIN users u ON u.id = i.reporter_id WHERE u.username = 'worker1'"), 1);
}

#[test]
fn a_retired_category_is_caught_at_submit_not_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let draft = gw.create_draft(DraftFields { category_code: Some("0701".into()), description: "x".into(), ..Default::default() }).unwrap();
    gw.replace_categories(2, vec![gridwork_core::Category { code: "0602".into(), parent_code: None, name_zh: "楼道堆物".into(), name_en: "Clutter".into() }]).unwrap();
    assert_eq!(gw.submit(draft.id).unwrap_err().code(), "unknown_category");
    assert_eq!(gw.get_incident(draft.id).unwrap().incident.status, IncidentStatus::Draft, "still editable");
    gw.update_draft(draft.id, DraftFields { category_code: Some("0602".into()), description: "x".into(), ..Default::default() }).unwrap();
    gw.submit(draft.id).unwrap();
}

/// Runs `f` on a thread and fails the test if it does not return in time
/// (a deadlock would otherwise hang the suite).
fn within<T: Send + 'static>(seconds: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()).ok());
    rx.recv_timeout(Duration::from_secs(seconds)).expect("no answer in time: a deadlock?")
}

#[test]
fn a_listener_may_call_back_into_the_store_while_a_sync_runs() {
    use std::sync::{Arc, Mutex, Weak};
    use gridwork_core::{Change, ChangeObserver, Gridwork};
    struct CallsBack {
        gw: Mutex<Weak<Gridwork>>,
        seen: Mutex<Vec<String>>,
    }
    impl ChangeObserver for CallsBack {
        fn changed(&self, change: &Change) {
            let Some(gw) = self.gw.lock().unwrap().upgrade() else { return };
            // Reads, network reports and a nested sync from inside a
            // notification, on the syncing thread.
            let summary = gw.outbox_summary().unwrap();
            let listed = gw.list_incidents(IncidentFilter::default()).unwrap().len();
            gw.set_network(true, false);
            let nested = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(5)).unwrap();
            assert_eq!(nested.pushed, 0, "a nested sync only adds its trigger");
            self.seen.lock().unwrap().push(format!("{:?} pending={} listed={listed}", change.kind(), summary.pending));
        }
    }
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device_dir = tempfile::tempdir().unwrap();
    let gw = Arc::new(open(device_dir.path(), "worker1"));
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    for n in 0..3 {
        let draft = gw.create_draft(DraftFields { category_code: Some("0602".into()), description: format!("楼道 {n}"), ..Default::default() }).unwrap();
        gw.submit(draft.id).unwrap();
    }
    let listener = Arc::new(CallsBack { gw: Mutex::new(Arc::downgrade(&gw)), seen: Mutex::new(Vec::new()) });
    let _subscription = gw.subscribe(listener.clone());
    let syncing = gw.clone();
    let report = within(60, move || syncing.sync_now(Trigger::OperationQueued, Duration::from_secs(20)).unwrap());
    assert_eq!(report.pushed, 3);
    assert!(report.completed, "{report:?}");
    let seen = listener.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|s| s.starts_with("Outbox pending=0")), "the listener read the outbox after the push committed: {seen:?}");
    assert!(seen.iter().any(|s| s.starts_with("Incidents")), "{seen:?}");
    // Logging out from a listener does not deadlock either.
    struct LogsOut(Weak<Gridwork>);
    impl ChangeObserver for LogsOut {
        fn changed(&self, change: &Change) {
            if let (Change::Outbox, Some(gw)) = (change, self.0.upgrade()) {
                gw.logout().unwrap();
            }
        }
    }
    drop(_subscription);
    let _logs_out = gw.subscribe(Arc::new(LogsOut(Arc::downgrade(&gw))));
    let draft = gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "x".into(), ..Default::default() }).unwrap();
    within(60, {
        let gw = gw.clone();
        move || gw.submit(draft.id).unwrap()
    });
    assert!(gw.session_user().unwrap().is_none());
}

#[test]
fn a_cancelled_sync_stops_at_a_request_boundary_and_the_next_one_finishes() {
    use std::sync::{Arc, Weak};
    use gridwork_core::{Change, ChangeObserver, Gridwork};
    // Cancels at the first acknowledged push, as a cancelled coroutine would.
    struct Cancels(Weak<Gridwork>);
    impl ChangeObserver for Cancels {
        fn changed(&self, change: &Change) {
            if let (Change::Outbox, Some(gw)) = (change, self.0.upgrade()) {
                gw.cancel_sync();
            }
        }
    }
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device_dir = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let gw = Arc::new(open(device_dir.path(), "worker1"));
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    let ids: Vec<_> = (0..2).map(|n| capture(&gw, photos.path(), 70 + n, 1)).collect();
    let subscription = gw.subscribe(Arc::new(Cancels(Arc::downgrade(&gw))));
    let first = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(30)).unwrap();
    assert!(!first.completed, "stopped early: {first:?}");
    assert_eq!(first.photos_uploaded, 0, "stopped before the uploads: {first:?}");
    assert!(gw.outbox_items().unwrap().iter().all(|op| op.state != gridwork_core::OperationState::InFlight), "nothing left in flight");
    drop(subscription);
    let second = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(30)).unwrap();
    assert!(second.completed, "{second:?}");
    assert_eq!(gw.outbox_summary().unwrap().pending, 0);
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 2);
    for id in ids {
        assert!(server.photos(&id.to_string()).iter().all(|(_, arrived)| *arrived));
    }
}

#[test]
fn a_cancel_between_request_and_start_stops_that_run_only() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device_dir = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    let draft = gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "取消".into(), ..Default::default() }).unwrap();
    gw.submit(draft.id).unwrap();

    // Requested (a Swift task called sync), cancelled before its thread ran it.
    let ticket = gw.sync_ticket();
    gw.cancel_sync();
    let cancelled = gw.sync_requested(ticket, Trigger::OperationQueued, Duration::from_secs(20)).unwrap();
    assert_eq!((cancelled.pushed, cancelled.completed), (0, false), "{cancelled:?}");
    assert_eq!(gw.outbox_summary().unwrap().pending, 1);
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 0);

    // A request made after the cancel is not affected by it.
    let later = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(20)).unwrap();
    assert!(later.completed && later.pushed == 1, "{later:?}");
    assert_eq!(gw.get_incident(draft.id).unwrap().sync_state, SyncState::Synced);
}

/// The same photo in two people's reports (a picture passed on in a chat):
/// the second phone's upload shows the server every byte, as any upload
/// does, and then both cases have it; neither phone does anything special.
#[test]
fn the_same_photo_reported_by_two_people_arrives_for_both() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let photos = tempfile::tempdir().unwrap();
    let shared = write_file(photos.path(), "shared.jpg", &jpeg_bytes(&scene(900, 600, 77), 85, None));
    let mut ids = Vec::new();
    let mut dirs = Vec::new();
    for user in ["volunteer1", "worker1"] {
        let dir = tempfile::tempdir().unwrap();
        let gw = open(dir.path(), user);
        gw.login(&server.url(), user, PASSWORD, false).unwrap();
        let draft = gw
            .create_draft(DraftFields {
                category_code: Some("0602".into()),
                description: "楼道堆物".into(),
                location: Some(GeoPoint { lat: 31.23, lon: 121.465, accuracy_m: Some(5.0) }),
                ..Default::default()
            })
            .unwrap();
        gw.attach_photo(draft.id, &shared).unwrap();
        gw.submit(draft.id).unwrap();
        let report = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(60)).unwrap();
        assert!(report.completed, "{user}: {report:?}");
        assert_eq!(report.photos_uploaded, 1, "{user}: the bytes travel for each reporter");
        ids.push(draft.id);
        dirs.push(dir);
    }
    for id in ids {
        let view = server.db.read(|tx| gridwork_server::cases::view_after_step(tx, &id.to_string())).unwrap();
        assert!(view.photos[0].arrived && !view.missing_evidence, "{id}: the photo arrived for this case too");
    }
}

/// A running sync tells how far it has got, to a reader on another thread
/// (`sync_progress`) and to observers (`Change::SyncProgress`): positions
/// inside a photo as its chunks land, counts that only grow and end equal
/// to the run's report, and `None` once the run is over.
#[test]
fn a_running_sync_tells_how_far_it_has_got() {
    use std::sync::{Arc, Mutex};
    struct Progress(Mutex<Vec<Option<gridwork_core::SyncProgress>>>);
    impl gridwork_core::ChangeObserver for Progress {
        fn changed(&self, change: &gridwork_core::Change) {
            if let gridwork_core::Change::SyncProgress(p) = change {
                self.0.lock().unwrap().push(p.clone());
            }
        }
    }
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device_dir = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    let draft = gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "x".into(), ..Default::default() }).unwrap();
    // Large enough for two chunks (the first is 256 KiB).
    let bytes = jpeg_bytes(&scene(3000, 2000, 5), 97, None);
    assert!(bytes.len() > 1024 * 1024, "{}", bytes.len());
    let photo = gw.attach_photo(draft.id, &write_file(photos.path(), "big.jpg", &bytes)).unwrap();
    gw.submit(draft.id).unwrap();
    assert_eq!(gw.sync_progress(), None, "no run yet");

    let seen = Arc::new(Progress(Mutex::new(Vec::new())));
    let _subscription = gw.subscribe(seen.clone());
    let report = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(30)).unwrap();
    assert!(report.completed && report.photos_uploaded == 1, "{report:?}");
    assert_eq!(gw.sync_progress(), None, "the run is over");

    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(seen.last(), Some(&None), "the end is told");
    let running: Vec<_> = seen.iter().flatten().collect();
    let uploads: Vec<_> = running.iter().filter_map(|p| p.upload).collect();
    assert!(uploads.iter().all(|u| u.size == photo.byte_size), "{uploads:?}");
    assert!(uploads.windows(2).all(|w| w[0].sent <= w[1].sent), "{uploads:?}");
    assert!(uploads.iter().any(|u| u.sent > 0 && u.sent < u.size), "a position inside the photo: {uploads:?}");
    for pair in running.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(a.pushed <= b.pushed && a.uploaded_bytes <= b.uploaded_bytes && a.photos_uploaded <= b.photos_uploaded && a.pulled <= b.pulled);
    }
    let last = running.last().unwrap();
    assert_eq!((last.pushed, last.photos_uploaded, last.uploaded_bytes, last.pulled), (report.pushed, report.photos_uploaded, report.uploaded_bytes, report.pulled));
}
