//! Leaving a phone clean without losing work (issue 11): sign-out with
//! wipe, a lost phone revoked on the server, export of unsent work, and a
//! wipe cut short by a crash. Real server over HTTP on loopback, real
//! encrypted stores, real photo files.

use std::path::Path;
use std::time::Duration;

use gridwork_core::{DraftFields, GeoPoint, Gridwork, Trigger};
use gridwork_tests::server::{LocalServer, PASSWORD, default_policy};
use gridwork_tests::*;

fn report(gw: &Gridwork, photos_dir: &Path, text: &str, submit: bool) -> gridwork_core::Uuid {
    let draft = gw
        .create_draft(DraftFields {
            category_code: Some("0602".into()),
            description: text.into(),
            location: Some(GeoPoint { lat: 31.23, lon: 121.465, accuracy_m: Some(5.0) }),
            ..Default::default()
        })
        .unwrap();
    let bytes = jpeg_bytes(&scene(640, 480, text.len() as u32), 85, None);
    gw.attach_photo(draft.id, &write_file(photos_dir, &format!("{}.jpg", draft.id), &bytes)).unwrap();
    if submit {
        gw.submit(draft.id).unwrap();
    }
    draft.id
}

/// A seeded server on loopback, an empty device folder and a folder for camera files.
fn setup() -> (tempfile::TempDir, LocalServer, tempfile::TempDir, tempfile::TempDir) {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    (server_dir, server, tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap())
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// The account partition's files, the lock file aside (it stays, empty of data).
fn account_files(device_dir: &Path) -> Vec<std::path::PathBuf> {
    files_under(&device_dir.join("accounts")).into_iter().filter(|p| !p.ends_with("gridwork.lock")).collect()
}

fn revoke_device_of(server: &LocalServer, username: &str) {
    let device = server
        .db
        .read(|tx| {
            Ok(tx
                .query_one("SELECT s.device_id FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = $1", gridwork_server::params![username])?
                .text(0))
        })
        .unwrap();
    server.db.write(|tx| gridwork_server::admin::revoke_device(tx, &device, 1)).unwrap();
}

#[test]
fn sign_out_with_wipe_waits_for_unsent_work_to_be_synced_or_exported() {
    let (_server_dir, server, device_dir, photos) = setup();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();

    // Offline: one report queued, one draft. Wiping now would lose both.
    gw.set_network(false, false);
    let sent = report(&gw, photos.path(), "楼道堆物 WIPE-MARKER-1", true);
    let draft = report(&gw, photos.path(), "草稿 WIPE-MARKER-2", false);
    let error = gw.wipe().unwrap_err();
    assert_eq!(error.code(), "unsent_work");
    assert!(matches!(error, gridwork_core::Error::UnsentWork { operations: 2, drafts: 1 }), "{error:?}");
    assert!(gw.get_incident(sent).is_ok() && gw.get_incident(draft).is_ok(), "nothing wiped");

    // Exported: the operations as they would be pushed, the draft, the photos.
    let exports = tempfile::tempdir().unwrap();
    let exported = gw.export_unsent(exports.path()).unwrap();
    assert_eq!((exported.operations, exported.drafts, exported.photos), (2, 1, 2));
    let document: serde_json::Value = serde_json::from_slice(&std::fs::read(exported.folder.join("unsent.json")).unwrap()).unwrap();
    assert_eq!(document["format"], "gridwork-unsent/1");
    let kinds: Vec<&str> = document["operations"].as_array().unwrap().iter().map(|op| op["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["submit_incident", "upload_photo"]);
    assert_eq!(document["drafts"][0]["description"], "草稿 WIPE-MARKER-2");
    for photo in document["photos"].as_array().unwrap() {
        let bytes = std::fs::read(exported.folder.join(photo["file"].as_str().unwrap())).unwrap();
        assert_eq!(sha256_hex(&bytes), photo["sha256"].as_str().unwrap(), "an exported photo is the original");
    }

    // Work added after the export is not covered by it.
    let later = report(&gw, photos.path(), "后来的 WIPE-MARKER-3", false);
    assert_eq!(gw.wipe().unwrap_err().code(), "unsent_work");
    gw.discard_draft(later).unwrap();

    // Exactly the exported work: the wipe goes ahead.
    gw.wipe().unwrap();
    assert_eq!(gw.session_user().unwrap(), None, "signed out");
    assert!(gw.list_incidents(Default::default()).unwrap().is_empty());
    assert_eq!(gw.create_draft(DraftFields::default()).unwrap_err().code(), "store_wiped", "nothing written after a wipe can be lost");
    assert_eq!(account_files(device_dir.path()), Vec::<std::path::PathBuf>::new(), "no database, WAL, key check or photo left");
    drop(gw);

    // Opened again: a fresh, empty store.
    let again = open(device_dir.path(), "worker1");
    assert!(again.list_incidents(Default::default()).unwrap().is_empty());
    assert_eq!(again.session_user().unwrap(), None);
}

#[test]
fn a_synced_device_wipes_at_once_and_signing_out_without_wipe_keeps_everything() {
    let (_server_dir, server, device_dir, photos) = setup();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    let id = report(&gw, photos.path(), "楼道堆物 SYNCED", true);
    assert!(gw.sync_now(Trigger::OperationQueued, Duration::from_secs(30)).unwrap().completed);

    // A plain sign-out keeps the data (the same person signs in again).
    gw.logout().unwrap();
    assert!(gw.get_incident(id).is_ok());
    // Everything reached the server: wiping loses nothing and needs no export.
    assert_eq!(gw.unsent_work().unwrap().operations, 0);
    gw.wipe().unwrap();
    assert!(account_files(device_dir.path()).is_empty());
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 1, "the report is safe on the server");
}

#[test]
fn a_revoked_phone_stops_syncing_and_wipes_on_next_contact() {
    let (_server_dir, server, device_dir, photos) = setup();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    report(&gw, photos.path(), "楼道堆物 LOST-PHONE", true);
    assert!(gw.sync_now(Trigger::OperationQueued, Duration::from_secs(30)).unwrap().completed);
    assert!(!account_files(device_dir.path()).is_empty());

    // The phone is lost; the district revokes it.
    revoke_device_of(&server, "worker1");
    let report = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(30)).unwrap();
    assert!(report.device_revoked, "{report:?}");
    assert!(!report.needs_login, "no login helps a revoked device");
    assert!(account_files(device_dir.path()).is_empty(), "wiped on contact: nothing was unsent");
    assert!(gw.list_incidents(Default::default()).unwrap().is_empty());
    assert_eq!(gw.session_user().unwrap(), None);
}

#[test]
fn a_revoked_phone_with_unsent_work_keeps_it_until_it_is_exported() {
    let (_server_dir, server, device_dir, photos) = setup();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    assert!(gw.sync_now(Trigger::ManualRetry, Duration::from_secs(30)).unwrap().completed);
    revoke_device_of(&server, "worker1");
    // Captured in a basement after the revocation, before the next contact.
    let unsent = report(&gw, photos.path(), "楼道堆物 NOT-YET-SENT", true);

    let report = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(30)).unwrap();
    assert!(report.device_revoked && report.pushed == 0, "{report:?}");
    assert!(gw.device_revoked().unwrap());
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 0, "a revoked device delivers nothing");
    assert!(gw.get_incident(unsent).is_ok(), "never wiped silently");
    assert_eq!(gw.wipe().unwrap_err().code(), "unsent_work");
    // Stopped for good: no sync runs, and no login from this device.
    let again = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(10)).unwrap();
    assert!(again.device_revoked && !again.needs_login, "every later sync says revoked, never 'sign in': {again:?}");
    assert_eq!(gw.login(&server.url(), "worker1", PASSWORD, false).unwrap_err().code(), "device_revoked");

    let exports = tempfile::tempdir().unwrap();
    assert_eq!(gw.export_unsent(exports.path()).unwrap().operations, 2);
    gw.wipe().unwrap();
    assert!(account_files(device_dir.path()).is_empty());
    drop(gw);

    // The same phone, a fresh install of the account (a new device id):
    // the person signs in again and works.
    let fresh = open(device_dir.path(), "worker1");
    assert!(!fresh.device_revoked().unwrap());
    fresh.login(&server.url(), "worker1", PASSWORD, false).unwrap();
}

