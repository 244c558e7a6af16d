//! Fault injection over a real link: devices sync through a TCP proxy
//! (gridwork_tests::proxy) that drops requests and replies mid-stream, cuts
//! photo uploads, delays, truncates reply bodies and answers 500/503/429
//! bursts itself, in front of a real gridwork-server. Whatever the link did,
//! once it heals everything converges: the outbox empties, each case is on
//! the server exactly once, every photo arrives byte-identical, no photo
//! byte the server accepted is sent again, and the devices show the
//! server's state.
//!
//! The random faults come from a seed printed at the start; replay a run
//! with `GRIDWORK_FAULT_SEED=<seed>` (same faults for the same sequence of
//! requests; sync budgets are wall-clock, so a replay can drift late).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gridwork_core::{CaseState, DraftFields, GeoPoint, Gridwork, IncidentFilter, IncidentStatus, Named, SyncReport, SyncState, Trigger, Uuid};
use gridwork_tests::proxy::{ChunkRecord, Fault, FaultConfig, Proxy};
use gridwork_tests::server::{LocalServer, PASSWORD, default_policy};
use gridwork_tests::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---- fixtures ----


/// Two encoded scenes, about 0.6 MB and 2.1 MB, made in parallel.
fn base_jpegs() -> (Vec<u8>, Vec<u8>) {
    std::thread::scope(|s| {
        let small = s.spawn(|| jpeg_bytes(&scene(2000, 1500, 11), 90, None));
        let large = s.spawn(|| jpeg_bytes(&scene(3000, 2000, 12), 95, None));
        (small.join().unwrap(), large.join().unwrap())
    })
}

/// Distinct JPEG files of 0.5–3 MB.
struct PhotoPool {
    dir: tempfile::TempDir,
    small: Vec<u8>,
    large: Vec<u8>,
    made: u32,
}

impl PhotoPool {
    fn new() -> PhotoPool {
        let (small, large) = base_jpegs();
        PhotoPool { dir: tempfile::tempdir().unwrap(), small, large, made: 0 }
    }

    fn next(&mut self, rng: &mut StdRng) -> PathBuf {
        self.made += 1;
        let tag = format!("gridwork fault test photo {}", self.made);
        let bytes = if rng.random_bool(0.5) {
            jpeg_variant(&self.small, &tag, rng.random_range(0..700_000))
        } else {
            jpeg_variant(&self.large, &tag, rng.random_range(0..800_000))
        };
        assert!((500_000..=3_000_000).contains(&bytes.len()), "{}", bytes.len());
        write_file(self.dir.path(), &format!("photo-{}.jpg", self.made), &bytes)
    }

    /// One photo of at least `min` bytes.
    fn large_one(&mut self, min: usize) -> PathBuf {
        self.made += 1;
        let padding = min.saturating_sub(self.large.len());
        let bytes = jpeg_variant(&self.large, &format!("gridwork fault test photo {}", self.made), padding);
        write_file(self.dir.path(), &format!("photo-{}.jpg", self.made), &bytes)
    }
}

fn capture(gw: &Gridwork, label: &str, photos: &[PathBuf]) -> Uuid {
    let draft = gw
        .create_draft(DraftFields {
            category_code: Some("0602".into()),
            description: format!("楼道堆物 {label}"),
            location: Some(GeoPoint { lat: 31.23, lon: 121.465, accuracy_m: Some(5.0) }),
            ..Default::default()
        })
        .unwrap();
    for photo in photos {
        gw.attach_photo(draft.id, photo).unwrap();
    }
    gw.submit(draft.id).unwrap();
    draft.id
}

fn fault_seed() -> u64 {
    let seed = std::env::var("GRIDWORK_FAULT_SEED").ok().and_then(|s| s.trim().parse().ok()).unwrap_or_else(rand::random);
    println!("fault seed {seed} (replay with GRIDWORK_FAULT_SEED={seed})");
    seed
}

