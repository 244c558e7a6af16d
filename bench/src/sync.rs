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
use crate::report::{self, Target};

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

/// What one push of a queued backlog cost on the wire.
struct Pushed {
    wall: Duration,
    rounds: u32,
    requests: u64,
    up: u64,
    down: u64,
    photo_total: u64,
}

/// Queue the backlog on a device in `temp`, log in through a counting proxy
/// and sync until done; everything must arrive.
fn push_backlog(temp: &Path, server: &Server, options: &SyncOptions) -> BenchResult<Pushed> {
    let counter = Arc::new(WireCounter::default());
    let proxy = counting_proxy(server.url.clone(), counter.clone())?;
    let device_dir = temp.join("device");
    eprintln!("queueing the backlog…");
    let photo_total = queue_backlog(&device_dir, options)?;
    let before = server.db.read(|tx| Ok(tx.query_one("SELECT COUNT(*) FROM incidents", &[])?.int(0)))?;
    let gw = Gridwork::open(gridwork_tests::config(&device_dir, ACCOUNT))?;
    gw.login(&format!("http://{proxy}"), ACCOUNT, PASSWORD, false)?;
    counter.requests.store(0, Ordering::Relaxed);
    counter.up_bytes.store(0, Ordering::Relaxed);
    counter.down_bytes.store(0, Ordering::Relaxed);
    eprintln!("pushing…");
    let began = Instant::now();
    let rounds = sync_until_done(&gw)?;
    let wall = began.elapsed();
    let requests = counter.requests.load(Ordering::Relaxed);
    let (up, down) = (counter.up_bytes.load(Ordering::Relaxed), counter.down_bytes.load(Ordering::Relaxed));
    let arrived = server.db.read(|tx| Ok(tx.query_one("SELECT COUNT(*) FROM incidents", &[])?.int(0)))?;
    if (arrived - before) as usize != options.incidents {
        return Err(format!("{} of {} incidents arrived", arrived - before, options.incidents).into());
    }
    Ok(Pushed { wall, rounds, requests, up, down, photo_total })
}

