//! The real `gridwork` binary against a real in-process server: what a
//! script (or a person) sees.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use gridwork_tests::server::{LocalServer, PASSWORD, default_policy};
use gridwork_tests::{jpeg_bytes, scene, write_file};
use serde_json::Value;

const KEY: &str = "5f1c0e2d3b4a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// The binary with a clean environment and the test key.
fn gridwork(device: &Path) -> Command {
    let mut command = bare();
    command.arg("--device").arg(device).env("GRIDWORK_DEVICE_KEY", KEY);
    command
}

/// The binary with no key and no device configured.
fn bare() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gridwork"));
    command.env_remove("GRIDWORK_DEVICE_KEY").env_remove("GRIDWORK_DEVICE").env_remove("GRIDWORK_PASSWORD").env_remove("GRIDWORK_LOG");
    command
}

fn run<I, S>(mut command: Command, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    command.args(args).output().expect("run gridwork")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "exit {:?}\nstdout: {}\nstderr: {}", output.status.code(), stdout(&output), stderr(&output));
    output
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", stdout(output), stderr(output)))
}

/// A failing command with --json: non-zero exit and `{"code", "message"}` on stdout.
fn error_code(output: &Output) -> String {
    assert!(!output.status.success(), "expected failure, got: {}", stdout(output));
    let value = json(output);
    assert!(value["message"].as_str().is_some_and(|m| !m.is_empty()), "{value}");
    value["code"].as_str().expect("code").to_owned()
}

fn photo(dir: &Path, name: &str, seed: u32) -> std::path::PathBuf {
    write_file(dir, name, &jpeg_bytes(&scene(640, 480, seed), 85, None))
}

#[test]
fn login_report_offline_outbox_sync_and_list() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device = tempfile::tempdir().unwrap();
    let camera = tempfile::tempdir().unwrap();

    let login = ok(run(gridwork(device.path()), ["login", "--server", &server.url(), "--username", "worker1", "--password", PASSWORD]));
    assert!(stdout(&login).contains("worker1"), "{}", stdout(&login));
    let account = std::fs::read_to_string(device.path().join("current-account")).unwrap();
    assert_eq!(account.trim(), format!("worker1@{}", server.addr));

    // Capture with a photo; nothing leaves the device yet.
    let picture = photo(camera.path(), "hall.jpg", 3);
    let report = ok(run(
        gridwork(device.path()),
        [
            OsStr::new("report"),
            OsStr::new("--category"),
            OsStr::new("0602"),
            OsStr::new("--description"),
            OsStr::new("楼道堆物，堵塞消防通道"),
            OsStr::new("--lat"),
            OsStr::new("31.23"),
            OsStr::new("--lon"),
            OsStr::new("121.465"),
            OsStr::new("--photo"),
            picture.as_os_str(),
            OsStr::new("--json"),
        ],
    ));
    let report = json(&report);
    let id = report["id"].as_str().expect("id").to_owned();
    assert_eq!(report["status"], "submitted");
    assert_eq!(report["grid"], "G-001", "located offline in the grids the login's first sync fetched");
    assert_eq!(report["photos"].as_array().unwrap().len(), 1);
    let sha = report["photos"][0]["sha256"].as_str().unwrap().to_owned();
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 0, "queued, not sent");

    let outbox = json(&ok(run(gridwork(device.path()), ["outbox", "--json"])));
    assert_eq!(outbox["pending"], 2, "the report and its photo: {outbox}");
    let items = outbox["items"].as_array().unwrap();
    assert!(items.iter().all(|op| op["state"] == "pending"));
    assert!(items.iter().any(|op| op["entity_id"] == id.as_str()));
    let human = stdout(&ok(run(gridwork(device.path()), ["outbox"])));
    assert!(human.contains("2 pending"), "{human}");
    let rows: Vec<&str> = human.lines().skip(1).collect();
    assert!(rows[0].starts_with("seq ") && rows[0].contains("incident"), "a header row: {human}");
    for row in &rows[1..] {
        assert!(row.split_whitespace().any(|w| w.len() >= 8 && id.starts_with(w)), "the report and its photo upload name the incident: {human}");
    }

    let sync = json(&ok(run(gridwork(device.path()), ["sync", "--json"])));
    assert_eq!(sync["pushed"], 1, "{sync}");
    assert_eq!(sync["photos_uploaded"], 1, "{sync}");
    assert_eq!(sync["completed"], true, "{sync}");
    assert_eq!(sync["needs_login"], false);
    assert_eq!(sync["outbox"]["pending"], 0);
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 1);
    assert_eq!(server.photos(&id), vec![(sha, true)], "the photo arrived");

    let incidents = json(&ok(run(gridwork(device.path()), ["incidents", "--json"])));
    let list = incidents.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "reported", "pulled back from the server");
    assert_eq!(list[0]["grid"], "G-001");
    assert_eq!(list[0]["sync"]["state"], "synced");

    // Dispatch on the server comes back with the next sync.
    server.step(&id, "register", None);
    server.step(&id, "dispatch", Some("worker1"));
    let again = ok(run(gridwork(device.path()), ["sync"]));
    assert!(stdout(&again).contains("pulled"), "{}", stdout(&again));
    let shown = json(&ok(run(gridwork(device.path()), ["show", &id, "--json"])));
    assert_eq!(shown["status"], "dispatched");
    assert!(!shown["audit"].as_array().unwrap().is_empty());

    let status = json(&ok(run(gridwork(device.path()), ["status", "--json"])));
    assert_eq!(status["logged_in"], true);
    assert_eq!(status["user"]["username"], "worker1");
}

#[test]
fn report_prints_the_id_alone_on_stdout() {
    let device = tempfile::tempdir().unwrap();
    let output = ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "楼道堆物"]));
    let id = stdout(&output);
    assert!(gridwork_core::Uuid::parse_str(id.trim()).is_ok(), "{id:?}");
    assert!(stderr(&output).contains("queued"), "{}", stderr(&output));
}

#[test]
fn before_login_reports_queue_on_the_local_account() {
    let device = tempfile::tempdir().unwrap();
    ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "offline"]));
    let status = json(&ok(run(gridwork(device.path()), ["status", "--json"])));
    assert_eq!(status["account"], "local");
    assert_eq!(status["logged_in"], false);
    assert_eq!(status["outbox"]["pending"], 1);
    // Sync runs, sends nothing, says a login is needed, and exits 4.
    let sync = run(gridwork(device.path()), ["sync", "--json"]);
    assert_eq!(sync.status.code(), Some(4), "not signed in");
    let sync = json(&sync);
    assert_eq!(sync["outcome"], "not_signed_in");
    assert_eq!(sync["needs_login"], true);
    assert_eq!(sync["pushed"], 0);
    assert_eq!(sync["outbox"]["pending"], 1, "nothing dropped");
}

