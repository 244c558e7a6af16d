//! Deterministic simulation of many devices syncing with one server.
//!
//! Ten-odd grid workers, volunteers and a supervisor each run a real
//! [`Gridwork`] store (own directory, own fixed clock) against one
//! in-process gridwork-server database. There is no HTTP: [`SimTransport`]
//! calls the server's domain code directly (`push::push`, `pull::pull`,
//! `BlobStore`, `auth`), round-trips every reply through JSON as the wire
//! would, and injects faults drawn from a seeded RNG:
//!
//! - the request is lost before it reaches the server (`Network`);
//! - the server applies the request and the reply is lost (`Network`, but
//!   the effect happened: the replay must come back as a duplicate);
//! - 503 / 429 from an overloaded front end (with or without Retry-After);
//! - a captive portal answers 200 with HTML instead of the server
//!   (`Malformed`, nothing applied);
//! - the reply is cut off after the server applied it (`Malformed`);
//! - the app is killed in the middle of a request, before or after the
//!   server applied it (the store is dropped and reopened);
//! - a middlebox delivers the request twice (the device sees the second
//!   reply: a duplicate push, a chunk at a stale offset, a spent refresh
//!   token).
//!
//! Each step the scenario RNG picks a device and what its user does
//! (capture a report, sometimes with photos, sometimes a photo forwarded
//! from another report; sync with some trigger and budget; lose or regain
//! the link, with or without the shell noticing; switch to metered data;
//! restart the app; sign out and in; have the device clock jump by hours)
//! or lets the command center work cases (register, reject, merge,
//! dispatch to a random worker, start, handle, close, reopen) or retire a
//! category, so reports already queued in it are refused for good. The
//! server may cap pull pages (per seed) to exercise paging. Tokens expire
//! as server time advances.
//!
//! Determinism: device clocks are fixed (each wrong by its own skew) and
//! only jump by an hour or more, and the server clock advances by a fixed
//! amount per step. The engine's jitter seed is not injectable
//! (`Gridwork::open_with_clock` seeds it from `rand::random()`), but with
//! fixed device time a backoff never expires by itself: only the triggers
//! the scenario chooses end it, so jitter cannot change what happens. Sync
//! budgets are wall-clock, so they are either zero or generous. A seed
//! replays exactly; the trace digest proves it.
//!
//! At the end faults stop, every device syncs until its round completes,
//! and [`Sim::check`] verifies that nothing acknowledged was lost or
//! applied twice, that every photo arrived byte-identical, that every
//! outbox drained (except reports the server legitimately refused, and the
//! photos waiting behind them), and that every device holds exactly the
//! cases the server lets it see, each in the server's state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use gridwork_core::clock::{Clock, ManualClock};
use gridwork_core::sync::{Transport, TransportError};
use gridwork_core::{DraftFields, Durability, GeoPoint, Gridwork, IncidentFilter, MeteredPolicy, OperationKind, OperationState, SyncReport, Trigger, Uuid};
use gridwork_protocol::{Named, OperationEnvelope};
use gridwork_protocol::api::{BlobStatus, OperationOutcome, PhotoRendition, PullResponse, PushResponse, Role, SkipSpan, TokenResponse, TransitionRequest};
use gridwork_server::auth::{self, Caller, TokenPolicy};
use gridwork_server::blobs::BlobStore;
use gridwork_server::db::Database;
use gridwork_server::{ServerError, StorageConfig, admin, cases, params, pull, push};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::server::PASSWORD;

/// Server time at the start of every run (2026-03-01T00:00:00Z).
pub const EPOCH_MS: i64 = 1_772_323_200_000;
const SERVER_URL: &str = "https://sim.gridwork.invalid";

/// Probability of each fault per request, while faults are on.
#[derive(Clone, Copy, Debug)]
pub struct FaultRates {
    /// Lost before it reaches the server.
    pub drop_request: f64,
    /// Applied by the server, reply lost.
    pub drop_response: f64,
    /// 503 or 429 from the front end, nothing applied.
    pub unavailable: f64,
    /// A captive portal answers 200 with HTML; nothing applied.
    pub portal: f64,
    /// Applied, and the reply is cut off half way.
    pub truncated: f64,
    /// The app is killed during the request (half before, half after the
    /// server applied it).
    pub crash: f64,
    /// A middlebox delivers the request twice; the device sees the second reply.
    pub duplicated: f64,
    /// A photo chunk's bytes are damaged on the way (its checksum header
    /// is intact), so the server's per-chunk check catches it. Off by
    /// default: TLS makes it rare (GRIDWORK_SIM_CORRUPT=1 turns it on).
    pub corrupted_chunk: f64,
}

impl Default for FaultRates {
    fn default() -> Self {
        FaultRates { drop_request: 0.06, drop_response: 0.06, unavailable: 0.05, portal: 0.02, truncated: 0.03, crash: 0.01, duplicated: 0.02, corrupted_chunk: 0.0 }
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub devices: usize,
    pub steps: usize,
    pub faults: FaultRates,
    /// Server milliseconds per step (tokens expire as time goes by).
    pub step_ms: i64,
    pub access_ttl_ms: i64,
    /// Cap on pull page size (the server may answer less than asked), to
    /// exercise paging; `None` picks per seed.
    pub pull_page_cap: Option<u32>,
    /// Device clocks jump by hours (network time, or the user).
    pub clock_jumps: bool,
    /// Print the whole trace (GRIDWORK_SIM_TRACE); the runner only reads it.
    pub keep_trace: bool,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            devices: 10,
            steps: 500,
            faults: FaultRates::default(),
            step_ms: 250,
            access_ttl_ms: 40_000,
            pull_page_cap: None,
            clock_jumps: true,
            keep_trace: false,
        }
    }
}

/// Counts for the summary line.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub requests: u64,
    pub drop_request: u64,
    pub drop_response: u64,
    pub unavailable: u64,
    pub portal: u64,
    pub truncated: u64,
    pub crashes: u64,
    pub duplicated: u64,
    pub corrupted_chunks: u64,
    pub clock_jumps: u64,
    pub offline_refusals: u64,
    pub captures: u64,
    pub photos: u64,
    pub large_photos: u64,
    pub syncs: u64,
    pub restarts: u64,
    pub relogins: u64,
    /// Rounds that ended asking the user to sign in again.
    pub login_prompts: u64,
    pub transitions: u64,
    pub transitions_refused: u64,
    pub categories_retired: u64,
    pub forwarded_photos: u64,
    /// Reports the server refused for a reason the user must act on.
    pub legit_rejections: u64,
    pub duplicates_seen: u64,
    pub final_passes: u64,
}

/// The result of one run.
#[derive(Debug)]
pub struct Outcome {
    pub seed: u64,
    pub stats: Stats,
    /// SHA-256 over every trace line: equal for equal seeds.
    pub trace_digest: String,
    pub trace_tail: Vec<String>,
    pub full_trace: Vec<String>,
    pub violations: Vec<String>,
    /// Devices named in a violation, for their trails.
    pub devices_in_violation: Vec<usize>,
    pub elapsed: Duration,
}

impl Outcome {
    /// The trace lines about device `d` worth reading first: every clock
    /// jump, restart and log-in, and its last `n` events.
    pub fn device_trail(&self, d: usize, n: usize) -> Vec<String> {
        let tag = format!(" d{d} ");
        let lines: Vec<&String> = self.full_trace.iter().filter(|l| l.contains(&tag)).collect();
        let recent = lines.len().saturating_sub(n);
        let landmark = |l: &str| ["clock jumps", "restart", "logged", "retired", "damaged"].iter().any(|k| l.contains(k));
        lines.iter().enumerate().filter(|(i, l)| *i >= recent || landmark(l)).map(|(_, l)| (*l).clone()).collect()
    }