fn device_id(gw: &Gridwork) -> String {
    gw.with_connection(|c| Ok(c.query_row("SELECT value FROM meta WHERE key = 'device_id'", [], |r| r.get(0))?)).unwrap()
}

fn server_state(server: &LocalServer, id: Uuid) -> String {
    server
        .db
        .read(|tx| Ok(tx.query_one("SELECT state FROM incidents WHERE id = $1", gridwork_server::params![id.to_string()])?.text(0)))
        .unwrap()
}

fn blob_received(server: &LocalServer, sha: &str) -> i64 {
    server.count(&format!("SELECT COALESCE(MAX(received), -1) FROM blobs WHERE sha256 = '{sha}'"))
}

/// Log in, retrying while the link fails.
fn login_through(gw: &Gridwork, url: &str, user: &str) {
    let mut last = None;
    for _ in 0..60 {
        match gw.login(url, user, PASSWORD, false) {
            Ok(info) => {
                assert_eq!(info.username, user);
                return;
            }
            Err(error) => last = Some(error),
        }
    }
    panic!("could not log in through the proxy in 60 tries: {last:?}");
}

/// Sync with the link healed until the round completes with an empty
/// outbox. A healed link must get there in a few calls.
fn sync_until_done(gw: &Gridwork, name: &str) -> SyncReport {
    let mut reports = Vec::new();
    for _ in 0..4 {
        let report = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(30)).unwrap();
        let summary = gw.outbox_summary().unwrap();
        let done = report.completed && summary.pending + summary.in_flight + summary.parked == 0;
        reports.push(report.clone());
        if done {
            return report;
        }
    }
    panic!("{name}: no convergence on a healed link: {reports:#?} {:?}", gw.outbox_summary().unwrap());
}

/// Per blob: no chunk the server accepted covers bytes it had accepted
/// before (uploads resume, never restart), and the accepted chunks add up
/// to the whole blob exactly.
fn assert_accepted_once(log: &[ChunkRecord], sizes: &HashMap<String, u64>) {
    let mut accepted: HashMap<&str, u64> = HashMap::new();
    for record in log.iter().filter(|r| r.status == Some(200)) {
        let end = accepted.entry(&record.sha256).or_default();
        assert_eq!(record.offset, *end, "a chunk the server accepted starts where the last accepted one ended: {record:?}");
        *end += record.body_len;
    }
    for (sha, size) in sizes {
        assert_eq!(accepted.get(sha.as_str()).copied().unwrap_or(0), *size, "accepted chunk bytes of {sha}");
    }
    assert!(
        log.iter().all(|r| matches!(r.status, None | Some(200))),
        "the server refused a chunk (an upload did not continue at the server's offset): {:?}",
        log.iter().filter(|r| !matches!(r.status, None | Some(200))).collect::<Vec<_>>()
    );
}

struct Device {
    name: &'static str,
    user: &'static str,
    gw: Gridwork,
    _dir: tempfile::TempDir,
    submitted: Vec<Uuid>,
    photos: usize,
}

// ---- tests ----