#[test]
fn the_first_login_takes_over_and_sends_what_was_captured_before() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device = tempfile::tempdir().unwrap();
    let camera = tempfile::tempdir().unwrap();
    let picture = photo(camera.path(), "wall.jpg", 11);

    // No account yet: the report (with a photo) and a draft wait under "local".
    let report = json(&ok(run(
        gridwork(device.path()),
        [
            OsStr::new("report"),
            OsStr::new("--category"),
            OsStr::new("0602"),
            OsStr::new("--description"),
            OsStr::new("公厕外墙开裂"),
            OsStr::new("--photo"),
            picture.as_os_str(),
            OsStr::new("--json"),
        ],
    )));
    let id = report["id"].as_str().unwrap().to_owned();
    let sha = report["photos"][0]["sha256"].as_str().unwrap().to_owned();
    let local_photos = device.path().join("accounts");
    assert_eq!(json(&ok(run(gridwork(device.path()), ["outbox", "--json"])))["pending"], 2);

    let login = ok(run(gridwork(device.path()), ["login", "--server", &server.url(), "--username", "worker1", "--password", PASSWORD]));
    let text = stdout(&login);
    assert!(text.contains("1 report(s) captured before sign-in (1 photo(s)) now belong to this account"), "{text}");
    assert!(!text.contains("remain under the account"), "{text}");

    // Sent by the login's first sync, photo included, under worker1.
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 1);
    assert_eq!(server.photos(&id), vec![(sha.clone(), true)], "the photo arrived");
    let shown = json(&ok(run(gridwork(device.path()), ["show", &id, "--json"])));
    assert_eq!(shown["status"], "reported", "{shown}");
    let actions: Vec<&str> = shown["audit"].as_array().unwrap().iter().filter_map(|a| a["action"].as_str()).collect();
    assert!(actions.contains(&"submitted"), "the trail moved along: {actions:?}");
    assert!(actions.contains(&"adopted"), "{actions:?}");

    // Nothing is left under "local", nor its copy of the photo.
    let local = json(&ok(run(gridwork(device.path()), ["--account", "local", "outbox", "--json"])));
    assert_eq!(local["pending"], 0, "{local}");
    let local_incidents = json(&ok(run(gridwork(device.path()), ["--account", "local", "incidents", "--json"])));
    assert_eq!(local_incidents.as_array().unwrap().len(), 0, "{local_incidents}");
    let copies = walk(&local_photos)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&sha) && !p.to_string_lossy().contains("renditions"))
        .count();
    assert_eq!(copies, 2, "one original and one thumbnail, in worker1's folder only");

    // A second login (another user) takes nothing: worker1's work is theirs.
    server.add_user("worker2", gridwork_protocol::api::Role::GridWorker, &["G-001"]);
    let second = ok(run(gridwork(device.path()), ["login", "--server", &server.url(), "--username", "worker2", "--password", PASSWORD, "--json"]));
    assert_eq!(json(&second)["adopted"]["incidents"], 0);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn drafts_left_by_an_interrupted_report_are_listed_submitted_or_discarded() {
    let device = tempfile::tempdir().unwrap();
    let camera = tempfile::tempdir().unwrap();
    // A report interrupted between its draft and its submit (the process
    // killed, say), and a draft without a category, as the core leaves them.
    let (complete, incomplete) = {
        let gw = gridwork_core::Gridwork::open(gridwork_core::GridworkConfig::new(device.path(), "local", hex::decode(KEY).unwrap())).unwrap();
        let fields = |category: Option<&str>, description: &str| gridwork_core::DraftFields {
            category_code: category.map(str::to_owned),
            description: description.to_owned(),
            ..Default::default()
        };
        let complete = gw.create_draft(fields(Some("0602"), "楼道堆物")).unwrap();
        gw.attach_photo(complete.id, &photo(camera.path(), "a.jpg", 4)).unwrap();
        let incomplete = gw.create_draft(fields(None, "还没选类别")).unwrap();
        (complete.id.to_string(), incomplete.id.to_string())
    };

    let listed = json(&ok(run(gridwork(device.path()), ["drafts", "--json"])));
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(ids.contains(&complete.as_str()) && ids.contains(&incomplete.as_str()));
    let human = stdout(&ok(run(gridwork(device.path()), ["incidents"])));
    assert!(human.contains("draft, not submitted") && !human.contains("synced"), "{human}");
    let header = human.lines().next().unwrap();
    assert!(header.starts_with("id") && header.contains("category") && header.contains("description"), "a header row: {human}");
    assert!(human.contains("0602 楼道堆物"), "the category's name beside its code: {human}");
    // Columns line up by display width: "description" starts where each row's description does.
    let at = header.find("description").unwrap();
    let row = human.lines().find(|l| l.contains("0602 楼道堆物")).unwrap();
    let description_at = row.rfind("楼道堆物").unwrap();
    assert_eq!(unicode_width::UnicodeWidthStr::width(&row[..description_at]), at, "{human}");

    let submitted = json(&ok(run(gridwork(device.path()), ["drafts", "submit", &complete, "--json"])));
    assert_eq!(submitted["status"], "submitted");
    assert_eq!(json(&ok(run(gridwork(device.path()), ["outbox", "--json"])))["pending"], 2, "the report and its photo");
    assert_eq!(error_code(&run(gridwork(device.path()), ["drafts", "submit", &incomplete, "--json"])), "incomplete");
    ok(run(gridwork(device.path()), ["drafts", "discard", &incomplete]));
    assert!(json(&ok(run(gridwork(device.path()), ["drafts", "--json"]))).as_array().unwrap().is_empty());
    assert!(stdout(&ok(run(gridwork(device.path()), ["drafts"]))).contains("no drafts"));

    // A report whose photo is refused leaves no draft behind, and what is
    // left is shown for what it is.
    let broken = write_file(camera.path(), "broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg");
    let failed = run(
        gridwork(device.path()),
        [OsStr::new("report"), OsStr::new("--category"), OsStr::new("0602"), OsStr::new("--photo"), broken.as_os_str()],
    );
    assert!(!failed.status.success());
    assert!(json(&ok(run(gridwork(device.path()), ["drafts", "--json"]))).as_array().unwrap().is_empty());
    let discarded = stdout(&ok(run(gridwork(device.path()), ["incidents", "--status", "discarded"])));
    assert!(discarded.contains("discarded, never sent") && !discarded.contains("synced"), "{discarded}");

    // 归档留痕: everything above left a chained trail that holds.
    let trail = json(&ok(run(gridwork(device.path()), ["trail", "--json"])));
    assert_eq!((trail["broken_at"].is_null(), trail["unsealed"].as_u64()), (true, Some(0)), "{trail}");
    assert!(trail["entries"].as_u64().unwrap() >= 4, "{trail}");
    assert!(stdout(&ok(run(gridwork(device.path()), ["trail"]))).starts_with("intact: "));
}

#[test]
fn a_missing_file_is_named_and_leaves_nothing_behind() {
    let device = tempfile::tempdir().unwrap();
    let missing = device.path().join("no-such-photo.jpg");
    let report = run(
        gridwork(device.path()),
        [OsStr::new("report"), OsStr::new("--category"), OsStr::new("0602"), OsStr::new("--photo"), missing.as_os_str()],
    );
    assert_eq!(report.status.code(), Some(1));
    assert!(stderr(&report).contains(&format!("no such file: {}", missing.display())), "{}", stderr(&report));
    assert!(stderr(&report).contains("(photo_file_not_found)"));
    let discarded = json(&ok(run(gridwork(device.path()), ["incidents", "--status", "discarded", "--json"])));
    assert!(discarded.as_array().unwrap().is_empty(), "checked before any row was made: {discarded}");
    let folder = run(gridwork(device.path()), [OsStr::new("import-grids"), device.path().as_os_str()]);
    assert!(!folder.status.success());
    let grids = run(gridwork(device.path()), [OsStr::new("import-grids"), missing.as_os_str()]);
    assert!(stderr(&grids).contains(&format!("no such file: {}", missing.display())), "{}", stderr(&grids));
}

#[test]
fn status_tells_the_truth_once_the_session_has_ended() {
    let server_dir = tempfile::tempdir().unwrap();
    let policy = gridwork_server::auth::TokenPolicy { access_ttl_ms: 1_000, refresh_ttl_ms: 3_000 };
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", policy);
    server.seed();
    let device = tempfile::tempdir().unwrap();
    ok(run(gridwork(device.path()), ["login", "--server", &server.url(), "--username", "worker1", "--password", PASSWORD]));
    // A refresh that works is not an auth error.
    std::thread::sleep(std::time::Duration::from_millis(1_300));
    ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "过期前"]));
    let refreshed = json(&ok(run(gridwork(device.path()), ["sync", "--json"])));
    assert_eq!((refreshed["pushed"].as_u64(), refreshed["errors"]["auth"].as_u64()), (Some(1), Some(0)), "{refreshed}");

    // Past the refresh token's life: status says so without asking the server.
    std::thread::sleep(std::time::Duration::from_millis(3_300));
    ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "过期后"]));
    let status = json(&ok(run(gridwork(device.path()), ["status", "--json"])));
    assert_eq!((status["logged_in"].as_bool(), status["session_ended"].as_bool()), (Some(false), Some(true)), "{status}");
    let human = stdout(&ok(run(gridwork(device.path()), ["status"])));
    assert!(human.contains("signed out (the session ended): sign in again with `gridwork login`; 1 item(s) wait"), "{human}");
    let sync = run(gridwork(device.path()), ["sync", "--json"]);
    assert_eq!(sync.status.code(), Some(5), "session ended: {}", stdout(&sync));
    assert_eq!(json(&sync)["outbox"]["pending"], 1, "nothing dropped");

    // A new login ends it; the waiting report goes.
    ok(run(gridwork(device.path()), ["login", "--server", &server.url(), "--username", "worker1", "--password", PASSWORD]));
    let status = json(&ok(run(gridwork(device.path()), ["status", "--json"])));
    assert_eq!((status["logged_in"].as_bool(), status["outbox"]["pending"].as_u64()), (Some(true), Some(0)), "{status}");
}

