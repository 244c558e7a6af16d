//! `gridwork-server`: run the sync server and administer it from scripts.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gridwork_protocol::case::step_besides_handling;
use gridwork_protocol::{CaseAction, Named, zone};
use gridwork_protocol::api::{Role, TransitionRequest};
use gridwork_server::auth::TokenPolicy;
use gridwork_server::db::Database;
use gridwork_server::http::{now_ms, rejection_error};
use gridwork_server::{StorageConfig, ServerError, admin, auth, blobs, cases, open_storage, reference};

#[derive(Parser)]
#[command(name = "gridwork-server", version, about = "Gridwork reference sync server")]
struct Cli {
    /// Data folder of the embedded default (SQLite database and photo blobs);
    /// created, with a note, when it does not exist. Needed unless
    /// --database-url is given.
    #[arg(long, global = true, value_name = "DIR", env = "GRIDWORK_SERVER_DATA")]
    data: Option<PathBuf>,
    /// PostgreSQL URL (postgres://user:pass@host/db); blobs then live in the database too.
    #[arg(long, global = true, env = "GRIDWORK_DATABASE_URL")]
    database_url: Option<String>,
    /// Database connections per server instance (PostgreSQL).
    #[arg(long, global = true, default_value_t = 16)]
    max_connections: usize,
    /// Print JSON instead of lines for people (every command).
    #[arg(long, global = true)]
    json: bool,
    /// Show times in UTC instead of GRIDWORK_TIME_ZONE (default +08:00).
    #[arg(long, global = true)]
    utc: bool,
    /// Log lines on stderr: readable on a terminal and JSON otherwise (auto),
    /// or always one of them.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Auto,
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database schema and the default category table.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv init\n  gridwork-server --database-url postgres://gw@db/gridwork init")]
    Init,
    /// Users: add, list, disable, enable, set a password.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv user add --username w1 --role grid_worker --grid G-001\n  gridwork-server --data ./srv user list")]
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Devices that signed in: list them, revoke a lost or stolen phone.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv device list\n  gridwork-server --data ./srv device revoke 3f9c2a71")]
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Grids: import a GeoJSON file, list them.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv grid import docs/examples/grids.geojson\n  gridwork-server --data ./srv grid list")]
    Grid {
        #[command(subcommand)]
        command: ReferenceCommand,
    },
    /// Incident categories: import a table, list them with their time limits.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv category list")]
    Category {
        #[command(subcommand)]
        command: ReferenceCommand,
    },
    /// 时限: the hours cases of a category have to be handled once dispatched
    /// or reworked, when the dispatcher gives no deadline, and optionally to
    /// be signed for once dispatched and verified once handled (a 大类's
    /// apply to its 小类). Sets all three: a limit not given is removed.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv deadline --category 06 --hours 72\n  gridwork-server --data ./srv deadline --category 0602 --hours 24 --sign-hours 2 --verify-hours 12")]
    Deadline {
        /// A category code (a 大类 such as 06 covers its 小类).
        #[arg(long)]
        category: String,
        /// Hours to handle (处置时限).
        #[arg(long)]
        hours: i64,
        /// Hours to sign for a dispatched case (签收时限).
        #[arg(long)]
        sign_hours: Option<i64>,
        /// Hours to verify a handled case (核查时限).
        #[arg(long)]
        verify_hours: Option<i64>,
    },
    /// Privacy: the roles that see other people's case photos only as
    /// renditions (re-encoded without EXIF: no GPS position, time or
    /// camera), never as originals; an uploader always gets their own.
    /// Without options it shows the policy.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv photo-policy\n  gridwork-server --data ./srv photo-policy --withhold-originals-from volunteer --withhold-originals-from department\n  gridwork-server --data ./srv photo-policy --clear")]
    PhotoPolicy {
        /// A role to keep originals from: grid_worker, volunteer,
        /// supervisor, dispatcher, admin or department (repeatable; the
        /// roles given replace the list).
        #[arg(long = "withhold-originals-from", value_name = "ROLE")]
        withhold: Vec<String>,
        /// Show originals again to every role that sees the case.
        #[arg(long, conflicts_with = "withhold")]
        clear: bool,
    },
    /// Serve the /v1 API.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv serve\n  gridwork-server --data ./srv serve --listen 0.0.0.0:8470 --trusted-proxy 10.0.0.2\n  GRIDWORK_LOG=debug gridwork-server --data ./srv serve --log-format json")]
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8470")]
        listen: String,
        /// Access token lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        access_ttl_secs: i64,
        /// Refresh token lifetime in seconds.
        #[arg(long, default_value_t = 30 * 24 * 3600)]
        refresh_ttl_secs: i64,
        /// A reverse proxy in front (repeat for several): its connections
        /// are not capped per address, and its X-Forwarded-For names the
        /// client for login throttling. Only these addresses are believed.
        #[arg(long = "trusted-proxy", value_name = "IP")]
        trusted_proxies: Vec<std::net::IpAddr>,
    },
    /// Cases that arrived.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv incidents list --state reported\n  gridwork-server --data ./srv incidents show 01a23e9e")]
    Incidents {
        #[command(subcommand)]
        command: IncidentsCommand,
    },
    /// The timeline of one case.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv timeline 01a23e9e\n  gridwork-server --data ./srv timeline 01a23e9e-8f3c-7d2a-9b1e-2f4c6a8d0e1f --json")]
    Timeline {
        /// The case: its id or a unique prefix (at least 4 characters).
        id: String,
    },
    /// 归档留痕: a case's hash-chained timeline for an inspector, every entry
    /// with its facts, link and hash, and whether the chain holds (exit 1
    /// and the first entry that does not, if it was edited).
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv trail 01a23e9e\n  gridwork-server --data ./srv trail 01a23e9e --json > case-trail.json")]
    Trail {
        /// The case: its id or a unique prefix.
        id: String,
    },
    /// 立案: register a reported case.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv register 01a23e9e --note 立案")]
    Register {
        /// The case: its id or a unique prefix.
        id: String,
        /// A note for the timeline.
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a reported case (a note is required).
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv reject 01a23e9e --note \"不属于网格管理范围\"")]
    Reject {
        /// The case: its id or a unique prefix.
        id: String,
        /// Why, for the reporter (required).
        #[arg(long)]
        note: String,
    },
    /// 派遣: dispatch a registered or reopened case to a worker or department.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv dispatch 01a23e9e --assignee w1 --deadline 24h\n  gridwork-server --data ./srv dispatch 01a23e9e --department dept1 --deadline \"2026-11-30 18:00\" --note 请清理")]
    Dispatch {
        /// The case: its id or a unique prefix.
        id: String,
        /// The user name of the worker who handles it.
        #[arg(long)]
        assignee: Option<String>,
        /// The user name of the department account that handles it.
        #[arg(long)]
        department: Option<String>,
        /// 时限: a duration from now ("24h", "3d", "1d12h", "90m") or a date
        /// and time in the zone times are shown in (+08:00 unless --utc or
        /// GRIDWORK_TIME_ZONE) ("2026-11-30 18:00", "2026-11-30" for its
        /// end, or RFC 3339 with its own offset). Default: the category's.
        #[arg(long, conflicts_with = "deadline_ms")]
        deadline: Option<String>,
        /// The deadline as Unix milliseconds (for scripts).
        #[arg(long)]
        deadline_ms: Option<i64>,
        /// An instruction for the handler.
        #[arg(long)]
        note: Option<String>,
    },
    /// 核查结案: close a handled case, with a satisfaction rating (1-5 stars).
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv close 01a23e9e --rating 4 --note 核查通过")]
    Close {
        /// The case: its id or a unique prefix.
        id: String,
        /// What the verification found.
        #[arg(long)]
        note: Option<String>,
        /// The reporter's satisfaction, 1 to 5 stars.
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
        rating: Option<u8>,
    },
    /// 返工: reopen a handled or closed case for rework.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv reopen 01a23e9e --note 仍有堆物")]
    Reopen {
        /// The case: its id or a unique prefix.
        id: String,
        /// What is still wrong.
        #[arg(long)]
        note: Option<String>,
    },
    /// Figures (统计) of a grid or a person for a period.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv stats --grid G-001\n  gridwork-server --data ./srv stats --user w1 --from-ms 1796000000000 --json")]
    Stats {
        /// A grid code.
        #[arg(long)]
        grid: Option<String>,
        /// A user name.
        #[arg(long)]
        user: Option<String>,
        /// Start of the period, Unix milliseconds (default: 0).
        #[arg(long, default_value_t = 0)]
        from_ms: i64,
        /// End of the period, Unix milliseconds, exclusive (default: now).
        #[arg(long)]
        to_ms: Option<i64>,
    },
    /// Merge a duplicate report into the case it repeats.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv merge 01a23f01 --into 01a23e9e --note 同一处堆物")]
    Merge {
        /// The duplicate: its id or a unique prefix.
        id: String,
        /// The case it repeats (its id or a unique prefix).
        #[arg(long)]
        into: String,
        /// A note for the timeline.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv user add --username w1 --role grid_worker --grid G-001\n      (asks for the password)\n  GRIDWORK_PASSWORD=… gridwork-server --data ./srv user add --username dept1 --role department")]
    Add {
        /// The name the user logs in with.
        #[arg(long)]
        username: String,
        /// The password (or GRIDWORK_PASSWORD); asked for, twice and not
        /// echoed, when neither is given and this is a terminal.
        #[arg(long, env = "GRIDWORK_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// grid_worker, volunteer, supervisor, dispatcher, admin or department.
        #[arg(long)]
        role: String,
        /// A grid code this user works in (repeatable; grid workers and
        /// supervisors need one).
        #[arg(long = "grid")]
        grids: Vec<String>,
    },
    /// Every user: role, grids, whether disabled.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv user list\n  gridwork-server --data ./srv user list --json")]
    List,
    /// Disable a user: signed out everywhere, no new login; their cases stay.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv user disable w1")]
    Disable {
        /// The user name.
        username: String,
    },
    /// Let a disabled user log in again.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv user enable w1")]
    Enable {
        /// The user name.
        username: String,
    },
    /// Set a new password (signs the user out everywhere).
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv user password w1\n      (asks for it twice)")]
    Password {
        /// The user name.
        username: String,
        /// The new password (or GRIDWORK_PASSWORD); asked for, twice and
        /// not echoed, when neither is given and this is a terminal.
        #[arg(long, env = "GRIDWORK_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Every device that signed in, per user: first and last sign-in,
    /// whether a session is active, whether it was revoked.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv device list\n  gridwork-server --data ./srv device list --json")]
    List,
    /// Revoke a lost or stolen phone: its sessions end, it can no longer
    /// sign in, and it wipes its local data at its next contact once nothing
    /// unsent would be lost. Revoking again is harmless.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv device list\n      (find the phone by its user and last sign-in)\n  gridwork-server --data ./srv device revoke 3f9c2a71\n  gridwork-server --data ./srv device revoke 3f9c2a71-5d0e-4b8a-9c61-0e2f7a4d1b93 --json")]
    Revoke {
        /// The device: its id or a unique prefix (at least 4 characters),
        /// as `device list` shows it.
        device: String,
    },
}

#[derive(Subcommand)]
enum ReferenceCommand {
    /// Import from a file (grids: GeoJSON FeatureCollection; categories: {"version", "categories": [...]}).
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv grid import docs/examples/grids.geojson\n  gridwork-server --data ./srv category import categories.json")]
    Import {
        /// The file to import.
        file: PathBuf,
    },
    /// What this server has.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv grid list\n  gridwork-server --data ./srv category list --json")]
    List,
}

#[derive(Subcommand)]
enum IncidentsCommand {
    /// List cases with their photos and whether each arrived.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv incidents list\n  gridwork-server --data ./srv incidents list --state reported --json")]
    List {
        /// Only cases in this state (reported, registered, dispatched, ...).
        #[arg(long)]
        state: Option<String>,
    },
    /// One case: its state, who has it, its photos and its timeline.
    #[command(after_help = "Examples:\n  gridwork-server --data ./srv incidents show 01a23e9e")]
    Show {
        /// The case: its id or a unique prefix.
        id: String,
    },
}

/// A line on stdout. A closed pipe (`gridwork-server incidents list | head`)
/// ends the program quietly, as Unix tools do, instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => { print_line(&format!($($arg)*)) };
}