#[test]
fn an_export_holds_the_photo_of_an_acknowledged_report_still_waiting_for_wifi() {
    let (_server_dir, server, device_dir, photos) = setup();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    // On mobile data, text only: the report goes, its photo waits for Wi-Fi.
    gw.set_metered_policy(gridwork_core::MeteredPolicy::TextOnly);
    gw.set_network(true, true);
    let id = report(&gw, photos.path(), "楼道堆物 WAITING-FOR-WIFI", true);
    let sent = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(30)).unwrap();
    assert_eq!((sent.pushed, sent.photos_uploaded), (1, 0), "{sent:?}");
    assert_eq!(gw.unsent_work().unwrap().operations, 1, "the upload alone");

    let exports = tempfile::tempdir().unwrap();
    let exported = gw.export_unsent(exports.path()).unwrap();
    assert_eq!((exported.operations, exported.photos), (1, 1));
    let sha = gw.get_incident(id).unwrap().photos[0].sha256.clone();
    let file = files_under(&exported.folder).into_iter().find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&sha))).expect("the photo is in the export");
    assert_eq!(sha256_hex(&std::fs::read(file).unwrap()), sha);
    gw.wipe().unwrap();
}

#[test]
fn a_revocation_first_heard_at_sign_in_is_remembered_and_wipes() {
    let (_server_dir, server, device_dir, _photos) = setup();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
    assert!(gw.sync_now(Trigger::ManualRetry, Duration::from_secs(30)).unwrap().completed);
    gw.logout().unwrap();
    revoke_device_of(&server, "worker1");
    // Signed out, the phone never heard of it; the next sign-in does.
    assert_eq!(gw.login(&server.url(), "worker1", PASSWORD, false).unwrap_err().code(), "device_revoked");
    assert!(account_files(device_dir.path()).is_empty(), "nothing was unsent: wiped at once");
    assert_eq!(gw.sync_now(Trigger::ManualRetry, Duration::from_secs(5)).unwrap_err().code(), "store_wiped");
}