#[test]
fn a_lost_phone_is_revoked_and_its_unsent_work_exported_before_the_wipe() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device = tempfile::tempdir().unwrap();
    ok(run(gridwork(device.path()), ["login", "--server", &server.url(), "--username", "worker1", "--password", PASSWORD]));
    ok(run(gridwork(device.path()), ["sync"]));
    let device_id = server
        .db
        .read(|tx| Ok(tx.query_one("SELECT device_id FROM sessions ORDER BY created_at_ms DESC LIMIT 1", &[])?.text(0)))
        .unwrap();
    server.db.write(|tx| gridwork_server::admin::revoke_device(tx, &device_id, 1)).unwrap();
    ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "失主未发送"]));

    let sync = run(gridwork(device.path()), ["sync", "--json"]);
    assert_eq!(sync.status.code(), Some(8), "revoked: {}", stdout(&sync));
    assert_eq!(json(&sync)["outcome"], "device_revoked");
    let human = stdout(&run(gridwork(device.path()), ["sync"]));
    assert!(human.contains("gridwork logout --wipe --export DIR"), "{human}");

    // Never silently: the unsent report blocks a plain wipe.
    assert_eq!(error_code(&run(gridwork(device.path()), ["logout", "--wipe", "--json"])), "unsent_work");
    let refused = run(gridwork(device.path()), ["logout", "--wipe"]);
    assert!(stderr(&refused).contains("--export DIR"), "{}", stderr(&refused));
    let exports = tempfile::tempdir().unwrap();
    let wiped = json(&ok(run(gridwork(device.path()), [OsStr::new("logout"), OsStr::new("--wipe"), OsStr::new("--export"), exports.path().as_os_str(), OsStr::new("--json")])));
    assert_eq!(wiped["wiped"], true);
    let folder = std::path::PathBuf::from(wiped["exported_to"].as_str().unwrap());
    assert!(std::fs::read_to_string(folder.join("unsent.json")).unwrap().contains("失主未发送"));
    assert!(!walk(device.path()).iter().any(|p| p.ends_with("gridwork.db")), "the database is gone");
}

#[test]
fn a_report_without_coordinates_takes_them_from_the_photos_gps() {
    let device = tempfile::tempdir().unwrap();
    let camera = tempfile::tempdir().unwrap();
    let grids = write_file(camera.path(), "grids.geojson", gridwork_tests::two_grids_geojson().as_bytes());
    ok(run(gridwork(device.path()), [OsStr::new("import-grids"), grids.as_os_str()]));
    let spec = gridwork_tests::ExifSpec { gps: Some((31.23, 121.465)), ..Default::default() };
    let with_gps = write_file(camera.path(), "gps.jpg", &jpeg_bytes(&scene(640, 480, 21), 85, Some(&spec)));
    let report = run(
        gridwork(device.path()),
        [OsStr::new("report"), OsStr::new("--category"), OsStr::new("0602"), OsStr::new("--photo"), with_gps.as_os_str(), OsStr::new("--json")],
    );
    let value = json(&ok(report));
    assert_eq!(value["location_from"], "photo_exif", "{value}");
    assert_eq!(value["grid"], "G-001", "placed by the photo's position: {value}");
    assert!((value["location"]["lat"].as_f64().unwrap() - 31.23).abs() < 1e-6);
    let human = run(gridwork(device.path()), [OsStr::new("report"), OsStr::new("--category"), OsStr::new("0602"), OsStr::new("--photo"), with_gps.as_os_str()]);
    assert!(stderr(&ok(human)).contains("location taken from the photo's GPS (EXIF): 31.230000, 121.465000"));
    // Given coordinates win over the photo's.
    let given = json(&ok(run(
        gridwork(device.path()),
        [OsStr::new("report"), OsStr::new("--category"), OsStr::new("0602"), OsStr::new("--lat"), OsStr::new("31.23"), OsStr::new("--lon"), OsStr::new("121.475"), OsStr::new("--photo"), with_gps.as_os_str(), OsStr::new("--json")],
    )));
    assert_eq!((given["location_from"].as_str(), given["grid"].as_str()), (Some("arguments"), Some("G-002")));
}

#[test]
fn every_command_has_examples_completions_and_a_password_prompt() {
    let help = stdout(&ok(run(bare(), ["--help"])));
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 20 && commands.contains(&"completions"), "{help}");
    for command in &commands {
        let text = stdout(&ok(run(bare(), [command, "--help"])));
        assert!(text.contains("Examples:\n  gridwork"), "`gridwork {command} --help` shows examples:\n{text}");
    }
    let bash = stdout(&ok(run(bare(), ["completions", "bash"])));
    assert!(bash.contains("_gridwork()") && bash.contains("complete -F _gridwork"), "{bash}");
    assert!(stdout(&ok(run(bare(), ["completions", "fish"]))).contains("complete -c gridwork"));
    assert_eq!(run(bare(), ["completions", "tcsh"]).status.code(), Some(2));
    // Into a pipe whose reader has gone (`| head -1`): a quiet end, no panic.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let closed = bare().args(["completions", "bash"]).stdout(writer).stderr(std::process::Stdio::piped()).output().unwrap();
    assert_eq!(closed.status.code(), Some(0), "{}", stderr(&closed));
    assert!(stderr(&closed).is_empty(), "{}", stderr(&closed));

    // Wrong usage with --json: the whole of clap's message, not its first line.
    let missing = json(&run(gridwork(tempfile::tempdir().unwrap().path()), ["show", "--json"]));
    assert_eq!(missing["code"], "invalid_arguments");
    assert!(missing["message"].as_str().unwrap().contains("<ID>"), "{missing}");

    // No password and no terminal to ask on: told how, not left waiting.
    let device = tempfile::tempdir().unwrap();
    let login = gridwork(device.path()).args(["login", "--server", "http://127.0.0.1:9", "--username", "w1"]).stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(login.status.code(), Some(2));
    assert!(stderr(&login).contains("give --password or GRIDWORK_PASSWORD"), "{}", stderr(&login));
}

#[test]
fn ctrl_c_during_sync_keeps_what_was_sent_and_the_next_sync_resumes() {
    use gridwork_tests::proxy::{Fault, FaultConfig, Proxy};
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let proxy = Proxy::start(server.addr, 7, FaultConfig::none());
    let device = tempfile::tempdir().unwrap();
    let camera = tempfile::tempdir().unwrap();
    ok(run(gridwork(device.path()), ["login", "--server", &proxy.url(), "--username", "worker1", "--password", PASSWORD]));
    let (a, b) = (photo(camera.path(), "a.jpg", 31), photo(camera.path(), "b.jpg", 32));
    let id = stdout(&ok(run(
        gridwork(device.path()),
        [OsStr::new("report"), OsStr::new("--category"), OsStr::new("0602"), OsStr::new("--photo"), a.as_os_str(), OsStr::new("--photo"), b.as_os_str()],
    )))
    .trim()
    .to_owned();

    // The first photo's chunk takes its time on a poor link; Ctrl-C meanwhile.
    proxy.inject("PUT", "/chunks", Fault::Delay(std::time::Duration::from_secs(3)));
    let child = gridwork(device.path()).args(["sync"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Once the report is on the server, the sync is uploading (and its
    // Ctrl-C handler is in place).
    let started = std::time::Instant::now();
    while server.count("SELECT COUNT(*) FROM incidents") == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the sync never pushed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let signalled = Command::new("kill").args(["-s", "INT", &child.id().to_string()]).status().unwrap();
    assert!(signalled.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "stdout: {}\nstderr: {}", stdout(&output), stderr(&output));
    let said = stdout(&output);
    assert!(said.contains("interrupted: 1 operation(s)") && said.contains("the next `gridwork sync` resumes them"), "{said}");
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 1, "the report was sent and kept");

    // The next sync finishes the work: both photos arrive, each once.
    let finished = json(&ok(run(gridwork(device.path()), ["sync", "--json"])));
    assert_eq!(finished["outcome"], "complete", "{finished}");
    let photos = server.photos(&id);
    assert_eq!(photos.len(), 2);
    assert!(photos.iter().all(|(_, arrived)| *arrived), "{photos:?}");
}

#[test]
fn times_read_in_the_users_zone() {
    let device = tempfile::tempdir().unwrap();
    let id = stdout(&ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "时区"]))).trim().to_owned();
    let created = |out: &Output| stdout(out).lines().find(|l| l.starts_with("created")).map(str::to_owned).unwrap_or_default();
    let shown = ok(run(gridwork(device.path()), ["show", &id]));
    assert!(stdout(&shown).contains("category  0602 楼道堆物"), "the category's name beside its code: {}", stdout(&shown));
    let china = created(&shown);
    assert!(china.ends_with("+08:00") && china.len() == "created   2026-12-03 19:45 +08:00".len(), "{china}");
    assert!(created(&ok(run(gridwork(device.path()), ["show", &id, "--utc"]))).ends_with("+00:00"));
    let mut elsewhere = gridwork(device.path());
    elsewhere.env("GRIDWORK_TIME_ZONE", "-05:00");
    assert!(created(&ok(run(elsewhere, ["show", &id]))).ends_with("-05:00"));
    let mut nonsense = gridwork(device.path());
    nonsense.env("GRIDWORK_TIME_ZONE", "Mars/Olympus");
    let refused = run(nonsense, ["show", &id]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("like +08:00"), "{}", stderr(&refused));
    // JSON stays UTC for scripts.
    let shown = json(&ok(run(gridwork(device.path()), ["show", &id, "--json"])));
    assert!(shown["created_at"].as_str().unwrap().ends_with('Z'), "{shown}");
}

