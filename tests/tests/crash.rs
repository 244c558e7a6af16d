//! Crash test: a child process captures incidents with photos in a loop and
//! reports each acknowledged id; we SIGKILL it at random moments, many
//! times. Every acknowledged incident and its photo must survive intact,
//! the database must pass `PRAGMA integrity_check`, and no orphan file may
//! remain after the sweep.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use gridwork_core::{IncidentStatus, Uuid};
use gridwork_tests::*;
use rand::Rng;

const RUNS: u32 = 30;

#[test]
fn sigkill_during_capture_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let photo_dir = tempfile::tempdir().unwrap();
    for seed in 0..6 {
        // Mid-size photos so kills land inside ingest, not only around it.
        let bytes = jpeg_bytes(&scene(1600 + seed * 8, 1200, seed), 88, None);
        write_file(photo_dir.path(), &format!("p{seed}.jpg"), &bytes);
    }
    let child_bin = env!("CARGO_BIN_EXE_crash_capture_child");
    let seed: u64 = std::env::var("GRIDWORK_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("crash test seed {seed} (replay with GRIDWORK_CRASH_SEED={seed})");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);

    let mut acknowledged: HashMap<Uuid, String> = HashMap::new();
    // Kills land at random within this window; on a slow or loaded machine,
    // where a child may not finish one capture in it, the window widens.
    let mut kill_within_ms = 400;
    // At least RUNS kills; more on a loaded machine, where a child may be
    // killed before it acknowledged anything, until enough captures count.
    for run in 0..RUNS * 4 {
        if run >= RUNS && acknowledged.len() >= RUNS as usize / 2 {
            break;
        }
        let mut child = Command::new(child_bin)
            .arg(dir.path())
            .arg(photo_dir.path())
            .arg(run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(20..kill_within_ms)));
        child.kill().unwrap(); // SIGKILL on Unix
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child was killed, not finished");
        // Only complete lines were acknowledged.
        let complete = out.rsplit_once('\n').map(|(done, _)| done).unwrap_or("");
        for line in complete.lines() {
            let (id, sha) = line.split_once(' ').unwrap();
            acknowledged.insert(Uuid::parse_str(id).unwrap(), sha.to_owned());
        }
        kill_within_ms = if complete.is_empty() { (kill_within_ms * 2).min(5_000) } else { (kill_within_ms * 3 / 4).max(400) };

        // Reopen after every kill, as the app would on next launch.
        let gw = open(dir.path(), "crash-worker");
        for (id, sha) in &acknowledged {
            let detail = gw.get_incident(*id).unwrap_or_else(|e| panic!("run {run}: acknowledged incident lost: {e}"));
            assert_eq!(detail.incident.status, IncidentStatus::Submitted);
            assert_eq!(detail.photos.len(), 1, "run {run}");
            let photo = &detail.photos[0];
            assert_eq!(&photo.sha256, sha);
            let bytes = std::fs::read(&photo.original_path).unwrap_or_else(|_| panic!("run {run}: photo file lost"));
            assert_eq!(&sha256_hex(&bytes), sha, "run {run}: photo file damaged");
            assert!(photo.thumbnail_path.exists());
            assert!(gw.outbox_items().unwrap().iter().any(|op| op.entity_id == *id && op.kind_name == "submit_incident"));
        }
    }
    assert!(acknowledged.len() >= RUNS as usize / 2, "too few captures to mean anything: {}", acknowledged.len());

    let gw = open(dir.path(), "crash-worker");
    let integrity: String = gw.with_connection(|c| Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)).unwrap();
    assert_eq!(integrity, "ok");
    // Exactly one submit and one upload per acknowledged incident, no duplicates.
    let items = gw.outbox_items().unwrap();
    let submits: Vec<_> = items.iter().filter(|o| o.kind_name == "submit_incident").map(|o| o.entity_id).collect();
    assert_eq!(submits.len(), submits.iter().collect::<HashSet<_>>().len());
    assert!(acknowledged.keys().all(|id| submits.contains(id)));
    // No orphans after the sweep (the session's first sync runs it):
    // every file left is referenced by a row.
    gw.sweep_orphan_files().unwrap();
    let referenced: HashSet<String> = gw
        .with_connection(|c| {
            let mut stmt = c.prepare("SELECT DISTINCT sha256 FROM photos")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .unwrap();
    let photos_root = gw.database_path().parent().unwrap().join("photos");
    for sub in ["originals", "thumbs", "renditions", "tmp"] {
        for entry in std::fs::read_dir(photos_root.join(sub)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(sub != "tmp", "temp file left: {name}");
            assert!(referenced.contains(&name[..64]), "orphan {sub}/{name}");
        }
    }
    println!("{} acknowledged captures survived at least {RUNS} SIGKILLs", acknowledged.len());
}

/// One open store per account: a second open, in another process or in this
/// one, is refused with `store_in_use` (naming the holder's pid) before it
/// touches anything, because opening recovers interrupted operations and
/// removes leftover temp files, which would take the holder's work in
/// progress. A killed holder leaves no lock behind.
#[test]
fn a_store_open_elsewhere_is_refused_until_its_holder_dies() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let photo_dir = tempfile::tempdir().unwrap();
    write_file(photo_dir.path(), "p.jpg", &jpeg_bytes(&scene(800, 600, 1), 85, None));
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_capture_child"))
        .arg(dir.path())
        .arg(photo_dir.path())
        .arg("0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its first acknowledged capture: it has the store open.
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a capture").unwrap();
    let first_id = Uuid::parse_str(first.split_once(' ').unwrap().0).unwrap();

    match gridwork_core::Gridwork::open(config(dir.path(), "crash-worker")) {
        Err(gridwork_core::Error::StoreInUse { pid }) => assert_eq!(pid, Some(child.id())),
        Err(other) => panic!("expected store_in_use, got {other}"),
        Ok(_) => panic!("a second open of a store in use must be refused"),
    }
    // Another account's store on the same device is not affected.
    drop(open(dir.path(), "someone-else"));

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(lines);
    let gw = open(dir.path(), "crash-worker");
    assert_eq!(gw.get_incident(first_id).unwrap().incident.status, IncidentStatus::Submitted);

    // Within one process too: the app shares one instance.
    let error = gridwork_core::Gridwork::open(config(dir.path(), "crash-worker")).err().expect("refused");
    assert_eq!(error.code(), "store_in_use");
    assert_eq!(error.to_string(), format!("this account's store is already open in process {}; one instance at a time", std::process::id()));
    drop(gw);
    drop(open(dir.path(), "crash-worker"));
}