/// Three phones (two of one grid worker, one volunteer) capture reports
/// with several multi-MB photos and sync through a link where about one
/// request in three goes wrong, while the command center dispatches some
/// cases. Then the link heals, and everything must converge.
#[test]
fn devices_converge_once_a_flaky_link_heals() {
    let started = Instant::now();
    let seed = fault_seed();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let proxy = Proxy::start(server.addr, seed, FaultConfig::flaky());
    // Every kind of fault at least once, whatever the dice say; the random
    // ones come on top.
    proxy.inject("POST", "/v1/push", Fault::DropResponse { fraction: 0.5 }); // applied, reply lost
    proxy.inject("POST", "/v1/push", Fault::DropRequest { fraction: 0.7 });
    proxy.inject("PUT", "/chunks", Fault::CutUpload { fraction: 0.4 });
    proxy.inject("PUT", "/chunks", Fault::DropResponse { fraction: 0.0 }); // stored, reply lost
    proxy.inject("PUT", "/chunks", Fault::TruncateBody { fraction: 0.5 }); // stored, reply garbled
    proxy.inject("PUT", "/chunks", Fault::Reply(500));
    proxy.inject("POST", "/v1/blobs", Fault::Reply(429));
    proxy.inject("GET", "/v1/pull", Fault::Reply(503));
    proxy.inject("GET", "/v1/pull", Fault::TruncateBody { fraction: 0.5 });
    proxy.inject("GET", "/v1/pull", Fault::Delay(Duration::from_millis(200)));
    let mut pool = PhotoPool::new();

    let mut devices: Vec<Device> = [("phone-a", "worker1"), ("phone-b", "worker1"), ("phone-c", "volunteer1")]
        .into_iter()
        .map(|(name, user)| {
            let dir = tempfile::tempdir().unwrap();
            let gw = open(dir.path(), user);
            gw.import_grids_geojson(&two_grids_geojson()).unwrap();
            login_through(&gw, &proxy.url(), user);
            Device { name, user, gw, _dir: dir, submitted: Vec::new(), photos: 0 }
        })
        .collect();
    // Captured offline-first: two reports each, one or two photos each.
    for device in &mut devices {
        for n in 0..2 {
            let photos: Vec<PathBuf> = (0..rng.random_range(1..=2)).map(|_| pool.next(&mut rng)).collect();
            device.photos += photos.len();
            device.submitted.push(capture(&device.gw, &format!("{} #{n}", device.name), &photos));
        }
    }
    println!("setup took {:?}", started.elapsed());

    // The bad link: short budgets, the triggers a phone would fire.
    let phase = Instant::now();
    let mut dispatched: Vec<Uuid> = Vec::new();
    let mut rounds = 0;
    let mut network_errors = 0;
    let mut transient_errors = 0;
    loop {
        rounds += 1;
        for device in &devices {
            if rng.random_bool(0.1) {
                // In a basement for a moment: nothing goes out, a wake is scheduled.
                device.gw.set_network(false, false);
                let requests = proxy.stats().requests;
                let report = device.gw.sync_now(Trigger::OperationQueued, Duration::from_millis(300)).unwrap();
                assert_eq!(proxy.stats().requests, requests, "{}: a request while offline", device.name);
                assert!(!report.completed && report.next_wake_ms.is_some(), "{}: {report:?}", device.name);
                device.gw.set_network(true, false);
            }
            let trigger = match rng.random_range(0..3) {
                0 => Trigger::ManualRetry,
                1 => Trigger::TimerFired,
                _ => {
                    // The phone reports the link is back: wakes a network wait.
                    device.gw.set_network(true, false);
                    Trigger::NetworkUp
                }
            };
            let budget = Duration::from_millis(rng.random_range(150..700));
            let report = device.gw.sync_now(trigger, budget).unwrap_or_else(|e| panic!("{}: sync_now failed on a bad link: {e}", device.name));
            assert!(!report.needs_login, "{}: a bad link is not a reason to log in again: {report:?}", device.name);
            assert_eq!(report.parked, 0, "{}: nothing here deserves parking: {report:?}", device.name);
            network_errors += report.errors.network;
            transient_errors += report.errors.transient;
        }
        if rounds == 3 {
            // More reports while the link is bad.
            for device in &mut devices {
                let photo = pool.next(&mut rng);
                device.photos += 1;
                device.submitted.push(capture(&device.gw, &format!("{} late", device.name), &[photo]));
            }
        }
        // The command center dispatches two of the worker's cases once they
        // have arrived, possibly while their photos are still uploading.
        if dispatched.len() < 2 {
            let arrived = devices[..2]
                .iter()
                .flat_map(|d| d.submitted.iter().copied())
                .find(|id| !dispatched.contains(id) && server.count(&format!("SELECT COUNT(*) FROM incidents WHERE id = '{id}'")) == 1);
            if let Some(id) = arrived {
                assert_eq!(server.step(&id.to_string(), "register", None), "registered");
                assert_eq!(server.step(&id.to_string(), "dispatch", Some("worker1")), "dispatched");
                dispatched.push(id);
            }
        }
        let stats = proxy.stats();
        let enough = rounds >= 30 && stats.kinds_seen().len() == 8 && proxy.pending_injections() == 0 && dispatched.len() == 2;
        if enough || rounds >= 200 || phase.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    let faulty = proxy.stats();
    println!("{rounds} rounds under faults in {:?}: {faulty:#?}", phase.elapsed());
    println!("devices saw {network_errors} network and {transient_errors} transient failures");
    assert_eq!(proxy.pending_injections(), 0, "every scripted fault was used");
    assert_eq!(faulty.kinds_seen().len(), 8, "every kind of fault happened: {:?}", faulty.kinds_seen());
    assert!(faulty.faults() >= 20, "the link was bad enough to mean something: {faulty:?}");
    assert!(network_errors > 0 && transient_errors > 0);
    assert_eq!(dispatched.len(), 2, "cases reached the server through the bad link");

    // The link heals.
    proxy.set_faults(false);
    let healed = Instant::now();
    for device in &devices {
        sync_until_done(&device.gw, device.name);
    }
    // A last pull each, so every phone has seen everyone's pushes.
    for device in &devices {
        let report = device.gw.sync_now(Trigger::AppForegrounded, Duration::from_secs(30)).unwrap();
        assert!(report.completed, "{}: {report:?}", device.name);
        assert_eq!((report.pushed, report.photos_uploaded, report.uploaded_bytes), (0, 0, 0), "{}: nothing left to send", device.name);
    }
    println!("converged {:?} after the link healed", healed.elapsed());

    // Exactly once on the server.
    let total: usize = devices.iter().map(|d| d.submitted.len()).sum();
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), total as i64);
    assert_eq!(server.count("SELECT COUNT(*) FROM applied_ops"), total as i64, "one recorded operation per report");
    let mut sizes: HashMap<String, u64> = HashMap::new();
    for device in &devices {
        let summary = device.gw.outbox_summary().unwrap();
        assert_eq!(
            (summary.pending, summary.in_flight, summary.parked, summary.photo_bytes_waiting),
            (0, 0, 0, 0),
            "{}: outbox drained",
            device.name
        );
        assert_eq!(summary.acknowledged as usize, device.submitted.len() + device.photos, "{}: every operation acknowledged once", device.name);
        let dev = device_id(&device.gw);
        assert_eq!(
            server.count(&format!("SELECT COUNT(*) FROM applied_ops WHERE device_id = '{dev}'")),
            device.submitted.len() as i64,
            "{}: one applied operation per report",
            device.name
        );
        for id in &device.submitted {
            assert_eq!(server.count(&format!("SELECT COUNT(*) FROM incidents WHERE id = '{id}'")), 1);
            let local = device.gw.get_incident(*id).unwrap();
            assert_eq!(local.sync_state, SyncState::Synced, "{}: {id}", device.name);
            let remote = server.photos(&id.to_string());
            assert_eq!(remote.len(), local.photos.len(), "{}: {id}: photo count", device.name);
            for (photo, (sha, arrived)) in local.photos.iter().zip(&remote) {
                assert!(arrived, "{}: {id}: photo {sha} not complete on the server", device.name);
                assert_eq!(&photo.sha256, sha);
                let on_server = server.blob_bytes(sha);
                assert_eq!(sha256_hex(&on_server), photo.sha256, "byte-identical");
                assert_eq!(on_server, std::fs::read(&photo.original_path).unwrap(), "byte-identical to the device's file");
                assert_eq!(blob_received(&server, sha), photo.byte_size as i64);
                sizes.insert(photo.sha256.clone(), photo.byte_size);
            }
        }
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM blobs WHERE complete = 1"), sizes.len() as i64);
    assert_accepted_once(&proxy.chunk_log(), &sizes);

    // Every phone shows the server's state for every case it holds.
    for device in &devices {
        let listed = device.gw.list_incidents(IncidentFilter::default()).unwrap();
        let ids: HashSet<Uuid> = listed.iter().map(|i| i.id).collect();
        assert!(device.submitted.iter().all(|id| ids.contains(id)), "{}: own reports listed", device.name);
        for incident in &listed {
            assert_eq!(incident.status.as_str(), server_state(&server, incident.id), "{}: {}: device and server disagree", device.name, incident.id);
        }
        println!("{} ({}) holds {} cases, all matching the server", device.name, device.user, listed.len());
    }
    // The worker's two phones see each other's reports, and the dispatches.
    for (a, b) in [(0, 1), (1, 0)] {
        let ids: HashSet<Uuid> = devices[a].gw.list_incidents(IncidentFilter::default()).unwrap().iter().map(|i| i.id).collect();
        for id in &devices[b].submitted {
            assert!(ids.contains(id), "{} does not show {}'s report {id}", devices[a].name, devices[b].name);
        }
    }
    for id in &dispatched {
        for device in &devices[..2] {
            assert_eq!(device.gw.get_incident(*id).unwrap().incident.status, IncidentStatus::Case(CaseState::Dispatched), "{}", device.name);
        }
    }
    let photos: usize = devices.iter().map(|d| d.photos).sum();
    let photo_bytes: u64 = sizes.values().sum();
    let stats = proxy.stats();
    println!(
        "{total} reports, {photos} photos ({photo_bytes} bytes); chunk bytes sent to the server {} ({:.2}x); took {:?}",
        stats.chunk_bytes_forwarded,
        stats.chunk_bytes_forwarded as f64 / photo_bytes as f64,
        started.elapsed()
    );
}