#[test]
fn ids_are_shown_short_and_taken_back_by_unique_prefix() {
    let device = tempfile::tempdir().unwrap();
    let a = stdout(&ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "第一件"]))).trim().to_owned();
    let b = stdout(&ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "第二件"]))).trim().to_owned();

    let outbox = stdout(&ok(run(gridwork(device.path()), ["outbox"])));
    let items = json(&ok(run(gridwork(device.path()), ["outbox", "--json"])));
    for op in items["items"].as_array().unwrap() {
        let op_id = op["op_id"].as_str().unwrap();
        let shown = outbox.split_whitespace().find(|w| op_id.starts_with(w) && w.len() >= 8).unwrap_or_else(|| panic!("{op_id} in {outbox}"));
        assert!(shown.len() < op_id.len(), "short: {outbox}");
    }
    let listed = stdout(&ok(run(gridwork(device.path()), ["incidents"])));
    let short_a = listed.split_whitespace().find(|w| a.starts_with(w) && w.len() >= 8).expect("a's short id");
    let shown = json(&ok(run(gridwork(device.path()), ["show", short_a, "--json"])));
    assert_eq!(shown["id"].as_str(), Some(a.as_str()));
    assert_eq!(json(&ok(run(gridwork(device.path()), ["show", &b.to_uppercase()[..13], "--json"])))["id"].as_str(), Some(b.as_str()));

    // Both were made this second: their first digits are the same time.
    assert_eq!(error_code(&run(gridwork(device.path()), ["show", &a[..6], "--json"])), "ambiguous_id");
    assert_eq!(error_code(&run(gridwork(device.path()), ["show", "019", "--json"])), "invalid_id");
    assert_eq!(error_code(&run(gridwork(device.path()), ["show", "ffffffff", "--json"])), "not_found");
}

#[test]
fn an_unknown_account_is_an_error_not_a_new_empty_store() {
    let device = tempfile::tempdir().unwrap();
    ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "x"]));
    let stores = || std::fs::read_dir(device.path().join("accounts")).unwrap().count();
    let before = stores();
    let unknown = run(gridwork(device.path()), ["--account", "nosuch@x:1", "incidents", "--json"]);
    assert_eq!(error_code(&unknown), "unknown_account");
    assert!(json(&unknown)["message"].as_str().unwrap().contains("`gridwork accounts` lists them"));
    assert_eq!(stores(), before, "no store was created");
    // "local" is always there.
    assert_eq!(json(&ok(run(gridwork(device.path()), ["--account", "local", "outbox", "--json"])))["pending"], 1);
}

#[test]
fn one_process_at_a_time_per_account_store() {
    let device = tempfile::tempdir().unwrap();
    ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "占道经营"]));
    let lock_path = std::fs::read_dir(device.path().join("accounts"))
        .unwrap()
        .map(|e| e.unwrap().path().join("gridwork.lock"))
        .find(|p| p.exists())
        .expect("the store's lock file (the core holds it while the store is open)");
    let pid: u32 = std::fs::read_to_string(&lock_path).unwrap().trim().parse().expect("the pid of the last holder");
    assert!(pid > 0);

    // Another process (a sync, say) holds the store: a clear refusal naming it.
    let holder = std::fs::OpenOptions::new().write(true).open(&lock_path).unwrap();
    holder.lock().unwrap();
    std::fs::write(&lock_path, "4242\n").unwrap();
    let busy = run(gridwork(device.path()), ["outbox", "--json"]);
    assert_eq!(error_code(&busy), "device_busy");
    assert!(json(&busy)["message"].as_str().unwrap().contains("another gridwork (pid 4242) is using this account"), "{}", stdout(&busy));
    let human = run(gridwork(device.path()), ["sync"]);
    assert_eq!(human.status.code(), Some(1));
    assert!(stderr(&human).contains("try again when it has finished (device_busy)"), "{}", stderr(&human));

    // Released (as when that process exits, even killed): work goes on, nothing lost.
    drop(holder);
    let outbox = json(&ok(run(gridwork(device.path()), ["outbox", "--json"])));
    assert_eq!(outbox["pending"], 1);
}

#[test]
fn accounts_are_partitioned() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device = tempfile::tempdir().unwrap();
    ok(run(gridwork(device.path()), ["login", "--server", &server.url(), "--username", "worker1", "--password", PASSWORD]));
    ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "worker's"]));
    ok(run(gridwork(device.path()), ["logout"]));
    ok(run(gridwork(device.path()), ["login", "--server", &server.url(), "--username", "volunteer1", "--password", PASSWORD]));
    let outbox = json(&ok(run(gridwork(device.path()), ["outbox", "--json"])));
    assert_eq!(outbox["pending"], 0, "the volunteer never sees the worker's unsent items");
    assert_eq!(json(&ok(run(gridwork(device.path()), ["incidents", "--json"]))).as_array().unwrap().len(), 0);
    let sync = json(&ok(run(gridwork(device.path()), ["sync", "--json"])));
    assert_eq!(sync["pushed"], 0);
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 0);
    let accounts = json(&ok(run(gridwork(device.path()), ["accounts", "--json"])));
    let worker = accounts.as_array().unwrap().iter().find(|a| a["account"].as_str().unwrap().starts_with("worker1@")).unwrap().clone();
    assert_eq!(worker["unsent"], 1);
    assert_eq!(worker["logged_in"], false);
    // The worker comes back: their report goes out under their own session,
    // with the first sync after the login.
    let login = json(&ok(run(gridwork(device.path()), ["login", "--server", &server.url(), "--username", "worker1", "--password", PASSWORD, "--json"])));
    assert_eq!(login["account"], format!("worker1@{}", server.addr));
    assert_eq!(login["user"]["role"], "grid_worker");
    assert_eq!(login["sync"]["pushed"], 1, "{login}");
    assert_eq!(server.count("SELECT COUNT(*) FROM incidents"), 1);
    let sync = json(&ok(run(gridwork(device.path()), ["sync", "--json"])));
    assert_eq!(sync["pushed"], 0, "once only: {sync}");
}

