//! Turning core values into JSON for scripts and into lines for people.

use std::io::Write;
use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset, Offset, SecondsFormat, Utc};
use gridwork_core::{Category, Grid, Incident, IncidentStatus, Named, Operation, OutboxSummary, Photo, SyncReport, SyncState};
use gridwork_protocol::api::UserInfo;
use serde_json::{Value, json};

/// Write to stdout; a closed pipe (`gridwork incidents | head`) is not an error.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

/// A status line on stderr that redraws itself while long work runs, for
/// a person at a terminal only: nothing with `--json` or when stderr is
/// not a terminal. Erased when dropped, so results print on a clean line.
pub struct Progress {
    on: bool,
    shown: bool,
}

impl Progress {
    pub fn new(json: bool) -> Progress {
        Progress { on: !json && std::io::IsTerminal::is_terminal(&std::io::stderr()), shown: false }
    }

    pub fn show(&mut self, text: &str) {
        if self.on {
            // One row, or the redraw would leave wrapped rows behind.
            let text = clip(text, 79);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{text}");
            let _ = err.flush();
            self.shown = true;
        }
    }

    pub fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Whether lines for people get colours: set once per run, on only when
/// stdout is a terminal, `NO_COLOR` is unset or empty and `--json` is not
/// given (see [`colors_wanted`]).
static COLORS: OnceLock<bool> = OnceLock::new();

/// The rule for colours on one stream (<https://no-color.org>).
pub fn colors_wanted(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn set_colors(on: bool) {
    let _ = COLORS.set(on);
}

/// What a word means at a glance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Good,
    Warn,
    Bad,
}

/// `text` in its tone's colour when colours are on for stdout, else as it is.
pub fn tone(text: &str, tone: Tone) -> String {
    paint(text, tone, COLORS.get().copied().unwrap_or(false))
}

/// `text` in its tone's colour when `on`.
pub fn paint(text: &str, tone: Tone, on: bool) -> String {
    if !on {
        return text.to_owned();
    }
    let code = match tone {
        Tone::Good => "32",
        Tone::Warn => "33",
        Tone::Bad => "31",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// The columns `text` takes on a terminal: a Han character two, the colour
/// sequences of [`tone`] none. Text from outside never carries an escape
/// (see [`printable`]), so every escape here is ours.
fn width(text: &str) -> usize {
    use unicode_width::UnicodeWidthStr;
    let mut visible = 0;
    let mut rest = text;
    while let Some(start) = rest.find('\x1b') {
        visible += rest[..start].width();
        rest = rest[start..].find('m').map_or("", |end| &rest[start + end + 1..]);
    }
    visible + rest.width()
}

/// A table for a terminal: a header row, columns padded to the widest cell
/// by display width (a Han character takes two columns), the last column
/// left as it is. Cells are made printable by the caller.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i + 1 < cells.len() {
                text.push_str(&" ".repeat(widths[i] - width(cell) + 2));
            }
        }
        text.trim_end().to_owned()
    };
    let mut lines = vec![line(headers.to_vec())];
    lines.extend(rows.iter().map(|row| line(row.iter().map(String::as_str).collect())));
    lines.join("\n")
}

pub fn print_json(value: &Value) {
    print(&serde_json::to_string_pretty(value).expect("JSON values serialize"));
}

/// Text from the store or the server, made safe for a terminal: control
/// characters (escape sequences) are shown as U+FFFD; line breaks as spaces
/// when `one_line`.
pub fn printable(text: &str, one_line: bool) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' if one_line => ' ',
            '\n' | '\t' => c,
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// At most `max` characters, with an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Unix milliseconds as an ISO-8601 time in the zone `offset` east of UTC
/// ("Z" for UTC itself, "+08:00" for China). The one place the CLI formats a
/// time; times stay milliseconds everywhere else.
pub fn format_time(ms: i64, offset: FixedOffset) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(time) => time.with_timezone(&offset).to_rfc3339_opts(SecondsFormat::Secs, true),
        // Beyond chrono's range (hundreds of thousands of years): show the number.
        None => ms.to_string(),
    }
}

