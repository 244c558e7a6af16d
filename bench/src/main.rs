//! gridwork-bench: each Gridwork benchmark printed beside the peer a user
//! would pick instead, measured in the same run, with the ratio.
//!
//! ```text
//! cargo run --profile bench-release -p gridwork-bench -- all
//! ```
//!
//! See bench/README.md for what each benchmark measures.

mod capture;
mod open;
mod outbox;
mod pillow;
mod pouchdb;
mod report;
mod server_push;
mod sync;
mod tasks;

use std::path::PathBuf;
use std::time::Instant;

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Hidden subcommand: the isolated child process of `capture-memory`.
pub const MEMORY_CHILD: &str = "__capture-memory-child";

const USAGE: &str = "\
usage: gridwork-bench <benchmark> [options]

benchmarks:
  capture          capture latency: incident + one 12 MP JPEG, vs Pillow draft thumbnail
  capture-memory   peak memory (VmHWM) of one capture, vs Pillow
  outbox           outbox insert rate, vs raw SQLite INSERTs
  open             store open time on 10,000 incidents, vs plain SQLite open
  sync             push 10,000 queued incidents + 1,000 photos of 3 MB, initial pull of 100,000 changes
  tasks            task list and review queue on a device holding 100,000 cases, vs plain rusqlite
  server-push      server push throughput and p99 with 200 concurrent devices, SQLite and PostgreSQL
  sync-photos      push 20 reports with a 3 MiB photo each, vs PouchDB with attachments
  all              capture, capture-memory, outbox and open
  full             every row of the performance issue, --runs times (default 3), ours and the peer
                   interleaved; writes bench/results.json and BENCHMARKS.md (--out DIR: elsewhere)
  quick            full on small data, once, written to a temporary folder and checked
                   (CI: the benchmarks and their peers still run)

options (defaults keep `all` under ~3 minutes on 2 cores):
  --captures N     captures per configuration (default 30)
  --ops N          operations inserted in one transaction (default 20000)
  --single-ops N   operations inserted one transaction each (default 20000)
  --incidents N    incidents in the open benchmark's database (default 10000)
  --opens N        opens timed (default 20)
  --devices N      concurrent simulated devices for server-push (default 200)
  --batches N      pushes per device (default 10)
  --batch-ops N    operations per push (default 10)
  --sync-incidents N  queued incidents for sync (default 10000)
  --sync-photos N     photos among them (default 1000)
  --photo-kib N       size of each photo in KiB (default 3072)
  --pull-changes N    changes for the initial pull (default 100000)
  --runs N         runs of `full` (default 3)
  --out DIR        where `full` writes bench/results.json and BENCHMARKS.md (default: this checkout)";