#[test]
fn wrong_password_and_unreachable_server() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let device = tempfile::tempdir().unwrap();
    let bad = run(gridwork(device.path()), ["login", "--server", &server.url(), "--username", "worker1", "--password", "nope nope nope", "--json"]);
    assert_eq!(error_code(&bad), "auth_failed");
    assert!(!device.path().join("current-account").exists(), "a failed login changes nothing");
    let insecure = run(gridwork(device.path()), ["login", "--server", "http://gridwork.example.org", "--username", "w", "--password", "p", "--json"]);
    assert_eq!(error_code(&insecure), "invalid_server_url");
    // Addresses that are wrong say what to write instead.
    let no_scheme = run(gridwork(device.path()), ["login", "--server", "127.0.0.1:8470", "--username", "w", "--password", "p"]);
    assert!(stderr(&no_scheme).contains("write https://127.0.0.1:8470 (or http://127.0.0.1:8470"), "{}", stderr(&no_scheme));
    let typo = run(gridwork(device.path()), ["login", "--server", "htp://127.0.0.1:8470", "--username", "w", "--password", "p"]);
    assert!(stderr(&typo).contains("unknown scheme \"htp\""), "{}", stderr(&typo));
    let dead = run(gridwork(device.path()), ["login", "--server", "http://127.0.0.1:9", "--username", "w", "--password", "p"]);
    assert!(stderr(&dead).contains("cannot reach http://127.0.0.1:9") && stderr(&dead).contains("check that the server is running"), "{}", stderr(&dead));

    // Logged in, a round with nothing left to do: 0. Then the server goes
    // away: sync exits 3 ("unreachable") and keeps everything.
    ok(run(gridwork(device.path()), ["login", "--server", &server.url(), "--username", "worker1", "--password", PASSWORD]));
    let complete = json(&ok(run(gridwork(device.path()), ["sync", "--json"])));
    assert_eq!((complete["outcome"].as_str(), complete["exit_status"].as_i64()), (Some("complete"), Some(0)));
    // The same server written another way is the same account and store.
    let account = std::fs::read_to_string(device.path().join("current-account")).unwrap();
    let port = server.addr.port();
    let again = json(&ok(run(
        gridwork(device.path()),
        ["login", "--server", &format!("http://localhost:{port}/v1/"), "--username", "worker1", "--password", PASSWORD, "--json"],
    )));
    assert_eq!(again["account"].as_str().unwrap(), account.trim());
    ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "x"]));
    server.stop();
    let sync = run(gridwork(device.path()), ["sync", "--json", "--budget-secs", "10"]);
    assert_eq!(sync.status.code(), Some(3), "unreachable: {}", stdout(&sync));
    let human = run(gridwork(device.path()), ["sync", "--budget-secs", "5"]);
    assert_eq!(human.status.code(), Some(3));
    let said = stdout(&human);
    assert!(said.contains(&format!("127.0.0.1:{port} could not be reached (check that the server is running")) && said.contains("nothing was lost"), "the address is named: {said}");
    let sync = json(&sync);
    assert_eq!(sync["outcome"], "unreachable");
    assert_eq!(sync["pushed"], 0);
    assert!(sync["errors"]["network"].as_u64().unwrap() > 0, "{sync}");
    assert_eq!(sync["outbox"]["pending"], 1);
}

#[test]
fn categories_list_the_device_table() {
    let device = tempfile::tempdir().unwrap();
    let categories = json(&ok(run(gridwork(device.path()), ["categories", "--json"])));
    let list = categories.as_array().unwrap();
    let clutter = list.iter().find(|c| c["code"] == "0602").expect("0602 in the table");
    assert_eq!(clutter["parent"], "06");
    assert_eq!(clutter["name_zh"], "楼道堆物");
    let human = stdout(&ok(run(gridwork(device.path()), ["categories"])));
    assert!(human.contains("0602") && human.contains("楼道堆物"), "{human}");
}

#[test]
fn errors_have_stable_codes() {
    let device = tempfile::tempdir().unwrap();
    let unknown = run(gridwork(device.path()), ["report", "--category", "9999", "--description", "x", "--json"]);
    assert_eq!(error_code(&unknown), "unknown_category");
    assert!(!stderr(&unknown).contains("error:"), "JSON errors go to stdout");

    // Without --json: "error: message (code)" on stderr, nothing on stdout.
    let plain = run(gridwork(device.path()), ["report", "--category", "9999", "--description", "x"]);
    assert!(!plain.status.success());
    assert!(plain.stdout.is_empty());
    let text = stderr(&plain);
    assert!(text.starts_with("error: ") && text.trim_end().ends_with("(unknown_category)"), "{text}");

    let missing = run(gridwork(device.path()), ["report", "--category", "0602", "--photo", "/nonexistent/p.jpg", "--json"]);
    assert_eq!(error_code(&missing), "photo_file_not_found");
    let half = run(gridwork(device.path()), ["report", "--category", "0602", "--lat", "31.2", "--json"]);
    assert_eq!(error_code(&half), "invalid_location");
    let far = run(gridwork(device.path()), ["report", "--category", "0602", "--lat", "123", "--lon", "1", "--json"]);
    assert_eq!(error_code(&far), "invalid_location");
    let nul = run(gridwork(device.path()), ["report", "--category", "0602", "--description", "a\u{1b}[31m", "--json"]);
    assert_eq!(error_code(&nul), "text_control_character");
    let empty = run(gridwork(device.path()), ["report", "--category", "0602", "--json"]);
    assert_eq!(error_code(&empty), "incomplete");
    let show = run(gridwork(device.path()), ["show", "not-an-id", "--json"]);
    assert_eq!(error_code(&show), "invalid_id");
    // Failed reports leave nothing behind.
    assert_eq!(json(&ok(run(gridwork(device.path()), ["incidents", "--json"]))).as_array().unwrap().len(), 0);
    assert_eq!(json(&ok(run(gridwork(device.path()), ["outbox", "--json"])))["pending"], 0);

    // Wrong usage follows the same contract with --json.
    let usage = run(gridwork(device.path()), ["report", "--json"]);
    assert_eq!(error_code(&usage), "invalid_arguments");
    assert_eq!(usage.status.code(), Some(2));
    let no_device = run(bare(), ["outbox", "--json"]);
    assert_eq!(error_code(&no_device), "invalid_arguments");
}

#[test]
fn invalid_utf8_arguments_give_a_code_not_a_panic() {
    let device = tempfile::tempdir().unwrap();
    let bad = OsStr::from_bytes(b"\xff\xfe broken");
    for args in [
        vec![OsStr::new("report"), OsStr::new("--category"), OsStr::new("0602"), OsStr::new("--description"), bad, OsStr::new("--json")],
        vec![OsStr::new("report"), OsStr::new("--category"), bad, OsStr::new("--json")],
        vec![OsStr::new("login"), OsStr::new("--server"), bad, OsStr::new("--username"), OsStr::new("u"), OsStr::new("--password"), OsStr::new("p"), OsStr::new("--json")],
    ] {
        let output = run(gridwork(device.path()), &args);
        assert_eq!(error_code(&output), "text_invalid_utf8");
        assert!(!stderr(&output).contains("panicked"));
    }
    let plain = run(gridwork(device.path()), [OsStr::new("report"), OsStr::new("--category"), OsStr::new("0602"), OsStr::new("--description"), bad]);
    assert!(!plain.status.success());
    assert!(stderr(&plain).contains("(text_invalid_utf8)"), "{}", stderr(&plain));
    assert!(!stderr(&plain).contains("panicked"));
}

#[test]
fn bad_keys_are_clear_errors() {
    let device = tempfile::tempdir().unwrap();
    for key in ["abc", &"g".repeat(64), &format!("{KEY}00")] {
        let mut command = bare();
        command.arg("--device").arg(device.path()).env("GRIDWORK_DEVICE_KEY", key);
        let output = run(command, ["outbox", "--json"]);
        assert_eq!(error_code(&output), "database_key_invalid");
        assert!(!stdout(&output).contains(key), "the key is never echoed");
    }
    let keys = tempfile::tempdir().unwrap();
    let bad_file = write_file(keys.path(), "bad.key", b"not hex at all\n");
    let output = run(bare(), [OsStr::new("--device"), device.path().as_os_str(), OsStr::new("--key-file"), bad_file.as_os_str(), OsStr::new("outbox"), OsStr::new("--json")]);
    assert_eq!(error_code(&output), "database_key_invalid");
    let missing = keys.path().join("missing.key");
    let output = run(bare(), [OsStr::new("--device"), device.path().as_os_str(), OsStr::new("--key-file"), missing.as_os_str(), OsStr::new("outbox"), OsStr::new("--json")]);
    assert_eq!(error_code(&output), "key_file_unreadable");

    // A well-formed key that is not this database's: refused, data untouched.
    ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "kept"]));
    let other = write_file(keys.path(), "other.key", format!("{}\n", "ab".repeat(32)).as_bytes());
    let output = run(bare(), [OsStr::new("--device"), device.path().as_os_str(), OsStr::new("--key-file"), other.as_os_str(), OsStr::new("outbox"), OsStr::new("--json")]);
    assert_eq!(error_code(&output), "database_wrong_key");
    let message = json(&output)["message"].as_str().unwrap().to_owned();
    assert!(message.contains(&format!("the key from the key file {}", other.display())), "{message}");
    let mut wrong_env = gridwork(device.path());
    wrong_env.env("GRIDWORK_DEVICE_KEY", "ab".repeat(32));
    let from_env = run(wrong_env, ["outbox", "--json"]);
    assert!(json(&from_env)["message"].as_str().unwrap().contains("the key from GRIDWORK_DEVICE_KEY"), "{}", stdout(&from_env));
    assert_eq!(json(&ok(run(gridwork(device.path()), ["outbox", "--json"])))["pending"], 1);
    // The right key from a file works as well as from the environment.
    let right = write_file(keys.path(), "right.key", KEY.as_bytes());
    let output = ok(run(bare(), [OsStr::new("--device"), device.path().as_os_str(), OsStr::new("--key-file"), right.as_os_str(), OsStr::new("outbox"), OsStr::new("--json")]));
    assert_eq!(json(&output)["pending"], 1);
}

