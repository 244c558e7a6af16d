//! `sync`: a device with a long-offline backlog pushes it over loopback, and
//! a fresh device makes its initial pull. Requests and bytes are counted on
//! the wire by a TCP proxy between device and server, for both sides. Peer:
//! PouchDB replicating the same reports to express-pouchdb, measured in the
//! same run (`crate::pouchdb`); beside it, what CouchDB-style replication
//! would need for photos too, computed from its protocol.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gridwork_core::capture::{self, DraftFields};
use gridwork_core::clock::Timestamp;
use gridwork_core::photo::{PhotoFormat, PhotoLimits, PhotoStore};
use gridwork_core::store::AccountPaths;
use gridwork_core::{Durability, Gridwork, Trigger};
use gridwork_protocol::api::Role;
use gridwork_server::{StorageConfig, admin, auth};

use crate::BenchResult;

const ACCOUNT: &str = "worker1";
const PASSWORD: &str = "benchmark-password";
pub const PULL_CHILD: &str = "__sync-pull-child";

pub struct SyncOptions {
    pub incidents: usize,
    pub photos: usize,
    pub photo_bytes: usize,
    pub pull_changes: usize,
}

/// Counts requests and bytes in both directions between device and server.
#[derive(Default)]
pub struct WireCounter {
    pub requests: AtomicU64,
    pub up_bytes: AtomicU64,
    pub down_bytes: AtomicU64,
}

/// A counting TCP proxy on loopback; returns its address.
pub fn counting_proxy(upstream: String, counter: Arc<WireCounter>) -> BenchResult<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else { continue };
            let (c2, s2) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
            let up = counter.clone();
            std::thread::spawn(move || pump(client, server, &up, true));
            let down = counter.clone();
            std::thread::spawn(move || pump(s2, c2, &down, false));
        }
    });
    Ok(addr)
}