/// A time in JSON: ISO-8601 in UTC, so scripts get the same text on every
/// machine whatever zone its user reads in.
pub fn iso_time(ms: i64) -> String {
    format_time(ms, Utc.fix())
}

/// The zone people read times in, chosen once at start.
static ZONE: OnceLock<FixedOffset> = OnceLock::new();
pub use gridwork_protocol::zone::ZONE_ENV;

/// `--utc`, else `GRIDWORK_TIME_ZONE` ("+08:00", "-05:30", "UTC"), else
/// China's +08:00 (where grid workers are).
pub fn choose_zone(utc: bool, setting: Option<&str>) -> Result<FixedOffset, String> {
    let minutes = gridwork_protocol::zone::display_offset_minutes(utc, setting)?;
    Ok(FixedOffset::east_opt(minutes * 60).expect("offsets are within ±14 h"))
}

pub fn set_zone(zone: FixedOffset) {
    let _ = ZONE.set(zone);
}

/// A time for people: "2026-12-03 19:45 +08:00" in their zone.
pub fn time_words(ms: i64) -> String {
    let zone = *ZONE.get_or_init(|| FixedOffset::east_opt(gridwork_protocol::zone::CHINA_UTC_OFFSET_MINUTES * 60).expect("+08:00 is a valid offset"));
    match DateTime::from_timestamp_millis(ms) {
        Some(time) => time.with_timezone(&zone).format("%Y-%m-%d %H:%M %:z").to_string(),
        None => ms.to_string(),
    }
}