/// `count` reports with one photo of `photo_bytes` each, pushed by us and
/// by PouchDB (the photo as an attachment): requests and bytes per photo.
pub fn run_photos(count: usize, photo_bytes: usize) -> BenchResult<()> {
    let temp = tempfile::tempdir()?;
    println!("\n== sync-photos: push {count} reports with a photo of {:.1} MiB each over loopback ==", mib(photo_bytes as u64));
    let server = start_server(&temp.path().join("server"))?;
    let options = SyncOptions { incidents: count, photos: count, photo_bytes, pull_changes: 0 };
    let ours = push_backlog(temp.path(), &server, &options)?;
    let photo_size = if photo_bytes >= 1024 * 1024 { format!("{:.0} MiB", mib(photo_bytes as u64)) } else { format!("{} KiB", photo_bytes / 1024) };
    let peer = crate::pouchdb::install().and_then(|peer| {
        let dir = temp.path().join("pouchdb-photos");
        let device = dir.join("device");
        std::fs::create_dir_all(&device)?;
        eprintln!("PouchDB push with attachments…");
        let kib = (photo_bytes / 1024).to_string();
        peer_replication(&peer, &dir, |url| vec!["push-photos".into(), url.into(), device.to_string_lossy().into_owned(), count.to_string(), kib.clone()])
    });
    let per_photo = |requests: u64| requests as f64 / count as f64;
    let per_byte = |up: u64| up as f64 / ours.photo_total as f64;
    println!("  {:<44} {:>14} {:>14}", "", "ours", "PouchDB b100");
    match &peer {
        Ok((seconds, requests, both, down, _)) => {
            println!("  {:<44} {:>12.2} s {:>12.2} s", "wall time", ours.wall.as_secs_f64(), seconds);
            println!("  {:<44} {:>14.2} {:>14.2}", "requests per photo", per_photo(ours.requests), per_photo(*requests));
            println!("  {:<44} {:>14.3} {:>14.3}", "bytes up per photo byte", per_byte(ours.up), per_byte(both - down));
        }
        Err(error) => println!("  PouchDB: {} ({error})", crate::pouchdb::UNAVAILABLE),
    }
    let peer = peer.ok();
    let name = format!("push {count} reports with a {photo_size} photo each");
    report::record(&format!("{name}: requests per photo"), "requests", per_photo(ours.requests), peer.as_ref().map(|p| per_photo(p.1)), Target::AtMost(2.0));
    report::record(&format!("{name}: bytes up per photo byte"), "x", per_byte(ours.up), peer.as_ref().map(|p| per_byte(p.2 - p.3)), Target::AtMost(1.02));
    report::record(&format!("{name}: wall"), "s", ours.wall.as_secs_f64(), peer.as_ref().map(|p| p.0), Target::None);
    Ok(())
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
    let pushed = push_backlog(temp.path(), &server, options)?;
    let Pushed { wall: push_wall, rounds, requests: push_requests, up, down, photo_total } = pushed;

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
    let counter = Arc::new(WireCounter::default());
    let proxy = counting_proxy(server.url.clone(), counter.clone())?;
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
    let storage_mb = child["storage_bytes"].as_f64().unwrap_or(0.0) / 1e6;
    println!(
        "  {:<34} {:>11.1} MB  (of which the cases' server views as JSON {:.1} MB)",
        "device storage after the pull",
        storage_mb,
        child["view_bytes"].as_f64().unwrap_or(0.0) / 1e6
    );
    let ours = PulledOurs { seconds: pull_wall.as_secs_f64(), requests: pull_requests, down, peak_mib: child["peak_kib"].as_f64().unwrap_or(0.0) / 1024.0, storage_mb };
    peer_pull(temp.path(), total_changes as usize, &ours);
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
/// default) and 1000, each into a fresh express-pouchdb. The rows
/// are recorded only when ours pushed no photos either (the same documents).
fn peer_push(temp: &Path, reports: usize, ours_s: f64, ours_requests: u64, ours_bytes: u64, photos: usize) {
    let mut runs = Vec::new();
    match crate::pouchdb::install() {
        Ok(peer) => {
            eprintln!("PouchDB push (batch 100, then 1000)…");
            for batch in [100, 1000] {
                let dir = temp.join(format!("pouchdb-push-{batch}"));
                let device = dir.join("device");
                let _ = std::fs::create_dir_all(&device);
                match peer_replication(&peer, &dir, |url| vec!["push".into(), url.into(), device.to_string_lossy().into_owned(), reports.to_string(), batch.to_string()]) {
                    Ok(run) => runs.push((batch, run)),
                    Err(error) => println!("  PouchDB push failed: {error}"),
                }
            }
        }
        Err(error) => println!("  PouchDB: {} ({error})", crate::pouchdb::UNAVAILABLE),
    }
    let note = if photos > 0 { format!("; ours also sends its {photos} photo(s)") } else { String::new() };
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
    if photos > 0 {
        return;
    }
    let peer = |batch: usize| runs.iter().find(|(b, _)| *b == batch).map(|(_, run)| run);
    let b100 = peer(100);
    report::record(&format!("push {reports} reports: wall"), "s", ours_s, b100.map(|r| r.0), Target::RatioAtMost(0.25));
    report::record(&format!("push {reports} reports: wall, against PouchDB batch 1000"), "s", ours_s, peer(1000).map(|r| r.0), Target::RatioAtMost(0.4));
    report::record(&format!("push {reports} reports: HTTP requests"), "requests", ours_requests as f64, b100.map(|r| r.1 as f64), Target::RatioAtMost(0.1));
    report::record(&format!("push {reports} reports: bytes both ways"), "MiB", mib(ours_bytes), b100.map(|r| mib(r.2)), Target::RatioAtMost(0.4));
}

/// What our fresh device's pull cost, for the peer's rows beside it.
struct PulledOurs {
    seconds: f64,
    requests: u64,
    down: u64,
    peak_mib: f64,
    storage_mb: f64,
}

/// Fresh PouchDBs replicating `changes` reports from express-pouchdb
/// (filled directly, not timed), at batch 100 (its default) and 1000.
fn peer_pull(temp: &Path, changes: usize, ours: &PulledOurs) {
    let mut runs = Vec::new();
    let peer = crate::pouchdb::install();
    if let Err(error) = &peer {
        println!("  PouchDB: {} ({error})", crate::pouchdb::UNAVAILABLE);
    }
    if let Ok(peer) = peer {
        let dir = temp.join("pouchdb-pull");
        eprintln!("PouchDB: filling its server with {changes} reports, then fresh replications at batch 100 and 1000…");
        let filled = crate::pouchdb::start_server(&peer, &dir.join("server")).and_then(|server| {
            crate::pouchdb::run(&peer, &["fill", &format!("http://{}/reports", server.url), &changes.to_string()])?;
            Ok(server)
        });
        match filled {
            Ok(server) => {
                for batch in [100usize, 1000] {
                    let fresh = dir.join(format!("fresh-{batch}"));
                    let _ = std::fs::create_dir_all(&fresh);
                    let counter = Arc::new(WireCounter::default());
                    let run = counting_proxy(server.url.clone(), counter.clone()).and_then(|proxy| {
                        crate::pouchdb::run(&peer, &["pull", &format!("http://{proxy}/reports"), &fresh.to_string_lossy(), &batch.to_string()])
                    });
                    match run {
                        Ok(result) => runs.push((batch, result, counter.requests.load(Ordering::Relaxed), counter.down_bytes.load(Ordering::Relaxed), dir_size(&fresh))),
                        Err(error) => println!("  PouchDB pull failed: {error}"),
                    }
                }
            }
            Err(error) => println!("  PouchDB pull failed: {error}"),
        }
    }
    for (batch, result, requests, down, storage) in &runs {
        let seconds = result["ms"].as_f64().unwrap_or(0.0) / 1000.0;
        let peak = result["peak_kib"].as_f64().unwrap_or(0.0) / 1024.0;
        println!(
            "  PouchDB 9 from express-pouchdb 4.2, {changes} reports, batch {batch}: wall {seconds:.1} s ({} ours/peer), {requests} requests ({}), {:.1} MiB down ({}), peak {peak:.1} MiB ({}), stored {:.1} MB ({})",
            ratio(ours.seconds, seconds),
            ratio(ours.requests as f64, *requests as f64),
            mib(*down),
            ratio(ours.down as f64, *down as f64),
            ratio(ours.peak_mib, peak),
            *storage as f64 / 1e6,
            ratio(ours.storage_mb, *storage as f64 / 1e6),
        );
    }
    let peer = |batch: usize| runs.iter().find(|run| run.0 == batch);
    let b100 = peer(100);
    let seconds = |run: &(usize, serde_json::Value, u64, u64, u64)| run.1["ms"].as_f64().unwrap_or(0.0) / 1000.0;
    report::record(&format!("initial pull of {changes}: wall"), "s", ours.seconds, b100.map(seconds), Target::RatioAtMost(0.25));
    report::record(&format!("initial pull of {changes}: wall, against PouchDB batch 1000"), "s", ours.seconds, peer(1000).map(seconds), Target::RatioAtMost(0.4));
    report::record(&format!("initial pull of {changes}: HTTP requests"), "requests", ours.requests as f64, b100.map(|r| r.2 as f64), Target::None);
    report::record(&format!("initial pull of {changes}: bytes down"), "MiB", mib(ours.down), b100.map(|r| mib(r.3)), Target::RatioAtMost(0.8));
    report::record(
        &format!("initial pull of {changes}: peak device memory"),
        "MiB",
        ours.peak_mib,
        b100.and_then(|r| r.1["peak_kib"].as_f64()).map(|k| k / 1024.0),
        Target::AtMost(64.0),
    );
    report::record(&format!("initial pull of {changes}: device storage"), "MB", ours.storage_mb, b100.map(|r| r.4 as f64 / 1e6), Target::AtMost(40.0));
}

/// Bytes of every file under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_size(&entry.path()),
            _ => entry.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
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
    // What the storage holds: the server views kept as JSON, beside the rest.
    let view_bytes: i64 = gw.with_connection(|c| Ok(c.query_row("SELECT COALESCE(SUM(length(server_view)), 0) FROM incidents", [], |r| r.get(0))?))?;
    drop(gw);
    let storage_bytes = dir_size(dir);
    println!(
        "{}",
        serde_json::json!({"incidents": incidents, "sync_seconds": seconds, "peak_kib": peak_kib, "open_kib": open_kib, "storage_bytes": storage_bytes, "view_bytes": view_bytes})
    );
    Ok(())
}
