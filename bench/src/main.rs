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
  all              all of the above except server-push and tasks
  quick            every benchmark but server-push and tasks on small data with its peer (CI: they still run)

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
  --pull-changes N    changes for the initial pull (default 100000)";

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
}

impl Default for Options {
    fn default() -> Self {
        Options { captures: 30, ops: 20_000, single_ops: 20_000, incidents: 10_000, opens: 20, devices: 200, batches: 10, batch_ops: 10, sync_incidents: 10_000, sync_photos: 1_000, photo_kib: 3072, pull_changes: 100_000 }
    }
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
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
            other => return Err(format!("unknown option {other}")),
        };
        let value = args.next().ok_or_else(|| format!("{flag} needs a number"))?;
        *target = value.parse().map_err(|_| format!("{flag}: not a number: {value}"))?;
        if *target == 0 {
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
        "all" => capture::run(options.captures)
            .and_then(|()| capture::run_memory())
            .and_then(|()| outbox::run(options.ops, options.single_ops))
            .and_then(|()| open::run(options.incidents, options.opens)),
        // Every benchmark on small data with its real peer: proof that they
        // still run (scripts/test). The figures mean nothing at this size,
        // and nothing is asserted about them.
        "quick" => capture::run(2)
            .and_then(|()| capture::run_memory())
            .and_then(|()| outbox::run(500, 200))
            .and_then(|()| open::run(300, 3))
            .and_then(|()| sync::run(&sync::SyncOptions { incidents: 200, photos: 2, photo_bytes: 64 * 1024, pull_changes: 1_000 })),
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

fn exit_on_error(result: BenchResult<()>) {
    if let Err(error) = result {
        eprintln!("gridwork-bench: {error}");
        std::process::exit(1);
    }
}