pub fn duration_words(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

pub fn bytes_words(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

pub fn user_json(user: &UserInfo) -> Value {
    json!({ "id": user.id.to_string(), "username": user.username, "role": user.role.as_str(), "grids": user.grids })
}

pub fn user_line(user: &UserInfo) -> String {
    use gridwork_protocol::api::Role;
    let grids = match (user.grids.is_empty(), user.role) {
        (false, _) => format!("grids {}", user.grids.join(", ")),
        (true, Role::Dispatcher | Role::Admin) => "all grids".to_owned(),
        // A department works what is dispatched to it, wherever it is.
        (true, Role::Department) => "cases dispatched to it".to_owned(),
        (true, _) => "no grids".to_owned(),
    };
    format!("{} ({}, {})", printable(&user.username, true), user.role.as_str(), printable(&grids, true))
}

pub fn category_json(c: &Category) -> Value {
    json!({ "code": c.code, "parent": c.parent_code, "name_zh": c.name_zh, "name_en": c.name_en })
}

pub fn grid_json(g: &Grid) -> Value {
    json!({
        "code": g.code,
        "tier": g.tier.as_str(),
        "name": g.name,
        "parent": g.parent_code,
        "management_level": g.management_level.map(|l| l.as_str()),
        "has_boundary": g.boundary_geojson.is_some(),
    })
}

pub fn sync_state_json(state: &SyncState) -> Value {
    match state {
        SyncState::Synced => json!({ "state": "synced" }),
        SyncState::Unsent { pending_operations } => json!({ "state": "unsent", "pending_operations": pending_operations }),
        SyncState::Parked { code, message } => json!({ "state": "parked", "code": code, "message": message }),
    }
}

/// Where an incident stands with the server, in words. A draft and a
/// discarded draft have nothing queued, but they are not "synced": they
/// never left the device.
pub fn sync_state_words(status: IncidentStatus, state: &SyncState) -> String {
    match (status, state) {
        (IncidentStatus::Draft, _) => "draft, not submitted (see `gridwork drafts`)".to_owned(),
        (IncidentStatus::Discarded, _) => "discarded, never sent".to_owned(),
        (_, SyncState::Synced) => tone("synced", Tone::Good),
        (_, SyncState::Unsent { pending_operations }) => tone(&format!("unsent ({pending_operations} queued)"), Tone::Warn),
        (_, SyncState::Parked { code, .. }) => tone(&format!("parked: {}", printable(code, true)), Tone::Bad),
    }
}

pub fn incident_json(incident: &Incident, sync: Option<&SyncState>) -> Value {
    let mut value = json!({
        "id": incident.id.to_string(),
        "status": incident.status.as_str(),
        "category": incident.category_code,
        "description": incident.description,
        "address": incident.address,
        "location": incident.location.map(|l| json!({ "lat": l.lat, "lon": l.lon, "accuracy_m": l.accuracy_m })),
        "grid": incident.grid_code,
        "reporter": incident.reporter,
        "created_at": iso_time(incident.created_at.corrected_ms),
        "created_at_ms": incident.created_at.corrected_ms,
        "submitted_at_ms": incident.submitted_at.map(|t| t.corrected_ms),
        "photo_count": incident.photo_count,
    });
    if let Some(sync) = sync {
        value["sync"] = sync_state_json(sync);
    }
    value
}

pub fn photo_json(p: &Photo) -> Value {
    json!({
        "id": p.id.to_string(),
        "role": p.role.as_str(),
        "position": p.position,
        "sha256": p.sha256,
        "bytes": p.byte_size,
        "mime_type": p.mime_type,
        "width": p.width,
        "height": p.height,
        "orientation": p.orientation,
        "taken_at_ms": p.taken_at_ms,
        "exif_location": p.exif_location.map(|l| json!({ "lat": l.lat, "lon": l.lon })),
        "original_path": p.original_path.display().to_string(),
        "thumbnail_path": p.thumbnail_path.display().to_string(),
    })
}

pub fn photo_line(p: &Photo) -> String {
    format!(
        "photo {:<12} {} {}x{} {} sha256 {}…",
        p.role.as_str(),
        p.mime_type,
        p.width,
        p.height,
        bytes_words(p.byte_size),
        &p.sha256[..p.sha256.len().min(12)]
    )
}

pub fn summary_json(s: &OutboxSummary) -> Value {
    json!({
        "pending": s.pending,
        "in_flight": s.in_flight,
        "parked": s.parked,
        "acknowledged": s.acknowledged,
        "oldest_unsent_created_ms": s.oldest_unsent_created_ms,
        "oldest_unsent_age_ms": s.oldest_unsent_age_ms,
        "photo_bytes_waiting": s.photo_bytes_waiting,
    })
}

pub fn summary_line(s: &OutboxSummary) -> String {
    let mut line = format!("{} pending, {} in flight, {} parked, {} acknowledged", s.pending, s.in_flight, s.parked, s.acknowledged);
    if s.photo_bytes_waiting > 0 {
        line.push_str(&format!("; {} of photos waiting", bytes_words(s.photo_bytes_waiting)));
    }
    if let Some(age) = s.oldest_unsent_age_ms {
        line.push_str(&format!("; oldest unsent {} old", duration_words(age)));
    }
    line
}

pub fn operation_json(op: &Operation) -> Value {
    json!({
        "seq": op.seq,
        "op_id": op.op_id.to_string(),
        "kind": op.kind_name,
        "entity_kind": op.entity_kind,
        "entity_id": op.entity_id.to_string(),
        "state": op.state.as_str(),
        "attempts": op.attempts,
        "next_attempt_ms": op.next_attempt_ms,
        "depends_on": op.depends_on.map(|d| d.to_string()),
        "blob_bytes": op.blob_bytes,
        "park_reason": op.park_reason.as_ref().map(|r| json!({ "code": r.code, "message": r.message })),
        "last_error": op.last_error,
        "created_at_ms": op.created_at.corrected_ms,
    })
}

/// One queued operation as a table row: `op_id` and `incident` as people
/// read them (short unique prefixes, which `gridwork retry` and `show`
/// accept); the detail is the photo's size, why it is parked (coloured)
/// or the last error.
pub fn operation_row(op: &Operation, op_id: &str, incident: &str) -> Vec<String> {
    let mut detail = Vec::new();
    if op.blob_bytes > 0 {
        detail.push(bytes_words(op.blob_bytes));
    }
    if let Some(reason) = &op.park_reason {
        detail.push(tone(&format!("parked: {} ({})", printable(&reason.message, true), printable(&reason.code, true)), Tone::Bad));
    } else if let Some(error) = &op.last_error {
        detail.push(format!("last error: {}", printable(error, true)));
    }
    vec![op.seq.to_string(), op_id.to_owned(), op.kind_name.clone(), op.state.as_str().to_owned(), incident.to_owned(), op.attempts.to_string(), detail.join(", ")]
}

pub fn sync_report_json(r: &SyncReport) -> Value {
    json!({
        "pushed": r.pushed,
        "parked": r.parked,
        "uploaded_bytes": r.uploaded_bytes,
        "photos_uploaded": r.photos_uploaded,
        "pulled": r.pulled,
        "thumbnails_fetched": r.thumbnails_fetched,
        "errors": {
            "network": r.errors.network,
            "transient": r.errors.transient,
            "auth": r.errors.auth,
            "rejected": r.errors.rejected,
        },
        "next_wake_ms": r.next_wake_ms,
        "needs_login": r.needs_login,
        "device_revoked": r.device_revoked,
        "completed": r.completed,
    })
}

pub fn sync_report_line(r: &SyncReport) -> String {
    // A photo the server already held (sent before a cut) costs no bytes.
    let bytes = if r.photos_uploaded > 0 && r.uploaded_bytes == 0 { "already on the server".to_owned() } else { bytes_words(r.uploaded_bytes) };
    format!(
        "pushed {}, parked {}, photos uploaded {} ({}), pulled {}",
        r.pushed,
        r.parked,
        r.photos_uploaded,
        bytes,
        r.pulled
    )
}

/// "no such file: PATH", "cannot read PATH: permission denied", …
pub fn file_problem(path: &std::path::Path, error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => format!("no such file: {}", path.display()),
        std::io::ErrorKind::PermissionDenied => format!("cannot read {}: permission denied", path.display()),
        kind => format!("cannot read {}: {kind}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso_time(1_795_858_200_999), "2026-11-28T09:30:00Z");
        assert_eq!(iso_time(-1_000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn tables_align_cjk_text_by_display_width() {
        let rows = vec![vec!["0602".to_owned(), "楼道堆物".to_owned(), "x".to_owned()], vec!["0101".to_owned(), "abc".to_owned(), "y".to_owned()]];
        let text = table(&["code", "name", "n"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "code  name      n");
        assert_eq!(lines[1], "0602  楼道堆物  x", "8 columns of Han text, then two spaces");
        assert_eq!(lines[2], "0101  abc       y");
    }

    #[test]
    fn zones_people_choose() {
        assert_eq!(choose_zone(false, None).unwrap().local_minus_utc(), 8 * 3600);
        assert_eq!(choose_zone(true, Some("+05:30")).unwrap().local_minus_utc(), 0, "--utc wins");
        assert_eq!(choose_zone(false, Some("-05:30")).unwrap().local_minus_utc(), -(5 * 3600 + 1800));
        assert_eq!(choose_zone(false, Some("utc")).unwrap().local_minus_utc(), 0);
        assert_eq!(choose_zone(false, Some("+9")).unwrap().local_minus_utc(), 9 * 3600);
        for nonsense in ["Asia/Shanghai", "+25:00", "08:00", "+08:75"] {
            assert!(choose_zone(false, Some(nonsense)).unwrap_err().contains("like +08:00"), "{nonsense}");
        }
    }

    #[test]
    fn times_in_a_zone() {
        let china = FixedOffset::east_opt(8 * 3600).unwrap();
        assert_eq!(format_time(0, china), "1970-01-01T08:00:00+08:00");
        // 23:30 UTC on 28 February 2000 is already the leap day in China.
        assert_eq!(format_time(951_780_600_000, china), "2000-02-29T07:30:00+08:00");
        assert_eq!(format_time(i64::MAX, china), i64::MAX.to_string());
    }

    #[test]
    fn terminal_safety() {
        assert_eq!(printable("a\u{1b}[31mb", true), "a\u{FFFD}[31mb");
        assert_eq!(printable("楼道\n堆物", true), "楼道 堆物");
        assert_eq!(clip("楼道堆物占用", 4), "楼道堆…");
    }
}