    pub fn summary(&self) -> String {
        let s = &self.stats;
        format!(
            "seed {:#x}: {} captures ({} photos, {} multi-chunk), {} syncs, {} requests; faults: {} lost requests, {} lost replies, {} 503/429, {} portal, {} truncated, {} kills, {} delivered twice, {} corrupted chunks; {} clock jumps; {} offline refusals, {} restarts, {} login prompts, {} re-logins, {} duplicate replies; {} command-center steps ({} refused), {} categories retired, {} forwarded photos, {} legitimately refused reports; {} final passes; {} violations; {:.1?}; trace {}",
            self.seed,
            s.captures,
            s.photos,
            s.large_photos,
            s.syncs,
            s.requests,
            s.drop_request,
            s.drop_response,
            s.unavailable,
            s.portal,
            s.truncated,
            s.crashes,
            s.duplicated,
            s.corrupted_chunks,
            s.clock_jumps,
            s.offline_refusals,
            s.restarts,
            s.login_prompts,
            s.relogins,
            s.duplicates_seen,
            s.transitions,
            s.transitions_refused,
            s.categories_retired,
            s.forwarded_photos,
            s.legit_rejections,
            s.final_passes,
            self.violations.len(),
            self.elapsed,
            &self.trace_digest[..16],
        )
    }
}

// ---------------------------------------------------------------------------
// The world: server, fault RNG, trace, shared by the transports.

struct Trace {
    hasher: Sha256,
    tail: VecDeque<String>,
    full: Option<Vec<String>>,
}

const TRACE_TAIL: usize = 60;

pub struct SimServer {
    pub db: Database,
    pub blobs: BlobStore,
    pub data_dir: PathBuf,
    pub policy: TokenPolicy,
    now_ms: AtomicI64,
}

impl SimServer {
    pub fn now(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

struct World {
    server: SimServer,
    rates: FaultRates,
    faults_on: AtomicBool,
    pull_page_cap: u32,
    fault_rng: Mutex<StdRng>,
    trace: Mutex<Trace>,
    stats: Mutex<Stats>,
    step: AtomicI64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl World {
    fn log(&self, line: String) {
        let line = format!("{:>4} {line}", self.step.load(Ordering::SeqCst));
        let mut trace = lock(&self.trace);
        trace.hasher.update(line.as_bytes());
        trace.hasher.update(b"\n");
        if trace.tail.len() == TRACE_TAIL {
            trace.tail.pop_front();
        }
        trace.tail.push_back(line.clone());
        if let Some(full) = &mut trace.full {
            full.push(line);
        }
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        lock(&self.stats)
    }

    fn pick_fault(&self) -> Fault {
        if !self.faults_on.load(Ordering::SeqCst) {
            return Fault::None;
        }
        let r = self.rates;
        let mut rng = lock(&self.fault_rng);
        let x: f64 = rng.random();
        let mut edge = 0.0;
        let mut hit = |p: f64| {
            edge += p;
            x < edge
        };
        if hit(r.drop_request) {
            Fault::DropRequest
        } else if hit(r.drop_response) {
            Fault::DropResponse
        } else if hit(r.unavailable) {
            let status = if rng.random_bool(0.7) { 503 } else { 429 };
            let retry_after_ms = if rng.random_bool(0.5) { Some(rng.random_range(1..30) * 1_000) } else { None };
            Fault::Unavailable { status, retry_after_ms }
        } else if hit(r.portal) {
            Fault::Portal
        } else if hit(r.truncated) {
            Fault::Truncated
        } else if hit(r.crash) {
            if rng.random_bool(0.5) { Fault::CrashBefore } else { Fault::CrashAfter }
        } else if hit(r.duplicated) {
            Fault::Duplicated
        } else if hit(r.corrupted_chunk) {
            Fault::Corrupted
        } else {
            Fault::None
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    DropRequest,
    DropResponse,
    Unavailable { status: u16, retry_after_ms: Option<i64> },
    Portal,
    Truncated,
    CrashBefore,
    CrashAfter,
    Duplicated,
    Corrupted,
}

/// The panic payload of a simulated app kill.
#[derive(Debug)]
pub struct SimCrash;

fn quiet_crash_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if info.payload().is::<SimCrash>() {
                return;
            }
            previous(info)
        }));
    });
}

fn http_error(e: ServerError) -> TransportError {
    TransportError::Http { status: e.status, code: e.code.to_owned(), message: e.message, retry_after_ms: None }
}

// ---------------------------------------------------------------------------
// The transport.

/// A device's link to the in-process server, with injected faults.
pub struct SimTransport {
    device: usize,
    device_id: String,
    world: Arc<World>,
    /// The radio actually works (the shell may not know yet).
    link_up: AtomicBool,
}