fn print_line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{text}").and_then(|()| stdout.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// A time for people, in the zone of `--utc` or GRIDWORK_TIME_ZONE (China's
/// +08:00 by default, as on the device's terminal); JSON keeps milliseconds.
fn time_words(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(time) => time.with_timezone(&zone()).format("%Y-%m-%d %H:%M:%S %:z").to_string(),
        None => ms.to_string(),
    }
}

/// `text` padded to `width` terminal columns (a Han character takes two).
fn pad(text: &str, width: usize) -> String {
    let used = unicode_width::UnicodeWidthStr::width(text);
    format!("{text}{}", " ".repeat(width.saturating_sub(used)))
}

/// Set once in `main` from `--utc` and GRIDWORK_TIME_ZONE.
static ZONE: std::sync::OnceLock<chrono::FixedOffset> = std::sync::OnceLock::new();

fn zone() -> chrono::FixedOffset {
    *ZONE.get_or_init(|| chrono::FixedOffset::east_opt(zone::CHINA_UTC_OFFSET_MINUTES * 60).expect("a valid offset"))
}

/// How far ahead a deadline may be: a typo such as `99999d` is refused.
const DEADLINE_MAX_AHEAD_MS: i64 = 366 * 86_400_000;

/// A deadline as a dispatcher writes it, in Unix milliseconds: a duration
/// from `now_ms` or a date and time (see `dispatch --deadline`). Nonsense
/// and times already past are refused, never guessed at.
fn parse_deadline(text: &str, now_ms: i64) -> Result<i64, ServerError> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let text = text.trim();
    let invalid = || {
        ServerError::bad_request(
            "invalid_deadline",
            "write the deadline as a duration (24h, 3d, 1d12h, 90m) or a date and time (2026-11-30 18:00, 2026-11-30, or RFC 3339)",
        )
    };
    let duration_ms = (|| {
        let mut total: i64 = 0;
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit: i64 = match c {
                'd' => 86_400_000,
                'h' => 3_600_000,
                'm' => 60_000,
                _ => return None,
            };
            let n: i64 = digits.parse().ok()?;
            total = total.checked_add(n.checked_mul(unit)?)?;
            digits.clear();
        }
        (digits.is_empty() && total > 0).then_some(total)
    })();
    let at_ms = if let Some(ms) = duration_ms {
        now_ms.checked_add(ms).ok_or_else(invalid)?
    } else if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        time.timestamp_millis()
    } else {
        let local = ["%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
            .or_else(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(23, 59, 59)))
            .ok_or_else(invalid)?;
        zone().from_local_datetime(&local).single().ok_or_else(invalid)?.timestamp_millis()
    };
    if at_ms <= now_ms {
        return Err(ServerError::bad_request("deadline_in_past", format!("the deadline {} has passed", time_words(at_ms))));
    }
    if at_ms - now_ms > DEADLINE_MAX_AHEAD_MS {
        return Err(ServerError::bad_request("deadline_too_far", format!("the deadline {} is more than a year away", time_words(at_ms))));
    }
    Ok(at_ms)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match zone::display_offset_minutes(cli.utc, std::env::var(zone::ZONE_ENV).ok().as_deref()) {
        Ok(minutes) => {
            let _ = ZONE.set(chrono::FixedOffset::east_opt(minutes * 60).expect("offsets are within ±14 h"));
        }
        Err(message) => {
            eprintln!("error: {message} (invalid_time_zone)");
            return ExitCode::from(2);
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRIDWORK_LOG").unwrap_or_else(|_| "info".into());
    let human = match cli.log_format {
        LogFormat::Human => true,
        LogFormat::Json => false,
        LogFormat::Auto => std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    // Colours only for a person at a terminal, never with NO_COLOR.
    let colors = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colors);
    if human {
        logs.compact().init();
    } else {
        logs.json().init();
    }
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // With --json a script reads the error where it reads results.
        Err(error) if json => {
            out!("{}", serde_json::json!({ "code": error.code, "message": error.message }));
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {} ({})", error.message, error.code);
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C (SIGINT), with the handler installed now.
#[cfg(unix)]
fn interrupt_handler() -> Result<impl std::future::Future<Output = ()>, ServerError> {
    let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|_| ServerError::internal("cannot catch Ctrl-C"))?;
    Ok(async move {
        signal.recv().await;
    })
}

#[cfg(not(unix))]
fn interrupt_handler() -> Result<impl std::future::Future<Output = ()>, ServerError> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Where this command's server state lives: never a folder picked silently.
fn storage(cli: &Cli) -> Result<StorageConfig, ServerError> {
    let data_dir = match (&cli.data, &cli.database_url) {
        (Some(dir), _) => dir.clone(),
        // PostgreSQL holds the blobs too: no folder is used.
        (None, Some(_)) => PathBuf::new(),
        (None, None) => {
            return Err(ServerError::bad_request(
                "data_dir_missing",
                "say where the server's data lives: --data DIR (or GRIDWORK_SERVER_DATA) for SQLite, or --database-url for PostgreSQL",
            ));
        }
    };
    if cli.database_url.is_none() && !data_dir.exists() {
        eprintln!("note: creating a new server data folder at {} (SQLite database and photo blobs)", data_dir.display());
    }
    Ok(StorageConfig { data_dir, database_url: cli.database_url.clone(), max_connections: cli.max_connections })
}

fn read_json(path: &PathBuf) -> Result<serde_json::Value, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ServerError::bad_request("file_unreadable", format!("no such file: {}", path.display())),
        kind => ServerError::bad_request("file_unreadable", format!("cannot read {}: {kind}", path.display())),
    })?;
    serde_json::from_str(&text).map_err(|_| ServerError::bad_request("invalid_json", format!("{} is not valid JSON", path.display())))
}