/// Scripted, step by step: replies lost after the server acted. The push is
/// applied once though sent twice; the upload resumes at the server's
/// offset after a lost chunk reply and after a cut chunk, and is not sent
/// again after the reply to its last chunk was lost; Retry-After is
/// honoured; a truncated pull reply moves no cursor.
#[test]
fn replies_lost_after_the_server_acted_cause_no_second_effect_and_no_second_upload() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let proxy = Proxy::start(server.addr, 1, FaultConfig { retry_after_secs: 7, ..FaultConfig::none() });
    proxy.set_faults(false);
    let device_dir = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    gw.import_grids_geojson(&two_grids_geojson()).unwrap();
    gw.login(&proxy.url(), "worker1", PASSWORD, false).unwrap();
    let mut pool = PhotoPool::new();
    // Larger than the largest chunk, so it takes several even once the
    // engine has measured the (loopback) link.
    let id = capture(&gw, "scripted", &[pool.large_one(6_000_000)]);
    let photo = gw.get_incident(id).unwrap().photos.remove(0);
    let (sha, size) = (photo.sha256.clone(), photo.byte_size);
    let incidents = || server.count("SELECT COUNT(*) FROM incidents");
    let applied = || server.count("SELECT COUNT(*) FROM applied_ops");

    // 1. The push is applied; its reply is lost halfway.
    proxy.inject("POST", "/v1/push", Fault::DropResponse { fraction: 0.5 });
    let r = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(20)).unwrap();
    assert_eq!((r.pushed, r.errors.network), (0, 1), "{r:?}");
    assert_eq!((incidents(), applied()), (1, 1), "the server did apply it");
    assert_eq!(gw.outbox_summary().unwrap().pending, 2, "the device does not know: report and photo wait");

    // 2. Sent again: the server answers with the first outcome, nothing
    //    twice. Then the photo's first chunk, which announces it, meets a
    //    429 with Retry-After: 7.
    proxy.inject("PUT", "/chunks", Fault::Reply(429));
    let before = gw.now().device_ms;
    let r = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(20)).unwrap();
    assert_eq!((r.pushed, r.errors.transient, r.photos_uploaded), (1, 1, 0), "{r:?}");
    assert_eq!((incidents(), applied()), (1, 1), "a replay is not applied twice");
    let wake = r.next_wake_ms.expect("a backoff is scheduled");
    let refused = proxy.chunk_log();
    assert_eq!((refused.len(), refused[0].offset, refused[0].forwarded), (1, 0, 0), "{refused:?}");
    assert!(wake >= before + 7_000 - 100, "Retry-After honoured: wake {} ms after", wake - before);

    // 3. A queued-operation trigger does not cut the server's Retry-After short.
    let requests = proxy.stats().requests;
    let r = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(5)).unwrap();
    assert_eq!(proxy.stats().requests, requests, "no request during the backoff");
    assert_eq!(r.next_wake_ms, Some(wake));

    // 4. A manual retry uploads; the reply to the second chunk (sized by
    //    the link the first one measured) is lost after the server stored it.
    proxy.inject_nth("PUT", "/chunks", 1, Fault::DropResponse { fraction: 0.2 });
    let r = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(20)).unwrap();
    assert_eq!((r.errors.network, r.photos_uploaded), (1, 0), "{r:?}");
    // (after the refused one of step 2; this attempt asked the server first)
    let log = proxy.chunk_log();
    assert_eq!(log.len(), 3, "{log:?}");
    let stored = blob_received(&server, &sha);
    assert_eq!(stored as u64, r.uploaded_bytes + log[2].body_len, "the server kept the chunk whose reply was lost");
    assert!((stored as u64) < size);

    // 5. The next chunk is cut halfway: the server keeps none of it.
    proxy.inject("PUT", "/chunks", Fault::CutUpload { fraction: 0.5 });
    let r = gw.sync_now(Trigger::TimerFired, Duration::from_secs(20)).unwrap();
    assert_eq!((r.errors.network, r.uploaded_bytes), (1, 0), "{r:?}");
    assert_eq!(blob_received(&server, &sha), stored);
    let cut = proxy.chunk_log()[3].clone();
    assert_eq!(cut.offset, stored as u64, "resumed at the server's offset, not from the start");
    assert_eq!(cut.forwarded, cut.body_len / 2);

    // 6. The rest; the reply to the last chunk is lost after the blob
    //    completed on the server.
    proxy.inject_when(0, Fault::DropResponse { fraction: 0.6 }, move |r| {
        r.is_chunk() && r.chunk_offset().zip(r.body_len).is_some_and(|(offset, len)| offset + len == size)
    });
    gw.set_network(true, false);
    let r = gw.sync_now(Trigger::NetworkUp, Duration::from_secs(20)).unwrap();
    assert_eq!((r.errors.network, r.photos_uploaded), (1, 0), "{r:?}");
    assert_eq!(server.photos(&id.to_string()), vec![(sha.clone(), true)], "complete on the server");

    // 7. The device learns it is complete without sending it again. The
    //    pull reply comes truncated once: no cursor moves, no state lands.
    let chunks_so_far = proxy.stats().chunk_puts;
    proxy.inject("GET", "/v1/pull", Fault::TruncateBody { fraction: 0.5 });
    let r = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(20)).unwrap();
    assert_eq!((r.photos_uploaded, r.uploaded_bytes, r.errors.transient, r.completed), (1, 0, 1, false), "{r:?}");
    assert_eq!(proxy.stats().chunk_puts, chunks_so_far, "not one chunk again");
    assert_eq!(gw.get_incident(id).unwrap().incident.status, IncidentStatus::Submitted, "nothing applied from a garbled reply");
    let r = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(20)).unwrap();
    assert!(r.completed && r.pulled > 0, "{r:?}");
    let local = gw.get_incident(id).unwrap();
    assert_eq!((local.incident.status, local.sync_state), (IncidentStatus::Case(CaseState::Reported), SyncState::Synced));

    // The photo crossed once, plus the half chunk that was cut.
    let log = proxy.chunk_log();
    assert_eq!(log.iter().map(|c| c.forwarded).sum::<u64>(), size + cut.body_len / 2, "{log:#?}");
    assert_accepted_once(&log, &HashMap::from([(sha.clone(), size)]));
    assert_eq!(server.blob_bytes(&sha), std::fs::read(&photo.original_path).unwrap());
    assert_eq!((incidents(), applied()), (1, 1));
    let summary = gw.outbox_summary().unwrap();
    assert_eq!((summary.pending, summary.in_flight, summary.parked, summary.acknowledged), (0, 0, 0, 2));

    // 8. The command center dispatches; the first pull reply is lost.
    server.step(&id.to_string(), "register", None);
    server.step(&id.to_string(), "dispatch", Some("worker1"));
    proxy.inject("GET", "/v1/pull", Fault::DropResponse { fraction: 0.9 });
    let r = gw.sync_now(Trigger::AppForegrounded, Duration::from_secs(20)).unwrap();
    assert_eq!(r.errors.network, 1, "{r:?}");
    assert_eq!(gw.get_incident(id).unwrap().incident.status, IncidentStatus::Case(CaseState::Reported));
    let r = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(20)).unwrap();
    assert!(r.completed, "{r:?}");
    assert_eq!(gw.get_incident(id).unwrap().incident.status, IncidentStatus::Case(CaseState::Dispatched));
    assert_eq!(server_state(&server, id), "dispatched");
    assert_eq!(proxy.pending_injections(), 0);
}