impl SimTransport {
    /// One request: maybe lost, maybe refused by a front end, maybe applied
    /// with its reply lost or mangled. `serve` returns the reply's JSON bytes.
    fn exchange<T>(
        &self,
        call: &str,
        serve: impl Fn(&SimServer, i64, bool) -> Result<Vec<u8>, ServerError>,
        decode: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Result<T, TransportError> {
        let world = &self.world;
        world.stats().requests += 1;
        if !self.link_up.load(Ordering::SeqCst) {
            world.stats().offline_refusals += 1;
            world.log(format!("d{} {call}: no link", self.device));
            return Err(TransportError::Network("no route to host".into()));
        }
        let mut fault = world.pick_fault();
        // Only a chunk upload has a body worth damaging (`serve` says so by
        // reading the flag); elsewhere the draw is a clean exchange.
        if fault == Fault::Corrupted && !call.starts_with("blob_chunk") {
            fault = Fault::None;
        }
        match fault {
            Fault::DropRequest => {
                world.stats().drop_request += 1;
                world.log(format!("d{} {call}: request lost", self.device));
                return Err(TransportError::Network("connection reset".into()));
            }
            Fault::Unavailable { status, retry_after_ms } => {
                world.stats().unavailable += 1;
                world.log(format!("d{} {call}: {status} retry_after={retry_after_ms:?}", self.device));
                let code = if status == 503 { "unavailable" } else { "rate_limited" };
                return Err(TransportError::Http { status, code: code.into(), message: "try later".into(), retry_after_ms });
            }
            Fault::Portal => {
                world.stats().portal += 1;
                world.log(format!("d{} {call}: captive portal", self.device));
                let page = b"<html><body>Please sign in to CityWiFi</body></html>";
                return decode(page).ok_or_else(|| TransportError::Malformed("reply is not the expected JSON".into()));
            }
            Fault::CrashBefore => {
                world.stats().crashes += 1;
                world.log(format!("d{} {call}: app killed before sending", self.device));
                panic::panic_any(SimCrash);
            }
            _ => {}
        }
        let server = &world.server;
        if fault == Fault::Duplicated {
            let first = serve(server, server.now(), false);
            let first = match &first {
                Ok(bytes) => format!("ok {}B", bytes.len()),
                Err(e) => format!("{} {}", e.status, e.code),
            };
            world.stats().duplicated += 1;
            world.log(format!("d{} {call}: delivered twice, first reply ({first}) discarded", self.device));
        }
        if fault == Fault::Corrupted {
            world.stats().corrupted_chunks += 1;
        }
        let answer = serve(server, server.now(), fault == Fault::Corrupted);
        let outcome = match &answer {
            Ok(bytes) => format!("ok {}B", bytes.len()),
            Err(e) => format!("{} {}", e.status, e.code),
        };
        match fault {
            Fault::DropResponse => {
                world.stats().drop_response += 1;
                world.log(format!("d{} {call}: served ({outcome}), reply lost", self.device));
                return Err(TransportError::Network("connection reset".into()));
            }
            Fault::CrashAfter => {
                world.stats().crashes += 1;
                world.log(format!("d{} {call}: served ({outcome}), app killed", self.device));
                panic::panic_any(SimCrash);
            }
            Fault::Truncated => {
                world.stats().truncated += 1;
                world.log(format!("d{} {call}: served ({outcome}), reply truncated", self.device));
                let bytes = match answer {
                    Ok(bytes) => bytes,
                    // An error body cut short: the status still arrived (as
                    // the HTTP transport reports it).
                    Err(e) => {
                        return Err(TransportError::Http {
                            status: e.status,
                            code: format!("http_{}", e.status),
                            message: "the server answered without an error body".into(),
                            retry_after_ms: None,
                        });
                    }
                };
                let cut = &bytes[..bytes.len() / 2];
                return decode(cut).ok_or_else(|| TransportError::Malformed("reply is not the expected JSON".into()));
            }
            _ => {}
        }
        let damaged = if fault == Fault::Corrupted { "chunk damaged in transit, " } else { "" };
        world.log(format!("d{} {call}: {damaged}{outcome}", self.device));
        match answer {
            Ok(bytes) => decode(&bytes).ok_or_else(|| TransportError::Malformed("reply is not the expected JSON".into())),
            Err(e) => Err(http_error(e)),
        }
    }

    fn caller(&self, server: &SimServer, token: &str, now: i64) -> Result<Caller, ServerError> {
        server.db.read(|tx| auth::authenticate(tx, token, &self.device_id, now))
    }
}

fn json<T: ?Sized + SerializeJson>(value: &T) -> Vec<u8> {
    value.to_json()
}

/// `serde::Serialize` without naming serde (not a dependency of this crate).
trait SerializeJson {
    fn to_json(&self) -> Vec<u8>;
}

macro_rules! serialize_json {
    ($($t:ty),*) => {
        $(impl SerializeJson for $t {
            fn to_json(&self) -> Vec<u8> {
                serde_json::to_vec(self).expect("serializes")
            }
        })*
    };
}
serialize_json!(TokenResponse, PushResponse, PullResponse, BlobStatus);

impl Transport for SimTransport {
    fn login(&self, username: &str, password: &str) -> Result<TokenResponse, TransportError> {
        self.exchange(
            "login",
            |server, now, _| {
                let user = server.db.read(|tx| auth::find_user(tx, username))?;
                let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| auth::dummy_hash().to_owned());
                let verified = auth::verify_password(password, &hash);
                match user {
                    Some(user) if verified && !user.disabled => {
                        let tokens = server.db.write(|tx| auth::start_session(tx, &user, &self.device_id, now, server.policy))?;
                        Ok(json(&tokens))
                    }
                    _ => Err(ServerError::unauthorized("auth_failed", "wrong user name or password")),
                }
            },
            |b| serde_json::from_slice(b).ok(),
        )
    }

    fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, TransportError> {
        self.exchange(
            "refresh",
            |server, now, _| Ok(json(&server.db.write(|tx| auth::refresh(tx, refresh_token, &self.device_id, now, server.policy))??)),
            |b| serde_json::from_slice(b).ok(),
        )
    }

    fn push(&self, access_token: &str, operations: &[OperationEnvelope]) -> Result<PushResponse, TransportError> {
        let kinds: Vec<&str> = operations.iter().map(|o| o.kind.as_str()).collect();
        let call = format!("push[{}]", kinds.join(","));
        self.exchange(
            &call,
            |server, now, _| {
                // As on the wire: the server sees a JSON body, size-limited
                // before anything else happens.
                let raw: Vec<serde_json::Value> = operations.iter().map(|o| serde_json::to_value(o).expect("serializes")).collect();
                let body = serde_json::to_vec(&serde_json::json!({ "operations": raw })).expect("serializes");
                if body.len() > gridwork_protocol::api::MAX_JSON_BODY_BYTES {
                    return Err(ServerError::new(413, "body_too_large", "the body is larger than the limit"));
                }
                let caller = self.caller(server, access_token, now)?;
                let response = push::push(&server.db, &caller, &raw, now)?;
                let duplicates = response.results.iter().filter(|r| matches!(r.outcome, OperationOutcome::Duplicate { .. })).count() as u64;
                self.world.stats().duplicates_seen += duplicates;
                Ok(json(&response))
            },
            |b| serde_json::from_slice(b).ok(),
        )
    }

    fn pull(&self, access_token: &str, since: i64, limit: u32, skip: &[SkipSpan]) -> Result<PullResponse, TransportError> {
        self.exchange(
            &format!("pull since={since}"),
            |server, now, _| {
                let caller = self.caller(server, access_token, now)?;
                let limit = limit.clamp(1, gridwork_protocol::api::MAX_PULL_LIMIT).min(self.world.pull_page_cap);
                Ok(json(&server.db.read(|tx| pull::pull(tx, &caller, since, limit, skip, now))?))
            },
            |b| serde_json::from_slice(b).ok(),
        )
    }

    fn blob_create(&self, access_token: &str, sha256: &str, size: u64, preview_of: Option<&str>) -> Result<BlobStatus, TransportError> {
        self.exchange(
            &format!("blob_create {} {size}B", &sha256[..sha256.len().min(8)]),
            |server, now, _| {
                let caller = self.caller(server, access_token, now)?;
                Ok(json(&server.blobs.create(&server.db, &caller, sha256, size, preview_of, now)?))
            },
            |b| serde_json::from_slice(b).ok(),
        )
    }

    fn blob_status(&self, access_token: &str, sha256: &str) -> Result<BlobStatus, TransportError> {
        self.exchange(
            &format!("blob_status {}", &sha256[..sha256.len().min(8)]),
            |server, now, _| {
                let caller = self.caller(server, access_token, now)?;
                Ok(json(&server.blobs.status(&server.db, &caller, sha256)?))
            },
            |b| serde_json::from_slice(b).ok(),
        )
    }

    fn photo(&self, access_token: &str, sha256: &str, rendition: PhotoRendition) -> Result<Vec<u8>, TransportError> {
        self.exchange(
            &format!("photo {} {}", &sha256[..sha256.len().min(8)], rendition.as_query()),
            |server, now, _| {
                let caller = self.caller(server, access_token, now)?;
                // As the server's download route: the preview while the original travels.
                let original = match server.blobs.download(&server.db, &caller, sha256) {
                    Err(e) if e.code == "blob_incomplete" && rendition != PhotoRendition::Original => {
                        server.blobs.download_preview(&server.db, &caller, sha256)?
                    }
                    other => other?,
                };
                match rendition.long_edge() {
                    Some(edge) => gridwork_server::renditions::render(&original, edge),
                    None => Ok(original),
                }
            },
            |b| Some(b.to_vec()),
        )
    }

