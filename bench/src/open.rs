//! `open`: how long the app waits for its store on an account database the
//! size of a busy worker's phone (10,000 submitted incidents, one photo
//! each), against opening a plain SQLite copy of the same data.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gridwork_core::capture;
use gridwork_core::clock::Timestamp;
use gridwork_core::outbox;
use gridwork_core::photo::{PhotoFormat, PhotoStore};
use gridwork_core::store::AccountPaths;
use gridwork_core::{Gridwork, IncidentFilter, PhotoLimits};
use rusqlite::{Connection, OpenFlags};

use crate::capture::draft_fields;
use crate::report::{self, Table, Target, median};
use crate::BenchResult;

const ACCOUNT: &str = "bench-worker";
/// Incidents newer than this many stay unsent, like a worker's last hours offline.
const UNSENT_INCIDENTS: usize = 100;
const LIST_LIMIT: u32 = 20;

/// Fill a store with `incidents` submitted incidents, each with one photo,
/// most of them already acknowledged by the server. Returns the number of
/// photo files on disk.
///
/// The incidents go through the core's own capture functions in one
/// transaction (10,000 user actions committed one by one would take
/// minutes of fsyncs). Photo rows are made from one real ingest of a small
/// JPEG, re-addressed under a distinct hash per incident, with small stand-in
/// files at the paths the store uses, so the orphan sweep (no longer part
/// of open, timed apart) scans a realistic folder.
fn populate(data_dir: &Path, incidents: usize) -> BenchResult<usize> {
    let gridwork = Gridwork::open(gridwork_tests::config(data_dir, ACCOUNT))?;
    let paths = AccountPaths::new(data_dir, ACCOUNT);
    let photos = PhotoStore::open(&paths.photos)?;
    let small = gridwork_tests::jpeg_bytes(&gridwork_tests::scene(64, 48, 7), 80, None);
    let source = gridwork_tests::write_file(data_dir, "small.jpg", &small);
    let mut ingested = photos.ingest(&source, PhotoLimits::default(), 480)?;
    let thumbnail = std::fs::read(photos.thumbnail_path(&ingested.sha256))?;
    ingested.width = 4000;
    ingested.height = 3000;

    let now_ms = gridwork.now().device_ms;
    let minute = 60_000;
    let first_ms = now_ms - incidents as i64 * minute;
    let cutoff_ms = now_ms - UNSENT_INCIDENTS as i64 * minute;
    gridwork.with_connection(|conn| {
        let tx = conn.transaction()?;
        for n in 0..incidents {
            let at = first_ms + n as i64 * minute;
            let now = Timestamp { device_ms: at, corrected_ms: at };
            let id = capture::create_draft(&tx, &draft_fields(n), ACCOUNT, now, None)?;
            if n > 0 {
                ingested.sha256 = gridwork_tests::sha256_hex(format!("bench photo {n}").as_bytes());
                ingested.byte_size = 3_500_000;
                std::fs::write(photos.original_path(&ingested.sha256, PhotoFormat::Jpeg), &small)?;
                std::fs::write(photos.thumbnail_path(&ingested.sha256), &thumbnail)?;
            }
            capture::insert_photo(&tx, id, &ingested, ACCOUNT, now, None)?;
            capture::submit(&tx, id, ACCOUNT, now, None)?;
        }
        for op in outbox::unsent(&tx)? {
            if op.created_at.device_ms < cutoff_ms {
                outbox::acknowledge(&tx, op.op_id, now_ms)?;
            }
        }
        tx.commit()?;
        Ok(())
    })?;
    drop(ingested);
    Ok(incidents * 2)
}

/// Export the encrypted database to a plain SQLite file (SQLCipher's own
/// `sqlcipher_export`): same schema, same rows, no encryption.
/// A plain (unencrypted) SQLite copy of an account's store, for peers.
pub fn export_plain(data_dir: &Path, account: &str, plain: &Path) -> BenchResult<()> {
    let gridwork = Gridwork::open(gridwork_tests::config(data_dir, account))?;
    gridwork.with_connection(|conn| {
        conn.execute("ATTACH DATABASE ?1 AS plaintext KEY ''", [plain.to_string_lossy()])?;
        conn.query_row("SELECT sqlcipher_export('plaintext')", [], |_| Ok(()))?;
        conn.execute_batch("DETACH DATABASE plaintext")?;
        Ok(())
    })?;
    let conn = Connection::open(plain)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    Ok(())
}

/// Same statement as `capture::list` with a limit of 20, the first screen.
const PEER_FIRST_SCREEN: &str = "SELECT i.id, i.status, i.category_code, i.description, i.address, i.lat, i.lon, i.accuracy_m,
    i.grid_code, i.reporter, i.created_device_ms, i.created_corrected_ms, i.updated_device_ms, i.updated_corrected_ms,
    i.submitted_device_ms, i.submitted_corrected_ms,
    (SELECT count(*) FROM photos AS p WHERE p.incident_id = i.id)
    FROM incidents AS i WHERE 1 = 1 AND i.status != 'discarded' ORDER BY i.created_corrected_ms DESC, i.id DESC LIMIT 20";