/// Error bursts from an overloaded server (503 and 429 on everything) delay
/// but never park or drop anything; the device keeps scheduling retries.
#[test]
fn bursts_of_server_errors_park_nothing_and_drop_nothing() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let proxy = Proxy::start(server.addr, 2, FaultConfig::none());
    let device_dir = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    gw.import_grids_geojson(&two_grids_geojson()).unwrap();
    gw.login(&proxy.url(), "worker1", PASSWORD, false).unwrap();
    let ids: Vec<Uuid> = (0..3).map(|n| capture(&gw, &format!("burst {n}"), &[])).collect();
    proxy.set_config(FaultConfig { error_burst: 1.0, burst_statuses: vec![503, 429], burst_len: (5, 5), retry_after_secs: 3, ..FaultConfig::none() });
    for round in 0..12 {
        let r = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(5)).unwrap();
        assert_eq!((r.pushed, r.parked, r.completed), (0, 0, false), "round {round}: {r:?}");
        assert_eq!(r.errors.transient, 1, "round {round}: one failure, then a backoff: {r:?}");
        assert!(r.next_wake_ms.is_some(), "round {round}: another try is scheduled");
        let summary = gw.outbox_summary().unwrap();
        assert_eq!((summary.pending, summary.parked), (3, 0), "round {round}");
    }
    let stats = proxy.stats();
    assert_eq!(stats.replied_503 + stats.replied_429, 12);
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 0, "nothing reached the server");
    proxy.set_faults(false);
    sync_until_done(&gw, "burst");
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 3);
    for id in ids {
        assert_eq!(gw.get_incident(id).unwrap().incident.status.as_str(), server_state(&server, id));
    }
}