    fn blob_chunk(&self, access_token: &str, sha256: &str, offset: u64, chunk: &[u8], announce_size: Option<u64>) -> Result<BlobStatus, TransportError> {
        self.exchange(
            &format!("blob_chunk {} @{offset}+{}", &sha256[..sha256.len().min(8)], chunk.len()),
            |server, now, damaged| {
                if chunk.len() > gridwork_protocol::api::MAX_BLOB_CHUNK_BYTES {
                    return Err(ServerError::new(413, "body_too_large", "chunk larger than the limit"));
                }
                let caller = self.caller(server, access_token, now)?;
                // The device hashes what it sends; the wire may damage it after.
                let chunk_sha = hex::encode(Sha256::digest(chunk));
                let mut body = chunk.to_vec();
                if damaged {
                    let middle = body.len() / 2;
                    body[middle] ^= 0x5a;
                }
                Ok(json(&server.blobs.append_announcing(&server.db, &caller, sha256, announce_size, offset, &body, &chunk_sha, now)?))
            },
            |b| serde_json::from_slice(b).ok(),
        )
    }
}

// ---------------------------------------------------------------------------
// Devices.

#[derive(Clone, Debug)]
struct SentPhoto {
    sha256: String,
    bytes: usize,
}

#[derive(Clone, Debug)]
struct Submitted {
    id: Uuid,
    category: String,
    /// Index in the run's list of all submissions (stable across replays).
    index: usize,
    photos: Vec<SentPhoto>,
}

struct Device {
    index: usize,
    username: String,
    role: Role,
    grid: &'static str,
    dir: PathBuf,
    clock: Arc<ManualClock>,
    gw: Option<Gridwork>,
    transport: Arc<SimTransport>,
    /// What the shell told the core.
    online: bool,
    metered: bool,
    text_only: bool,
    needs_login: bool,
    wake_pending: bool,
    submitted: Vec<Submitted>,
    captures: u32,
}

fn open_store(dir: &Path, username: &str, clock: &Arc<ManualClock>) -> Gridwork {
    let mut config = crate::config(dir, username);
    // Crash durability is the crash tests' business; keep the sim quick.
    config.durability = Durability::Normal;
    Gridwork::open_with_clock(config, Box::new(clock.clone())).expect("open device store")
}

impl Device {
    fn gw(&self) -> &Gridwork {
        self.gw.as_ref().expect("store open")
    }

    fn log(&self, world: &World, what: String) {
        world.log(format!("d{} {what}", self.index));
    }

    /// The app process dies and starts again: same files, fresh engine.
    fn restart(&mut self, world: &World, why: &str) {
        self.gw = None;
        let gw = open_store(&self.dir, &self.username, &self.clock);
        let recovered = gw.open_report().in_flight_recovered;
        gw.set_transport(self.transport.clone());
        gw.set_metered_policy(if self.text_only { MeteredPolicy::TextOnly } else { MeteredPolicy::Everything });
        gw.set_network(self.online, self.metered);
        self.gw = Some(gw);
        self.wake_pending = true;
        world.stats().restarts += 1;
        self.log(world, format!("restart ({why}): {recovered} in-flight recovered"));
    }

    /// Run `f` on the store; a simulated kill inside it restarts the app.
    fn guarded<T>(&mut self, world: &World, f: impl FnOnce(&Gridwork) -> T) -> Option<T> {
        let result = panic::catch_unwind(AssertUnwindSafe(|| f(self.gw())));
        match result {
            Ok(value) => Some(value),
            Err(payload) if payload.is::<SimCrash>() => {
                self.restart(world, "killed mid-request");
                None
            }
            Err(payload) => panic::resume_unwind(payload),
        }
    }

    fn login(&mut self, world: &World) -> bool {
        let transport: Arc<dyn Transport> = self.transport.clone();
        let username = self.username.clone();
        match self.guarded(world, |gw| gw.login_with(transport, SERVER_URL, &username, PASSWORD)) {
            Some(Ok(_)) => {
                self.needs_login = false;
                self.log(world, "logged in".into());
                true
            }
            Some(Err(e)) => {
                self.log(world, format!("login failed: {}", e.code()));
                false
            }
            None => false,
        }
    }

    fn sync(&mut self, world: &World, trigger: Trigger, budget: Duration) -> Option<SyncReport> {
        world.stats().syncs += 1;
        let report = match self.guarded(world, |gw| gw.sync_now(trigger, budget))? {
            Ok(report) => report,
            Err(e) => panic!("device {} sync_now failed locally: {e:?}", self.index),
        };
        self.wake_pending = report.next_wake_ms.is_some();
        if report.needs_login && !self.needs_login {
            self.needs_login = true;
            world.stats().login_prompts += 1;
        }
        let e = &report.errors;
        self.log(
            world,
            format!(
                "sync {trigger:?}: pushed={} parked={} photos={} bytes={} pulled={} err(n={},t={},a={},r={}) completed={} login={}",
                report.pushed,
                report.parked,
                report.photos_uploaded,
                report.uploaded_bytes,
                report.pulled,
                e.network,
                e.transient,
                e.auth,
                e.rejected,
                report.completed,
                report.needs_login
            ),
        );
        Some(report)
    }

    fn set_link(&mut self, world: &World, up: bool, tell_shell: bool, metered: bool) {
        self.transport.link_up.store(up, Ordering::SeqCst);
        if tell_shell {
            self.online = up;
            self.metered = metered;
            self.gw().set_network(up, metered);
        }
        self.log(world, format!("link {} (shell told: {tell_shell}, metered: {metered})", if up { "up" } else { "down" }));
    }
}

// ---------------------------------------------------------------------------
// The simulation.

pub struct Sim {
    config: SimConfig,
    world: Arc<World>,
    rng: StdRng,
    devices: Vec<Device>,
    /// Every submission in order: (device, incident id).
    all: Vec<(usize, Uuid)>,
    staff: Vec<String>,
    /// Small photos a later report may reuse (forwarded between workers).
    forwarded: Vec<Vec<u8>>,
    /// Categories the command center took out of the table.
    retired: Vec<String>,
    devices_in_violation: Vec<usize>,
    violations: Vec<String>,
}

fn grid_point(rng: &mut StdRng, grid: &str) -> GeoPoint {
    let west = if grid == "G-001" { 121.4605 } else { 121.4705 };
    GeoPoint { lat: 31.2205 + rng.random_range(0.0..0.019), lon: west + rng.random_range(0.0..0.009), accuracy_m: Some(rng.random_range(3.0..30.0)) }
}

const CATEGORIES: [&str; 6] = ["0101", "0102", "0201", "0301", "0401", "0602"];

