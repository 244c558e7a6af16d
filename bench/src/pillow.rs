//! The photo peer: Pillow's draft-mode thumbnail (libjpeg-turbo DCT scaling),
//! what a developer would reach for to thumbnail a phone photo. Run through
//! `python3 -c`; when Pillow is missing the benchmarks say so and go on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const UNAVAILABLE: &str = "peer unavailable: pip install pillow";

/// The interpreter to use; `GRIDWORK_BENCH_PYTHON` overrides `python3`.
fn python() -> String {
    std::env::var("GRIDWORK_BENCH_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// The same steps for every file: open, ask libjpeg for a scaled decode no
/// smaller than 320x320, fit in 320x320, write a JPEG at the quality our
/// thumbnails use (80). Timed inside Python, so interpreter start-up is not
/// counted.
const THUMBNAIL_SCRIPT: &str = r#"
import json, sys, time
import PIL
from PIL import Image
out_dir, files = sys.argv[1], sys.argv[2:]
seconds = []
for i, f in enumerate(files):
    started = time.perf_counter()
    im = Image.open(f)
    im.draft('RGB', (320, 320))
    im.thumbnail((320, 320))
    im.save(f'{out_dir}/thumb-{i}.jpg', 'JPEG', quality=80)
    seconds.append(time.perf_counter() - started)
print(json.dumps({'version': PIL.__version__, 'seconds': seconds}))
"#;

/// Peak RSS after importing Pillow and after one draft thumbnail, read as
/// VmHWM from /proc/self/status like ours. Not `ru_maxrss`: on Linux it
/// keeps the high-water mark of the process that forked the interpreter
/// (here the benchmark, which has just generated a 12 MP image), so it
/// would report the parent's peak, not Pillow's.
const MEMORY_SCRIPT: &str = r#"
import json, resource, sys
import PIL
from PIL import Image
def vm_hwm_kib():
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
f, out = sys.argv[1], sys.argv[2]
before = vm_hwm_kib()
im = Image.open(f)
im.draft('RGB', (320, 320))
im.thumbnail((320, 320))
im.save(out, 'JPEG', quality=80)
after = vm_hwm_kib()
print(json.dumps({'version': PIL.__version__, 'before_kib': before, 'after_kib': after,
                  'ru_maxrss_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"#;

/// Pillow's version, or `None` when python3 or Pillow is missing.
pub fn version() -> Option<String> {
    let out = Command::new(python()).args(["-c", "import PIL; print(PIL.__version__)"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn run(script: &str, args: &[&Path]) -> Option<serde_json::Value> {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output().ok()?;
    if !out.status.success() {
        eprintln!("pillow peer failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Time Pillow's draft thumbnail of each file, in order; `None` if Pillow
/// is unavailable.
pub fn thumbnail_times(files: &[PathBuf], out_dir: &Path) -> Option<Vec<Duration>> {
    let mut args: Vec<&Path> = vec![out_dir];
    args.extend(files.iter().map(PathBuf::as_path));
    let value = run(THUMBNAIL_SCRIPT, &args)?;
    value["seconds"].as_array()?.iter().map(|s| s.as_f64().map(Duration::from_secs_f64)).collect()
}

/// Peak memory of the Pillow process around one draft thumbnail, in KiB.
pub struct PeakRss {
    pub before_kib: u64,
    pub after_kib: u64,
    /// What `getrusage(RUSAGE_SELF).ru_maxrss` said at the end.
    pub ru_maxrss_kib: u64,
}

pub fn peak_rss_kib(file: &Path, out: &Path) -> Option<PeakRss> {
    let value = run(MEMORY_SCRIPT, &[file, out])?;
    Some(PeakRss {
        before_kib: value["before_kib"].as_u64()?,
        after_kib: value["after_kib"].as_u64()?,
        ru_maxrss_kib: value["ru_maxrss_kib"].as_u64()?,
    })
}
