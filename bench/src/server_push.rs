//! `server-push`: push throughput and latency of gridwork-server with many
//! concurrent simulated devices over real HTTP on loopback, on SQLite and on
//! PostgreSQL. Peer: the same database engine committing same-sized rows one
//! transaction each with the same concurrency, i.e. what the storage alone
//! allows when every operation must be durable on its own.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use gridwork_protocol::api::{self, Role};
use gridwork_protocol::{CapturedAt, OperationEnvelope, OperationKind, SubmitIncident};
use gridwork_server::db::Database;
use gridwork_server::{StorageConfig, admin, auth};
use serde_json::json;
use uuid::Uuid;

use crate::BenchResult;
use crate::report::{self, Target};

pub struct PushOptions {
    pub devices: usize,
    pub batches: usize,
    pub batch_ops: usize,
}

struct Figures {
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: usize,
    errors: usize,
}

pub fn run(options: &PushOptions) -> BenchResult<()> {
    println!(
        "\n== server-push: {} devices x {} pushes x {} operations over HTTP on loopback, one transaction per operation ==",
        options.devices, options.batches, options.batch_ops
    );
    let postgres = std::env::var("GRIDWORK_BENCH_POSTGRES_URL").or_else(|_| std::env::var("GRIDWORK_TEST_POSTGRES_URL")).ok();
    let devices = options.devices;
    let mut sqlite_rate = None;
    for backend in ["sqlite", "postgres"] {
        let temp = tempfile::tempdir()?;
        let (database_url, cleanup) = match backend {
            "sqlite" => (None, None),
            _ => match &postgres {
                Some(admin_url) => {
                    let name = format!("gw_bench_{}", Uuid::now_v7().simple());
                    postgres::Client::connect(admin_url, postgres::NoTls)?.batch_execute(&format!("CREATE DATABASE {name}"))?;
                    let (base, _) = admin_url.rsplit_once('/').ok_or("bad URL")?;
                    (Some(format!("{base}/{name}")), Some((admin_url.clone(), name)))
                }
                None => {
                    println!("postgres: peer unavailable (set GRIDWORK_BENCH_POSTGRES_URL or run scripts/postgres)");
                    continue;
                }
            },
        };
        let config = StorageConfig { data_dir: temp.path().join("server"), database_url: database_url.clone(), max_connections: 32 };
        let (db, blobs) = gridwork_server::open_storage(&config)?;
        let ours = run_server(&db, blobs, options)?;
        let peer = peer_inserts(database_url.as_deref(), &temp.path().join("peer.db"), options)?;
        println!("{backend}:");
        println!("  {:<44} {:>12} {:>12} {:>10}", "", "ours", "peer", "ours/peer");
        println!("  {:<44} {:>8.0} op/s {:>8.0} op/s {:>9.2}x", "throughput (operations per second)", ours.ops_per_sec, peer, ours.ops_per_sec / peer);
        println!("  {:<44} {:>9.1} ms", "push latency p50 (one request)", ours.p50_ms);
        println!("  {:<44} {:>9.1} ms", "push latency p99 (one request)", ours.p99_ms);
        println!("  requests {}, failed {}", ours.requests, ours.errors);
        if ours.errors > 0 {
            return Err(format!("{backend}: {} of {} pushes failed; the figures would mean nothing", ours.errors, ours.requests + ours.errors).into());
        }
        if backend == "sqlite" {
            sqlite_rate = Some(ours.ops_per_sec);
            report::record(&format!("server push, {devices} devices, SQLite: throughput"), "op/s", ours.ops_per_sec, Some(peer), Target::None);
        } else {
            // The target: PostgreSQL at least as fast as our SQLite
            // server in the same run, p99 at most 300 ms.
            let target = sqlite_rate.map(Target::AtLeast).unwrap_or(Target::None);
            report::record(&format!("server push, {devices} devices, PostgreSQL: throughput"), "op/s", ours.ops_per_sec, Some(peer), target);
            report::record(&format!("server push, {devices} devices, PostgreSQL: p99 of a push"), "ms", ours.p99_ms, None, Target::AtMost(300.0));
        }
        drop(db);
        if let Some((admin_url, name)) = cleanup {
            std::thread::sleep(Duration::from_millis(200));
            if let Ok(mut client) = postgres::Client::connect(&admin_url, postgres::NoTls) {
                let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
    Ok(())
}

fn operation(category: &str) -> OperationEnvelope {
    let incident_id = Uuid::now_v7();
    let payload = SubmitIncident {
        incident_id,
        category_code: category.to_owned(),
        description: "楼道堆放杂物，占用消防通道，居民反映多次，需要尽快清理。".repeat(3),
        address: Some("南京东路 100 弄 3 号".into()),
        location: Some(gridwork_protocol::GeoPoint { lat: 31.23, lon: 121.465, accuracy_m: Some(8.0) }),
        grid_code: Some("G-001".into()),
        captured_at: CapturedAt { device_ms: 1, corrected_ms: 1 },
        submitted_at: CapturedAt { device_ms: 2, corrected_ms: 2 },
        photos: Vec::new(),
        resolved_on_spot: None,
        resubmission_of: None,
    };
    OperationEnvelope {
        op_id: Uuid::now_v7(),
        entity_id: incident_id,
        kind: OperationKind::SubmitIncident,
        schema_version: 1,
        payload: serde_json::to_value(payload).expect("serializes"),
    }
}

fn run_server(db: &Database, blobs: gridwork_server::blobs::BlobStore, options: &PushOptions) -> BenchResult<Figures> {
    let app = gridwork_server::app_state(db.clone(), blobs, auth::TokenPolicy::default());
    // In the field each phone has its own address; here all share
    // loopback, so the per-address connection cap must admit them all.
    let limits = gridwork_server::ConnectionLimits { max_connections_per_client: 2 * options.devices + 16, ..Default::default() };
    let mut server = gridwork_server::BackgroundServer::start_with(app, "127.0.0.1:0", limits)?;
    let base = server.url();
    // Twenty workers of one grid, each with several phones.
    let hash = auth::hash_password("benchmark-password")?;
    let users = 20.min(options.devices);
    for u in 0..users {
        db.write(|tx| admin::add_user(tx, &format!("worker{u}"), &hash, Role::GridWorker, &["G-001".to_owned()], 0))?;
    }
    let batches: Vec<Vec<Vec<OperationEnvelope>>> =
        (0..options.devices).map(|_| (0..options.batches).map(|_| (0..options.batch_ops).map(|_| operation("0602")).collect()).collect()).collect();
    // Every phone signs in first, one after another: at once, two hundred
    // sign-ins from one address are what the login throttle is for.
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let mut tokens = Vec::new();
    for d in 0..options.devices {
        let login: api::TokenResponse = client
            .post(format!("{base}/v1/auth/login"))
            .header(api::DEVICE_ID_HEADER, format!("bench-device-{d}"))
            .json(&json!({"username": format!("worker{}", d % users), "password": "benchmark-password"}))
            .send()?
            .error_for_status()?
            .json()?;
        tokens.push(login.access_token);
    }
    let start = Arc::new(Barrier::new(options.devices + 1));
    let threads: Vec<_> = batches
        .into_iter()
        .zip(tokens)
        .enumerate()
        .map(|(d, (device_batches, token))| {
            let base = base.clone();
            let start = start.clone();
            std::thread::spawn(move || -> (Vec<Duration>, usize) {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().expect("client");
                let device = format!("bench-device-{d}");
                start.wait();
                let mut latencies = Vec::new();
                let mut errors = 0;
                for batch in device_batches {
                    let sent = Instant::now();
                    let ok = client
                        .post(format!("{base}/v1/push"))
                        .header(api::DEVICE_ID_HEADER, &device)
                        .bearer_auth(&token)
                        .json(&json!({"operations": batch}))
                        .send()
                        .map_err(|e| e.to_string())
                        .and_then(|r| if r.status().is_success() { Ok(()) } else { Err(format!("{} {}", r.status(), r.text().unwrap_or_default())) });
                    if let Err(error) = &ok {
                        eprintln!("  device {d}: push failed: {error}");
                    }
                    let ok = ok.is_ok();
                    latencies.push(sent.elapsed());
                    if !ok {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for thread in threads {
        let (l, e) = thread.join().map_err(|_| "device thread panicked")?;
        latencies.extend(l);
        errors += e;
    }
    let wall = began.elapsed();
    server.stop();
    let applied = db.read(|tx| Ok(tx.query_one("SELECT COUNT(*) FROM incidents", &[])?.int(0)))?;
    latencies.sort();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN);
    Ok(Figures { ops_per_sec: applied as f64 / wall.as_secs_f64(), p50_ms: pct(0.50), p99_ms: pct(0.99), requests: latencies.len(), errors })
}

/// The same number of rows of the same size, one committed transaction per
/// row, from the same number of threads (PostgreSQL) or one writer (SQLite).
fn peer_inserts(database_url: Option<&str>, sqlite_path: &std::path::Path, options: &PushOptions) -> BenchResult<f64> {
    let total = options.devices * options.batches * options.batch_ops;
    let row = serde_json::to_string(&operation("0602"))?;
    let began = Instant::now();
    match database_url {
        None => {
            let conn = rusqlite::Connection::open(sqlite_path)?;
            conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, op_id TEXT UNIQUE, body TEXT)")?;
            for _ in 0..total {
                conn.execute("INSERT INTO t (op_id, body) VALUES (?1, ?2)", rusqlite::params![Uuid::now_v7().to_string(), row])?;
            }
        }
        Some(url) => {
            let mut setup = postgres::Client::connect(url, postgres::NoTls)?;
            setup.batch_execute("CREATE TABLE peer_t (id BIGSERIAL PRIMARY KEY, op_id TEXT UNIQUE, body TEXT)")?;
            let threads = options.devices.min(32);
            let per_thread = total / threads;
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let url = url.to_owned();
                    let row = row.clone();
                    std::thread::spawn(move || -> Result<(), postgres::Error> {
                        let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
                        for _ in 0..per_thread {
                            client.execute("INSERT INTO peer_t (op_id, body) VALUES ($1, $2)", &[&Uuid::now_v7().to_string(), &row])?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for handle in handles {
                handle.join().map_err(|_| "peer thread panicked")??;
            }
        }
    }
    Ok(total as f64 / began.elapsed().as_secs_f64())
}