#[test]
fn a_generated_key_is_owner_only_and_reused() {
    let root = tempfile::tempdir().unwrap();
    let device = root.path().join("phone");
    let first = ok(run(bare(), [OsStr::new("--device"), device.as_os_str(), OsStr::new("report"), OsStr::new("--category"), OsStr::new("0602"), OsStr::new("--description"), OsStr::new("x")]));
    assert!(stderr(&first).contains("development only"), "{}", stderr(&first));
    let key_file = device.join("device.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.trim().len(), 64);
    assert!(key.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    // The next run reuses it and opens the same database.
    let outbox = json(&ok(run(bare(), [OsStr::new("--device"), device.as_os_str(), OsStr::new("outbox"), OsStr::new("--json")])));
    assert_eq!(outbox["pending"], 1);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
}

#[test]
fn help_names_the_key_sources() {
    let help = stdout(&ok(run(bare(), ["--help"])));
    assert!(help.contains("GRIDWORK_DEVICE_KEY") && help.contains("--key-file"), "{help}");
    assert!(help.contains("development only"), "{help}");
    for command in ["login", "report", "categories", "outbox", "sync", "incidents", "demo"] {
        assert!(help.contains(command), "{command} in {help}");
    }
}

#[test]
fn demo_runs_the_whole_loop() {
    let output = ok(run(bare(), ["demo"]));
    let text = stdout(&output);
    for expected in [
        "gridwork-server listening on http://127.0.0.1:",
        "offline",
        "pushed 2 operation(s), uploaded 3 photo(s)",
        "dispatched",
        "handled on the phone",
        "4 of 5 stars",
        "report → register → dispatch → sign → start → handle → close",
        "5 of 5 photo(s) arrived",
        "Done in",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    let figures = json(&ok(run(bare(), ["demo", "--json"])));
    assert_eq!(figures["ok"], true);
    assert_eq!(figures["server_incidents"], 2);
    assert_eq!(figures["server_photos_arrived"], 3);
    assert_eq!(figures["sync"]["pushed"], 2);
    assert_eq!(figures["department_sync"]["pushed"], 3, "sign, start, handle");
    assert_eq!(figures["department_sync"]["photos_uploaded"], 1);
    assert_eq!(figures["reports"][0]["status"], "closed");
    assert_eq!(figures["reports"][1]["status"], "reported");
    assert_eq!(figures["rating"], 4);
}

/// Privacy: the logs of a whole demo run, at the most detailed level and
/// from every crate (the core, the in-process server, the HTTP stack), hold
/// none of what the run handled: report text, addresses, places, user
/// names, the password, tokens, keys.
#[test]
fn a_demo_run_logs_no_personal_data_or_secrets() {
    let mut traced = bare();
    traced.env("GRIDWORK_LOG", "trace");
    let output = run(traced, ["demo", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let logs = stderr(&output);
    assert!(logs.lines().count() > 50 && logs.contains("sync: pushed") && logs.contains("route=/v1/push"), "the run logged: {logs}");
    assert!(!logs.contains('\u{1b}'), "no colour codes when stderr is not a terminal");
    for marker in [
        "楼道", "纸箱", "飞线充电", "南京东路", // report text and addresses
        "31.23", "121.4", // the reports' places
        "zhang.wei", "sanitation", // user names
        "demo-", "password", // the demo's password ("demo-" and 16 hex digits), or one spelled out
        "gwa_", "gwr_", "Bearer", "authorization", // tokens
        "PRAGMA key", "x'", // the database key
    ] {
        assert!(!logs.contains(marker), "{marker:?} in the logs:\n{}", logs.lines().filter(|l| l.contains(marker)).collect::<Vec<_>>().join("\n"));
    }
}

/// A case reported by worker1, registered and dispatched to the department
/// `sanitation` by the command center; returns its id.
fn dispatched_case(server: &LocalServer, worker: &Path) -> String {
    let id = stdout(&ok(run(gridwork(worker), ["report", "--category", "0602", "--description", "公厕墙体开裂", "--lat", "31.23", "--lon", "121.465"])))
        .trim()
        .to_owned();
    ok(run(gridwork(worker), ["sync"]));
    assert_eq!(server.step(&id, "register", None), "registered");
    assert_eq!(server.step(&id, "dispatch", Some("sanitation")), "dispatched");
    id
}

#[test]
fn tasks_are_worked_and_verified_from_the_terminal() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    server.add_user("sanitation", gridwork_protocol::api::Role::Department, &[]);
    let (worker, department, camera) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, user) in [(&worker, "worker1"), (&department, "sanitation")] {
        ok(run(gridwork(dir.path()), ["login", "--server", &server.url(), "--username", user, "--password", PASSWORD]));
    }
    let id = dispatched_case(&server, worker.path());

    // The department's list, for scripts and for people.
    ok(run(gridwork(department.path()), ["sync"]));
    let tasks = json(&ok(run(gridwork(department.path()), ["tasks", "--json"])));
    assert_eq!(tasks.as_array().unwrap().len(), 1, "{tasks}");
    assert_eq!((tasks[0]["id"].as_str(), tasks[0]["kind"].as_str(), tasks[0]["state"].as_str()), (Some(id.as_str()), Some("handle"), Some("dispatched")));
    let human = stdout(&ok(run(gridwork(department.path()), ["tasks"])));
    assert!(human.lines().next().unwrap().starts_with("id"), "a header row: {human}");
    // People see a short id (a unique prefix) and can type it back.
    let short = human.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert!(short.len() >= 8 && short.len() < id.len() && id.starts_with(&short), "{human}");
    assert!(human.contains("公厕墙体开裂"), "{human}");
    assert!(json(&ok(run(gridwork(department.path()), ["tasks", "--kind", "verify", "--json"]))).as_array().unwrap().is_empty());

    // Steps, offline-first: each shows its new state at once and waits for sync.
    let signed = json(&ok(run(gridwork(department.path()), ["task", "sign", &short, "--json"])));
    assert_eq!(signed["id"].as_str(), Some(id.as_str()), "the short id named the case");
    assert_eq!((signed["status"].as_str(), signed["sync"]["state"].as_str()), (Some("signed"), Some("unsent")));
    assert_eq!(error_code(&run(gridwork(department.path()), ["task", "handle", &id, "--json"])), "note_required");
    let after = photo(camera.path(), "after.jpg", 11);
    let handled = ok(run(
        gridwork(department.path()),
        [OsStr::new("task"), OsStr::new("handle"), OsStr::new(&id), OsStr::new("--note"), OsStr::new("已修补"), OsStr::new("--photo"), after.as_os_str()],
    ));
    assert!(stdout(&handled).contains("now handled"), "{}", stdout(&handled));
    let sync = json(&ok(run(gridwork(department.path()), ["sync", "--json"])));
    assert_eq!((sync["pushed"].as_u64(), sync["photos_uploaded"].as_u64()), (Some(2), Some(1)), "{sync}");
    assert_eq!(server.step_state(id.parse().unwrap()), "handled");

    // The grid worker verifies it: a pass needs a rating; the handler may not verify.
    ok(run(gridwork(worker.path()), ["sync"]));
    let verify = json(&ok(run(gridwork(worker.path()), ["tasks", "--kind", "verify", "--json"])));
    assert_eq!(verify[0]["id"].as_str(), Some(id.as_str()), "{verify}");
    let usage = run(gridwork(worker.path()), ["task", "verify", &id, "--pass"]);
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));
    assert_eq!(error_code(&run(gridwork(department.path()), ["task", "verify", &id, "--pass", "--rating", "5", "--json"])), "step_not_allowed");
    let onsite = photo(camera.path(), "onsite.jpg", 12);
    ok(run(
        gridwork(worker.path()),
        [
            OsStr::new("task"),
            OsStr::new("verify"),
            OsStr::new(&id),
            OsStr::new("--pass"),
            OsStr::new("--rating"),
            OsStr::new("2"),
            OsStr::new("--note"),
            OsStr::new("施工粗糙"),
            OsStr::new("--photo"),
            onsite.as_os_str(),
        ],
    ));
    ok(run(gridwork(worker.path()), ["sync"]));
    assert_eq!(server.step_state(id.parse().unwrap()), "closed");

    // `show` tells the whole case: rating, every photo, the timeline.
    let shown = json(&ok(run(gridwork(worker.path()), ["show", &id, "--json"])));
    assert_eq!(shown["case"]["rating"], 2, "{shown}");
    let roles: Vec<&str> = shown["case"]["photos"].as_array().unwrap().iter().map(|p| p["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["after", "verification"]);
    let actions: Vec<&str> = shown["case"]["timeline"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).filter(|a| !a.ends_with("_arrived")).collect();
    assert_eq!(actions, ["report", "register", "dispatch", "sign", "handle", "close"]);
    let human = stdout(&ok(run(gridwork(worker.path()), ["task", "show", &id])));
    assert!(human.contains("★★☆☆☆") && human.contains("施工粗糙"), "{human}");

    // The department's after-photo (photo 1 as `show` lists it), full size on the worker's phone.
    assert!(human.contains("  photo 1    after"), "{human}");
    let fetched = json(&ok(run(gridwork(worker.path()), ["photo", &id, "1", "--size", "original", "--json"])));
    assert_eq!(std::fs::read(fetched["path"].as_str().unwrap()).unwrap(), std::fs::read(&after).unwrap());
    let path = stdout(&ok(run(gridwork(worker.path()), ["photo", &short, "1"])));
    assert!(path.trim().ends_with("-1280.jpg") && std::path::Path::new(path.trim()).is_file(), "{path}");
    assert_eq!(run(gridwork(worker.path()), ["photo", &id, "3"]).status.code(), Some(2), "there are two photos");
    assert_eq!(run(gridwork(worker.path()), ["photo", &id, "1", "--size", "640"]).status.code(), Some(2));

    // 统计 on the device, for the grid and for a person.
    let grid = json(&ok(run(gridwork(worker.path()), ["stats", "--grid", "G-001", "--json"])));
    assert_eq!((grid["reported"].as_u64(), grid["closed"].as_u64(), grid["average_rating"].as_f64()), (Some(1), Some(1), Some(2.0)), "{grid}");
    ok(run(gridwork(department.path()), ["sync"]));
    let mine = json(&ok(run(gridwork(department.path()), ["stats", "--json"])));
    assert_eq!((mine["user"].as_str(), mine["handled"].as_u64()), (Some("sanitation"), Some(1)), "{mine}");
    let human = stdout(&ok(run(gridwork(worker.path()), ["stats", "--grid", "G-001"])));
    assert!(human.contains("average rating    2.0 of 5 (1 rated)"), "{human}");
}

#[test]
fn sync_exit_statuses_tell_refused_and_unfinished_rounds_apart() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let (volunteer, worker) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, user) in [(&volunteer, "volunteer1"), (&worker, "worker1")] {
        ok(run(gridwork(dir.path()), ["login", "--server", &server.url(), "--username", user, "--password", PASSWORD]));
    }
    let id = stdout(&ok(run(gridwork(volunteer.path()), ["report", "--category", "0602", "--description", "井盖松动", "--lat", "31.23", "--lon", "121.465"])));
    let id = id.trim().to_owned();
    ok(run(gridwork(volunteer.path()), ["sync"]));
    ok(run(gridwork(worker.path()), ["sync"]));

    // The command center registers the report first; the worker, offline,
    // rejects it. Their sync is refused: exit 6, the step parked.
    server.step(&id, "register", None);
    ok(run(gridwork(worker.path()), ["review", "reject", &id, "--note", "重复上报"]));
    let refused = run(gridwork(worker.path()), ["sync", "--json"]);
    assert_eq!(refused.status.code(), Some(6), "{}", stdout(&refused));
    let refused = json(&refused);
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(refused["outbox"]["parked"], 1, "{refused}");

    // A round with no time: not finished, exit 7; the next one completes.
    ok(run(gridwork(volunteer.path()), ["report", "--category", "0602", "--description", "路灯不亮"]));
    let unfinished = run(gridwork(volunteer.path()), ["sync", "--budget-secs", "0", "--json"]);
    assert_eq!(unfinished.status.code(), Some(7), "{}", stdout(&unfinished));
    assert_eq!(json(&unfinished)["outcome"], "unfinished");
    assert_eq!(json(&ok(run(gridwork(volunteer.path()), ["sync", "--json"])))["outcome"], "complete");

    let help = stdout(&ok(run(bare(), ["sync", "--help"])));
    for status in ["3  the server could not be reached", "4  not signed in", "5  the session ended", "6  the server refused", "7  the round did not finish"] {
        assert!(help.contains(status), "{help}");
    }
}

#[test]
fn the_review_queue_from_the_terminal() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let (volunteer, worker) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, user) in [(&volunteer, "volunteer1"), (&worker, "worker1")] {
        ok(run(gridwork(dir.path()), ["login", "--server", &server.url(), "--username", user, "--password", PASSWORD]));
    }
    let report = |description: &str| {
        let id = stdout(&ok(run(gridwork(volunteer.path()), ["report", "--category", "0602", "--description", description, "--lat", "31.23", "--lon", "121.465"])));
        id.trim().to_owned()
    };
    let (first, second) = (report("消防通道被占用"), report("楼道有异味"));
    ok(run(gridwork(volunteer.path()), ["sync"]));

    ok(run(gridwork(worker.path()), ["sync"]));
    let queue = json(&ok(run(gridwork(worker.path()), ["review", "list", "--json"])));
    let ids: Vec<&str> = queue.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()], "oldest first: {queue}");
    assert!(queue.as_array().unwrap().iter().all(|t| t["kind"] == "review" && t["reporter"] == "volunteer1"), "{queue}");

    let approved = json(&ok(run(gridwork(worker.path()), ["review", "approve", &first, "--note", "现场核实属实", "--json"])));
    assert_eq!(approved["status"], "registered");
    assert_eq!(error_code(&run(gridwork(worker.path()), ["review", "ask", &second, "--json"])), "note_required");
    ok(run(gridwork(worker.path()), ["review", "ask", &second, "--note", "请补充照片"]));
    ok(run(gridwork(worker.path()), ["sync"]));
    assert_eq!(server.step_state(first.parse().unwrap()), "registered");

    ok(run(gridwork(volunteer.path()), ["sync"]));
    let asked = json(&ok(run(gridwork(volunteer.path()), ["tasks", "--kind", "answer", "--json"])));
    assert_eq!((asked[0]["id"].as_str(), asked[0]["note"].as_str()), (Some(second.as_str()), Some("请补充照片")), "{asked}");
    ok(run(gridwork(volunteer.path()), ["task", "answer", &second, "--note", "3号楼后门"]));
    ok(run(gridwork(volunteer.path()), ["sync"]));
    ok(run(gridwork(worker.path()), ["sync"]));
    ok(run(gridwork(worker.path()), ["review", "reject", &second, "--note", "已自行清理"]));
    ok(run(gridwork(worker.path()), ["sync"]));
    ok(run(gridwork(volunteer.path()), ["sync"]));
    let shown = json(&ok(run(gridwork(volunteer.path()), ["show", &second, "--json"])));
    assert_eq!(shown["status"], "rejected");
    let reject = shown["case"]["timeline"].as_array().unwrap().iter().rfind(|e| e["action"] == "reject").cloned().unwrap();
    assert_eq!((reject["note"].as_str(), reject["actor"].as_str()), (Some("已自行清理"), Some("worker1")), "the reporter reads why");

    // Corrected and sent again, linked to the rejected report.
    let again = json(&ok(run(gridwork(volunteer.path()), ["resubmit", &second, "--description", "楼道异味来自3号楼后门垃圾桶", "--json"])));
    assert_eq!((again["status"].as_str(), again["resubmission_of"].as_str()), (Some("submitted"), Some(second.as_str())), "{again}");
    ok(run(gridwork(volunteer.path()), ["sync"]));
    assert_eq!(server.step_state(again["id"].as_str().unwrap().parse().unwrap()), "pending_review");
    assert_eq!(error_code(&run(gridwork(volunteer.path()), ["resubmit", &first, "--json"])), "invalid_state", "not rejected");
}