struct OursTimes {
    open: Vec<Duration>,
    open_and_list: Vec<Duration>,
    store_open: Vec<Duration>,
    /// The orphan sweep, timed after each open (the first sync runs it).
    sweep: Vec<Duration>,
}

fn time_ours(data_dir: &Path, opens: usize) -> BenchResult<OursTimes> {
    let mut times = OursTimes {
        open: Vec::new(),
        open_and_list: Vec::new(),
        store_open: Vec::new(),
        sweep: Vec::new(),
    };
    for n in 0..=opens {
        let started = Instant::now();
        let gridwork = Gridwork::open(gridwork_tests::config(data_dir, ACCOUNT))?;
        let opened = started.elapsed();
        let first_screen = gridwork.list_incidents(IncidentFilter { limit: Some(LIST_LIMIT), ..IncidentFilter::default() })?;
        let listed = started.elapsed();
        assert_eq!(first_screen.len(), LIST_LIMIT as usize);
        let report = gridwork.open_report();
        // What the session's first sync does besides, off the open path.
        let sweep_started = Instant::now();
        let removed = gridwork.sweep_orphan_files()?;
        let sweep = sweep_started.elapsed();
        if removed > 0 || report.orphan_files_removed > 0 {
            eprintln!("  warning: {} orphan files removed", removed + report.orphan_files_removed);
        }
        drop(gridwork);
        if n > 0 {
            times.open.push(opened);
            times.open_and_list.push(listed);
            times.store_open.push(report.open_duration);
            times.sweep.push(sweep);
        }
    }
    Ok(times)
}

fn time_peer(plain: &Path, opens: usize) -> BenchResult<(Vec<Duration>, Vec<Duration>)> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let (mut open, mut open_and_list) = (Vec::new(), Vec::new());
    for n in 0..=opens {
        let started = Instant::now();
        let conn = Connection::open_with_flags(plain, flags)?;
        // Opening is lazy; the first read parses the schema.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        let opened = started.elapsed();
        let rows = conn
            .prepare(PEER_FIRST_SCREEN)?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let listed = started.elapsed();
        assert_eq!(rows.len(), LIST_LIMIT as usize);
        drop(conn);
        if n > 0 {
            open.push(opened);
            open_and_list.push(listed);
        }
    }
    Ok((open, open_and_list))
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

pub fn run(incidents: usize, opens: usize) -> BenchResult<()> {
    let incidents = incidents.max(LIST_LIMIT as usize + UNSENT_INCIDENTS);
    let opens = opens.max(1);
    eprintln!("open: {incidents} submitted incidents, {opens} opens (+1 warm-up) each");
    let dir = tempfile::Builder::new().prefix("gridwork-bench-open").tempdir()?;
    let data_dir = dir.path().join("device");
    let plain: PathBuf = dir.path().join("plain.db");
    let started = Instant::now();
    let files = populate(&data_dir, incidents)?;
    export_plain(&data_dir, ACCOUNT, &plain)?;
    eprintln!("  built the databases in {:.1} s", started.elapsed().as_secs_f64());
    let database = AccountPaths::new(&data_dir, ACCOUNT).database;

    let ours = time_ours(&data_dir, opens)?;
    let (peer_open, peer_list) = time_peer(&plain, opens)?;

    let mut table = Table::new(
        format!(
            "open: account database with {incidents} submitted incidents ({} encrypted, {files} photo files), median of {opens}",
            report::bytes(file_size(&database))
        ),
        format!("rusqlite Connection::open on a plain SQLite copy of the same data ({})", report::bytes(file_size(&plain))),
    );
    table.time_row("open (peer: + first read of the schema)", Some(median(&ours.open)), Some(median(&peer_open)));
    table.time_row(
        &format!("open + first screen ({LIST_LIMIT} newest incidents)"),
        Some(median(&ours.open_and_list)),
        Some(median(&peer_list)),
    );
    table.note(format!(
        "of our open: store::open (key check, SQLCipher key, pragmas, schema check) {} median, the rest in-flight recovery; \
         not in it: the sweep of {files} photo files for orphans, {} median, which the session's first sync runs",
        report::ms(median(&ours.store_open)),
        report::ms(median(&ours.sweep)),
    ));
    table.note("lower is better");
    table.print();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    report::record(
        &format!("open: {incidents} incidents, {files} photo files, median"),
        "ms",
        ms(median(&ours.open)),
        Some(ms(median(&peer_open))),
        Target::AtMost(20.0),
    );
    Ok(())
}
