//! The admin command line as a real process: init, users, grids,
//! categories, serve (with a device logging in and reporting over HTTP),
//! then listing cases, their timelines and taking workflow steps; wrong
//! input exits non-zero with the error code on stderr. On SQLite (a data
//! folder) and on PostgreSQL (`--database-url`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::*;
use serde_json::{Value, json};
use uuid::Uuid;

/// A fresh PostgreSQL database for one test, dropped at the end (as in
/// common/mod.rs, whose helper is private).
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    fn create(admin_url: &str) -> (PgDatabase, String) {
        let name = format!("gw_test_{}", Uuid::now_v7().simple());
        let mut client = postgres::Client::connect(admin_url, postgres::NoTls).expect("connect to test PostgreSQL");
        client.batch_execute(&format!("CREATE DATABASE {name}")).expect("create test database");
        let (base, _) = admin_url.rsplit_once('/').expect("URL has a database part");
        let url = format!("{base}/{name}");
        (PgDatabase { admin_url: admin_url.to_owned(), name }, url)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// The command line pointed at one server's storage.
struct Admin {
    backend: &'static str,
    dir: tempfile::TempDir,
    database_url: Option<String>,
    _pg: Option<PgDatabase>,
}

impl Admin {
    fn new(backend: &Backend) -> Admin {
        let (pg, database_url) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres(admin_url) => {
                let (pg, url) = PgDatabase::create(admin_url);
                (Some(pg), Some(url))
            }
        };
        Admin { backend: backend.name(), dir: tempfile::tempdir().unwrap(), database_url, _pg: pg }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gridwork-server"));
        command.env_remove("GRIDWORK_DATABASE_URL").env_remove("GRIDWORK_TIME_ZONE").env("GRIDWORK_LOG", "warn").arg("--data").arg(self.dir.path().join("data"));
        if let Some(url) = &self.database_url {
            command.arg("--database-url").arg(url);
        }
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run gridwork-server")
    }

    /// Run; it must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "{}: {args:?} failed: {}", self.backend, String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    /// Run; it must fail with `code` named on stderr (with `--json`: in a
    /// `{code, message}` object on stdout); its stderr (or stdout).
    fn fails(&self, args: &[&str], code: &str) -> String {
        let output = self.run(args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.status.success(), "{}: {args:?} should fail", self.backend);
        assert_ne!(output.status.code(), Some(0), "{}", self.backend);
        if args.contains(&"--json") {
            let error: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}: {args:?}: a JSON error on stdout", self.backend));
            assert_eq!(error["code"], code, "{}: {args:?}", self.backend);
            assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{}: {args:?}", self.backend);
            return String::from_utf8(output.stdout).unwrap();
        }
        assert!(stderr.contains(&format!("({code})")), "{}: {args:?}: expected {code} on stderr, got: {stderr}", self.backend);
        assert!(output.stdout.is_empty(), "{}: {args:?}: nothing on stdout when failing", self.backend);
        stderr
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap_or_else(|e| panic!("{}: {args:?} did not print JSON: {e}", self.backend))
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// `serve --listen 127.0.0.1:0` as a child; killed when dropped.
    fn serve(&self) -> Serving {
        self.serve_with(&[], None)
    }

    /// `serve` with more arguments and, if given, a GRIDWORK_LOG level.
    fn serve_with(&self, extra: &[&str], log_level: Option<&str>) -> Serving {
        let log = self.dir.path().join(format!("serve-{}.log", Uuid::now_v7().simple()));
        let mut command = self.command();
        if let Some(level) = log_level {
            command.env("GRIDWORK_LOG", level);
        }
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn gridwork-server serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(address) = line.trim().strip_prefix("gridwork-server listening on http://") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{}: unexpected first line {line:?}; log: {}", self.backend, std::fs::read_to_string(&log).unwrap_or_default());
        };
        let address: std::net::SocketAddr = address.parse().expect("a socket address");
        assert!(address.ip().is_loopback() && address.port() != 0, "{}: {address}", self.backend);
        Serving { child, base: format!("http://{address}"), log }
    }
}

struct Serving {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Serving {
    fn device(&self, username: &str, password: &str) -> Device {
        let device = Device {
            id: format!("dev-{username}-{}", &Uuid::now_v7().simple().to_string()[20..]),
            base: self.base.clone(),
            client: reqwest::blocking::Client::new(),
            tokens: Default::default(),
        };
        let me = device.login(username, password);
        assert_eq!(me.status(), 200, "log in as {username}");
        device
    }

