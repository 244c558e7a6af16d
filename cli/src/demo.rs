//! `gridwork demo`: the whole loop on one machine with zero setup.
//!
//! A reference server runs in-process on loopback over a temporary data
//! directory (embedded SQLite and a blob folder); a phone store is opened
//! beside it through the same facade a phone uses. A grid worker captures
//! two reports with photos while offline, the phone syncs when the network
//! returns, the dispatcher registers one and dispatches it to a department,
//! whose phone signs for it and reports back with an after-photo, and the
//! worker verifies it on site with a rating. Everything is removed at the end.

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use gridwork_core::{
    CaseAction, CaseState, DraftFields, GeoPoint, Gridwork, GridworkConfig, IncidentStatus, Named, StepInput, SyncReport, TaskFilter, TaskKind, Trigger, Uuid,
};
use gridwork_protocol::api::{Role, TransitionRequest, UserInfo};
use gridwork_server::auth::{Caller, TokenPolicy};
use gridwork_server::db::Database;
use gridwork_server::{ServerError, StorageConfig, admin, auth, cases};
use image::{ImageEncoder, RgbImage};
use serde_json::{Value, json};

use crate::error::{CliError, CliResult};
use crate::output::{self, bytes_words, clip};

const DEMO_FAILED: &str = "demo_failed";

fn server_error(e: ServerError) -> CliError {
    CliError::new(DEMO_FAILED, format!("server: {e}"))
}

fn io_error(what: &str, e: std::io::Error) -> CliError {
    CliError::new(DEMO_FAILED, format!("{what}: {}", e.kind()))
}

/// The reference server on a background runtime, stopped on drop.
struct DemoServer {
    addr: SocketAddr,
    db: Database,
    _running: gridwork_server::BackgroundServer,
}

impl DemoServer {
    fn start(data_dir: &Path) -> CliResult<DemoServer> {
        let config = StorageConfig { data_dir: data_dir.to_owned(), database_url: None, max_connections: 4 };
        let (db, blobs) = gridwork_server::open_storage(&config).map_err(server_error)?;
        let app = gridwork_server::app_state(db.clone(), blobs, TokenPolicy::default());
        let running = gridwork_server::BackgroundServer::start(app, "127.0.0.1:0").map_err(|e| io_error("bind 127.0.0.1", e))?;
        Ok(DemoServer { addr: running.addr, db, _running: running })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn count(&self, sql: &str) -> CliResult<i64> {
        self.db.read(|tx| Ok(tx.query_one(sql, &[])?.int(0))).map_err(server_error)
    }

    /// A workflow step taken by `caller`, as the command center's console would.
    fn step(&self, caller: &Caller, id: Uuid, request: &TransitionRequest) -> CliResult<String> {
        let id = id.to_string();
        self.db
            .write(|tx| match cases::transition(tx, caller, &id, request, gridwork_server::http::now_ms())? {
                Ok(_) => Ok(cases::load_view_for(tx, caller, &id)?.map(|v| v.state.as_str().to_owned()).unwrap_or_default()),
                Err(r) => Err(ServerError::bad_request(r.code, r.message)),
            })
            .map_err(server_error)
    }
}

/// Two adjacent square grids in one community around (121.47, 31.23).
fn grids_geojson() -> Value {
    json!({
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature",
             "properties": {"code": "G-001", "name": "南京东路第一网格", "level": "key_attention", "community": "C-01", "street": "S-01"},
             "geometry": {"type": "Polygon", "coordinates": [[[121.46, 31.22], [121.47, 31.22], [121.47, 31.24], [121.46, 31.24], [121.46, 31.22]]]}},
            {"type": "Feature",
             "properties": {"code": "G-002", "name": "南京东路第二网格", "level": "routine", "community": "C-01", "street": "S-01"},
             "geometry": {"type": "Polygon", "coordinates": [[[121.47, 31.22], [121.48, 31.22], [121.48, 31.24], [121.47, 31.24], [121.47, 31.22]]]}}
        ]
    })
}