#[test]
fn a_wipe_cut_short_is_finished_at_the_next_open() {
    let device_dir = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    let draft = report(&gw, photos.path(), "草稿 CUT-SHORT", false);
    assert!(gw.get_incident(draft).is_ok());
    drop(gw);
    // Killed right after the wipe began: its marker is on disk, the files are not gone.
    let root = files_under(&device_dir.path().join("accounts"))
        .into_iter()
        .find(|p| p.ends_with("gridwork.db"))
        .and_then(|p| p.parent().map(Path::to_owned))
        .unwrap();
    std::fs::write(root.join("gridwork.wipe"), b"").unwrap();

    let gw = open(device_dir.path(), "worker1");
    assert!(gw.list_incidents(Default::default()).unwrap().is_empty(), "the wipe was finished before anything was read");
    assert!(!root.join("gridwork.wipe").exists());
    assert!(!files_under(&root.join("photos").join("originals")).iter().any(|p| p.is_file()));
}

mod no_loss {
    //! Property: arbitrary interleavings of captures (submitted and
    //! drafts), syncs over a faulty link, exports, wipes, app restarts and
    //! a revocation never lose a report, and never deliver one twice.
    //! Every report a person captured is, after every step, on the server,
    //! still on the phone, or in an export, and on the server at most once.