impl Sim {
    /// Set up a server in `root/server` and the devices in `root/dNN`.
    pub fn new(root: &Path, config: SimConfig) -> Sim {
        quiet_crash_panics();
        let storage = StorageConfig { data_dir: root.join("server"), database_url: None, max_connections: 4 };
        let (db, blobs) = gridwork_server::open_storage(&storage).expect("open server storage");
        let grids: serde_json::Value = serde_json::from_str(&crate::two_grids_geojson()).unwrap();
        db.write(|tx| gridwork_server::reference::import_grids(tx, &grids, EPOCH_MS)).unwrap();
        let policy = TokenPolicy { access_ttl_ms: config.access_ttl_ms, refresh_ttl_ms: 24 * 60 * 60 * 1000 };
        let mut rng = StdRng::seed_from_u64(config.seed);
        let pull_page_cap = config.pull_page_cap.unwrap_or_else(|| if rng.random_bool(0.5) { rng.random_range(4..40) } else { u32::MAX });
        let world = Arc::new(World {
            server: SimServer { db, blobs, data_dir: storage.data_dir.clone(), policy, now_ms: AtomicI64::new(EPOCH_MS) },
            rates: config.faults,
            faults_on: AtomicBool::new(false),
            pull_page_cap,
            fault_rng: Mutex::new(StdRng::seed_from_u64(config.seed ^ 0x5eed_fa17_0000_0001)),
            trace: Mutex::new(Trace { hasher: Sha256::new(), tail: VecDeque::new(), full: Some(Vec::new()) }),
            stats: Mutex::new(Stats::default()),
            step: AtomicI64::new(-1),
        });
        world.log(format!("pull pages capped at {pull_page_cap}"));
        let hash = auth::hash_password(PASSWORD).unwrap();
        let mut devices = Vec::new();
        let mut staff = Vec::new();
        for index in 0..config.devices {
            let (role, prefix) = if index + 1 == config.devices && config.devices >= 3 {
                (Role::Supervisor, "supervisor")
            } else if index % 3 == 2 {
                (Role::Volunteer, "volunteer")
            } else {
                (Role::GridWorker, "worker")
            };
            let grid = if index % 2 == 0 { "G-001" } else { "G-002" };
            let username = format!("{prefix}{index:02}");
            world.server.db.write(|tx| admin::add_user(tx, &username, &hash, role, &[grid.to_owned()], EPOCH_MS)).unwrap();
            if matches!(role, Role::GridWorker | Role::Supervisor) {
                staff.push(username.clone());
            }
            // Device clocks are wrong: some by seconds, one by days.
            let skew = match rng.random_range(0..10) {
                0 => -3 * 24 * 3_600_000,
                1 => 2 * 3_600_000,
                _ => rng.random_range(-90_000..90_000),
            };
            let clock = Arc::new(ManualClock::new(EPOCH_MS + skew));
            let dir = root.join(format!("d{index:02}"));
            std::fs::create_dir_all(dir.join("gallery")).unwrap();
            let gw = open_store(&dir, &username, &clock);
            gw.import_grids_geojson(&crate::two_grids_geojson()).unwrap();
            let transport =
                Arc::new(SimTransport { device: index, device_id: format!("sim-device-{index:02}"), world: world.clone(), link_up: AtomicBool::new(true) });
            let text_only = rng.random_bool(0.2);
            gw.set_metered_policy(if text_only { MeteredPolicy::TextOnly } else { MeteredPolicy::Everything });
            let mut device = Device {
                index,
                username,
                role,
                grid,
                dir,
                clock,
                gw: Some(gw),
                transport,
                online: true,
                metered: false,
                text_only,
                needs_login: true,
                wake_pending: false,
                submitted: Vec::new(),
                captures: 0,
            };
            assert!(device.login(&world), "setup login (faults off) must work");
            devices.push(device);
        }
        Sim { config, world, rng, devices, all: Vec::new(), staff, forwarded: Vec::new(), retired: Vec::new(), devices_in_violation: Vec::new(), violations: Vec::new() }
    }

    /// Run the chaos phase, drain, and check. Never panics on a violation:
    /// they are returned (a panic inside core or server still unwinds).
    pub fn run(mut self) -> Outcome {
        let started = Instant::now();
        self.world.faults_on.store(true, Ordering::SeqCst);
        for step in 0..self.config.steps {
            self.world.step.store(step as i64, Ordering::SeqCst);
            self.world.server.now_ms.fetch_add(self.config.step_ms, Ordering::SeqCst);
            self.step();
        }
        self.world.step.store(self.config.steps as i64, Ordering::SeqCst);
        self.drain();
        self.check();
        let trace = lock(&self.world.trace);
        Outcome {
            seed: self.config.seed,
            stats: self.world.stats().clone(),
            trace_digest: hex::encode(trace.hasher.clone().finalize()),
            trace_tail: trace.tail.iter().cloned().collect(),
            full_trace: trace.full.clone().unwrap_or_default(),
            violations: std::mem::take(&mut self.violations),
            devices_in_violation: std::mem::take(&mut self.devices_in_violation),
            elapsed: started.elapsed(),
        }
    }

    fn step(&mut self) {
        let roll = self.rng.random_range(0..100);
        if roll < 10 {
            // The command center works a case, often several steps at once.
            for _ in 0..self.rng.random_range(1..4) {
                self.command_center();
            }
            return;
        }
        let d = self.rng.random_range(0..self.devices.len());
        if self.devices[d].needs_login {
            // The app asked its user to sign in again; they do, eventually.
            if self.rng.random_bool(0.5) && self.devices[d].login(&self.world) {
                self.world.stats().relogins += 1;
            }
            return;
        }
        match roll {
            10..=36 => self.capture(d),
            37..=71 => {
                let trigger = [Trigger::OperationQueued, Trigger::AppForegrounded, Trigger::TimerFired, Trigger::ManualRetry, Trigger::NetworkUp]
                    [self.rng.random_range(0..5)];
                // Background tasks get a short budget; a zero budget ends
                // the round before its first request.
                let budget = if self.rng.random_bool(0.05) { Duration::ZERO } else { Duration::from_secs(20) };
                self.devices[d].sync(&self.world, trigger, budget);
            }
            72..=81 => {
                let device = &mut self.devices[d];
                // Down links come back; up links drop half the time or
                // switch between Wi-Fi and mobile data.
                let up = !device.transport.link_up.load(Ordering::SeqCst) || self.rng.random_bool(0.5);
                // Mostly the shell notices; sometimes the radio drops silently.
                let tell = self.rng.random_bool(0.8);
                let metered = up && self.rng.random_bool(0.4);
                device.set_link(&self.world, up, tell, metered);
                if up && tell && self.rng.random_bool(0.7) {
                    device.sync(&self.world, Trigger::NetworkUp, Duration::from_secs(20));
                }
            }
            82..=84 if self.rng.random_bool(0.2) => {
                // The user signs out (unsent work stays queued) and back in.
                let device = &mut self.devices[d];
                device.gw().logout().expect("logout");
                device.needs_login = true;
                device.log(&self.world, "logged out".into());
            }
            82..=84 => self.devices[d].restart(&self.world, "user swiped the app away"),
            85..=86 if self.config.clock_jumps => self.clock_jump(d),
            _ => {
                // The backoff / probe timer fires, if one is set.
                if self.devices[d].wake_pending {
                    self.devices[d].sync(&self.world, Trigger::TimerFired, Duration::from_secs(20));
                }
            }
        }
    }

    /// The device's clock changes: network time corrects it, or the user
    /// sets it by hand. Only jumps of an hour or more, so whether a backoff
    /// has expired never depends on the engine's (unseeded) jitter.
    fn clock_jump(&mut self, d: usize) {
        const HOUR: i64 = 3_600_000;
        let device = &self.devices[d];
        let now = device.clock.now_ms();
        let server_now = self.world.server.now();
        let target = if (now - server_now).abs() >= HOUR && self.rng.random_bool(0.6) {
            server_now
        } else {
            let hours = self.rng.random_range(1..72);
            if self.rng.random_bool(0.5) { now + hours * HOUR } else { now - hours * HOUR }
        };
        device.clock.set(target);
        self.world.stats().clock_jumps += 1;
        device.log(&self.world, format!("clock jumps by {:+} min", (target - now) / 60_000));
    }

