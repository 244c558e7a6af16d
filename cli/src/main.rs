//! `gridwork`: a terminal device over gridwork-core.
//!
//! It acts as a phone through the same facade a phone's shell calls
//! (`gridwork_core::Gridwork`): capture reports with photos offline, see the
//! outbox, sync, list incidents. `gridwork demo` runs the whole loop against
//! an in-process reference server with zero setup.

mod commands;
mod context;
mod demo;
mod device;
mod drafts;
mod error;
mod output;
mod tasks;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::CliError;

const KEY_HELP: &str = "\
Device key:
  The device database is encrypted (SQLCipher) like a phone's, with a 32-byte key
  written as 64 hex digits. It is taken from, in this order:
    --key-file FILE           a file holding the 64 hex digits
    GRIDWORK_DEVICE_KEY       an environment variable holding them
    DIR/device.key            otherwise generated at random on first use, mode 0600.
  The generated key file is for development only: on a phone the key lives in the
  Android Keystore or the iOS Keychain, and anyone who can read DIR/device.key can
  read the database.

Accounts:
  One device directory holds several accounts, each in its own encrypted store.
  `login` makes the account (username@server-host:port) current; before any login
  commands use the account \"local\". The next login takes over what \"local\"
  holds unsent (reports, photos, queued operations) and sends it with its sync.