    /// Ctrl-C, as an operator stops it; the exit status and the log.
    fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        let signalled = Command::new("kill").args(["-s", "INT", &self.child.id().to_string()]).status().unwrap();
        assert!(signalled.success());
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(20), "serve did not stop on Ctrl-C");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        (status, std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

const WORKER_PASSWORD: &str = "zhang-secret-1";
const FIXER_PASSWORD: &str = "wang-secret-22";

#[test]
fn the_admin_command_line_runs_a_case_end_to_end() {
    for backend in backends() {
        let admin = Admin::new(&backend);
        let name = admin.backend;

        assert_eq!(admin.ok(&["init"]).trim(), "initialized", "{name}");
        assert_eq!(admin.ok(&["init"]).trim(), "initialized", "{name}: init twice is harmless");

        // Grids from GeoJSON; bad files are refused with a code.
        let grids = admin.file("grids.geojson", &two_grids_geojson());
        assert_eq!(admin.ok(&["grid", "import", path_str(&grids)]).trim(), "imported 2 grids", "{name}");
        admin.fails(&["grid", "import", path_str(&admin.dir.path().join("missing.geojson"))], "file_unreadable");
        admin.fails(&["grid", "import", path_str(&admin.file("broken.geojson", "{not json"))], "invalid_json");
        admin.fails(&["grid", "import", path_str(&admin.file("point.geojson", r#"{"type": "Point"}"#))], "invalid_geojson");

        // Users.
        let user = admin.json(&["user", "add", "--username", "zhang", "--password", WORKER_PASSWORD, "--role", "grid_worker", "--grid", "G-001", "--json"]);
        assert_eq!(user["username"], "zhang", "{name}");
        assert_eq!(user["role"], "grid_worker", "{name}");
        assert_eq!(user["grids"], json!(["G-001"]), "{name}");
        let fixer = admin.json(&["user", "add", "--username", "wang", "--password", FIXER_PASSWORD, "--role", "grid_worker", "--grid", "G-001", "--grid", "G-002", "--json"]);
        assert_eq!(fixer["grids"], json!(["G-001", "G-002"]), "{name}");
        let stderr = admin.fails(&["user", "add", "--username", "li", "--password", "long-enough-1", "--role", "mayor"], "invalid_role");
        assert!(stderr.contains("grid_worker, volunteer, supervisor, dispatcher, admin or department"), "{name}: the message lists the roles: {stderr}");
        admin.fails(&["user", "add", "--username", "li", "--password", "short", "--role", "volunteer"], "weak_password");
        admin.fails(&["user", "add", "--username", "zhang", "--password", "long-enough-1", "--role", "volunteer"], "user_exists");
        let missing_flag = admin.run(&["user", "add", "--username", "li"]);
        assert!(!missing_flag.status.success(), "{name}: a missing flag is a usage error");

        // A category table replacing the default one.
        let table = json!({"version": 2, "categories": [
            {"code": "01", "name_zh": "市容环境", "name_en": "City appearance"},
            {"code": "0101", "parent": "01", "name_zh": "私搭乱建", "name_en": "Illegal structure"},
            {"code": "99", "name_zh": "其他事项", "name_en": "Other"}
        ]});
        let categories = admin.file("categories.json", &table.to_string());
        assert_eq!(admin.ok(&["category", "import", path_str(&categories)]).trim(), "imported 3 categories", "{name}");
        admin.fails(&["category", "import", path_str(&admin.file("bad-table.json", r#"{"version": 3}"#))], "invalid_category_table");

        // Serve; a phone logs in with the CLI-made user and reports.
        let server = admin.serve();
        let phone = server.device("zhang", WORKER_PASSWORD);
        let stranger = Device { id: "dev-stranger".into(), base: server.base.clone(), client: reqwest::blocking::Client::new(), tokens: Default::default() };
        assert_eq!(stranger.login("zhang", "wrong password").status(), 401, "{name}: a wrong password is refused");
        let (pulled, _) = phone.pull_all(0);
        let find = |kind: &str, id: &str| pulled.iter().find(|c| c["entity_kind"] == kind && c["entity_id"] == id).cloned();
        assert_eq!(find("category", "99").unwrap()["data"]["name_zh"], "其他事项", "{name}: the imported table");
        assert_eq!(find("category", "0102").unwrap()["data"]["active"], false, "{name}: codes missing from the new table retire");
        assert_eq!(find("grid", "G-001").unwrap()["data"]["level"], "key_attention", "{name}: the imported grids");
        let retired = phone.push_ok(&[report("0102", Some("G-001"), &[]).1]);
        assert_eq!(retired[0]["code"], "unknown_category", "{name}");

        let arrived = photo_bytes(1, 30_000);
        let missing = photo_bytes(2, 20_000);
        let (id, op) = report("0101", Some("G-001"), &[&arrived, &missing]);
        assert_eq!(phone.push_ok(&[op])[0]["status"], "applied", "{name}");
        let sha = sha256_hex(&arrived);
        assert_eq!(phone.post("/v1/blobs", &json!({"sha256": sha, "size": arrived.len()})).status(), 201, "{name}");
        assert_eq!(phone.put_chunk(&sha, 0, &arrived).json::<Value>().unwrap()["complete"], true, "{name}");
        server.stop();

        // What arrived, as the command line lists it.
        let listed = admin.json(&["incidents", "list", "--json"]);
        let listed = listed.as_array().unwrap();
        assert_eq!(listed.len(), 1, "{name}: {listed:?}");
        let case = &listed[0];
        assert_eq!(case["id"], json!(id), "{name}");
        assert_eq!(case["state"], "reported", "{name}");
        assert_eq!(case["category_code"], "0101", "{name}");
        assert_eq!(case["reporter"], "zhang", "{name}");
        assert_eq!(case["grid_code"], "G-001", "{name}");
        assert_eq!(case["missing_evidence"], true, "{name}");
        let photos: Vec<(String, bool)> =
            case["photos"].as_array().unwrap().iter().map(|p| (p["sha256"].as_str().unwrap().to_owned(), p["arrived"].as_bool().unwrap())).collect();
        assert_eq!(photos, [(sha.clone(), true), (sha256_hex(&missing), false)], "{name}");
        let plain = admin.ok(&["incidents", "list"]);
        assert!(plain.starts_with("id ") && plain.contains(&id.to_string()) && plain.contains("1/2 arrived"), "{name}: a header row, then the case: {plain}");
        let categories = admin.json(&["category", "list", "--json"]);
        let name_0101 = categories.as_array().unwrap().iter().find(|c| c["code"] == "0101").unwrap()["name_zh"].as_str().unwrap().to_owned();
        assert!(plain.contains(&format!("0101 {name_0101}")), "{name}: the category's name beside its code: {plain}");

        let timeline = admin.json(&["timeline", &id.to_string(), "--json"]);
        let actions: Vec<(&str, &str)> = timeline.as_array().unwrap().iter().map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap())).collect();
        assert_eq!(actions, [("report", "zhang"), ("photo_arrived", "system")], "{name}");
        assert_eq!(timeline[0]["from_state"], Value::Null, "{name}");
        assert_eq!(timeline[0]["to_state"], "reported", "{name}");
        let readable = admin.ok(&["timeline", &id.to_string()]);
        assert!(readable.starts_with("at "), "{name}: a header row: {readable}");
        let first = readable.lines().nth(1).unwrap();
        assert!(first.starts_with("20") && first.contains(" +08:00 report"), "{name}: a date and time in +08:00, not milliseconds: {readable}");
        assert!(admin.ok(&["timeline", &id.to_string(), "--utc"]).contains(" +00:00 report"), "{name}: --utc");
        let tokyo = admin.command().env("GRIDWORK_TIME_ZONE", "+09:00").args(["timeline", &id.to_string()]).output().unwrap();
        assert!(String::from_utf8_lossy(&tokyo.stdout).contains(" +09:00 report"), "{name}: GRIDWORK_TIME_ZONE");
        let nonsense = admin.command().env("GRIDWORK_TIME_ZONE", "Asia/Shanghai").args(["timeline", &id.to_string()]).output().unwrap();
        assert_eq!(nonsense.status.code(), Some(2), "{name}");
        assert!(String::from_utf8_lossy(&nonsense.stderr).contains("GRIDWORK_TIME_ZONE must be an offset"), "{name}");

        // 立案 and 派遣 from the command line, naming the case as the device
        // shows it (a unique prefix) or in full.
        let case_id = id.to_string();
        admin.fails(&["register", &case_id[..3]], "invalid_id");
        admin.fails(&["register", "ffff0000"], "not_found");
        assert_eq!(admin.ok(&["register", &case_id[..8], "--note", "立案"]).trim(), format!("{id} registered"), "{name}");
        admin.fails(&["dispatch", &case_id], "assignee_required");
        admin.fails(&["dispatch", &case_id, "--assignee", "nobody"], "unknown_assignee");
        let stderr = admin.fails(&["dispatch", &case_id, "--assignee", "wang", "--deadline", "soon"], "invalid_deadline");
        assert!(stderr.contains("24h") && stderr.contains("2026-11-30 18:00"), "{name}: the message shows the forms: {stderr}");
        admin.fails(&["dispatch", &case_id, "--assignee", "wang", "--deadline", "2020-01-01 08:00"], "deadline_in_past");
        let deadline = "1900000000000";
        let step = admin.json(&["dispatch", &case_id, "--assignee", "wang", "--deadline-ms", deadline, "--json"]);
        assert_eq!((step["id"].as_str(), step["state"].as_str()), (Some(case_id.as_str()), Some("dispatched")), "{name}: --json gives the case");
        let dispatched = admin.json(&["incidents", "list", "--json", "--state", "dispatched"]);
        assert_eq!(dispatched[0]["assignee"], "wang", "{name}");
        assert_eq!(dispatched[0]["deadline_ms"], 1_900_000_000_000i64, "{name}");
        assert_eq!(admin.json(&["incidents", "list", "--json", "--state", "reported"]), json!([]), "{name}");
        // Not handled yet: neither close nor reopen applies.
        admin.fails(&["close", &case_id], "invalid_transition");
        admin.fails(&["reopen", &case_id], "invalid_transition");
        admin.fails(&["register", &case_id], "invalid_transition");

        // The assignee works it on the phone.
        let server = admin.serve();
        let fixer = server.device("wang", FIXER_PASSWORD);
        assert_eq!(fixer.transition(id, json!({"action": "start"})).status(), 200, "{name}");
        let handled = fixer.transition(id, json!({"action": "handle", "note": "已拆除"}));
        assert_eq!(handled.status(), 200, "{name}");
        assert_eq!(handled.json::<Value>().unwrap()["state"], "handled", "{name}");
        server.stop();

        // 核查结案, then 返工.
        assert_eq!(admin.ok(&["close", &case_id, "--note", "核查通过"]).trim(), format!("{id} closed"), "{name}");
        assert_eq!(admin.json(&["incidents", "list", "--json"])[0]["state"], "closed", "{name}");
        assert_eq!(admin.ok(&["reopen", &case_id, "--note", "居民投诉复发"]).trim(), format!("{id} reopened"), "{name}");
        assert_eq!(admin.json(&["incidents", "list", "--json"])[0]["state"], "reopened", "{name}");
        admin.fails(&["close", &case_id], "invalid_transition");
        admin.fails(&["reject", &case_id, "--note", "x"], "invalid_transition");
        let no_note = admin.run(&["reject", &case_id]);
        assert!(!no_note.status.success(), "{name}: reject without --note is a usage error");

        let timeline = admin.json(&["timeline", &case_id, "--json"]);
        let steps: Vec<(&str, &str, &str, &str)> = timeline
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap(), e["from_state"].as_str().unwrap_or(""), e["to_state"].as_str().unwrap()))
            .collect();
        assert_eq!(
            steps,
            [
                ("report", "zhang", "", "reported"),
                ("photo_arrived", "system", "reported", "reported"),
                ("register", "cli", "reported", "registered"),
                ("dispatch", "cli", "registered", "dispatched"),
                ("start", "wang", "dispatched", "in_progress"),
                ("handle", "wang", "in_progress", "handled"),
                ("close", "cli", "handled", "closed"),
                ("reopen", "cli", "closed", "reopened"),
            ],
            "{name}"
        );
        assert_eq!(timeline[6]["note"], "核查通过", "{name}");
        assert_eq!(timeline[7]["note"], "居民投诉复发", "{name}");

        // 归档留痕: the chain an inspector takes away holds; an entry edited in
        // the database afterwards is named.
        let trail = admin.json(&["trail", &case_id, "--json"]);
        assert_eq!((trail["check"]["entries"].as_u64(), trail["check"]["broken_at"].as_i64()), (Some(8), None), "{name}: {trail}");
        let entries = trail["entries"].as_array().unwrap();
        assert_eq!(entries[1]["prev_hash"], entries[0]["hash"], "{name}");
        assert_eq!(trail["check"]["head"], entries[7]["hash"], "{name}");
        assert!(admin.ok(&["trail", &case_id]).contains("intact: 8 entries"), "{name}");
        let edited = entries[4]["seq"].as_i64().unwrap();
        let storage = gridwork_server::StorageConfig { data_dir: admin.dir.path().join("data"), database_url: admin.database_url.clone(), max_connections: 1 };
        let (db, _) = gridwork_server::open_storage(&storage).unwrap();
        db.write(|tx| tx.execute("UPDATE timeline SET actor = 'someone_else' WHERE seq = $1", gridwork_server::params![edited])).unwrap();
        let broken = admin.run(&["trail", &case_id]);
        assert_eq!(broken.status.code(), Some(1), "{name}");
        assert!(String::from_utf8_lossy(&broken.stdout).contains(&format!("BROKEN at entry {edited}")), "{name}");
        assert!(String::from_utf8_lossy(&broken.stderr).contains("(trail_broken)"), "{name}");
        assert_eq!(admin.json(&["incidents", "list", "--json"])[0]["version"], 8, "{name}: one version per step");

        // Wrong ids.
        let unknown = Uuid::now_v7().to_string();
        admin.fails(&["register", &unknown], "not_found");
        admin.fails(&["close", &unknown], "not_found");
        assert_eq!(admin.ok(&["deadline", "--category", "0602", "--hours", "24"]).trim(), "category 0602: 24 h to handle", "{name}");
        admin.fails(&["deadline", "--category", "9999", "--hours", "24"], "unknown_category");
        admin.fails(&["deadline", "--category", "0602", "--hours", "0"], "invalid_deadline");
        admin.fails(&["deadline", "--category", "0602", "--hours", "24", "--verify-hours", "0"], "invalid_deadline");
        assert_eq!(
            admin.ok(&["deadline", "--category", "0601", "--hours", "72", "--sign-hours", "2", "--verify-hours", "24"]).trim(),
            "category 0601: 2 h to sign, 72 h to handle, 24 h to verify",
            "{name}"
        );
        let categories = admin.json(&["category", "list", "--json"]);
        let limits = categories.as_array().unwrap().iter().find(|c| c["code"] == "0601").unwrap();
        assert_eq!((&limits["sign_hours"], &limits["handle_hours"], &limits["verify_hours"]), (&json!(2), &json!(72), &json!(24)), "{name}");
        assert!(admin.ok(&["category", "list"]).contains("2 h to sign  72 h to handle  24 h to verify"), "{name}");
        admin.fails(&["timeline", &unknown, "--json"], "not_found");
        admin.fails(&["register", "not-a-uuid"], "invalid_id");
        admin.fails(&["timeline", "not-a-uuid"], "invalid_id");
        assert_eq!(admin.json(&["incidents", "list", "--json"])[0]["state"], "reopened", "{name}: failures changed nothing");
    }
}

#[test]
fn the_data_folder_is_never_picked_silently() {
    let cwd = tempfile::tempdir().unwrap();
    let bare = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gridwork-server"));
        command.current_dir(cwd.path()).env_remove("GRIDWORK_DATABASE_URL").env_remove("GRIDWORK_SERVER_DATA").env("GRIDWORK_LOG", "warn");
        command
    };
    // No --data, no env, no database URL: refused, and nothing is created.
    let refused = bare().args(["incidents", "list"]).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--data DIR (or GRIDWORK_SERVER_DATA)") && stderr.contains("data_dir_missing"), "{stderr}");
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0, "no folder appeared");

    // From the environment, created with a note the first time only.
    let first = bare().env("GRIDWORK_SERVER_DATA", cwd.path().join("srv")).args(["init"]).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stderr).contains("creating a new server data folder at"), "says so");
    assert!(cwd.path().join("srv/gridwork-server.db").exists());
    let again = bare().env("GRIDWORK_SERVER_DATA", cwd.path().join("srv")).args(["incidents", "list"]).output().unwrap();
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("creating"), "an existing folder is just used");
}

#[test]
fn the_photo_policy_is_set_shown_and_cleared() {
    for backend in backends() {
        let admin = Admin::new(&backend);
        admin.ok(&["init"]);
        assert_eq!(admin.json(&["photo-policy", "--json"])["originals_withheld_from"], json!([]));
        let set = admin.json(&["photo-policy", "--withhold-originals-from", "volunteer", "--withhold-originals-from", "department", "--json"]);
        assert_eq!(set["originals_withheld_from"], json!(["volunteer", "department"]), "{}", admin.backend);
        assert!(admin.ok(&["photo-policy"]).contains("originals withheld from: volunteer, department"));
        admin.fails(&["photo-policy", "--withhold-originals-from", "mayor"], "invalid_role");
        assert_eq!(admin.json(&["photo-policy", "--json"])["originals_withheld_from"], json!(["volunteer", "department"]), "a refused change changes nothing");
        assert_eq!(admin.json(&["photo-policy", "--clear", "--json"])["originals_withheld_from"], json!([]));
    }
}

#[test]
fn serve_refuses_an_address_it_cannot_listen_on() {
    for backend in backends() {
        let admin = Admin::new(&backend);
        admin.ok(&["init"]);
        let server = admin.serve();
        let taken = server.base.trim_start_matches("http://").to_owned();
        let stderr = admin.fails(&["serve", "--listen", &taken], "listen_failed");
        assert!(!stderr.contains("panicked"), "{}: {stderr}", admin.backend);
        server.stop();
    }
}

#[test]
fn a_district_administers_users_grids_categories_and_cases() {
    for backend in backends() {
        let admin = Admin::new(&backend);
        let name = admin.backend;
        admin.ok(&["init"]);
        assert!(admin.ok(&["grid", "list"]).contains("no grids yet"), "{name}");
        admin.ok(&["grid", "import", path_str(&admin.file("grids.geojson", &two_grids_geojson()))]);
        let grids = admin.json(&["grid", "list", "--json"]);
        let codes: Vec<&str> = grids.as_array().unwrap().iter().map(|g| g["code"].as_str().unwrap()).collect();
        assert!(codes.contains(&"G-001") && codes.contains(&"G-002"), "{name}: {grids}");
        let categories = admin.json(&["category", "list", "--json"]);
        assert!(categories.as_array().unwrap().iter().any(|c| c["code"] == "0602" && c["name_zh"].as_str().is_some_and(|n| !n.is_empty())), "{name}");
        admin.ok(&["deadline", "--category", "06", "--hours", "48"]);
        assert!(admin.ok(&["category", "list"]).lines().any(|l| l.starts_with("06 ") && l.contains("48 h to handle")), "{name}");

        // Adding users: people read a line; grid workers need a grid; an
        // unknown grid is said (the user is still added: grids may come later).
        let added = admin.ok(&["user", "add", "--username", "zhang", "--password", WORKER_PASSWORD, "--role", "grid_worker", "--grid", "G-001"]);
        assert_eq!(added.trim(), "added zhang (grid_worker, grids G-001)", "{name}");
        admin.fails(&["user", "add", "--username", "li", "--password", WORKER_PASSWORD, "--role", "grid_worker"], "grid_required");
        let warned = admin.run(&["user", "add", "--username", "zhao", "--password", WORKER_PASSWORD, "--role", "volunteer", "--grid", "G-009"]);
        assert!(warned.status.success(), "{name}");
        assert!(String::from_utf8_lossy(&warned.stderr).contains("this server has no grid G-009"), "{name}");

        let users = admin.json(&["user", "list", "--json"]);
        let zhang = users.as_array().unwrap().iter().find(|u| u["username"] == "zhang").cloned().unwrap();
        assert_eq!((zhang["role"].as_str(), zhang["disabled"].as_bool()), (Some("grid_worker"), Some(false)), "{name}");

        // Disable: the phone's session ends and no new login; enable: back.
        let server = admin.serve();
        let phone = server.device("zhang", WORKER_PASSWORD);
        let (_, op) = report("0602", None, &[]);
        assert_eq!(phone.push_ok(&[op])[0]["status"], "applied", "{name}");
        admin.ok(&["user", "disable", "zhang"]);
        assert!(admin.ok(&["user", "list"]).lines().any(|l| l.starts_with("zhang") && l.contains("disabled")), "{name}");
        let login_status = |password: &str| {
            let fresh = Device { id: format!("dev-{}", Uuid::now_v7().simple()), base: server.base.clone(), client: reqwest::blocking::Client::new(), tokens: Default::default() };
            fresh.login("zhang", password).status().as_u16()
        };
        assert_eq!(phone.get("/v1/me").status(), 401, "{name}: the session ended");
        assert_eq!(login_status(WORKER_PASSWORD), 401, "{name}: no new login");
        admin.ok(&["user", "enable", "zhang"]);
        let phone = server.device("zhang", WORKER_PASSWORD);
        // A new password ends that session too; the new one works.
        admin.ok(&["user", "password", "zhang", "--password", "another-long-secret"]);
        assert_eq!(phone.get("/v1/me").status(), 401, "{name}");
        assert_eq!(login_status(WORKER_PASSWORD), 401, "{name}");
        server.device("zhang", "another-long-secret");
        admin.fails(&["user", "disable", "nobody"], "unknown_user");

        // One case, whole.
        let id = admin.json(&["incidents", "list", "--json"])[0]["id"].as_str().unwrap().to_owned();
        let shown = admin.ok(&["incidents", "show", &id]);
        assert!(shown.contains(&format!("case      {id}")) && shown.contains("state     reported") && shown.contains("reporter  zhang"), "{name}: {shown}");
        assert!(shown.contains(" +08:00 report"), "{name}: {shown}");
        assert_eq!(admin.json(&["incidents", "show", &id, "--json"])["id"].as_str(), Some(id.as_str()), "{name}");
        admin.fails(&["incidents", "show", &Uuid::now_v7().to_string()], "not_found");
        server.stop();
    }
}

#[test]
fn logs_mark_start_and_stop_readably_and_a_closed_pipe_is_not_a_panic() {
    let backend = backends().into_iter().next().unwrap();
    let admin = Admin::new(&backend);
    admin.ok(&["init"]);
    let server = admin.serve_with(&["--log-format", "human"], Some("info"));
    let (status, log) = server.interrupt();
    assert!(status.success());
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.first().is_some_and(|l| l.contains("serving")), "a line at start: {log}");
    assert!(lines.last().is_some_and(|l| l.contains("stopped")), "a line at shutdown: {log}");
    assert!(lines.iter().all(|l| !l.trim_start().starts_with('{')), "readable, not JSON: {log}");

