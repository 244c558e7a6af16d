//! Statistics and the side-by-side tables every benchmark prints.

use std::time::Duration;

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
}
