//! Statistics, the side-by-side tables every benchmark prints, and the
//! issue's rows: each benchmark records its headline figures with
//! [`record`]; repeated runs add samples to the same row, and
//! [`summarize`] turns them into medians with min..max, the ratio and
//! whether the target is met (`bench/results.json`, `BENCHMARKS.md`).

use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

/// Median of a sample (mean of the two middle values for an even count).
pub fn median(samples: &[Duration]) -> Duration {
    assert!(!samples.is_empty(), "median of no samples");
    let mut sorted = samples.to_vec();
    sorted.sort();
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2 }
}

/// Nearest-rank percentile (`p` in 0..=100).
pub fn percentile(samples: &[Duration], p: u32) -> Duration {
    assert!(!samples.is_empty(), "percentile of no samples");
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (p as usize * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 { format!("{ms:.2} ms") } else { format!("{ms:.1} ms") }
}

pub fn kib(value: u64) -> String {
    format!("{:.1} MiB", value as f64 / 1024.0)
}

/// Signed, for deltas.
pub fn kib_signed(value: i64) -> String {
    format!("{:+.1} MiB", value as f64 / 1024.0)
}

pub fn rate(per_second: f64) -> String {
    if per_second >= 100.0 { format!("{per_second:.0} op/s") } else { format!("{per_second:.1} op/s") }
}

pub fn bytes(value: u64) -> String {
    format!("{:.1} MiB", value as f64 / (1024.0 * 1024.0))
}

/// One row: a label, our figure, the peer's figure and ours/peer.
pub struct Row {
    label: String,
    ours: String,
    peer: String,
    ratio: String,
}

/// A small fixed-width table; `ours/peer` is printed as e.g. `1.85x`.
pub struct Table {
    title: String,
    peer_name: String,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Table {
    pub fn new(title: impl Into<String>, peer_name: impl Into<String>) -> Table {
        Table { title: title.into(), peer_name: peer_name.into(), rows: Vec::new(), notes: Vec::new() }
    }

    /// A row with numeric values; `ratio` is `ours / peer` when both exist.
    pub fn row(&mut self, label: &str, ours: Option<f64>, peer: Option<f64>, fmt: impl Fn(f64) -> String) {
        let ratio = match (ours, peer) {
            (Some(o), Some(p)) if p > 0.0 => format!("{:.2}x", o / p),
            _ => "-".to_owned(),
        };
        self.rows.push(Row {
            label: label.to_owned(),
            ours: ours.map(&fmt).unwrap_or_else(|| "-".to_owned()),
            peer: peer.map(&fmt).unwrap_or_else(|| "-".to_owned()),
            ratio,
        });
    }

    pub fn time_row(&mut self, label: &str, ours: Option<Duration>, peer: Option<Duration>) {
        self.row(label, ours.map(|d| d.as_secs_f64()), peer.map(|d| d.as_secs_f64()), |s| ms(Duration::from_secs_f64(s)));
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn print(&self) {
        let label_w = self.rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(0).max(10);
        let ours_w = self.rows.iter().map(|r| r.ours.len()).max().unwrap_or(0).max(4);
        let peer_w = self.rows.iter().map(|r| r.peer.len()).max().unwrap_or(0).max(4);
        println!();
        println!("== {} ==", self.title);
        if self.peer_name.starts_with("peer unavailable") {
            println!("{}", self.peer_name);
        } else {
            println!("peer: {}", self.peer_name);
        }
        println!("{:<label_w$}  {:>ours_w$}  {:>peer_w$}  {:>9}", "", "ours", "peer", "ours/peer");
        for r in &self.rows {
            let pad = label_w - r.label.chars().count();
            println!("{}{}  {:>ours_w$}  {:>peer_w$}  {:>9}", r.label, " ".repeat(pad), r.ours, r.peer, r.ratio);
        }
        for note in &self.notes {
            println!("  {note}");
        }
    }
}

/// What a row must reach. Ratios are ours/peer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    RatioAtMost(f64),
    RatioAtLeast(f64),
    /// Ours alone, in the row's unit.
    AtMost(f64),
    AtLeast(f64),
    /// Shown for context.
    None,
}

impl Target {
    fn describe(self) -> String {
        // A target taken from another figure (our SQLite rate) reads as one.
        let value = |v: f64| if v >= 100.0 { format!("{v:.0}") } else { format!("{v}") };
        match self {
            Target::RatioAtMost(v) => format!("ours/peer <= {}", value(v)),
            Target::RatioAtLeast(v) => format!("ours/peer >= {}", value(v)),
            Target::AtMost(v) => format!("ours <= {}", value(v)),
            Target::AtLeast(v) => format!("ours >= {}", value(v)),
            Target::None => String::new(),
        }
    }

    fn met(self, ours: f64, ratio: Option<f64>) -> Option<bool> {
        match self {
            Target::RatioAtMost(v) => ratio.map(|r| r <= v),
            Target::RatioAtLeast(v) => ratio.map(|r| r >= v),
            Target::AtMost(v) => Some(ours <= v),
            Target::AtLeast(v) => Some(ours >= v),
            Target::None => None,
        }
    }
}

struct Samples {
    name: String,
    unit: String,
    ours: Vec<f64>,
    peer: Vec<f64>,
    target: Target,
    /// Targets set from another figure of the same run (PostgreSQL against
    /// our SQLite), one per run; their median is the row's target.
    target_values: Vec<f64>,
}

static RECORDED: Mutex<Vec<Samples>> = Mutex::new(Vec::new());

/// Add one run's figures to the row `name` (created on first use, rows keep
/// the order they were first recorded in). `peer` is None when the peer
/// could not run.
pub fn record(name: &str, unit: &str, ours: f64, peer: Option<f64>, target: Target) {
    let mut recorded = RECORDED.lock().unwrap_or_else(|e| e.into_inner());
    let index = match recorded.iter().position(|s| s.name == name) {
        Some(index) => index,
        None => {
            recorded.push(Samples { name: name.to_owned(), unit: unit.to_owned(), ours: Vec::new(), peer: Vec::new(), target, target_values: Vec::new() });
            recorded.len() - 1
        }
    };
    let row = &mut recorded[index];
    row.ours.push(ours);
    row.peer.extend(peer);
    match target {
        Target::AtLeast(v) | Target::AtMost(v) => row.target_values.push(v),
        _ => {}
    }
}

fn median_f64(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

fn spread(values: &[f64]) -> serde_json::Value {
    match median_f64(values) {
        None => json!(null),
        Some(_) => json!([values.iter().copied().fold(f64::INFINITY, f64::min), values.iter().copied().fold(f64::NEG_INFINITY, f64::max)]),
    }
}

/// Every recorded row: name, unit, ours and peer (medians), their min..max,
/// the ratio of the medians, the target and whether it is met.
pub fn summarize() -> Vec<serde_json::Value> {
    let recorded = RECORDED.lock().unwrap_or_else(|e| e.into_inner());
    recorded
        .iter()
        .map(|row| {
            let ours = median_f64(&row.ours).unwrap_or(f64::NAN);
            let peer = median_f64(&row.peer);
            let ratio = peer.filter(|p| *p > 0.0).map(|p| ours / p);
            let target = match (row.target, median_f64(&row.target_values)) {
                (Target::AtLeast(_), Some(v)) => Target::AtLeast(v),
                (Target::AtMost(_), Some(v)) => Target::AtMost(v),
                (target, _) => target,
            };
            json!({
                "name": row.name,
                "unit": row.unit,
                "ours": ours,
                "ours_min_max": spread(&row.ours),
                "peer": peer,
                "peer_min_max": spread(&row.peer),
                "ratio": ratio,
                "target": target.describe(),
                "met": target.met(ours, ratio),
                "runs": row.ours.len(),
            })
        })
        .collect()
}

fn figure(value: &serde_json::Value) -> String {
    match value.as_f64() {
        None => "-".to_owned(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn with_spread(value: &serde_json::Value, spread: &serde_json::Value) -> String {
    match spread.as_array() {
        Some(range) if range.len() == 2 && range[0] != range[1] => format!("{} ({}..{})", figure(value), figure(&range[0]), figure(&range[1])),
        _ => figure(value),
    }
}

/// The summary as a Markdown table (BENCHMARKS.md and the end of a run).
pub fn markdown_table(rows: &[serde_json::Value]) -> String {
    let mut out = String::from("| measure | unit | ours | peer | ours/peer | target | met |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    for row in rows {
        let ratio = row["ratio"].as_f64().map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".to_owned());
        let met = match row["met"].as_bool() {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            row["name"].as_str().unwrap_or(""),
            row["unit"].as_str().unwrap_or(""),
            with_spread(&row["ours"], &row["ours_min_max"]),
            with_spread(&row["peer"], &row["peer_min_max"]),
            ratio,
            row["target"].as_str().unwrap_or("").replace("<=", "≤").replace(">=", "≥"),
            met
        ));
    }
    out
}

/// Write `bench/results.json` and `BENCHMARKS.md` under `root` from what
/// was recorded, with the machine and the command that produced them.
pub fn write_results(root: &std::path::Path, command: &str, runs: usize) -> std::io::Result<Vec<serde_json::Value>> {
    let rows = summarize();
    let machine = machine();
    let when = std::process::Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
    let json = json!({ "when": when, "machine": machine, "command": command, "runs": runs, "rows": rows });
    std::fs::create_dir_all(root.join("bench"))?;
    std::fs::write(root.join("bench").join("results.json"), serde_json::to_string_pretty(&json)? + "\n")?;
    let met = rows.iter().filter(|r| r["met"] == true).count();
    let judged = rows.iter().filter(|r| r["met"].is_boolean()).count();
    let markdown = format!(
        "# Benchmarks\n\nWritten by `gridwork-bench` ({when}); do not edit by hand. Machine: {machine}.\n\
         Command: `{command}` ({runs} run(s), ours and the peer interleaved in each; figures are medians with min..max \
         over the runs; the ratio is of the medians).\n\nTargets met: {met} of {judged}. What each benchmark measures, \
         and where the time goes for each target still missed: [bench/README.md](bench/README.md).\n\n{}",
        markdown_table(&rows)
    );
    std::fs::write(root.join("BENCHMARKS.md"), markdown)?;
    Ok(rows)
}

fn machine() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo").lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())).unwrap_or_default();
    let memory_kib: u64 = read("/proc/meminfo").lines().find_map(|l| l.strip_prefix("MemTotal:").and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())).unwrap_or(0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores ({cpu}), {:.0} GiB, Linux {}", memory_kib as f64 / 1048576.0, read("/proc/sys/kernel/osrelease").trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn median_and_percentile() {
        let s = [d(5), d(1), d(3), d(2), d(4)];
        assert_eq!(median(&s), d(3));
        assert_eq!(median(&[d(1), d(3)]), d(2));
        assert_eq!(percentile(&s, 90), d(5));
        assert_eq!(percentile(&s, 50), d(3));
        let ten: Vec<_> = (1..=10).map(d).collect();
        assert_eq!(percentile(&ten, 90), d(9));
    }

    #[test]
    fn targets_are_judged_on_the_median() {
        assert_eq!(Target::RatioAtMost(0.25).met(1.0, Some(0.3)), Some(false));
        assert_eq!(Target::RatioAtLeast(0.75).met(1.0, Some(0.8)), Some(true));
        assert_eq!(Target::RatioAtMost(0.25).met(1.0, None), None, "no peer, no verdict");
        assert_eq!(Target::AtMost(20.0).met(12.5, None), Some(true));
        record("test row", "ms", 30.0, Some(10.0), Target::RatioAtMost(2.5));
        record("test row", "ms", 10.0, Some(12.0), Target::RatioAtMost(2.5));
        record("test row", "ms", 20.0, Some(8.0), Target::RatioAtMost(2.5));
        let rows = summarize();
        let row = rows.iter().find(|r| r["name"] == "test row").expect("recorded");
        assert_eq!(row["ours"], 20.0);
        assert_eq!(row["peer"], 10.0);
        assert_eq!(row["ratio"], 2.0);
        assert_eq!(row["ours_min_max"], json!([10.0, 30.0]));
        assert_eq!(row["met"], true);
        assert_eq!(row["runs"], 3);
        assert!(markdown_table(&rows).contains("| test row | ms | 20.0 (10.0..30.0) | 10.0 (8.00..12.0) | 2.00x | ours/peer ≤ 2.5 | met |"));
    }
}