    fn capture(&mut self, d: usize) {
        let rng = &mut self.rng;
        let device = &mut self.devices[d];
        device.captures += 1;
        let n = device.captures;
        let location = match rng.random_range(0..10) {
            0 => None,
            1 => Some(grid_point(rng, if device.grid == "G-001" { "G-002" } else { "G-001" })),
            _ => Some(grid_point(rng, device.grid)),
        };
        // The category picker shows what the device believes is active.
        let active: Vec<String> = device.gw().categories().expect("categories").into_iter().map(|c| c.code).collect();
        let choices: Vec<&str> = CATEGORIES.iter().copied().filter(|c| active.iter().any(|a| a == c)).collect();
        if choices.is_empty() {
            return;
        }
        let category = choices[rng.random_range(0..choices.len())].to_owned();
        let fields = DraftFields {
            category_code: Some(category.clone()),
            description: format!("模拟上报 {} #{n}: 楼道堆物", device.username),
            address: rng.random_bool(0.5).then(|| format!("南京东路 {} 号", rng.random_range(1..400))),
            location,
        };
        let draft = device.gw().create_draft(fields).expect("create draft");
        let photo_count = match rng.random_range(0..10) {
            0..=5 => 0,
            6..=8 => 1,
            _ => 2,
        };
        let mut photos = Vec::new();
        for p in 0..photo_count {
            let seed = (d as u32 + 1) * 100_000 + n * 10 + p;
            let bytes = if !self.forwarded.is_empty() && rng.random_bool(0.06) {
                // A photo forwarded in the work group chat: the same bytes
                // as another report's, maybe from another device.
                self.world.stats().forwarded_photos += 1;
                self.forwarded[rng.random_range(0..self.forwarded.len())].clone()
            } else if rng.random_bool(0.08) {
                crate::jpeg_bytes(&crate::scene(1200, 900, seed), 97, None)
            } else {
                let bytes = crate::jpeg_bytes(&crate::scene(rng.random_range(64..200), rng.random_range(48..150), seed), 80, None);
                if self.forwarded.len() < 16 {
                    self.forwarded.push(bytes.clone());
                }
                bytes
            };
            let sha256 = crate::sha256_hex(&bytes);
            if photos.iter().any(|p: &SentPhoto| p.sha256 == sha256) {
                continue;
            }
            let path = crate::write_file(&device.dir.join("gallery"), &format!("p{n}-{p}.jpg"), &bytes);
            let photo = device.gw().attach_photo(draft.id, &path).expect("attach photo");
            assert_eq!(photo.sha256, sha256);
            let _ = std::fs::remove_file(&path);
            self.world.stats().photos += 1;
            if bytes.len() > gridwork_core::sync::engine::FIRST_CHUNK_BYTES {
                self.world.stats().large_photos += 1;
            }
            photos.push(SentPhoto { sha256: photo.sha256, bytes: bytes.len() });
        }
        device.gw().submit(draft.id).expect("submit");
        let index = self.all.len();
        self.all.push((d, draft.id));
        self.world.stats().captures += 1;
        device.log(&self.world, format!("capture c{index}: {} photo(s) {:?}", photos.len(), photos.iter().map(|p| p.bytes).collect::<Vec<_>>()));
        device.submitted.push(Submitted { id: draft.id, category, index, photos });
        // The app kicks sync when something is queued, most of the time.
        if rng.random_bool(0.6) {
            device.sync(&self.world, Trigger::OperationQueued, Duration::from_secs(20));
        }
    }

    /// The command center publishes a category table without one of the
    /// codes devices use: reports already queued in it will be refused
    /// (a legitimate rejection, parked on the device).
    fn retire_category(&mut self) {
        let left: Vec<&str> = CATEGORIES.iter().copied().filter(|c| !self.retired.iter().any(|r| r == c)).collect();
        if left.len() <= 2 {
            return;
        }
        let code = left[self.rng.random_range(0..left.len())].to_owned();
        self.retired.push(code.clone());
        let mut table: serde_json::Value = serde_json::from_str(gridwork_protocol::DEFAULT_CATEGORY_TABLE).unwrap();
        let version = table["version"].as_i64().unwrap_or(1) + self.retired.len() as i64;
        table["version"] = version.into();
        let retired = &self.retired;
        table["categories"].as_array_mut().unwrap().retain(|c| !retired.iter().any(|r| c["code"].as_str() == Some(r.as_str())));
        let now = self.world.server.now();
        self.world.server.db.write(|tx| gridwork_server::reference::import_categories(tx, &table, now)).unwrap();
        self.world.stats().categories_retired += 1;
        self.world.log(format!("cc: category {code} retired (table v{version})"));
    }