Errors:
  Exit status 1 (2 for wrong usage, 130 when Ctrl-C stopped the command;
  `gridwork sync` has its own, see its --help). With --json, {\"code\": ..., \"message\": ...} on
  stdout; without, \"error: message (code)\" on stderr. Codes are stable.

Logs:
  GRIDWORK_LOG=info (or debug, or gridwork_core=debug) writes the core's log records
  to stderr; they carry ids, counts and codes, never personal data or secrets.";

const SYNC_EXIT_HELP: &str = "\
Exit status:
  0  the round completed: everything queued was sent and the pull is current
  1  an error before or around the round (see the message and its code)
  3  the server could not be reached; nothing was lost, run again later
  4  not signed in on this account: run `gridwork login`
  5  the session ended (signed out elsewhere, revoked): log in again
  6  the server refused some operations: they are parked, see `gridwork outbox`
  7  the round did not finish (time budget, server busy): run again
  130  stopped by Ctrl-C at a request boundary: what was sent is kept, run again
With --json the report carries the same as \"outcome\" and \"exit_status\".

Examples:
  gridwork sync
  gridwork sync --budget-secs 20 --json";

#[derive(Parser, Debug)]
#[command(name = "gridwork", version, about = "Gridwork on the command line: a phone's offline-first core in a terminal", after_help = KEY_HELP)]
pub struct Cli {
    /// The device's data directory (its private storage); created when missing
    #[arg(long, global = true, value_name = "DIR", env = "GRIDWORK_DEVICE")]
    pub device: Option<PathBuf>,

    /// File holding the database key as 64 hex digits (else GRIDWORK_DEVICE_KEY,
    /// else a generated DIR/device.key: for development only)
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// Act on this account instead of the current one (e.g. "local")
    #[arg(long, global = true, value_name = "ACCOUNT")]
    pub account: Option<OsString>,

    /// Machine-readable JSON on stdout (errors too); its times are UTC
    #[arg(long, global = true)]
    pub json: bool,

    /// Show times in UTC instead of the user's zone (GRIDWORK_TIME_ZONE, e.g.
    /// +08:00 or UTC; default +08:00)
    #[arg(long, global = true)]
    pub utc: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sign in to a server and make that account current
    #[command(after_help = "Examples:\n  gridwork --device ./phone login --server https://gridwork.example.org --username w1\n      (asks for the password)\n  GRIDWORK_PASSWORD=… gridwork --device ./phone login --server http://127.0.0.1:8470 --username w1")]
    Login(LoginArgs),
    /// Forget the session of the current account (its unsent work stays queued) and go back to "local"; --wipe also removes its data from this device
    #[command(after_help = "Examples:\n  gridwork --device ./phone logout\n  gridwork --device ./phone logout --wipe                      (refused while work is unsent)\n  gridwork --device ./phone logout --wipe --export ./handover   (a revoked or handed-back phone)")]
    Logout(LogoutArgs),
    /// The current account, who is signed in, and what is still unsent
    #[command(after_help = "Examples:\n  gridwork --device ./phone status\n  gridwork --device ./phone status --json")]
    Status,
    /// Every account this device holds, with what each has unsent
    #[command(after_help = "Examples:\n  gridwork --device ./phone accounts\n  gridwork --device ./phone --account local outbox")]
    Accounts,
    /// Capture a report: draft, photos, submit; queued for the next sync
    #[command(after_help = "Examples:\n  gridwork --device ./phone report --category 0602 --description '楼道堆物' --lat 31.23 --lon 121.465 --photo hazard.jpg\n  ID=$(gridwork --device ./phone report --category 0602 --photo hazard.jpg)   # location from the photo's GPS\n  gridwork --device ./phone report --category 0602 --photo before.jpg --after after.jpg --resolved '已现场清理'")]
    Report(ReportArgs),
    /// Correct your rejected report and send it again, linked to the first (text copied; give new photos)
    #[command(after_help = "Examples:\n  gridwork --device ./phone resubmit 01a23d67 --description '补充：三楼楼道' --photo more.jpg")]
    Resubmit {
        /// The rejected report's id
        id: OsString,
        /// A corrected description (default: the first report's)
        #[arg(long, value_name = "TEXT")]
        description: Option<OsString>,
        /// Photo evidence; repeat for several
        #[arg(long, value_name = "FILE")]
        photo: Vec<PathBuf>,
    },
    /// Drafts not submitted (an interrupted `report`, say): list, submit as they are, or discard
    #[command(after_help = "Examples:\n  gridwork --device ./phone drafts\n  gridwork --device ./phone drafts submit 01a23d67\n  gridwork --device ./phone drafts discard 01a23d67")]
    Drafts {
        #[command(subcommand)]
        command: Option<drafts::DraftsCommand>,
    },
    /// The device's category table
    #[command(after_help = "Examples:\n  gridwork --device ./phone categories")]
    Categories,
    /// The device's grids
    #[command(after_help = "Examples:\n  gridwork --device ./phone grids")]
    Grids,
    /// Import grids from a GeoJSON FeatureCollection file
    #[command(after_help = "Examples:\n  gridwork --device ./phone import-grids docs/examples/grids.geojson")]
    ImportGrids {
        /// GeoJSON file
        file: PathBuf,
    },
    /// Incidents on this device, newest first
    #[command(after_help = "Examples:\n  gridwork --device ./phone incidents\n  gridwork --device ./phone incidents --status dispatched --grid G-001 --limit 20")]
    Incidents(IncidentsArgs),
    /// One incident with its photos, audit trail and sync state
    #[command(after_help = "Examples:\n  gridwork --device ./phone show 01a23d67          (a unique prefix of the id)\n  gridwork --device ./phone show 01a23d67 --json")]
    Show {
        /// Incident id
        id: OsString,
    },
    /// Your tasks (待办): cases dispatched to you, and handled cases of your grids to verify; soonest deadline first
    #[command(after_help = "Examples:\n  gridwork --device ./phone tasks\n  gridwork --device ./phone tasks --kind verify --light red")]
    Tasks(tasks::TasksArgs),
    /// Work a task: show, sign, start, handle, hand-back, verify (each queued for the next sync)
    #[command(after_help = "Examples:\n  gridwork --device ./dept task sign 01a23d67\n  gridwork --device ./dept task handle 01a23d67 --note '已清理' --photo after.jpg\n  gridwork --device ./phone task verify 01a23d67 --pass --rating 4 --photo check.jpg")]
    Task {
        #[command(subcommand)]
        command: tasks::TaskCommand,
    },
    /// The review queue (核实): list volunteers' reports in your grids, approve, reject, merge, ask
    #[command(after_help = "Examples:\n  gridwork --device ./phone review list\n  gridwork --device ./phone review approve 01a23d67 --note '现场核实属实'\n  gridwork --device ./phone review reject 01a23d67 --note '已自行清理'")]
    Review {
        #[command(subcommand)]
        command: tasks::ReviewCommand,
    },
    /// Figures (统计) of you, a grid or a person for a period, computed from the cases on this device
    #[command(after_help = "Examples:\n  gridwork --device ./phone stats\n  gridwork --device ./phone stats --grid G-001")]
    Stats(tasks::StatsArgs),
    /// A photo of a case as a file: this device's own, or fetched from the server and kept (the Nth as `show` lists them)
    #[command(after_help = "Examples:\n  gridwork --device ./phone photo 01a23d67 1                (the first photo, 1280 px)\n  gridwork --device ./phone photo 01a23d67 2 --size original")]
    Photo {
        /// Incident id (a unique prefix)
        id: OsString,
        /// Which photo, counting from 1 as `show` lists them
        number: usize,
        /// thumb (320 px), 1280, 2048 or original
        #[arg(long, default_value = "1280")]
        size: String,
    },
    /// 归档留痕: check this device's hash-chained audit trail (exit 1 naming the first entry edited in the database file)
    #[command(after_help = "Examples:\n  gridwork --device ./phone trail\n  gridwork --device ./phone trail --json")]
    Trail,
    /// What is still waiting to be sent
    #[command(after_help = "Examples:\n  gridwork --device ./phone outbox\n  gridwork --device ./phone outbox --json")]
    Outbox,
    /// Queue a parked operation again (after fixing what the server objected to)
    #[command(after_help = "Examples:\n  gridwork --device ./phone retry 01a23d70        (a unique prefix, from `gridwork outbox`)")]
    Retry {
        /// Operation id (from `gridwork outbox`)
        op_id: OsString,
    },
    /// Run one sync: push, upload photos, pull
    #[command(after_help = SYNC_EXIT_HELP)]
    Sync(SyncArgs),
    /// Run the whole loop on embedded defaults: server, phone, capture, sync, dispatch
    #[command(after_help = "Examples:\n  gridwork demo\n  gridwork demo --json")]
    Demo,
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell
    #[command(after_help = "Examples:\n  gridwork completions bash > ~/.local/share/bash-completion/completions/gridwork\n  gridwork completions zsh > ~/.zfunc/_gridwork\n  gridwork completions fish > ~/.config/fish/completions/gridwork.fish")]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Also remove the account's data from this device: database, photos,
    /// everything pulled. Refused while work is unsent (sync first, or --export).
    #[arg(long)]
    pub wipe: bool,
    /// With --wipe: first write the unsent work (unsent.json and its photos,
    /// plain files) into a new folder inside DIR.
    #[arg(long, value_name = "DIR", requires = "wipe")]
    pub export: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Server address, e.g. https://gridwork.example.org or http://127.0.0.1:8470
    #[arg(long, value_name = "URL")]
    pub server: OsString,
    /// Your user name on that server
    #[arg(long, value_name = "U")]
    pub username: OsString,
    /// Password (or the GRIDWORK_PASSWORD environment variable); asked for,
    /// without echo, when neither is given
    #[arg(long, value_name = "P", env = "GRIDWORK_PASSWORD", hide_env_values = true)]
    pub password: Option<OsString>,
    /// Allow plain http to a host that is not loopback (tokens travel unencrypted)
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// Do not run the first sync after signing in (it fetches categories and
    /// grids, so reports captured offline find their grid)
    #[arg(long)]
    pub no_sync: bool,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Category code (see `gridwork categories`), e.g. 0602
    #[arg(long, value_name = "CODE")]
    pub category: OsString,
    /// What is wrong, in the reporter's words
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: OsString,
    /// Address or landmark
    #[arg(long, value_name = "TEXT")]
    pub address: Option<OsString>,
    /// Latitude (WGS84 degrees); with --lon. Without both, the first photo's
    /// GPS (EXIF) is used when it has one
    #[arg(long, value_name = "LAT", allow_negative_numbers = true)]
    pub lat: Option<OsString>,
    /// Longitude (WGS84 degrees); with --lat
    #[arg(long, value_name = "LON", allow_negative_numbers = true)]
    pub lon: Option<OsString>,
    /// Location accuracy in metres
    #[arg(long, value_name = "METRES")]
    pub accuracy: Option<OsString>,
    /// Photo evidence (JPEG, PNG or WebP); repeat for several
    #[arg(long, value_name = "FILE")]
    pub photo: Vec<PathBuf>,
    /// 现场解决: you fixed it on the spot; say what you did. The case goes to
    /// verification instead of dispatch (needs at least one --after photo)
    #[arg(long, value_name = "TEXT", requires = "after")]
    pub resolved: Option<OsString>,
    /// An after-photo of what was done on the spot (with --resolved); repeatable
    #[arg(long, value_name = "FILE", requires = "resolved")]
    pub after: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct IncidentsArgs {
    /// Only this status (draft, submitted, reported, registered, dispatched, …); repeatable
    #[arg(long, value_name = "STATUS")]
    pub status: Vec<OsString>,
    /// Only this category (a 大类 includes its 小类)
    #[arg(long, value_name = "CODE")]
    pub category: Option<OsString>,
    /// Only this grid
    #[arg(long, value_name = "CODE")]
    pub grid: Option<OsString>,
    /// At most this many
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Time budget for this run, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub budget_secs: u64,
}

fn main() {
    init_logs();
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => usage_error(e, &args),
    };
    let json = cli.json;
    match commands::run(cli) {
        Ok(0) => {}
        Ok(status) => std::process::exit(status),
        Err(error) => {
            report_error(&error, json);
            std::process::exit(error.exit_code());
        }
    }
}

/// With `GRIDWORK_LOG` set (`info`, `debug`, `gridwork_core=debug`, ...),
/// the core's and the in-process demo server's log records go to stderr;
/// without it, nothing is logged. They carry no personal data: ids, counts
/// and codes, never text, names, places, passwords or tokens.
fn init_logs() {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("GRIDWORK_LOG") else { return };
    // Also takes the `log` records of the core (tracing-log).
    let colors = output::colors_wanted(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colors).compact().try_init();
}

/// Help and version go out as clap prints them; wrong usage follows the
/// error contract (JSON on stdout with --json).
fn usage_error(e: clap::Error, args: &[OsString]) -> ! {
    use clap::error::ErrorKind;
    let wants_json = args.iter().skip(1).any(|a| a == "--json");
    let informational = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
    let invalid_utf8 = e.kind() == ErrorKind::InvalidUtf8;
    if informational || (!wants_json && !invalid_utf8) {
        e.exit();
    }
    let rendered = e.render().to_string();
    // The error's own lines (clap continues a message on indented lines,
    // e.g. the missing arguments), without the usage and help hints.
    let message = rendered
        .lines()
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_owned();
    let message = if message.is_empty() { "invalid arguments".to_owned() } else { message };
    let error = if invalid_utf8 {
        gridwork_core::Error::TextInvalidUtf8 { field: "argument" }.into()
    } else {
        CliError::usage(message)
    };
    report_error(&error, wants_json);
    std::process::exit(error.exit_code());
}

fn report_error(error: &CliError, json: bool) {
    if json {
        output::print_json(&error.to_json());
    } else {
        let label = output::paint("error:", output::Tone::Bad, output::colors_wanted(std::io::IsTerminal::is_terminal(&std::io::stderr())));
        eprintln!("{label} {} ({})", output::printable(&error.message, true), error.code);
    }
}