    // `gridwork-server … | head`: the reader is gone before the first line.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = admin.command().arg("init").stdout(writer).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && !stderr.contains("panicked"), "{:?}: {stderr}", output.status);
    // `serve` with its stdout closed still serves: the address line is a
    // courtesy, and the log names the address too.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let log = admin.dir.path().join("closed-stdout.log");
    let child = admin
        .command()
        .env("GRIDWORK_LOG", "info")
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .stdout(writer)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let address = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("serving")) {
            let record: Value = serde_json::from_str(line).unwrap();
            break record["fields"]["address"].as_str().unwrap().to_owned();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "serve with a closed stdout did not start: {text}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(reqwest::blocking::get(format!("http://{address}/v1/health")).unwrap().status(), 200);
    let (status, _) = Serving { child, base: format!("http://{address}"), log }.interrupt();
    assert!(status.success());

    // A failure with --json is a JSON error on stdout.
    let failed = admin.run(&["incidents", "show", "nosuch", "--json"]);
    assert!(!failed.status.success());
    assert_eq!(serde_json::from_slice::<Value>(&failed.stdout).unwrap()["code"], "invalid_id");

    // Unknown states are refused, and times in the timeline read as times.
    let bogus = admin.run(&["incidents", "list", "--state", "bogus"]);
    assert!(!bogus.status.success() && String::from_utf8_lossy(&bogus.stderr).contains("unknown state; one of: reported"));
}