/// A photo-like picture: smooth light with some texture, so sizes and
/// perceptual hashes behave like a real scene. `seed` varies it.
fn camera_jpeg(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| {
        let fx = x as f32 / width as f32;
        let fy = y as f32 / height as f32;
        let s = seed as f32 * 0.61;
        let r = ((fx * 3.0 + s).sin() * 0.5 + 0.5) * 230.0;
        let g = ((fy * 4.0 + fx * 2.0 + s * 1.7).cos() * 0.5 + 0.5) * 210.0;
        let noise = ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ seed) >> 13) & 0x1f;
        let b = fx * fy * 180.0 + noise as f32;
        image::Rgb([r as u8, g as u8, b.min(255.0) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .write_image(image.as_raw(), width, height, image::ExtendedColorType::Rgb8)
        .expect("encoding an in-memory JPEG cannot fail");
    out.into_inner()
}

struct Capture {
    category: &'static str,
    description: &'static str,
    address: &'static str,
    location: GeoPoint,
    photos: u32,
}

const WORKER: &str = "zhang.wei";
const DISPATCHER: &str = "dispatcher";
/// A functional department (职能部门): the district's sanitation crew.
const DEPARTMENT: &str = "sanitation";

/// Prints the story as it happens, or collects figures for `--json`.
struct Story {
    json: bool,
    figures: serde_json::Map<String, Value>,
}

impl Story {
    fn say(&self, line: impl AsRef<str>) {
        if !self.json {
            output::print(line.as_ref());
        }
    }
    fn record(&mut self, key: &str, value: Value) {
        self.figures.insert(key.to_owned(), value);
    }
}

fn sync_words(report: &SyncReport, elapsed: Duration) -> String {
    let mut words = format!(
        "pushed {} operation(s), uploaded {} photo(s) ({}), pulled {} change(s) in {} ms",
        report.pushed,
        report.photos_uploaded,
        bytes_words(report.uploaded_bytes),
        report.pulled,
        elapsed.as_millis()
    );
    if report.completed {
        words.push_str(" — round complete");
    }
    words
}

pub fn run(json: bool) -> CliResult<()> {
    let started = Instant::now();
    let mut story = Story { json, figures: serde_json::Map::new() };
    let work = tempfile::Builder::new().prefix("gridwork-demo-").tempdir().map_err(|e| io_error("temporary directory", e))?;
    let camera = work.path().join("camera");
    std::fs::create_dir_all(&camera).map_err(|e| io_error("camera folder", e))?;

    // 1. The command center's server.
    story.say("Gridwork demo: the whole loop on this machine, zero setup");
    story.say("");
    let server = DemoServer::start(&work.path().join("server"))?;
    let grids = grids_geojson();
    server.db.write(|tx| gridwork_server::reference::import_grids(tx, &grids, 0)).map_err(server_error)?;
    let password = format!("demo-{}", hex::encode(rand::random::<[u8; 8]>()));
    let hash = auth::hash_password(&password).map_err(server_error)?;
    let add = |name: &str, role: Role, grids: &[String]| -> CliResult<UserInfo> {
        server.db.write(|tx| admin::add_user(tx, name, &hash, role, grids, 0)).map_err(server_error)
    };
    let worker = add(WORKER, Role::GridWorker, &["G-001".to_owned()])?;
    let dispatcher = add(DISPATCHER, Role::Dispatcher, &[])?;
    let department = add(DEPARTMENT, Role::Department, &[])?;
    story.say("[1] Command center");
    story.say(format!("    gridwork-server listening on {} (embedded SQLite and a blob folder in a temporary directory)", server.url()));
    story.say("    grids   G-001 南京东路第一网格 (重点关注型 key attention), G-002 南京东路第二网格 (日常管理型 routine)");
    story.say(format!(
        "    users   {} (grid worker, G-001), {} (command center), {} (department, 环卫所)",
        worker.username, dispatcher.username, department.username
    ));
    story.record("server_url", server.url().into());

    // 2. The worker's phone.
    let account = format!("{WORKER}@{}", server.addr);
    let key: [u8; 32] = rand::random();
    let phone = Gridwork::open(GridworkConfig::new(work.path().join("phone"), account.clone(), key.to_vec()))?;
    let user = phone.login(&server.url(), WORKER, &password, false)?;
    story.say(format!("\n[2] Phone of {WORKER}"));
    story.say(format!("    encrypted store opened for account {account} (fresh random key, this run only)"));
    story.say(format!("    logged in as {}", output::user_line(&user)));
    let t = Instant::now();
    let morning = phone.sync_now(Trigger::AppForegrounded, Duration::from_secs(30))?;
    if phone.grids()?.is_empty() {
        // Reference data normally arrives with the pull; never leave the demo without grids.
        phone.import_grids_geojson(&grids.to_string())?;
    }
    let areas = phone.grids()?;
    let grid_count = areas.iter().filter(|g| g.tier == gridwork_core::model::GridTier::Grid).count();
    story.say(format!(
        "    start-of-shift sync: pulled {} change(s) in {} ms; {} categories and {} grids ({} areas with street and community) on the phone",
        morning.pulled,
        t.elapsed().as_millis(),
        phone.categories()?.len(),
        grid_count,
        areas.len()
    ));
    story.record("start_of_shift_sync", output::sync_report_json(&morning));

    // 3. Offline capture.
    phone.set_network(false, false);
    story.say("\n[3] In a stairwell with no signal: the phone is offline");
    let captures = [
        Capture {
            category: "0602",
            description: "3号楼2单元楼道堆放纸箱和旧家具，堵塞通道",
            address: "南京东路街道 3号楼2单元",
            location: GeoPoint { lat: 31.2305, lon: 121.4652, accuracy_m: Some(6.0) },
            photos: 2,
        },
        Capture {
            category: "0603",
            description: "电动车在楼道内飞线充电",
            address: "南京东路街道 5号楼1单元",
            location: GeoPoint { lat: 31.2318, lon: 121.4661, accuracy_m: Some(9.0) },
            photos: 1,
        },
    ];
    let names: std::collections::HashMap<String, (String, String)> =
        phone.categories()?.into_iter().map(|c| (c.code, (c.name_zh, c.name_en))).collect();
    let mut ids = Vec::new();
    let mut photo_count = 0u32;
    for (n, capture) in captures.iter().enumerate() {
        let draft = phone.create_draft(DraftFields {
            category_code: Some(capture.category.to_owned()),
            description: capture.description.to_owned(),
            address: Some(capture.address.to_owned()),
            location: Some(capture.location),
        })?;
        let mut bytes = 0u64;
        for p in 0..capture.photos {
            let path = camera.join(format!("IMG_{n}{p}.jpg"));
            std::fs::write(&path, camera_jpeg(1280, 960, n as u32 * 10 + p)).map_err(|e| io_error("camera", e))?;
            bytes += phone.attach_photo(draft.id, &path)?.byte_size;
            photo_count += 1;
        }
        let incident = phone.submit(draft.id)?;
        let (zh, en) = names.get(capture.category).cloned().unwrap_or_default();
        story.say(format!(
            "    report {}: {} {} ({en}) — \"{}\", grid {}, {} photo(s) 1280x960 JPEG ({}), {}",
            n + 1,
            capture.category,
            zh,
            clip(capture.description, 24),
            incident.grid_code.as_deref().unwrap_or("none"),
            capture.photos,
            bytes_words(bytes),
            incident.status.as_str()
        ));
        ids.push(draft.id);
    }
    let offline = phone.sync_now(Trigger::OperationQueued, Duration::from_secs(5))?;
    let waiting = phone.outbox_summary()?;
    let on_server = server.count("SELECT COUNT(*) FROM incidents")?;
    story.say(format!(
        "    sync attempt while offline: pushed {}, uploaded {} — {}",
        offline.pushed,
        offline.photos_uploaded,
        if offline.next_wake_ms.is_some() { "waiting for the network, nothing lost" } else { "nothing to do" }
    ));
    story.say(format!(
        "    outbox: {} pending ({} reports, {} photo uploads); {} of photos waiting",
        waiting.pending,
        ids.len(),
        photo_count,
        bytes_words(waiting.photo_bytes_waiting)
    ));
    story.say(format!("    server: {on_server} incident(s)"));
    story.record("offline_sync", output::sync_report_json(&offline));
    story.record("outbox_offline", output::summary_json(&waiting));

    // 4. Back online.
    phone.set_network(true, false);
    let t = Instant::now();
    let online = phone.sync_now(Trigger::NetworkUp, Duration::from_secs(30))?;
    let online_ms = t.elapsed();
    let after = phone.outbox_summary()?;
    let on_server = server.count("SELECT COUNT(*) FROM incidents")?;
    let arrived = server.count(
        "SELECT COUNT(*) FROM incident_photos p JOIN blobs b ON b.sha256 = p.sha256 WHERE b.complete = 1",
    )?;
    story.say("\n[4] Back on the street: the network returns");
    story.say(format!("    sync: {}", sync_words(&online, online_ms)));
    story.say(format!("    outbox: {}", output::summary_line(&after)));
    story.say(format!("    server: {on_server} incident(s), {arrived} of {photo_count} photo(s) arrived (addressed by SHA-256)"));
    let statuses = |phone: &Gridwork| -> CliResult<Vec<IncidentStatus>> {
        ids.iter().map(|id| Ok(phone.get_incident(*id)?.incident.status)).collect()
    };
    let now = statuses(&phone)?;
    story.say(format!("    on the phone: {}", describe(&now)));
    story.record("sync", output::sync_report_json(&online));
    story.record("server_incidents", on_server.into());
    story.record("server_photos_arrived", arrived.into());

    // 5. The dispatcher registers and dispatches the first report to a department.
    let console = Caller {
        user_id: dispatcher.id,
        username: dispatcher.username.clone(),
        role: dispatcher.role,
        grids: dispatcher.grids.clone(),
        session_id: String::new(),
        device_id: "demo-console".to_owned(),
    };
    let registered = server.step(&console, ids[0], &TransitionRequest { note: Some("属实，立案".into()), ..TransitionRequest::new(CaseAction::Register) })?;
    let deadline = gridwork_server::http::now_ms() + 24 * 3_600_000;
    let dispatch = TransitionRequest {
        note: Some("请24小时内清理".into()),
        assignee: Some(DEPARTMENT.into()),
        deadline_ms: Some(deadline),
        ..TransitionRequest::new(CaseAction::Dispatch)
    };
    let dispatched = server.step(&console, ids[0], &dispatch)?;
    story.say(format!("\n[5] Command center: {} triages report 1", dispatcher.username));
    story.say(format!("    register (立案): {} → {registered}", now[0].as_str()));
    story.say(format!("    dispatch (派遣) to the department {DEPARTMENT}, deadline in 24 h: {registered} → {dispatched}"));

    // 6. The department's phone: sign, handle with an after-photo, report back.
    let crew = Gridwork::open(GridworkConfig::new(work.path().join("department-phone"), format!("{DEPARTMENT}@{}", server.addr), rand::random::<[u8; 32]>().to_vec()))?;
    crew.login(&server.url(), DEPARTMENT, &password, false)?;
    crew.sync_now(Trigger::AppForegrounded, Duration::from_secs(30))?;
    let tasks = crew.tasks(TaskFilter::default())?;
    let task = tasks.first().ok_or_else(|| CliError::new(DEMO_FAILED, "the dispatched case did not reach the department's phone"))?;
    story.say(format!("\n[6] Phone of the department {DEPARTMENT}"));
    story.say(format!(
        "    task list: {} task(s); report 1 is {}, deadline light {}, dispatcher's note \"{}\"",
        tasks.len(),
        task.state.as_str(),
        task.light.map_or("-", |l| l.as_str()),
        task.note.as_deref().unwrap_or("")
    ));
    crew.set_network(false, false);
    crew.take_step(ids[0], StepInput::new(CaseAction::Sign), &[])?;
    crew.take_step(ids[0], StepInput::new(CaseAction::Start), &[])?;
    let after = camera.join("AFTER_1.jpg");
    std::fs::write(&after, camera_jpeg(1280, 960, 77)).map_err(|e| io_error("camera", e))?;
    let handled = crew.take_step(ids[0], StepInput { note: Some("楼道已清空，纸箱已清运".into()), ..StepInput::new(CaseAction::Handle) }, &[after])?;
    story.say(format!("    offline: sign (签收), start (处置), handle (反馈) with an after-photo → {} on the phone", handled.status.as_str()));
    crew.set_network(true, false);
    let t = Instant::now();
    let back = crew.sync_now(Trigger::NetworkUp, Duration::from_secs(30))?;
    story.say(format!("    sync: {}", sync_words(&back, t.elapsed())));
    story.record("department_sync", output::sync_report_json(&back));

    // 7. The worker verifies on site and rates the work.
    phone.sync_now(Trigger::AppForegrounded, Duration::from_secs(30))?;
    let verify = phone.tasks(TaskFilter { kind: Some(TaskKind::Verify), ..Default::default() })?;
    let onsite = camera.join("CHECK_1.jpg");
    std::fs::write(&onsite, camera_jpeg(1280, 960, 78)).map_err(|e| io_error("camera", e))?;
    let rating = 4;
    phone.take_step(ids[0], StepInput { note: Some("已清理干净，通道畅通".into()), rating: Some(rating), ..StepInput::new(CaseAction::Close) }, &[onsite])?;
    let t = Instant::now();
    let last = phone.sync_now(Trigger::OperationQueued, Duration::from_secs(30))?;
    let last_ms = t.elapsed();
    story.say(format!("\n[7] {WORKER} verifies on site (核查)"));
    story.say(format!("    {} case(s) to verify; passed with {rating} of 5 stars (评价) and an on-site photo", verify.len()));
    story.say(format!("    sync: {}", sync_words(&last, last_ms)));
    let end = statuses(&phone)?;
    let case = phone.get_incident(ids[0])?.case;
    let timeline: Vec<String> = case.as_ref().map(|c| c.timeline.iter().filter(|e| !e.action.ends_with("_arrived")).map(|e| e.action.clone()).collect()).unwrap_or_default();
    let photos_arrived = server.count("SELECT COUNT(*) FROM incident_photos p JOIN blobs b ON b.sha256 = p.sha256 WHERE b.complete = 1")?;
    story.say(format!("    on the phone: {}", describe(&end)));
    story.say(format!("    timeline of report 1: {}", timeline.join(" → ")));
    story.say(format!("    server: {photos_arrived} of {} photo(s) arrived (evidence, after, verification)", photo_count + 2));
    story.record("final_sync", output::sync_report_json(&last));
    story.record("rating", case.as_ref().and_then(|c| c.rating).into());
    story.record("timeline", timeline.iter().map(|a| Value::from(a.as_str())).collect());
    story.record(
        "reports",
        ids.iter()
            .zip(&captures)
            .zip(&end)
            .map(|((id, c), status)| json!({ "id": id.to_string(), "category": c.category, "photos": c.photos, "status": status.as_str() }))
            .collect(),
    );

    let ok = on_server == ids.len() as i64
        && arrived == i64::from(photo_count)
        && photos_arrived == i64::from(photo_count) + 2
        && end[0] == IncidentStatus::Case(CaseState::Closed)
        && case.and_then(|c| c.rating) == Some(rating);
    let elapsed = started.elapsed();
    story.record("ok", ok.into());
    story.record("elapsed_ms", (elapsed.as_millis() as u64).into());
    if json {
        output::print_json(&Value::Object(story.figures));
    } else if ok {
        output::print(&format!(
            "\nDone in {:.1} s: captured offline, nothing lost, every report and photo arrived once; the case went from report to a rated close across three devices.",
            elapsed.as_secs_f64()
        ));
    }
    drop(phone);
    drop(server);
    if ok {
        Ok(())
    } else {
        Err(CliError::new(DEMO_FAILED, "the loop did not close: see the figures above"))
    }
}

fn describe(statuses: &[IncidentStatus]) -> String {
    statuses
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let note = if *s == IncidentStatus::Case(CaseState::Closed) { " (verified and rated)" } else { "" };
            format!("report {} {}{note}", i + 1, s.as_str())
        })
        .collect::<Vec<_>>()
        .join(", ")
}