    /// The command center moves a random case one step along its workflow.
    fn command_center(&mut self) {
        if self.rng.random_bool(0.01) {
            self.retire_category();
            return;
        }
        if self.all.is_empty() {
            return;
        }
        let index = self.rng.random_range(0..self.all.len());
        let id = self.all[index].1.to_string();
        let server = &self.world.server;
        let state = server
            .db
            .read(|tx| Ok(tx.query_opt("SELECT state FROM incidents WHERE id = $1", params![id.clone()])?.map(|r| r.text(0))))
            .unwrap();
        let Some(state) = state else {
            self.world.log(format!("cc c{index}: not on the server yet"));
            return;
        };
        let rng = &mut self.rng;
        let pick = |rng: &mut StdRng, options: &[(&'static str, u32)]| -> Option<&'static str> {
            let total: u32 = options.iter().map(|o| o.1).sum();
            if total == 0 {
                return None;
            }
            let mut x = rng.random_range(0..total);
            for (action, weight) in options {
                if x < *weight {
                    return Some(*action);
                }
                x -= weight;
            }
            None
        };
        let action = match state.as_str() {
            "reported" | "pending_review" => pick(rng, &[("register", 70), ("reject", 15), ("merge", 15)]),
            "registered" => pick(rng, &[("dispatch", 85), ("merge", 15)]),
            "dispatched" => pick(rng, &[("start", 50), ("handle", 50)]),
            "in_progress" => Some("handle"),
            "handled" => pick(rng, &[("close", 70), ("reopen", 30)]),
            "closed" => pick(rng, &[("reopen", 20), ("none", 80)]),
            "reopened" => pick(rng, &[("dispatch", 50), ("start", 50)]),
            _ => None,
        };
        let Some(action) = action.filter(|a| *a != "none") else {
            self.world.log(format!("cc c{index}: {state}, nothing to do"));
            return;
        };
        let assignee = (action == "dispatch").then(|| self.staff[rng.random_range(0..self.staff.len())].clone());
        let merge_target = (action == "merge").then(|| rng.random_range(0..self.all.len()));
        let request = TransitionRequest {
            action: action.into(),
            note: Some("指挥中心".into()),
            assignee: assignee.clone(),
            department: None,
            deadline_ms: None,
            merge_into: merge_target.map(|i| self.all[i].1),
            rating: None,
            photos: vec![],
        };
        let caller = admin::system_caller();
        let now = server.now();
        let result = server.db.write(|tx| cases::transition(tx, &caller, &id, &request, now)).unwrap();
        let target = merge_target.map(|i| format!(" into c{i}")).unwrap_or_default();
        let to = assignee.map(|a| format!(" to {a}")).unwrap_or_default();
        match result {
            Ok(version) => {
                self.world.stats().transitions += 1;
                self.world.log(format!("cc c{index}: {state} --{action}{to}{target}--> v{version}"));
            }
            Err(rejection) => {
                self.world.stats().transitions_refused += 1;
                self.world.log(format!("cc c{index}: {state} --{action}{target}--> refused {}", rejection.code));
            }
        }
    }

    /// Faults off, links up: every device syncs until its round completes,
    /// in passes, until a pass sends nothing (then everyone pulled the last
    /// change: only pushes and uploads change the server now).
    fn drain(&mut self) {
        self.world.faults_on.store(false, Ordering::SeqCst);
        self.world.log("drain: faults off".into());
        for device in &mut self.devices {
            device.set_link(&self.world, true, true, false);
        }
        for pass in 0..6 {
            self.world.stats().final_passes += 1;
            let mut sent = 0;
            for device in &mut self.devices {
                let mut completed = false;
                for _attempt in 0..30 {
                    if device.needs_login && !device.login(&self.world) {
                        continue;
                    }
                    if let Some(report) = device.sync(&self.world, Trigger::ManualRetry, Duration::from_secs(60)) {
                        sent += report.pushed + report.photos_uploaded + report.parked;
                        if report.completed {
                            completed = true;
                            break;
                        }
                    }
                }
                if !completed {
                    self.violations.push(format!("device {} ({}) never completed a round after faults stopped (pass {pass})", device.index, device.username));
                }
            }
            if sent == 0 && pass > 0 {
                return;
            }
        }
        self.violations.push("the drain did not settle in 6 passes".into());
    }

    /// The invariants. Appends to `self.violations`.
    fn check(&mut self) {
        let server = &self.world.server;
        let db = &server.db;
        let system = admin::system_caller();
        let mut v: Vec<String> = Vec::new();
        let count = |sql: &str, id: &str| -> i64 { db.read(|tx| Ok(tx.query_one(sql, params![id])?.int(0))).unwrap() };
        let mut submit_ops = 0i64;
        let mut distinct_photos: BTreeSet<String> = BTreeSet::new();
        let mut refused_total = 0i64;
        let mut flagged = Vec::new();

        for device in &self.devices {
            let gw = device.gw();
            let who = format!("device {} ({})", device.index, device.username);
            let before = v.len();

            // The outbox drained: nothing pending, in flight or parked,
            // although every device's last round reported `completed`.
            let all_unsent = gw.outbox_items().unwrap();
            let device_now = device.clock.now_ms();
            // A report in a category the command center retired before it
            // arrived is refused for good: its submit is parked with
            // unknown_category and its photo uploads wait behind it. That,
            // and nothing else, may stay in the outbox.
            let refused: BTreeSet<Uuid> = device
                .submitted
                .iter()
                .filter(|s| self.retired.contains(&s.category))
                .filter(|s| {
                    all_unsent.iter().any(|o| {
                        o.entity_id == s.id && o.state == OperationState::Parked && o.park_reason.as_ref().is_some_and(|r| r.code == "unknown_category")
                    })
                })
                .map(|s| s.id)
                .collect();
            let refused_ops: BTreeSet<Uuid> = all_unsent.iter().filter(|o| refused.contains(&o.entity_id)).map(|o| o.op_id).collect();
            let unsent: Vec<_> = all_unsent
                .into_iter()
                .filter(|o| {
                    let refused_itself = refused_ops.contains(&o.op_id);
                    let waits_behind_refused = o.state == OperationState::Pending && o.attempts == 0 && o.depends_on.is_some_and(|d| refused_ops.contains(&d));
                    !refused_itself && !waits_behind_refused
                })
                .collect();
            self.world.stats().legit_rejections += refused.len() as u64;
            if !unsent.is_empty() {
                let items: Vec<String> = unsent
                    .iter()
                    .map(|o| {
                        format!(
                            "{} {} attempts={} next_attempt={:+}min park={:?} last_error={:?}",
                            o.kind_name,
                            o.state.as_str(),
                            o.attempts,
                            (o.next_attempt_ms - device_now) / 60_000,
                            o.park_reason.as_ref().map(|r| &r.code),
                            o.last_error
                        )
                    })
                    .collect();
                v.push(format!("{who}: outbox did not drain ({} left after a completed round): {items:?}", unsent.len()));
            }
            let unsent_entities: BTreeSet<Uuid> = unsent.iter().map(|o| o.entity_id).collect();
            let unsent_photos: BTreeSet<String> = unsent.iter().filter_map(|o| o.blob_sha256.clone()).collect();
            // Own reports with something still queued: listed once, not
            // again as unconverged.
            let stuck: BTreeSet<String> = device
                .submitted
                .iter()
                .filter(|s| refused.contains(&s.id) || unsent_entities.contains(&s.id) || s.photos.iter().any(|p| unsent_photos.contains(&p.sha256)))
                .map(|s| s.id.to_string())
                .collect();

            for sub in &device.submitted {
                let id = sub.id.to_string();
                let c = format!("{who} c{}", sub.index);
                if refused.contains(&sub.id) {
                    refused_total += 1;
                    let rows = count("SELECT COUNT(*) FROM incidents WHERE id = $1", &id);
                    if rows != 0 {
                        v.push(format!("{c}: parked as refused, yet the server has {rows} rows"));
                    }
                    let ops = gw.with_connection(|conn| gridwork_core::outbox::for_entity(conn, sub.id)).unwrap();
                    for op in ops.iter().filter(|o| o.kind == Some(OperationKind::SubmitIncident)) {
                        let outcome = db
                            .read(|tx| {
                                Ok(tx
                                    .query("SELECT result FROM applied_ops WHERE device_id = $1 AND op_id = $2", params![device.transport.device_id.clone(), op.op_id.to_string()])?
                                    .iter()
                                    .map(|r| r.text(0))
                                    .collect::<Vec<_>>())
                            })
                            .unwrap();
                        let ok = matches!(outcome.as_slice(), [one] if matches!(serde_json::from_str::<OperationOutcome>(one), Ok(OperationOutcome::Rejected { .. })));
                        if !ok {
                            v.push(format!("{c}: refused report recorded as {outcome:?}"));
                        }
                    }
                    continue;
                }
                distinct_photos.extend(sub.photos.iter().map(|p| p.sha256.clone()));
                let rows = count("SELECT COUNT(*) FROM incidents WHERE id = $1", &id);

                // The device's submit operation: one, acknowledged, recorded
                // once on the server as applied.
                let ops = gw.with_connection(|conn| gridwork_core::outbox::for_entity(conn, sub.id)).unwrap();
                let submits: Vec<_> = ops.iter().filter(|o| o.kind == Some(OperationKind::SubmitIncident)).collect();
                let [submit] = submits.as_slice() else {
                    v.push(format!("{c}: {} submit operations on the device (want 1)", submits.len()));
                    continue;
                };
                submit_ops += 1;
                if unsent_entities.contains(&sub.id) || submit.state != OperationState::Acknowledged {
                    // Already listed under the outbox; say what it means.
                    v.push(format!("{c}: report never acknowledged (submit {}, {} attempts); {rows} server rows", submit.state.as_str(), submit.attempts));
                    continue;
                }
                if rows != 1 {
                    v.push(format!("{c}: LOST: acknowledged report has {rows} server rows (want 1)"));
                    continue;
                }
                let reports = count("SELECT COUNT(*) FROM timeline WHERE incident_id = $1 AND action = 'report'", &id);
                if reports != 1 {
                    v.push(format!("{c}: {reports} 'report' timeline entries (want 1)"));
                }
                let stored = db
                    .read(|tx| {
                        Ok(tx
                            .query("SELECT result FROM applied_ops WHERE device_id = $1 AND op_id = $2", params![device.transport.device_id.clone(), submit.op_id.to_string()])?
                            .iter()
                            .map(|r| r.text(0))
                            .collect::<Vec<_>>())
                    })
                    .unwrap();
                match stored.as_slice() {
                    [one] => match serde_json::from_str::<OperationOutcome>(one) {
                        Ok(OperationOutcome::Applied { .. }) => {}
                        other => v.push(format!("{c}: recorded outcome {other:?}")),
                    },
                    rows => v.push(format!("{c}: {} applied_ops rows for its submit (want 1)", rows.len())),
                }

                // Converged: the device's status is the server's state.
                let server_state = db.read(|tx| Ok(tx.query_one("SELECT state FROM incidents WHERE id = $1", params![id.clone()])?.text(0))).unwrap();
                let local = match gw.get_incident(sub.id) {
                    Ok(local) => local,
                    Err(e) => {
                        v.push(format!("{c}: gone from the device: {e:?}"));
                        continue;
                    }
                };
                if local.incident.status.as_str() != server_state && !stuck.contains(&id) {
                    v.push(format!("{c}: device says {}, server says {server_state}", local.incident.status.as_str()));
                }

                // Every photo arrived once and is byte-identical.
                let remote = db
                    .read(|tx| {
                        Ok(tx
                            .query(
                                "SELECT p.sha256, p.byte_size, COALESCE(b.complete, 0) FROM incident_photos p LEFT JOIN blobs b ON b.sha256 = p.sha256
                                 WHERE p.incident_id = $1 ORDER BY p.position",
                                params![id.clone()],
                            )?
                            .iter()
                            .map(|r| (r.text(0), r.int(1) as usize, r.int(2) != 0))
                            .collect::<Vec<_>>())
                    })
                    .unwrap();
                let queued: Vec<&SentPhoto> = sub.photos.iter().filter(|p| unsent_photos.contains(&p.sha256)).collect();
                if !queued.is_empty() {
                    // Already listed under the outbox.
                    v.push(format!("{c}: {} of {} photos never uploaded", queued.len(), sub.photos.len()));
                    continue;
                }
                let expected: Vec<(String, usize, bool)> = sub.photos.iter().map(|p| (p.sha256.clone(), p.bytes, true)).collect();
                if remote != expected {
                    v.push(format!("{c}: server photos {remote:?}, want {expected:?}"));
                }
                for (photo, local_photo) in sub.photos.iter().zip(&local.photos) {
                    match server.blobs.download(db, &system, &photo.sha256) {
                        Ok(bytes) => {
                            let on_device = std::fs::read(&local_photo.original_path).unwrap_or_default();
                            if crate::sha256_hex(&bytes) != photo.sha256 || bytes != on_device {
                                v.push(format!("{c}: photo {} differs on the server ({} bytes)", &photo.sha256[..12], bytes.len()));
                            }
                        }
                        Err(e) => v.push(format!("{c}: photo {} not downloadable: {e}", &photo.sha256[..12])),
                    }
                }
                // One arrival entry per photo; a photo another case announced
                // first may have arrived before this case existed (none).
                for photo in &sub.photos {
                    let short = photo.sha256[..12].to_owned();
                    let arrivals = db
                        .read(|tx| {
                            Ok(tx
                                .query_one(
                                    "SELECT COUNT(*) FROM timeline WHERE incident_id = $1 AND action = 'photo_arrived' AND note = $2",
                                    params![id.clone(), short.clone()],
                                )?
                                .int(0))
                        })
                        .unwrap();
                    let cases = count("SELECT COUNT(DISTINCT incident_id) FROM incident_photos WHERE sha256 = $1", &photo.sha256);
                    if arrivals > 1 || (cases == 1 && arrivals != 1) {
                        v.push(format!("{c}: {arrivals} photo_arrived entries for photo {short} (announced by {cases} cases)"));
                    }
                }
            }

            // The device holds exactly what the server lets it see, in the
            // server's state.
            let user_id = db.read(|tx| Ok(tx.query_one("SELECT id FROM users WHERE username = $1", params![device.username.clone()])?.text(0))).unwrap();
            let user_id = Uuid::parse_str(&user_id).unwrap();
            let caller = Caller {
                user_id,
                username: device.username.clone(),
                role: device.role,
                grids: vec![device.grid.to_owned()],
                session_id: String::new(),
                device_id: device.transport.device_id.clone(),
            };
            let visible: BTreeMap<String, String> =
                db.read(|tx| cases::list_for(tx, &caller, None, None, 100_000)).unwrap().into_iter().map(|c| (c.id.to_string(), c.state.as_str().to_owned())).collect();
            let held: BTreeMap<String, String> =
                gw.list_incidents(IncidentFilter::default()).unwrap().into_iter().map(|i| (i.id.to_string(), i.status.as_str().to_owned())).collect();
            let label = |id: &str| -> String {
                match self.all.iter().position(|(_, u)| u.to_string() == id) {
                    Some(i) => format!("c{i} (by d{})", self.all[i].0),
                    None => id.to_owned(),
                }
            };
            for (id, state) in visible.iter().filter(|(id, _)| !stuck.contains(*id)) {
                match held.get(id) {
                    None => v.push(format!("{who}: missing {} ({state}) that the server shows it", label(id))),
                    Some(local) if local != state => v.push(format!("{who}: holds {} as {local}, server says {state}", label(id))),
                    _ => {}
                }
            }
            // (Own reports that never left the device are listed above.)
            let extra: BTreeSet<&String> =
                held.keys().filter(|id| !visible.contains_key(*id) && !stuck.contains(*id)).collect();
            for id in extra {
                v.push(format!("{who}: holds {} ({}) that the server no longer shows it", label(id), held[id]));
            }
            if v.len() > before {
                flagged.push(device.index);
            }
        }

        // Nothing on the server that no device sent, and nothing twice
        // (whether or not the device learned it arrived).
        let global = |sql: &str| -> i64 { db.read(|tx| Ok(tx.query_one(sql, &[])?.int(0))).unwrap() };
        let submitted: BTreeSet<String> = self.all.iter().map(|(_, id)| id.to_string()).collect();
        let on_server: Vec<String> = db.read(|tx| Ok(tx.query("SELECT id FROM incidents", &[])?.iter().map(|r| r.text(0)).collect())).unwrap();
        let phantoms = on_server.iter().filter(|id| !submitted.contains(*id)).count();
        if phantoms > 0 {
            v.push(format!("server has {phantoms} cases no device submitted"));
        }
        let reports = global("SELECT COUNT(*) FROM timeline WHERE action = 'report'");
        if reports != on_server.len() as i64 {
            v.push(format!("server has {reports} report entries for {} cases", on_server.len()));
        }
        let applied = global("SELECT COUNT(*) FROM applied_ops WHERE device_id != 'cli'");
        if applied > submit_ops + refused_total {
            v.push(format!("server recorded {applied} device operations, devices made {}", submit_ops + refused_total));
        }
        let blobs = global("SELECT COUNT(*) FROM blobs WHERE complete = 1");
        if blobs > distinct_photos.len() as i64 {
            v.push(format!("server has {blobs} complete blobs for {} distinct photos", distinct_photos.len()));
        }
        self.violations.extend(v);
        self.devices_in_violation = flagged;
    }
}

/// Run one seed end to end in `root`.
pub fn run(root: &Path, config: SimConfig) -> Outcome {
    Sim::new(root, config).run()
}
