//! `capture` and `capture-memory`: what a grid worker waits for when saving
//! one incident with one 12 MP photo, against Pillow's draft thumbnail of
//! the same file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gridwork_core::{DraftFields, Durability, GeoPoint, Gridwork};

use crate::report::{self, Table, Target, median, percentile};
use crate::{BenchResult, pillow};

/// The draft a worker fills in: a real category, text, address, position.
pub fn draft_fields(n: usize) -> DraftFields {
    DraftFields {
        category_code: Some("0102".to_owned()),
        description: format!("小区东门暴露垃圾，已堆放两天，影响通行 #{n}"),
        address: Some("黄浦区南京东路街道 贵州路 102 弄".to_owned()),
        location: Some(GeoPoint { lat: 31.2304, lon: 121.4737, accuracy_m: Some(8.0) }),
    }
}

/// Write `count` distinct 12 MP JPEGs (seeds `first_seed..`) into `dir`,
/// on every core, before anything is timed.
pub fn generate_photos(dir: &Path, first_seed: u32, count: usize) -> BenchResult<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(count.max(1));
    let paths: Vec<PathBuf> = (0..count).map(|i| dir.join(format!("photo-{:03}.jpg", first_seed as usize + i))).collect();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let paths = &paths;
            scope.spawn(move || {
                for (i, path) in paths.iter().enumerate().skip(t).step_by(threads) {
                    std::fs::write(path, gridwork_tests::twelve_megapixel_jpeg(first_seed + i as u32)).expect("write photo");
                }
            });
        }
    });
    eprintln!("  generated {count} 12 MP JPEG(s) in {:.1} s", started.elapsed().as_secs_f64());
    Ok(paths)
}

/// One capture as the app does it: draft, photo, submit.
fn capture_one(gridwork: &Gridwork, photo: &Path, n: usize) -> BenchResult<(Duration, Duration)> {
    let started = Instant::now();
    let draft = gridwork.create_draft(draft_fields(n))?;
    let attach_started = Instant::now();
    gridwork.attach_photo(draft.id, photo)?;
    let attach = attach_started.elapsed();
    gridwork.submit(draft.id)?;
    Ok((started.elapsed(), attach))
}

struct CaptureTimes {
    total: Vec<Duration>,
    attach: Vec<Duration>,
}

/// Capture every photo into a fresh store; the first is a warm-up, not kept.
fn time_captures(data_dir: &Path, durability: Durability, photos: &[PathBuf]) -> BenchResult<CaptureTimes> {
    let mut config = gridwork_tests::config(data_dir, "bench-worker");
    config.durability = durability;
    let gridwork = Gridwork::open(config)?;
    let mut times = CaptureTimes { total: Vec::new(), attach: Vec::new() };
    for (n, photo) in photos.iter().enumerate() {
        let (total, attach) = capture_one(&gridwork, photo, n)?;
        if n > 0 {
            times.total.push(total);
            times.attach.push(attach);
        }
    }
    Ok(times)
}

/// Only the image work the peer does, with the core's own functions: read
/// the file, DCT-scaled decode, fit in 320 px, encode JPEG q80, write it
/// (not durably, like Pillow's save). The first photo warms up.
fn time_thumbnail_steps(photos: &[PathBuf], out_dir: &Path) -> BenchResult<Vec<Duration>> {
    use gridwork_core::photo::{PhotoFormat, THUMBNAIL_LONG_EDGE, decode};
    std::fs::create_dir_all(out_dir)?;
    let mut times = Vec::new();
    for (n, photo) in photos.iter().enumerate() {
        let started = Instant::now();
        let bytes = std::fs::read(photo)?;
        let decoded = decode::decode_at_least(PhotoFormat::Jpeg, &bytes, THUMBNAIL_LONG_EDGE, 64_000_000)?;
        let thumbnail = decode::fit_and_orient(decoded, THUMBNAIL_LONG_EDGE, 1);
        std::fs::write(out_dir.join(format!("thumb-{n}.jpg")), decode::encode_jpeg(&thumbnail, 80)?)?;
        if n > 0 {
            times.push(started.elapsed());
        }
    }
    Ok(times)
}