/// The server refuses a report (a category it does not know) and the reply
/// is lost. Sent again, the server replays its first outcome, the
/// rejection, as a duplicate: the device must park the report with the
/// server's reason, not take the replay for success. (Taking it for
/// success marks the report as synced though the server never accepted it,
/// and its photo then fails forever with `blob_not_announced`.)
#[test]
fn a_rejection_whose_reply_was_lost_is_parked_not_acknowledged() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let proxy = Proxy::start(server.addr, 3, FaultConfig::none());
    let device_dir = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&proxy.url(), "worker1", PASSWORD, false).unwrap();
    // A category only this device knows: the server will refuse the report.
    gw.replace_categories(
        2,
        vec![
            gridwork_core::Category { code: "0602".into(), parent_code: None, name_zh: "楼道堆物".into(), name_en: "Clutter".into() },
            gridwork_core::Category { code: "LOCAL-ONLY".into(), parent_code: None, name_zh: "本地".into(), name_en: "Local".into() },
        ],
    )
    .unwrap();
    let mut pool = PhotoPool::new();
    let mut rng = StdRng::seed_from_u64(3);
    let draft = gw.create_draft(DraftFields { category_code: Some("LOCAL-ONLY".into()), description: "x".into(), ..Default::default() }).unwrap();
    gw.attach_photo(draft.id, &pool.next(&mut rng)).unwrap();
    gw.submit(draft.id).unwrap();

    proxy.inject("POST", "/v1/push", Fault::DropResponse { fraction: 0.5 });
    let r = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(20)).unwrap();
    assert_eq!(r.errors.network, 1, "{r:?}");
    assert_eq!(server.count("SELECT COUNT(*) FROM applied_ops"), 1, "the server decided (and recorded its refusal)");
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 0);

    let r = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(20)).unwrap();
    let detail = gw.get_incident(draft.id).unwrap();
    assert!(
        matches!(&detail.sync_state, SyncState::Parked { code, .. } if code == "unknown_category"),
        "the replayed rejection must park the report with the server's reason; got {:?} (report {r:?}, outbox {:?})",
        detail.sync_state,
        gw.outbox_items().unwrap().iter().map(|o| (o.kind_name.clone(), o.state)).collect::<Vec<_>>()
    );
    assert_eq!((r.pushed, r.parked), (0, 1), "{r:?}");
    assert!(r.completed && r.errors.transient == 0, "the photo of a refused report waits behind it, it is not tried: {r:?}");
    assert_eq!(proxy.stats().chunk_puts, 0);
}

