//! Child process of the sync crash test (tests/tests/sync_crash.rs): opens
//! a device store the parent has logged in (the session, and with it the
//! server URL, lives in the store), and runs `sync_now` in a loop until it
//! is killed. After every call it prints one line, flushed:
//!
//! `sync pushed=N photos=N uploaded_bytes=N pulled=N network=N transient=N completed=B`
//!
//! The parent SIGKILLs it at random moments, mostly mid-upload.
//!
//! Usage: sync_child DATA_DIR ACCOUNT

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use gridwork_core::Trigger;

fn main() {
    let mut args = std::env::args().skip(1);
    let data_dir = PathBuf::from(args.next().expect("data dir"));
    let account = args.next().unwrap_or_else(|| "worker1".into());
    let gw = gridwork_tests::open(&data_dir, &account);
    let stdout = std::io::stdout();
    {
        let mut out = stdout.lock();
        writeln!(out, "open in_flight_recovered={}", gw.open_report().in_flight_recovered).unwrap();
        out.flush().unwrap();
    }
    loop {
        match gw.sync_now(Trigger::ManualRetry, Duration::from_secs(2)) {
            Ok(report) => {
                let mut out = stdout.lock();
                writeln!(
                    out,
                    "sync pushed={} photos={} uploaded_bytes={} pulled={} network={} transient={} completed={}",
                    report.pushed,
                    report.photos_uploaded,
                    report.uploaded_bytes,
                    report.pulled,
                    report.errors.network,
                    report.errors.transient,
                    report.completed
                )
                .unwrap();
                out.flush().unwrap();
                assert!(!report.needs_login, "the parent's login is in the store");
                if report.completed {
                    // Nothing to do until the parent queues more.
                    std::thread::sleep(Duration::from_millis(40));
                } else if report.errors.network > 0 {
                    gw.set_network(true, false);
                }
            }
            Err(error) => {
                let mut out = stdout.lock();
                writeln!(out, "error {error}").unwrap();
                out.flush().unwrap();
                std::thread::sleep(Duration::from_millis(40));
            }
        }
    }
}