pub fn run(captures: usize) -> BenchResult<()> {
    let captures = captures.max(1);
    eprintln!("capture: {captures} captures (+1 warm-up) per configuration");
    let dir = tempfile::Builder::new().prefix("gridwork-bench-capture").tempdir()?;
    // Photo n is used for capture n in every configuration; photo 0 warms up.
    let photos = generate_photos(&dir.path().join("source"), 1000, captures + 1)?;
    let average_size = photos.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum::<u64>() / photos.len() as u64;

    let full = time_captures(&dir.path().join("full"), Durability::Full, &photos)?;
    let normal = time_captures(&dir.path().join("normal"), Durability::Normal, &photos)?;
    let thumbnail_steps = time_thumbnail_steps(&photos, &dir.path().join("core-thumbs"))?;
    let version = pillow::version();
    let peer = match &version {
        Some(_) => {
            let out = dir.path().join("pillow");
            std::fs::create_dir_all(&out)?;
            pillow::thumbnail_times(&photos, &out).map(|t| t[1..].to_vec())
        }
        None => None,
    };
    let peer_median = peer.as_deref().map(median);

    let mut table = Table::new(
        format!("capture: incident + one 12 MP JPEG (4000x3000, {} avg), n={captures}", report::bytes(average_size)),
        match &version {
            Some(v) => format!("Pillow {v} draft('RGB',(320,320)) + thumbnail((320,320)) + save JPEG q80, same files"),
            None => pillow::UNAVAILABLE.to_owned(),
        },
    );
    table.time_row("capture median (synchronous=FULL)", Some(median(&full.total)), peer_median);
    table.time_row("capture p90 (synchronous=FULL)", Some(percentile(&full.total, 90)), peer.as_deref().map(|p| percentile(p, 90)));
    table.time_row("  of which attach_photo, median", Some(median(&full.attach)), peer_median);
    table.time_row("  core image steps alone (decode, fit, encode), median", Some(median(&thumbnail_steps)), peer_median);
    table.time_row("capture median (synchronous=NORMAL)", Some(median(&normal.total)), peer_median);
    let full_median = median(&full.total).as_secs_f64();
    let normal_median = median(&normal.total).as_secs_f64();
    table.note(format!(
        "synchronous=FULL costs {:+.2} ms per capture over NORMAL ({:+.1}%); lower is better",
        (full_median - normal_median) * 1e3,
        (full_median / normal_median - 1.0) * 100.0
    ));
    table.note("ours: create_draft + attach_photo (SHA-256, durable copy, EXIF, DCT-scaled decode, thumbnail, dHash) + submit");
    table.print();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    report::record("capture until acknowledged (12 MP JPEG), median", "ms", ms(median(&full.total)), peer_median.map(ms), Target::RatioAtMost(0.3));
    report::record("thumbnail of a 12 MP JPEG (decode, fit, encode), median", "ms", ms(median(&thumbnail_steps)), peer_median.map(ms), Target::RatioAtMost(1.0));
    Ok(())
}

/// The hidden child of `capture-memory`: open a store, capture one photo,
/// print VmHWM after open and after the capture as JSON.
pub fn memory_child(data_dir: &Path, photo: &Path) -> BenchResult<()> {
    let gridwork = Gridwork::open(gridwork_tests::config(data_dir, "bench-worker"))?;
    let before = gridwork_tests::peak_rss_kib().ok_or("VmHWM unavailable (not Linux?)")?;
    capture_one(&gridwork, photo, 0)?;
    let after = gridwork_tests::peak_rss_kib().ok_or("VmHWM unavailable (not Linux?)")?;
    println!("{}", serde_json::json!({ "before_kib": before, "after_kib": after }));
    Ok(())
}

pub fn run_memory() -> BenchResult<()> {
    eprintln!("capture-memory: one capture in a child process");
    let dir = tempfile::Builder::new().prefix("gridwork-bench-memory").tempdir()?;
    let photo = generate_photos(&dir.path().join("source"), 2000, 1)?.remove(0);
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).arg(crate::MEMORY_CHILD).arg(dir.path().join("store")).arg(&photo).output()?;
    if !out.status.success() {
        return Err(format!("memory child failed: {}", String::from_utf8_lossy(&out.stderr).trim()).into());
    }
    let value: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let ours = (
        value["before_kib"].as_u64().ok_or("child output")?,
        value["after_kib"].as_u64().ok_or("child output")?,
    );
    let version = pillow::version();
    let peer = match &version {
        Some(_) => pillow::peak_rss_kib(&photo, &dir.path().join("pillow-thumb.jpg")),
        None => None,
    };
    let size = std::fs::metadata(&photo)?.len();
    let mut table = Table::new(
        format!("capture-memory: peak RSS (VmHWM) of one 12 MP JPEG capture ({})", report::bytes(size)),
        match &version {
            Some(v) => format!("Pillow {v} draft thumbnail of the same file, VmHWM of its python3 process"),
            None => pillow::UNAVAILABLE.to_owned(),
        },
    );
    let kib = |v: f64| report::kib(v as u64);
    let peer_before = peer.as_ref().map(|p| p.before_kib as f64);
    let peer_after = peer.as_ref().map(|p| p.after_kib as f64);
    table.row("peak before capture (ours: after open; peer: after import)", Some(ours.0 as f64), peer_before, kib);
    table.row("peak after capture", Some(ours.1 as f64), peer_after, kib);
    table.row(
        "delta (what the capture added)",
        Some(ours.1 as f64 - ours.0 as f64),
        peer_after.zip(peer_before).map(|(a, b)| a - b),
        |v| report::kib_signed(v as i64),
    );
    table.note("a full RGB decode of 4000x3000 would need 34.3 MiB; lower is better");
    report::record(
        "capture: memory the capture adds (VmHWM delta)",
        "MiB",
        (ours.1 as f64 - ours.0 as f64) / 1024.0,
        peer_after.zip(peer_before).map(|(a, b)| (a - b) / 1024.0),
        Target::AtMost(16.0),
    );
    if let Some(p) = &peer {
        table.note(format!(
            "peer's ru_maxrss said {}: on Linux it keeps the forking parent's peak, so VmHWM is compared instead",
            report::kib(p.ru_maxrss_kib)
        ));
    }
    table.print();
    Ok(())
}