#[test]
fn a_report_resolved_on_the_spot_goes_to_verification() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let (worker, camera) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    ok(run(gridwork(worker.path()), ["login", "--server", &server.url(), "--username", "worker1", "--password", PASSWORD]));
    let (before, after) = (photo(camera.path(), "before.jpg", 51), photo(camera.path(), "after.jpg", 52));
    let usage = run(gridwork(worker.path()), ["report", "--category", "0602", "--resolved", "已清理"]);
    assert_eq!(usage.status.code(), Some(2), "--resolved needs an --after photo: {}", stderr(&usage));
    let report = json(&ok(run(
        gridwork(worker.path()),
        [
            OsStr::new("report"),
            OsStr::new("--category"),
            OsStr::new("0602"),
            OsStr::new("--description"),
            OsStr::new("楼道纸箱"),
            OsStr::new("--photo"),
            before.as_os_str(),
            OsStr::new("--after"),
            after.as_os_str(),
            OsStr::new("--resolved"),
            OsStr::new("已当场清理"),
            OsStr::new("--json"),
        ],
    )));
    let id = report["id"].as_str().unwrap().to_owned();
    assert_eq!(report["photos"].as_array().unwrap().len(), 2);
    ok(run(gridwork(worker.path()), ["sync"]));
    assert_eq!(server.step_state(id.parse().unwrap()), "handled", "not dispatched: verified next");
}