    use super::*;
    use gridwork_tests::proxy::{FaultConfig, Proxy};
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        Capture { submit: bool },
        Sync { faulty: bool },
        Export,
        Wipe,
        Restart,
        Revoke,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => any::<bool>().prop_map(|submit| Step::Capture { submit }),
            4 => any::<bool>().prop_map(|faulty| Step::Sync { faulty }),
            1 => Just(Step::Export),
            2 => Just(Step::Wipe),
            1 => Just(Step::Restart),
            1 => Just(Step::Revoke),
        ]
    }

    /// Every description in the exports written so far.
    fn exported_texts(exports: &Path) -> Vec<String> {
        let mut texts = Vec::new();
        for file in files_under(exports).into_iter().filter(|p| p.ends_with("unsent.json")) {
            let document: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            let folder = file.parent().unwrap().to_owned();
            for op in document["operations"].as_array().unwrap() {
                if let Some(text) = op["payload"]["description"].as_str() {
                    texts.push(text.to_owned());
                }
                // Every photo still to upload is in the export, byte for byte.
                if op["kind"] == "upload_photo" {
                    let sha = op["payload"]["sha256"].as_str().unwrap();
                    let copy = files_under(&folder.join("photos")).into_iter().find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(sha)));
                    let copy = copy.unwrap_or_else(|| panic!("the photo of an exported upload is missing from {}", folder.display()));
                    assert_eq!(sha256_hex(&std::fs::read(copy).unwrap()), sha);
                }
            }
            for draft in document["drafts"].as_array().unwrap() {
                texts.push(draft["description"].as_str().unwrap().to_owned());
            }
        }
        texts
    }

    fn run(steps: Vec<Step>, seed: u64) {
        let server_dir = tempfile::tempdir().unwrap();
        let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
        server.seed();
        let proxy = Proxy::start(server.addr, seed, FaultConfig::flaky());
        proxy.set_faults(false);
        let device_dir = tempfile::tempdir().unwrap();
        let photos = tempfile::tempdir().unwrap();
        let exports = tempfile::tempdir().unwrap();
        let mut gw = open(device_dir.path(), "worker1");
        gw.login(&proxy.url(), "worker1", PASSWORD, false).unwrap();
        // (description, submitted) of everything captured.
        let mut captured: Vec<(String, bool)> = Vec::new();

        for (n, step) in steps.into_iter().enumerate() {
            match step {
                Step::Capture { submit } => {
                    let text = format!("报告 NO-LOSS-{n}");
                    report(&gw, photos.path(), &text, submit);
                    captured.push((text, submit));
                }
                Step::Sync { faulty } => {
                    proxy.set_faults(faulty);
                    // Faults are counted in the report, never a lost report.
                    let revoked = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(20)).unwrap().device_revoked;
                    if revoked && !gw.device_revoked().unwrap() {
                        // Wiped at once (nothing was unsent): the person starts afresh.
                        drop(gw);
                        gw = open(device_dir.path(), "worker1");
                        proxy.set_faults(false);
                        gw.login(&proxy.url(), "worker1", PASSWORD, false).unwrap();
                    }
                }
                Step::Export => {
                    gw.export_unsent(exports.path()).unwrap();
                }
                Step::Wipe => match gw.wipe() {
                    Ok(()) => {
                        drop(gw);
                        gw = open(device_dir.path(), "worker1");
                        proxy.set_faults(false);
                        gw.login(&proxy.url(), "worker1", PASSWORD, false).unwrap();
                    }
                    Err(error) => assert_eq!(error.code(), "unsent_work", "{error:?}"),
                },
                Step::Restart => {
                    drop(gw);
                    gw = open(device_dir.path(), "worker1");
                }
                Step::Revoke => {
                    if gw.session_user().unwrap().is_some() {
                        revoke_device_of_this_phone(&server);
                    }
                }
            }

            // The invariant, after every step.
            let on_phone: Vec<String> = gw.list_incidents(Default::default()).unwrap().into_iter().map(|i| i.description).collect();
            let exported = exported_texts(exports.path());
            for (text, submitted) in &captured {
                let on_server = server.count(&format!("SELECT COUNT(*) FROM incidents WHERE description = '{text}'"));
                assert!(on_server <= 1, "{text} arrived {on_server} times");
                let kept = on_phone.contains(text) || exported.contains(text) || (*submitted && on_server == 1);
                assert!(kept, "{text} (submitted: {submitted}) is lost after step {n}");
            }
        }
    }

    /// The phone's own device id, as the server knows it (the session
    /// signed in last with this user).
    fn revoke_device_of_this_phone(server: &LocalServer) {
        let device = server
            .db
            .read(|tx| {
                Ok(tx
                    .query_one(
                        "SELECT s.device_id FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = 'worker1' ORDER BY s.created_at_ms DESC LIMIT 1",
                        &[],
                    )?
                    .text(0))
            })
            .unwrap();
        server.db.write(|tx| gridwork_server::admin::revoke_device(tx, &device, 1)).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn nothing_captured_is_lost_or_doubled_through_syncs_faults_exports_wipes_and_revocation(
            steps in proptest::collection::vec(step(), 1..14),
            seed in any::<u64>(),
        ) {
            run(steps, seed);
        }
    }
}