fn step(db: &Database, json: bool, id: &str, request: TransitionRequest) -> Result<(), ServerError> {
    let id = case_id(db, id)?;
    let caller = admin::system_caller();
    let view = db.write(|tx| match cases::transition(tx, &caller, &id, &request, now_ms())? {
        Ok(_) => cases::load_view_for(tx, &caller, &id),
        Err(rejection) => Err(rejection_error(rejection)),
    })?;
    match view {
        Some(view) if json => out!("{}", serde_json::to_string_pretty(&view).expect("serializes")),
        Some(view) => out!("{} {}", view.id, view.state.as_str()),
        None => {}
    }
    Ok(())
}

/// A case named by its id or a unique prefix of it (at least 4 characters,
/// as the device CLI shows them), like git's short hashes.
fn case_id(db: &Database, text: &str) -> Result<String, ServerError> {
    if let Ok(id) = uuid::Uuid::parse_str(text) {
        return Ok(id.to_string());
    }
    let prefix = text.trim().to_ascii_lowercase();
    if prefix.len() < 4 || prefix.len() > 36 || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(ServerError::bad_request("invalid_id", "a case id is a UUID or a unique prefix of one (at least 4 characters)"));
    }
    let found = db.read(|tx| cases::ids_with_prefix(tx, &prefix, 2))?;
    match found.as_slice() {
        [id] => Ok(id.clone()),
        [] => Err(ServerError::new(404, "not_found", "no case with an id starting so")),
        _ => Err(ServerError::bad_request("ambiguous_id", "several cases start so: give more of the id")),
    }
}