/// Refresh tokens are single-use. When the reply to a refresh is lost,
/// the server has already spent the old refresh token and issued new ones
/// the device never saw. A lost reply is a network failure: once the link
/// is back, sync must carry on without asking the worker to log in again.
#[test]
fn a_lost_refresh_reply_does_not_force_a_new_login() {
    let server_dir = tempfile::tempdir().unwrap();
    let policy = gridwork_server::auth::TokenPolicy { access_ttl_ms: 1_000, refresh_ttl_ms: 600_000 };
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", policy);
    server.seed();
    let proxy = Proxy::start(server.addr, 4, FaultConfig::none());
    let device_dir = tempfile::tempdir().unwrap();
    let gw = open(device_dir.path(), "worker1");
    gw.login(&proxy.url(), "worker1", PASSWORD, false).unwrap();
    let id = capture(&gw, "refresh", &[]);
    std::thread::sleep(Duration::from_millis(1_300)); // the access token expires

    proxy.inject("POST", "/v1/auth/refresh", Fault::DropResponse { fraction: 0.5 });
    let r = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(20)).unwrap();
    assert_eq!((r.errors.auth, r.errors.network, r.pushed), (0, 1, 0), "push refused (expired; not an auth error while the refresh can fix it), refresh reply lost: {r:?}");
    assert!(!r.needs_login, "{r:?}");

    let mut reports = Vec::new();
    for _ in 0..3 {
        let r = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(20)).unwrap();
        reports.push(r.clone());
        if r.completed {
            break;
        }
    }
    assert!(
        reports.iter().all(|r| !r.needs_login),
        "one lost reply cost the worker a new login: {reports:#?}"
    );
    assert!(reports.last().unwrap().completed, "{reports:#?}");
    assert_eq!(server.count(&format!("SELECT COUNT(*) FROM incidents WHERE id = '{id}'")), 1);
}