#[test]
fn serve_stops_cleanly_on_ctrl_c() {
    for backend in backends() {
        let admin = Admin::new(&backend);
        admin.ok(&["init"]);
        admin.ok(&["user", "add", "--username", "zhang", "--password", WORKER_PASSWORD, "--role", "grid_worker", "--grid", "G-001"]);
        let server = admin.serve();
        // Some traffic first, so connections are open when it stops.
        let phone = server.device("zhang", WORKER_PASSWORD);
        assert_eq!(phone.push_ok(&[report("0101", None, &[]).1])[0]["status"], "applied", "{}", admin.backend);
        let (status, log) = server.interrupt();
        assert!(!log.contains("panicked"), "{}: serve panicked on shutdown: {log}", admin.backend);
        assert!(status.success(), "{}: serve exits 0 on Ctrl-C, got {status}", admin.backend);
        assert_eq!(admin.json(&["incidents", "list", "--json"]).as_array().unwrap().len(), 1, "{}: the report survived", admin.backend);
    }
}

/// `user add` and `user password` without `--password`: asked for twice
/// on a terminal (a real pseudo-terminal, through `script`), refused when
/// the two differ, and a script with no terminal is told how instead of
/// left waiting.
#[test]
fn admin_passwords_are_asked_for_on_a_terminal() {
    use std::io::Write;
    let backend = backends().into_iter().next().unwrap();
    let admin = Admin::new(&backend);
    admin.ok(&["init"]);
    admin.fails(&["user", "add", "--username", "zhang", "--role", "volunteer"], "password_missing");
    assert!(admin.json(&["user", "list", "--json"]).as_array().unwrap().is_empty(), "nothing added");

    let on_terminal = |args: &str, typed: &str| {
        let command = admin.command();
        let line = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|a| format!("'{}'", a.to_str().unwrap()))
            .collect::<Vec<_>>()
            .join(" ");
        let mut script = Command::new("script")
            .args(["-qec", &format!("{line} {args}"), "/dev/null"])
            .env("GRIDWORK_LOG", "warn")
            .env_remove("GRIDWORK_PASSWORD")
            .env_remove("GRIDWORK_DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script (util-linux) runs a command on a pseudo-terminal");
        script.stdin.take().unwrap().write_all(typed.as_bytes()).unwrap();
        let output = script.wait_with_output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (status, shown) = on_terminal("user add --username zhang --role volunteer", "first-long-secret\nfirst-long-secret\n");
    assert_eq!(status, Some(0), "{shown}");
    assert!(shown.contains("new password for zhang: ") && shown.contains("the same again: ") && shown.contains("added zhang"), "{shown}");
    let (status, shown) = on_terminal("user password zhang", "second-long-secret\nsecond-long-secrex\n");
    assert_eq!(status, Some(1), "{shown}");
    assert!(shown.contains("the two passwords differ; nothing was changed (password_mismatch)"), "{shown}");

    let server = admin.serve();
    server.device("zhang", "first-long-secret");
    server.stop();
}