/// `gridwork ARGS` on a real pseudo-terminal (through util-linux
/// `script`), with `env` added: what the person sees, stdout and stderr.
fn on_terminal(device: &Path, args: &str, env: &[(&str, &str)]) -> String {
    let line = format!("'{}' --device '{}' {args}", env!("CARGO_BIN_EXE_gridwork"), device.display());
    let mut command = Command::new("script");
    command.args(["-qec", &line, "/dev/null"]).env("GRIDWORK_DEVICE_KEY", KEY).env_remove("NO_COLOR").env_remove("GRIDWORK_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.stdin(std::process::Stdio::null()).output().expect("script (util-linux) runs a command on a pseudo-terminal");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn colours_only_on_a_terminal_and_never_with_no_color() {
    let device = tempfile::tempdir().unwrap();
    ok(run(gridwork(device.path()), ["report", "--category", "0602", "--description", "楼道里堆满了纸箱"]));
    let coloured = on_terminal(device.path(), "incidents", &[]);
    assert!(coloured.contains("\x1b[33munsent (1 queued)\x1b[0m"), "{coloured:?}");
    // Aligned by what shows: the description starts in the same column on
    // the header row and the coloured row.
    let plain: Vec<String> = coloured.lines().map(|l| l.replace("\x1b[33m", "").replace("\x1b[0m", "")).collect();
    let column = |line: &str, word: &str| unicode_width::UnicodeWidthStr::width(&line[..line.find(word).unwrap()]);
    assert_eq!(column(&plain[0], "description"), column(&plain[1], "楼道里"), "{plain:?}");
    let error = on_terminal(device.path(), "show ffffffff", &[]);
    assert!(error.contains("\x1b[31merror:\x1b[0m"), "{error:?}");

    for (env, why) in [(&[("NO_COLOR", "1")][..], "NO_COLOR"), (&[][..], "--json")] {
        let args = if why == "--json" { "incidents --json" } else { "incidents" };
        let text = on_terminal(device.path(), args, env);
        assert!(!text.contains('\x1b') && text.contains("unsent"), "{why}: {text:?}");
    }
    let piped = stdout(&ok(run(gridwork(device.path()), ["incidents"])));
    assert!(!piped.contains('\x1b') && piped.contains("unsent (1 queued)"), "{piped:?}");
}

/// On a terminal, long work shows how far it has got on one redrawn line
/// of stderr: storing the photos of a report, then a sync's position in a
/// photo with its rate and what was sent and pulled; with `--json` nothing
/// of the kind.
#[test]
fn long_work_shows_its_progress_on_a_terminal() {
    use gridwork_tests::proxy::{Fault, FaultConfig, Proxy};
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let proxy = Proxy::start(server.addr, 11, FaultConfig::none());
    let device = tempfile::tempdir().unwrap();
    let camera = tempfile::tempdir().unwrap();
    ok(run(gridwork(device.path()), ["login", "--server", &proxy.url(), "--username", "worker1", "--password", PASSWORD]));
    let big = write_file(camera.path(), "big.jpg", &jpeg_bytes(&scene(3000, 2000, 7), 97, None));
    let small = photo(camera.path(), "small.jpg", 8);
    let report = on_terminal(device.path(), &format!("report --category 0602 --photo '{}' --photo '{}'", big.display(), small.display()), &[]);
    assert!(report.contains("checking and storing photo 2 of 2…"), "{report:?}");

    // The second chunk of the photo waits on a poor link: the line shows
    // where the upload stands meanwhile.
    proxy.inject_nth("PUT", "/chunks", 1, Fault::Delay(std::time::Duration::from_millis(1500)));
    let sync = on_terminal(device.path(), "sync", &[]);
    let lines: Vec<&str> = sync.split(['\r', '\n']).filter(|l| l.contains("syncing: ")).collect();
    assert!(lines.iter().any(|l| l.contains("; photo ") && !l.contains("; photo 0 B") && l.contains(" MiB at ") && l.ends_with("/s")), "where the upload stands, and its rate: {lines:?}");
    assert!(sync.contains("round complete"), "{sync:?}");

    ok(run(gridwork(device.path()), ["report", "--category", "0602", "--photo", big.to_str().unwrap()]));
    proxy.inject_nth("PUT", "/chunks", 1, Fault::Delay(std::time::Duration::from_millis(1500)));
    let quiet = on_terminal(device.path(), "sync --json", &[]);
    assert!(!quiet.contains("syncing:") && quiet.contains("\"outcome\""), "{quiet:?}");
}

/// Ctrl-C while `report` stores its photos: the photo in hand is finished,
/// then the command stops, says nothing was queued, and leaves no draft or
/// operation behind (exit 130), as a failed report does.
#[test]
fn ctrl_c_during_report_queues_nothing_and_says_so() {
    let device = tempfile::tempdir().unwrap();
    let camera = tempfile::tempdir().unwrap();
    let photos: Vec<std::path::PathBuf> =
        (0..6).map(|n| write_file(camera.path(), &format!("p{n}.jpg"), &jpeg_bytes(&scene(3000, 2000, 40 + n), 95, None))).collect();
    // The device folder exists first, so the command starts quickly.
    ok(run(gridwork(device.path()), ["outbox"]));
    let mut command = gridwork(device.path());
    command.args(["report", "--category", "0602"]);
    for photo in &photos {
        command.arg("--photo").arg(photo);
    }
    let child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(Command::new("kill").args(["-s", "INT", &child.id().to_string()]).status().unwrap().success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert!(stderr(&output).contains("interrupted: nothing was queued"), "{}", stderr(&output));
    assert!(stdout(&output).is_empty(), "no id printed: {}", stdout(&output));
    let outbox = json(&ok(run(gridwork(device.path()), ["outbox", "--json"])));
    assert_eq!(outbox["pending"], 0, "{outbox}");
    assert_eq!(json(&ok(run(gridwork(device.path()), ["drafts", "--json"]))), serde_json::json!([]));
}