/// The password given, or asked for on the terminal (twice, not echoed);
/// a script with no terminal is told how to give it instead of waiting.
fn password_for(username: &str, given: Option<String>) -> Result<String, ServerError> {
    use std::io::IsTerminal;
    if let Some(password) = given {
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        return Err(ServerError::bad_request("password_missing", "no password: give --password or GRIDWORK_PASSWORD (there is no terminal to ask on)"));
    }
    let unreadable = |e: std::io::Error| ServerError::bad_request("password_missing", format!("could not read the password: {}", e.kind()));
    let first = rpassword::prompt_password(format!("new password for {username}: ")).map_err(unreadable)?;
    let again = rpassword::prompt_password("the same again: ").map_err(unreadable)?;
    if first != again {
        return Err(ServerError::bad_request("password_mismatch", "the two passwords differ; nothing was changed"));
    }
    Ok(first)
}

fn grid_words(grids: &[String]) -> String {
    if grids.is_empty() { String::new() } else { format!(", grids {}", grids.join(" ")) }
}

fn user_changed(json: bool, what: &str, user: admin::UserRow) {
    if json {
        out!("{}", serde_json::to_string(&user).expect("serializes"));
    } else {
        out!("{} {what}", user.info.username);
    }
}

fn transition(action: CaseAction, note: Option<String>) -> TransitionRequest {
    TransitionRequest { note, ..TransitionRequest::new(action) }
}