/// Every command and subcommand shows examples in its `--help`, and every
/// argument it takes has a help text.
#[test]
fn every_admin_command_has_examples_and_argument_help() {
    let help = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_gridwork-server")).args(args).arg("--help").output().unwrap();
        assert!(output.status.success(), "{args:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let commands_of = |text: &str| -> Vec<String> {
        text.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| *c != "help")
            .map(str::to_owned)
            .collect()
    };
    let top = commands_of(&help(&[]));
    assert!(top.len() >= 15, "{top:?}");
    let mut checked = 0;
    for command in &top {
        let text = help(&[command]);
        assert!(text.contains("Examples:\n  gridwork-server"), "`gridwork-server {command} --help` shows examples:\n{text}");
        let mut leaves = vec![(vec![command.clone()], text.clone())];
        for sub in commands_of(&text) {
            let text = help(&[command, &sub]);
            assert!(text.contains("Examples:\n  gridwork-server"), "`gridwork-server {command} {sub} --help` shows examples:\n{text}");
            leaves.push((vec![command.clone(), sub], text));
        }
        for (path, text) in leaves {
            // An argument line is "  <NAME>" or "  --flag <VALUE>" followed
            // by its help on the same or the next line.
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let trimmed = line.trim_start();
                let is_argument = line.starts_with("  ") && !line.starts_with("   ") && (trimmed.starts_with('<') || trimmed.starts_with("--") || trimmed.starts_with("-h"));
                if is_argument && !trimmed.contains("  ") {
                    let next = lines.get(i + 1).copied().unwrap_or("");
                    assert!(next.starts_with("          "), "{path:?}: `{trimmed}` has no help text:\n{text}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "{checked}");
}

/// A lost phone, found in `device list` and revoked by a prefix of its id:
/// its access token, its refresh token and a new login with the right
/// password are refused with `device_revoked`; the same user's other phone
/// and a new one work on; an unknown device fails; revoking twice is fine.
#[test]
fn a_lost_phone_is_revoked_from_the_command_line() {
    use gridwork_protocol::api;
    for backend in backends() {
        let admin = Admin::new(&backend);
        let name = admin.backend;
        admin.ok(&["init"]);
        admin.ok(&["grid", "import", path_str(&admin.file("grids.geojson", &two_grids_geojson()))]);
        admin.ok(&["user", "add", "--username", "zhang", "--password", WORKER_PASSWORD, "--role", "grid_worker", "--grid", "G-001"]);
        assert!(admin.ok(&["device", "list"]).contains("no devices yet"), "{name}");
        assert_eq!(admin.json(&["device", "list", "--json"]), json!([]), "{name}");

        let server = admin.serve();
        let lost = server.device("zhang", WORKER_PASSWORD);
        assert_eq!(lost.push_ok(&[report("0602", Some("G-001"), &[]).1])[0]["status"], "applied", "{name}");
        lost.pull_all(0);
        let refresh_token = lost.tokens.lock().unwrap().as_ref().unwrap().refresh_token.clone();
        let spare = server.device("zhang", WORKER_PASSWORD);

        // Listed: for scripts as JSON, for people as a table.
        let listed = admin.json(&["device", "list", "--json"]);
        let row = |listed: &Value, device: &str| listed.as_array().unwrap().iter().find(|d| d["device_id"] == device).cloned().unwrap_or_else(|| panic!("{name}: {device} in {listed}"));
        let before = row(&listed, &lost.id);
        assert_eq!((before["username"].as_str(), before["active"].as_bool()), (Some("zhang"), Some(true)), "{name}: {before}");
        assert_eq!(before["revoked_at_ms"], Value::Null, "{name}");
        assert!(before["first_sign_in_ms"].as_i64().is_some_and(|first| Some(first) == before["last_sign_in_ms"].as_i64()), "{name}: {before}");
        let table = admin.ok(&["device", "list"]);
        assert!(table.starts_with("device "), "{name}: a header row: {table}");
        let line = table.lines().find(|l| l.starts_with(&lost.id)).unwrap_or_else(|| panic!("{name}: {table}"));
        assert!(line.contains("zhang") && line.contains(" +08:00") && line.contains(" yes ") && line.trim_end().ends_with('-'), "{name}: {line}");

        // Naming the wrong device: non-zero exit, a code.
        admin.fails(&["device", "revoke", "no-such-phone"], "device_not_found");
        admin.fails(&["device", "revoke", "no-such-phone", "--json"], "device_not_found");
        admin.fails(&["device", "revoke", "dev-zhang-"], "device_ambiguous");

        let prefix = &lost.id[..lost.id.len() - 4];
        let said = admin.ok(&["device", "revoke", prefix]);
        assert!(said.starts_with(&format!("revoked device {} (last signed in by zhang)", lost.id)), "{name}: {said}");
        assert!(said.contains("wipes its local data"), "{name}: {said}");

        // The lost phone: push, pull, refresh and a new login all refused.
        let refused = |response: reqwest::blocking::Response, what: &str| {
            assert_eq!(response.status(), 401, "{name}: {what}");
            let body: Value = response.json().unwrap();
            assert_eq!(body["code"], api::DEVICE_REVOKED, "{name}: {what}: {body}");
            let message = body["message"].as_str().unwrap();
            assert!(!message.contains("zhang") && !message.contains(&lost.id), "{name}: {what}: {message}");
        };
        refused(lost.push(&[report("0602", Some("G-001"), &[]).1]), "push");
        refused(lost.get("/v1/pull?since=0"), "pull");
        let refresh = lost.client.post(format!("{}/v1/auth/refresh", server.base)).header(api::DEVICE_ID_HEADER, &lost.id).json(&json!({"refresh_token": refresh_token})).send().unwrap();
        refused(refresh, "refresh");
        let again = Device { id: lost.id.clone(), base: server.base.clone(), client: reqwest::blocking::Client::new(), tokens: Default::default() };
        refused(again.login("zhang", WORKER_PASSWORD), "login with the right password");

        // The same user on the spare phone, and on a new one, works on.
        assert_eq!(spare.get("/v1/me").status(), 200, "{name}");
        assert_eq!(spare.push_ok(&[report("0602", Some("G-001"), &[]).1])[0]["status"], "applied", "{name}");
        let new_phone = server.device("zhang", WORKER_PASSWORD);
        assert!(!new_phone.pull_all(0).0.is_empty(), "{name}: a new phone syncs");

        // Revoking again is fine: the first time is kept, and said.
        let revoked = admin.json(&["device", "list", "--json"]);
        let first = row(&revoked, &lost.id);
        assert_eq!(first["active"], false, "{name}: {first}");
        let revoked_at = first["revoked_at_ms"].as_i64().unwrap_or_else(|| panic!("{name}: {first}"));
        assert_eq!(row(&revoked, &spare.id)["revoked_at_ms"], Value::Null, "{name}: only the lost phone");
        assert_eq!(row(&revoked, &spare.id)["active"], true, "{name}");
        let twice = admin.json(&["device", "revoke", &lost.id, "--json"]);
        assert_eq!((twice["device_id"].as_str(), twice["revoked_at_ms"].as_i64()), (Some(lost.id.as_str()), Some(revoked_at)), "{name}: {twice}");
        assert!(admin.ok(&["device", "revoke", &lost.id]).contains("already revoked"), "{name}");
        let table = admin.ok(&["device", "list"]);
        let line = table.lines().find(|l| l.starts_with(&lost.id)).unwrap();
        assert!(line.contains(" no ") && line.trim_end().ends_with("+08:00"), "{name}: the revocation time: {line}");
        server.stop();
    }
}