struct Options {
    captures: usize,
    ops: usize,
    single_ops: usize,
    incidents: usize,
    opens: usize,
    devices: usize,
    batches: usize,
    batch_ops: usize,
    sync_incidents: usize,
    sync_photos: usize,
    photo_kib: usize,
    pull_changes: usize,
    runs: usize,
    out: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options { captures: 30, ops: 20_000, single_ops: 20_000, incidents: 10_000, opens: 20, devices: 200, batches: 10, batch_ops: 10, sync_incidents: 10_000, sync_photos: 1_000, photo_kib: 3072, pull_changes: 100_000, runs: 3, out: None }
    }
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        if flag == "--out" {
            options.out = Some(PathBuf::from(args.next().ok_or_else(|| "--out needs a folder".to_owned())?));
            continue;
        }
        let target = match flag.as_str() {
            "--captures" => &mut options.captures,
            "--ops" => &mut options.ops,
            "--single-ops" => &mut options.single_ops,
            "--incidents" => &mut options.incidents,
            "--opens" => &mut options.opens,
            "--devices" => &mut options.devices,
            "--batches" => &mut options.batches,
            "--batch-ops" => &mut options.batch_ops,
            "--sync-incidents" => &mut options.sync_incidents,
            "--sync-photos" => &mut options.sync_photos,
            "--photo-kib" => &mut options.photo_kib,
            "--pull-changes" => &mut options.pull_changes,
            "--runs" => &mut options.runs,
            other => return Err(format!("unknown option {other}")),
        };
        let value = args.next().ok_or_else(|| format!("{flag} needs a number"))?;
        *target = value.parse().map_err(|_| format!("{flag}: not a number: {value}"))?;
        if *target == 0 && flag != "--sync-photos" {
            return Err(format!("{flag} must be at least 1"));
        }
    }
    Ok(options)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    if command == sync::PULL_CHILD {
        let [dir, url] = &args[1..] else {
            eprintln!("usage: {} DIR URL", sync::PULL_CHILD);
            std::process::exit(2);
        };
        exit_on_error(sync::pull_child(&PathBuf::from(dir), url));
        return;
    }
    if command == MEMORY_CHILD {
        let [data_dir, photo] = &args[1..] else {
            eprintln!("usage: {MEMORY_CHILD} DATA_DIR PHOTO");
            std::process::exit(2);
        };
        exit_on_error(capture::memory_child(&PathBuf::from(data_dir), &PathBuf::from(photo)));
        return;
    }
    let options = match parse_options(&args[1..]) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let result = match command.as_str() {
        "capture" => capture::run(options.captures),
        "capture-memory" => capture::run_memory(),
        "outbox" => outbox::run(options.ops, options.single_ops),
        "open" => open::run(options.incidents, options.opens),
        "tasks" => tasks::run(options.pull_changes),
        "sync" => sync::run(&sync::SyncOptions {
            incidents: options.sync_incidents,
            photos: options.sync_photos,
            photo_bytes: options.photo_kib * 1024,
            pull_changes: options.pull_changes,
        }),
        "server-push" => server_push::run(&server_push::PushOptions {
            devices: options.devices,
            batches: options.batches,
            batch_ops: options.batch_ops,
        }),
        "sync-photos" => sync::run_photos(20, options.photo_kib * 1024),
        "all" => capture::run(options.captures)
            .and_then(|()| capture::run_memory())
            .and_then(|()| outbox::run(options.ops, options.single_ops))
            .and_then(|()| open::run(options.incidents, options.opens)),
        "full" => full(&options, &args),
        // Every row of `full` on small data with its real peer: proof that
        // the benchmarks and their peers still run (scripts/test). The
        // figures mean nothing at this size, and nothing is asserted about
        // them; that every row has its peer's figure is.
        "quick" => quick(),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return;
        }
        other => {
            eprintln!("unknown benchmark {other}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    exit_on_error(result);
    eprintln!("\n(finished in {:.1} s)", started.elapsed().as_secs_f64());
}

/// Every row of the performance issue, `options.runs` times; each run has
/// ours and the peer side by side, so slow drifts of the machine touch both.
fn full(options: &Options, args: &[String]) -> BenchResult<()> {
    for run in 1..=options.runs {
        eprintln!("\n=== run {run} of {} ===", options.runs);
        capture::run(options.captures)?;
        capture::run_memory()?;
        outbox::run(options.ops, options.single_ops)?;
        open::run(options.incidents, options.opens)?;
        // Reports alone, as the peer replicates them; photos apart.
        sync::run(&sync::SyncOptions { incidents: options.sync_incidents, photos: 0, photo_bytes: 0, pull_changes: options.pull_changes })?;
        sync::run_photos(20, options.photo_kib * 1024)?;
        server_push::run(&server_push::PushOptions { devices: options.devices, batches: options.batches, batch_ops: options.batch_ops })?;
    }
    let root = options.out.clone().unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    let command = format!("cargo run --profile bench-release -p gridwork-bench -- {}", args.join(" "));
    let rows = report::write_results(&root, &command, options.runs)?;
    println!("\n== summary ==\n{}", report::markdown_table(&rows));
    eprintln!("wrote {} and {}", root.join("bench/results.json").display(), root.join("BENCHMARKS.md").display());
    Ok(())
}

fn quick() -> BenchResult<()> {
    capture::run(2)?;
    capture::run_memory()?;
    outbox::run(500, 200)?;
    open::run(300, 3)?;
    sync::run(&sync::SyncOptions { incidents: 200, photos: 0, photo_bytes: 0, pull_changes: 1_000 })?;
    sync::run_photos(3, 64 * 1024)?;
    let out = tempfile::tempdir()?;
    let rows = report::write_results(out.path(), "gridwork-bench quick", 1)?;
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("bench/results.json"))?)?;
    let written = written["rows"].as_array().ok_or("results.json has no rows")?;
    if written.len() != rows.len() || rows.len() < 15 {
        return Err(format!("results.json holds {} rows, expected {} (at least 15)", written.len(), rows.len()).into());
    }
    let missing: Vec<&str> = written
        .iter()
        .filter(|row| row["target"].as_str().is_some_and(|t| t.starts_with("ours/peer")) && !row["peer"].is_number())
        .filter_map(|row| row["name"].as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!("no peer figure for: {}", missing.join("; ")).into());
    }
    println!("\n== summary (quick: the figures mean nothing) ==\n{}", report::markdown_table(&rows));
    Ok(())
}

fn exit_on_error(result: BenchResult<()>) {
    if let Err(error) = result {
        eprintln!("gridwork-bench: {error}");
        std::process::exit(1);
    }
}