fn pump(mut from: TcpStream, mut to: TcpStream, counter: &WireCounter, upstream: bool) {
    let mut buffer = vec![0u8; 256 * 1024];
    // Request lines end in " HTTP/1.1\r\n"; keep a tail so one split across
    // reads is still seen.
    let marker = b" HTTP/1.1\r\n";
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if upstream {
            counter.up_bytes.fetch_add(n as u64, Ordering::Relaxed);
            let mut window = std::mem::take(&mut tail);
            window.extend_from_slice(&buffer[..n]);
            let found = window.windows(marker.len()).filter(|w| *w == marker).count();
            counter.requests.fetch_add(found as u64, Ordering::Relaxed);
            tail = window[window.len().saturating_sub(marker.len() - 1)..].to_vec();
        } else {
            counter.down_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Queue `incidents` submitted reports, the first `photos` with one photo of
/// `photo_bytes` each, through the core's capture functions in one
/// transaction (the backlog of a long offline stretch, built fast).
fn queue_backlog(data_dir: &Path, options: &SyncOptions) -> BenchResult<u64> {
    let mut config = gridwork_tests::config(data_dir, ACCOUNT);
    config.durability = Durability::Normal;
    let gridwork = Gridwork::open(config)?;
    let photos = PhotoStore::open(&AccountPaths::new(data_dir, ACCOUNT).photos)?;
    let small = gridwork_tests::jpeg_bytes(&gridwork_tests::scene(64, 48, 7), 80, None);
    let source = gridwork_tests::write_file(data_dir, "small.jpg", &small);
    let mut ingested = photos.ingest(&source, PhotoLimits::default(), 480)?;
    let now_ms = gridwork.now().device_ms;
    let mut photo_total = 0;
    gridwork.with_connection(|conn| {
        let tx = conn.transaction()?;
        for n in 0..options.incidents {
            let now = Timestamp { device_ms: now_ms, corrected_ms: now_ms };
            let fields = DraftFields {
                category_code: Some("0602".into()),
                description: format!("楼道堆放杂物，占用消防通道，第 {n} 号"),
                address: Some("南京东路 100 弄".into()),
                location: Some(gridwork_core::GeoPoint { lat: 31.23, lon: 121.465, accuracy_m: Some(6.0) }),
            };
            let id = capture::create_draft(&tx, &fields, ACCOUNT, now, None)?;
            if n < options.photos {
                let bytes = random_bytes(n as u64 + 1, options.photo_bytes);
                ingested.sha256 = gridwork_tests::sha256_hex(&bytes);
                ingested.byte_size = bytes.len() as u64;
                std::fs::write(photos.original_path(&ingested.sha256, PhotoFormat::Jpeg), &bytes)?;
                photo_total += bytes.len() as u64;
                capture::insert_photo(&tx, id, &ingested, ACCOUNT, now, None)?;
            }
            capture::submit(&tx, id, ACCOUNT, now, None)?;
        }
        tx.commit()?;
        Ok(())
    })?;
    Ok(photo_total)
}

struct Server {
    url: String,
    db: gridwork_server::db::Database,
    _running: gridwork_server::BackgroundServer,
}

fn start_server(dir: &Path) -> BenchResult<Server> {
    let config = StorageConfig { data_dir: dir.to_owned(), database_url: None, max_connections: 8 };
    let (db, blobs) = gridwork_server::open_storage(&config)?;
    let hash = auth::hash_password(PASSWORD)?;
    db.write(|tx| admin::add_user(tx, ACCOUNT, &hash, Role::GridWorker, &["G-001".to_owned()], 0))?;
    let app = gridwork_server::app_state(db.clone(), blobs, auth::TokenPolicy::default());
    let running = gridwork_server::BackgroundServer::start(app, "127.0.0.1:0")?;
    Ok(Server { url: running.addr.to_string(), db, _running: running })
}

fn sync_until_done(gw: &Gridwork) -> BenchResult<u32> {
    let mut rounds = 0;
    loop {
        rounds += 1;
        let report = gw.sync_now(Trigger::ManualRetry, Duration::from_secs(3600))?;
        if report.completed {
            return Ok(rounds);
        }
        if rounds > 50 || report.needs_login {
            return Err(format!("sync did not complete: {report:?}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn run(options: &SyncOptions) -> BenchResult<()> {
    let temp = tempfile::tempdir()?;
    println!(
        "\n== sync: push {} queued incidents and {} photos of {:.1} MiB over loopback; initial pull of {} changes ==",
        options.incidents,
        options.photos,
        mib(options.photo_bytes as u64),
        options.pull_changes
    );
    let server = start_server(&temp.path().join("server"))?;
    let counter = Arc::new(WireCounter::default());
    let proxy = counting_proxy(server.url.clone(), counter.clone())?;
    let device_dir = temp.path().join("device");
    eprintln!("queueing the backlog…");
    let photo_total = queue_backlog(&device_dir, options)?;
    let gw = Gridwork::open(gridwork_tests::config(&device_dir, ACCOUNT))?;
    gw.login(&format!("http://{proxy}"), ACCOUNT, PASSWORD, false)?;
    counter.requests.store(0, Ordering::Relaxed);
    counter.up_bytes.store(0, Ordering::Relaxed);
    counter.down_bytes.store(0, Ordering::Relaxed);
    eprintln!("pushing…");
    let began = Instant::now();
    let rounds = sync_until_done(&gw)?;
    let push_wall = began.elapsed();
    let push_requests = counter.requests.load(Ordering::Relaxed);
    let (up, down) = (counter.up_bytes.load(Ordering::Relaxed), counter.down_bytes.load(Ordering::Relaxed));
    let arrived = server.db.read(|tx| Ok(tx.query_one("SELECT COUNT(*) FROM incidents", &[])?.int(0)))?;
    assert_eq!(arrived as usize, options.incidents, "every incident arrived");

    // CouchDB-style replication of the same documents (computed): per batch
    // of 100 docs one _revs_diff and one _bulk_docs; each doc with an
    // attachment sent alone as a multipart PUT; a checkpoint per batch; plus
    // reading the source's changes feed per batch.
    let batches = options.incidents.div_ceil(100) as u64;
    let couch_requests = batches * 4 + options.photos as u64;
    let doc_bytes = 900u64; // our payload size plus _id/_rev/revisions
    let couch_up = options.incidents as u64 * doc_bytes * 2 + photo_total + couch_requests * 250;

    println!("push of the backlog ({rounds} sync runs):");
    println!("  {:<34} {:>14} {:>22}", "", "ours (measured)", "CouchDB-style (model)");
    println!("  {:<34} {:>12.1} s", "wall time", push_wall.as_secs_f64());
    println!("  {:<34} {:>14} {:>22}", "HTTP requests", push_requests, couch_requests);
    println!("  {:<34} {:>10.1} MiB {:>18.1} MiB", "bytes up (device → server)", mib(up), mib(couch_up));
    println!("  {:<34} {:>10.1} MiB", "bytes down", mib(down));
    println!("  {:<34} {:>10.1} MiB", "of which photo payload", mib(photo_total));
    drop(gw);
    peer_push(temp.path(), options.incidents, push_wall.as_secs_f64(), push_requests, up + down, options.photos);

    // Initial pull: the server holds `pull_changes` cases visible to the worker.
    eprintln!("preparing {} changes on the server…", options.pull_changes);
    let caller = gridwork_server::admin::system_caller();
    let user_id = server.db.read(|tx| Ok(tx.query_one("SELECT id FROM users WHERE username = $1", gridwork_server::params![ACCOUNT])?.text(0)))?;
    let mut reporter = caller.clone();
    reporter.user_id = uuid::Uuid::parse_str(&user_id)?;
    reporter.role = Role::GridWorker;
    reporter.username = ACCOUNT.into();
    server.db.write(|tx| {
        for n in 0..options.pull_changes.saturating_sub(options.incidents) {
            let report = gridwork_protocol::SubmitIncident {
                incident_id: uuid::Uuid::now_v7(),
                category_code: "0602".into(),
                description: format!("历史事件 {n}"),
                address: None,
                location: None,
                grid_code: Some("G-001".into()),
                captured_at: gridwork_protocol::CapturedAt { device_ms: 1, corrected_ms: 1 },
                submitted_at: gridwork_protocol::CapturedAt { device_ms: 1, corrected_ms: 1 },
                photos: vec![],
                resolved_on_spot: None,
                resubmission_of: None,
            };
            let _ = gridwork_server::cases::submit(tx, &reporter, &report, 1)?;
        }
        Ok(())
    })?;
    let total_changes = server.db.read(|tx| Ok(tx.query_one("SELECT COUNT(*) FROM changes", &[])?.int(0)))?;
    counter.requests.store(0, Ordering::Relaxed);
    counter.up_bytes.store(0, Ordering::Relaxed);
    counter.down_bytes.store(0, Ordering::Relaxed);
    eprintln!("pulling on a fresh device (separate process, for its memory)…");
    let fresh = temp.path().join("fresh");
    let began = Instant::now();
    let output = std::process::Command::new(std::env::current_exe()?)
        .args([PULL_CHILD, &fresh.to_string_lossy(), &format!("http://{proxy}")])
        .output()?;
    let pull_wall = began.elapsed();
    if !output.status.success() {
        return Err(format!("pull child failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let child: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let pull_requests = counter.requests.load(Ordering::Relaxed);
    let down = counter.down_bytes.load(Ordering::Relaxed);
    let couch_pull_requests = (total_changes as u64).div_ceil(100) * 3;
    println!("initial pull of {total_changes} changes ({} incidents on the device):", child["incidents"]);
    println!("  {:<34} {:>14} {:>22}", "", "ours (measured)", "CouchDB-style (model)");
    println!("  {:<34} {:>12.1} s  (device sync {:.1} s)", "wall time", pull_wall.as_secs_f64(), child["sync_seconds"].as_f64().unwrap_or(0.0));
    println!("  {:<34} {:>14} {:>22}", "HTTP requests", pull_requests, couch_pull_requests);
    println!("  {:<34} {:>10.1} MiB", "bytes down", mib(down));
    println!(
        "  {:<34} {:>10.1} MiB  (after open {:.1} MiB)",
        "peak device memory (VmHWM)",
        child["peak_kib"].as_f64().unwrap_or(0.0) / 1024.0,
        child["open_kib"].as_f64().unwrap_or(0.0) / 1024.0
    );
    peer_pull(temp.path(), total_changes as usize, pull_wall.as_secs_f64(), pull_requests, down, child["peak_kib"].as_f64().unwrap_or(0.0) / 1024.0);
    Ok(())
}

/// One PouchDB replication through a counting proxy: (seconds, requests,
/// bytes both ways, bytes down, the JSON the peer printed).
fn peer_replication(peer: &Path, dir: &Path, args: impl Fn(&str) -> Vec<String>) -> BenchResult<(f64, u64, u64, u64, serde_json::Value)> {
    let server = crate::pouchdb::start_server(peer, &dir.join("server"))?;
    let counter = Arc::new(WireCounter::default());
    let proxy = counting_proxy(server.url.clone(), counter.clone())?;
    let args = args(&format!("http://{proxy}/reports"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = crate::pouchdb::run(peer, &args)?;
    let (up, down) = (counter.up_bytes.load(Ordering::Relaxed), counter.down_bytes.load(Ordering::Relaxed));
    Ok((result["ms"].as_f64().unwrap_or(0.0) / 1000.0, counter.requests.load(Ordering::Relaxed), up + down, down, result))
}

fn ratio(ours: f64, peer: f64) -> String {
    if peer > 0.0 { format!("{:.2}x", ours / peer) } else { "-".into() }
}

/// PouchDB pushing the same number of reports (no photos), batch 100 (its
/// default) and 1000, each into a fresh express-pouchdb.
fn peer_push(temp: &Path, reports: usize, ours_s: f64, ours_requests: u64, ours_bytes: u64, photos: usize) {
    let peer = match crate::pouchdb::install() {
        Ok(peer) => peer,
        Err(error) => return println!("  PouchDB: {} ({error})", crate::pouchdb::UNAVAILABLE),
    };
    eprintln!("PouchDB push (batch 100, then 1000)…");
    let mut runs = Vec::new();
    for batch in [100, 1000] {
        let dir = temp.join(format!("pouchdb-push-{batch}"));
        let device = dir.join("device");
        let _ = std::fs::create_dir_all(&device);
        match peer_replication(&peer, &dir, |url| vec!["push".into(), url.into(), device.to_string_lossy().into_owned(), reports.to_string(), batch.to_string()]) {
            Ok(run) => runs.push((batch, run)),
            Err(error) => return println!("  PouchDB push failed: {error}"),
        }
    }
    let note = format!("; ours also sends its {photos} photo(s)");
    println!("  PouchDB 9 → express-pouchdb 4.2, the same {reports} reports{note}:");
    for (batch, (seconds, requests, bytes, _, _)) in &runs {
        println!(
            "    batch {batch:<5} wall {seconds:>6.1} s ({} ours/peer), {requests:>5} requests ({}), {:>6.1} MiB both ways ({})",
            ratio(ours_s, *seconds),
            ratio(ours_requests as f64, *requests as f64),
            mib(*bytes),
            ratio(ours_bytes as f64, *bytes as f64)
        );
    }
}

/// A fresh PouchDB replicating `changes` reports from express-pouchdb
/// (filled directly, not timed), batch 100 (its default).
fn peer_pull(temp: &Path, changes: usize, ours_s: f64, ours_requests: u64, ours_down: u64, ours_peak_mib: f64) {
    let peer = match crate::pouchdb::install() {
        Ok(peer) => peer,
        Err(error) => return println!("  PouchDB: {} ({error})", crate::pouchdb::UNAVAILABLE),
    };
    let dir = temp.join("pouchdb-pull");
    let fresh = dir.join("fresh");
    let _ = std::fs::create_dir_all(&fresh);
    eprintln!("PouchDB: filling its server with {changes} reports, then a fresh replication…");
    let run = crate::pouchdb::start_server(&peer, &dir.join("server")).and_then(|server| {
        let url = format!("http://{}/reports", server.url);
        crate::pouchdb::run(&peer, &["fill", &url, &changes.to_string()])?;
        let counter = Arc::new(WireCounter::default());
        let proxy = counting_proxy(server.url.clone(), counter.clone())?;
        let result = crate::pouchdb::run(&peer, &["pull", &format!("http://{proxy}/reports"), &fresh.to_string_lossy(), "100"])?;
        Ok((result, counter.requests.load(Ordering::Relaxed), counter.down_bytes.load(Ordering::Relaxed)))
    });
    match run {
        Ok((result, requests, down)) => {
            let seconds = result["ms"].as_f64().unwrap_or(0.0) / 1000.0;
            let peak = result["peak_kib"].as_f64().unwrap_or(0.0) / 1024.0;
            println!(
                "  PouchDB 9 from express-pouchdb 4.2, {changes} reports, batch 100: wall {seconds:.1} s ({} ours/peer), {requests} requests ({}), {:.1} MiB down ({}), peak {peak:.1} MiB ({})",
                ratio(ours_s, seconds),
                ratio(ours_requests as f64, requests as f64),
                mib(down),
                ratio(ours_down as f64, down as f64),
                ratio(ours_peak_mib, peak)
            );
        }
        Err(error) => println!("  PouchDB pull failed: {error}"),
    }
}

/// The fresh device of the pull benchmark, in its own process.
pub fn pull_child(dir: &Path, url: &str) -> BenchResult<()> {
    let gw = Gridwork::open(gridwork_tests::config(dir, ACCOUNT))?;
    let open_kib = gridwork_tests::peak_rss_kib().unwrap_or(0);
    gw.login(url, ACCOUNT, PASSWORD, false)?;
    let began = Instant::now();
    sync_until_done(&gw)?;
    let seconds = began.elapsed().as_secs_f64();
    let incidents = gw.list_incidents(Default::default())?.len();
    let peak_kib = gridwork_tests::peak_rss_kib().unwrap_or(0);
    println!("{}", serde_json::json!({"incidents": incidents, "sync_seconds": seconds, "peak_kib": peak_kib, "open_kib": open_kib}));
    Ok(())
}