fn run(cli: Cli) -> Result<(), ServerError> {
    let (db, blobs) = open_storage(&storage(&cli)?)?;
    match cli.command {
        Command::Init => {
            if cli.json { out!("{}", serde_json::json!({ "initialized": true })) } else { out!("initialized") }
        }
        Command::User { command: UserCommand::Add { username, password, role, grids } } => {
            let role = Role::parse(&role).ok_or_else(|| ServerError::bad_request("invalid_role", "role must be grid_worker, volunteer, supervisor, dispatcher, admin or department"))?;
            let password = password_for(&username, password)?;
            admin::validate_password(&password)?;
            let hash = auth::hash_password(&password)?;
            let (user, unknown) = db.write(|tx| {
                let user = admin::add_user(tx, &username, &hash, role, &grids, now_ms())?;
                Ok((user, admin::unknown_grids(tx, &grids)?))
            })?;
            if !unknown.is_empty() {
                eprintln!(
                    "warning: this server has no grid {}; reports will not reach {} until the grids are imported (gridwork-server grid import FILE)",
                    unknown.join(", "),
                    user.username
                );
            }
            if cli.json {
                out!("{}", serde_json::to_string(&user).expect("serializes"));
            } else {
                out!("added {} ({}{})", user.username, user.role.as_str(), grid_words(&user.grids));
            }
        }
        Command::User { command: UserCommand::List } => {
            let users = db.read(admin::list_users)?;
            if cli.json {
                out!("{}", serde_json::to_string_pretty(&users).expect("serializes"));
            } else {
                out!("{:<20} {:<12} {:<9} grids", "username", "role", "status");
                for u in users {
                    out!("{:<20} {:<12} {:<9} {}", u.info.username, u.info.role.as_str(), if u.disabled { "disabled" } else { "active" }, u.info.grids.join(" "));
                }
            }
        }
        Command::User { command: UserCommand::Disable { username } } => user_changed(cli.json, "disabled (signed out everywhere)", db.write(|tx| admin::set_disabled(tx, &username, true))?),
        Command::User { command: UserCommand::Enable { username } } => user_changed(cli.json, "enabled", db.write(|tx| admin::set_disabled(tx, &username, false))?),
        Command::User { command: UserCommand::Password { username, password } } => {
            let password = password_for(&username, password)?;
            admin::validate_password(&password)?;
            let hash = auth::hash_password(&password)?;
            user_changed(cli.json, "has a new password (signed out everywhere)", db.write(|tx| admin::set_password(tx, &username, &hash))?);
        }
        Command::Device { command: DeviceCommand::List } => {
            let devices = db.read(admin::list_devices)?;
            if cli.json {
                out!("{}", serde_json::to_string_pretty(&devices).expect("serializes"));
            } else if devices.is_empty() {
                out!("no devices yet: a device is listed once someone signs in on it");
            } else {
                out!("{:<36} {:<20} {:<26} {:<26} {:<6} revoked", "device", "user", "first sign-in", "last sign-in", "active");
                for d in devices {
                    let revoked = d.revoked_at_ms.map_or_else(|| "-".to_owned(), time_words);
                    out!(
                        "{:<36} {} {:<26} {:<26} {:<6} {}",
                        d.device_id,
                        pad(&d.username, 20),
                        time_words(d.first_sign_in_ms),
                        time_words(d.last_sign_in_ms),
                        if d.active { "yes" } else { "no" },
                        revoked
                    );
                }
            }
        }
        Command::Device { command: DeviceCommand::Revoke { device } } => {
            let now = now_ms();
            let row = db.write(|tx| admin::revoke_device(tx, &device, now))?;
            if cli.json {
                out!("{}", serde_json::to_string(&row).expect("serializes"));
            } else {
                match row.revoked_at_ms {
                    // Revoked before: the first time is kept.
                    Some(at) if at != now => out!("device {} was already revoked on {}; its sessions are ended", row.device_id, time_words(at)),
                    _ => out!(
                        "revoked device {} (last signed in by {}): its sessions ended, it can no longer sign in, and it wipes its local data at its next contact once nothing unsent would be lost",
                        row.device_id,
                        row.username
                    ),
                }
            }
        }
        Command::Grid { command: ReferenceCommand::Import { file } } => {
            let collection = read_json(&file)?;
            let count = db.write(|tx| reference::import_grids(tx, &collection, now_ms()))?;
            if cli.json { out!("{}", serde_json::json!({ "imported": count })) } else { out!("imported {count} grids") }
        }
        Command::Grid { command: ReferenceCommand::List } => {
            let grids = db.read(reference::list_grids)?;
            if cli.json {
                out!("{}", serde_json::to_string_pretty(&grids).expect("serializes"));
            } else if grids.is_empty() {
                out!("no grids yet: gridwork-server grid import FILE (a GeoJSON FeatureCollection)");
            } else {
                out!("{:<12} {:<9} {:<12} name", "code", "tier", "parent");
                for g in grids {
                    out!("{:<12} {:<9} {:<12} {}{}", g.code, g.tier, g.parent_code.unwrap_or_else(|| "-".into()), g.name, if g.has_boundary { "" } else { "  (no boundary)" });
                }
            }
        }
        Command::Category { command: ReferenceCommand::Import { file } } => {
            let table = read_json(&file)?;
            let count = db.write(|tx| reference::import_categories(tx, &table, now_ms()))?;
            if cli.json { out!("{}", serde_json::json!({ "imported": count })) } else { out!("imported {count} categories") }
        }
        Command::Category { command: ReferenceCommand::List } => {
            let categories = db.read(reference::list_categories)?;
            if cli.json {
                out!("{}", serde_json::to_string_pretty(&categories).expect("serializes"));
            } else {
                out!("{:<8} name and time limits", "code");
                for c in categories {
                    let indent = if c.parent_code.is_some() { "  " } else { "" };
                    let limits = [(c.sign_hours, "sign"), (c.handle_hours, "handle"), (c.verify_hours, "verify")];
                    let hours: String = limits.iter().filter_map(|(h, step)| h.map(|h| format!("  {h} h to {step}"))).collect();
                    out!("{:<8} {}{}{}", format!("{indent}{}", c.code), c.name_zh, if c.active { "" } else { "  (retired)" }, hours);
                }
            }
        }
        Command::PhotoPolicy { withhold, clear } => {
            let roles = withhold
                .iter()
                .map(|r| Role::parse(r).ok_or_else(|| ServerError::bad_request("invalid_role", "role must be grid_worker, volunteer, supervisor, dispatcher, admin or department")))
                .collect::<Result<Vec<_>, _>>()?;
            let roles = if clear || !roles.is_empty() {
                db.write(|tx| {
                    blobs::set_originals_withheld_from(tx, &roles)?;
                    blobs::originals_withheld_from(tx)
                })?
            } else {
                db.read(blobs::originals_withheld_from)?
            };
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            if cli.json {
                out!("{}", serde_json::json!({ "originals_withheld_from": names }));
            } else if names.is_empty() {
                out!("originals go to every role that sees the case");
            } else {
                out!("originals withheld from: {} (they see the 2048 px rendition, without EXIF; uploaders keep their own)", names.join(", "));
            }
        }
        Command::Deadline { category, hours, sign_hours, verify_hours } => {
            let limits = reference::TimeLimits { handle_hours: hours, sign_hours, verify_hours };
            db.write(|tx| reference::set_deadline(tx, &category, &limits))?;
            if cli.json {
                out!("{}", serde_json::json!({ "category": category, "sign_hours": sign_hours, "handle_hours": hours, "verify_hours": verify_hours }));
            } else {
                let sign = sign_hours.map(|h| format!("{h} h to sign, ")).unwrap_or_default();
                let verify = verify_hours.map(|h| format!(", {h} h to verify")).unwrap_or_default();
                out!("category {category}: {sign}{hours} h to handle{verify}");
            }
        }
        Command::Serve { listen, access_ttl_secs, refresh_ttl_secs, trusted_proxies } => {
            let policy = TokenPolicy { access_ttl_ms: access_ttl_secs * 1000, refresh_ttl_ms: refresh_ttl_secs * 1000 };
            let runtime = tokio::runtime::Runtime::new().map_err(|_| ServerError::internal("cannot start the runtime"))?;
            let backend = db.dialect();
            let app = gridwork_server::app_state(db, blobs, policy);
            let served = runtime.block_on({
                let app = app.clone();
                async move {
                    let listener = tokio::net::TcpListener::bind(&listen)
                        .await
                        .map_err(|e| ServerError::new(500, "listen_failed", format!("cannot listen on {listen}: {}", e.kind())))?;
                    let address = listener.local_addr().map_err(|_| ServerError::internal("no local address"))?;
                    // Ctrl-C is caught from before the address is announced: a
                    // supervisor that stops the server as soon as it reads the
                    // line gets a clean stop, not the default kill.
                    let interrupted = interrupt_handler()?;
                    // Said, not required: with stdout closed the server
                    // still serves (`out!` would end it).
                    let _ = writeln!(std::io::stdout(), "gridwork-server listening on http://{address}").and_then(|()| std::io::stdout().flush());
                    tracing::info!(%address, backend = ?backend, "serving");
                    let limits = gridwork_server::ConnectionLimits { trusted_proxies, ..Default::default() };
                    gridwork_server::serve_with(listener, app, limits, interrupted)
                    .await
                    .map_err(|_| ServerError::internal("server failed"))
                }
            });
            // The synchronous PostgreSQL clients must be dropped outside the
            // runtime: stop it first, then release the last handle.
            drop(runtime);
            drop(app);
            served?;
            tracing::info!("stopped");
            return Ok(());
        }
        Command::Incidents { command: IncidentsCommand::List { state } } => {
            let caller = admin::system_caller();
            if let Some(state) = &state
                && gridwork_protocol::CaseState::parse(state).is_none()
            {
                let known: Vec<&str> = <gridwork_protocol::CaseState as strum::IntoEnumIterator>::iter().map(Named::as_str).collect();
                return Err(ServerError::bad_request("invalid_state", format!("unknown state; one of: {}", known.join(", "))));
            }
            let views = db.read(|tx| cases::list_for(tx, &caller, state.as_deref(), None, u32::MAX))?;
            if cli.json {
                out!("{}", serde_json::to_string_pretty(&views).expect("serializes"));
            } else if views.is_empty() {
                out!("no cases{}", state.map(|s| format!(" in state {s}")).unwrap_or_default());
            } else {
                // The category's name beside its code: people know 楼道堆物, not 0602.
                let names: std::collections::HashMap<String, String> =
                    db.read(reference::list_categories)?.into_iter().map(|c| (c.code, c.name_zh)).collect();
                let category = |code: &str| format!("{code} {}", names.get(code).map_or("", String::as_str));
                out!("{:<36} {:<14} {:<16} {:<12} photos", "id", "state", "category", "reporter");
                for v in views {
                    let arrived = v.photos.iter().filter(|p| p.arrived).count();
                    out!("{} {:<14} {} {:<12} {}/{} arrived", v.id, v.state.as_str(), pad(&category(&v.category_code), 16), v.reporter, arrived, v.photos.len());
                }
            }
        }
        Command::Incidents { command: IncidentsCommand::Show { id } } => {
            let id = case_id(&db, &id)?;
            let view = db
                .read(|tx| cases::load_view_for(tx, &admin::system_caller(), &id))?
                .ok_or_else(|| ServerError::new(404, "not_found", "no case with this id"))?;
            if cli.json {
                out!("{}", serde_json::to_string_pretty(&view).expect("serializes"));
            } else {
                out!("case      {}", view.id);
                out!("state     {}", view.state.as_str());
                let name = db.read(reference::list_categories)?.into_iter().find(|c| c.code == view.category_code).map(|c| c.name_zh).unwrap_or_default();
                out!("category  {} {name}   grid {}", view.category_code, view.grid_code.as_deref().unwrap_or("-"));
                out!("reporter  {}", view.reporter);
                out!("text      {}", view.description);
                if let Some(assignee) = &view.assignee {
                    out!("assignee  {assignee}");
                }
                if let Some(deadline) = view.deadline_ms {
                    out!("deadline  {}", time_words(deadline));
                }
                if let Some((step, due)) = step_besides_handling(view.state).zip(view.step_deadline_ms) {
                    out!("{:<9} {}", format!("{} by", step.as_str()), time_words(due));
                }
                if let Some(rating) = view.rating {
                    out!("rating    {rating} of 5");
                }
                let arrived = view.photos.iter().filter(|p| p.arrived).count();
                out!("photos    {arrived} of {} arrived", view.photos.len());
                for e in &view.timeline {
                    out!("  {} {:<12} {:<10} -> {} {}", time_words(e.at_ms), e.action, e.actor, e.to_state.as_str(), e.note.as_deref().unwrap_or_default());
                }
            }
        }
        Command::Timeline { id } => {
            let id = case_id(&db, &id)?;
            let entries = db.read(|tx| cases::timeline(tx, &admin::system_caller(), &id))?;
            if cli.json {
                out!("{}", serde_json::to_string_pretty(&entries).expect("serializes"));
            } else {
                out!("{:<25} {:<14} {:<12} {:<30} note", "at", "action", "by", "state");
                for e in entries {
                    let moved = format!("{} -> {}", e.from_state.map_or("", Named::as_str), e.to_state.as_str());
                    out!("{} {:<14} {:<12} {:<30} {}", time_words(e.at_ms), e.action, e.actor, moved, e.note.unwrap_or_default());
                }
            }
        }
        Command::Trail { id } => {
            let id = case_id(&db, &id)?;
            let export = db.read(|tx| cases::trail_export(tx, &id))?.ok_or_else(|| ServerError::not_found("incident"))?;
            if cli.json {
                out!("{}", serde_json::to_string_pretty(&export).expect("serializes"));
            } else {
                for e in &export.entries {
                    out!("{:>6} {} {}", e.seq, e.hash.as_deref().unwrap_or("(before chaining)"), e.facts);
                }
                match export.check.broken_at {
                    None => out!("intact: {} entries, head {}", export.check.entries, export.check.head),
                    Some(seq) => out!("BROKEN at entry {seq}: edited, removed or inserted after it was written"),
                }
            }
            if let Some(seq) = export.check.broken_at {
                return Err(ServerError::new(409, "trail_broken", format!("the chain breaks at entry {seq}")));
            }
        }
        Command::Register { id, note } => step(&db, cli.json, &id, transition(CaseAction::Register, note))?,
        Command::Reject { id, note } => step(&db, cli.json, &id, transition(CaseAction::Reject, Some(note)))?,
        Command::Dispatch { id, assignee, department, deadline, deadline_ms, note } => {
            let mut request = transition(CaseAction::Dispatch, note);
            request.assignee = assignee;
            request.department = department;
            request.deadline_ms = match deadline {
                Some(text) => Some(parse_deadline(&text, now_ms())?),
                None => deadline_ms,
            };
            step(&db, cli.json, &id, request)?
        }
        Command::Close { id, note, rating } => step(&db, cli.json, &id, TransitionRequest { rating, ..transition(CaseAction::Close, note) })?,
        Command::Reopen { id, note } => step(&db, cli.json, &id, transition(CaseAction::Reopen, note))?,
        Command::Stats { grid, user, from_ms, to_ms } => {
            let query = gridwork_protocol::stats::StatsQuery { grid_code: grid, user, from_ms, to_ms: to_ms.unwrap_or(i64::MAX).min(now_ms() + 1) };
            let stats = db.read(|tx| cases::stats(tx, &admin::system_caller(), &query))?;
            if cli.json {
                out!("{}", serde_json::to_string_pretty(&stats).expect("serializes"));
            } else {
                let whose = match (&query.grid_code, &query.user) {
                    (Some(grid), _) => format!("grid {grid}"),
                    (None, Some(user)) => user.clone(),
                    (None, None) => "every case".to_owned(),
                };
                out!("figures of {whose}, {} to {}", time_words(query.from_ms), time_words(query.to_ms));
                for line in stats.lines() {
                    out!("  {line}");
                }
            }
        }
        Command::Merge { id, into, note } => {
            let into = case_id(&db, &into)?.parse().map_err(|_| ServerError::internal("a stored case id is not a UUID"))?;
            step(&db, cli.json, &id, TransitionRequest { merge_into: Some(into), ..transition(CaseAction::Merge, note) })?
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_858_200_000; // 2026-11-28 17:30 +08:00

    #[test]
    fn deadlines_as_dispatchers_write_them() {
        assert_eq!(parse_deadline("24h", NOW).unwrap(), NOW + 86_400_000);
        assert_eq!(parse_deadline("1d12h", NOW).unwrap(), NOW + 36 * 3_600_000);
        assert_eq!(parse_deadline(" 90m ", NOW).unwrap(), NOW + 90 * 60_000);
        // 2026-11-30 18:00 in +08:00 is 10:00 UTC.
        assert_eq!(parse_deadline("2026-11-30 18:00", NOW).unwrap(), 1_796_032_800_000);
        assert_eq!(parse_deadline("2026-11-30T10:00:00Z", NOW).unwrap(), 1_796_032_800_000);
        assert_eq!(parse_deadline("2026-11-30", NOW).unwrap(), 1_796_054_399_000, "the end of that day");
        for nonsense in ["", "soon", "24", "h", "0h", "24x", "2026-13-01 10:00", "30/11/2026", "99999999999999999d"] {
            assert_eq!(parse_deadline(nonsense, NOW).unwrap_err().code, "invalid_deadline", "{nonsense:?}");
        }
        assert_eq!(parse_deadline("99999d", NOW).unwrap_err().code, "deadline_too_far");
        assert_eq!(parse_deadline("2030-01-01", NOW).unwrap_err().code, "deadline_too_far");
        assert!(parse_deadline("365d", NOW).is_ok());
        assert_eq!(parse_deadline("2026-11-28 09:00", NOW).unwrap_err().code, "deadline_in_past");
    }
}
