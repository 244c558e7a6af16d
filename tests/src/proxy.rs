//! Fault-injection TCP proxy for sync tests: a real HTTP/1.1 proxy on
//! `127.0.0.1:0` in front of a server, so the device's real transport
//! (reqwest, connection pool, timeouts) meets real broken connections.
//!
//! Every request read from a client is parsed (head and body framing) and
//! sent to the server on a fresh upstream connection; the response is read
//! whole and written back, so client connections stay keep-alive while
//! faults hit single requests. What it can do to a request, chosen by a
//! seeded RNG ([`FaultConfig`] probabilities) or scripted ([`Proxy::inject`]):
//!
//! | fault | what the device sees | what the server sees |
//! | --- | --- | --- |
//! | [`Fault::DropRequest`] | connection closed mid-send | a cut request, never handled |
//! | [`Fault::CutUpload`] | same, on `PUT …/chunks` only | part of a chunk body, never handled |
//! | [`Fault::DropResponse`] | a reply cut after N bytes | the whole request: it was applied |
//! | [`Fault::TruncateBody`] | a well-framed reply with a short body | the whole request: it was applied |
//! | [`Fault::Reply`] | 500/503/429 with a JSON `{code, message}` (429: `Retry-After`) | nothing |
//! | [`Fault::Delay`] | a slow server | the request, later |
//!
//! Error replies come in bursts (the next few requests get the same status).
//! A switch ([`Proxy::set_faults`]) turns random faults off; scripted ones
//! still apply. A throttle ([`Proxy::set_throttle`]) limits how fast request
//! bodies reach the server, so uploads take long enough to be interrupted.
//! [`ProxyStats`] counts what the proxy did, including the chunk body bytes
//! that actually reached the server (to tell resumed uploads from restarted
//! ones).

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What to do to one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Forward unchanged.
    Pass,
    /// Forward this fraction (0..1) of the request's bytes, head and body
    /// together, then close both connections.
    DropRequest { fraction: f64 },
    /// Forward the whole request, then send this fraction (0..1) of the
    /// response's bytes and close the client connection.
    DropResponse { fraction: f64 },
    /// Wait this long before forwarding.
    Delay(Duration),
    /// Answer with this status (500, 503, 429, …) without forwarding.
    Reply(u16),
    /// Forward the whole request; answer with a correctly framed response
    /// whose body is cut to this fraction (0..1) of its length.
    TruncateBody { fraction: f64 },
    /// On `PUT …/chunks`: forward the head and this fraction (0..1) of the
    /// chunk body, then close both connections.
    CutUpload { fraction: f64 },
}

/// Probabilities (each per request, checked in this order; their sum
/// should stay below 1) of the random faults.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// Only for `PUT …/chunks` requests.
    pub cut_upload: f64,
    pub drop_request: f64,
    pub drop_response: f64,
    /// Starts a burst of one status from `burst_statuses`.
    pub error_burst: f64,
    pub burst_statuses: Vec<u16>,
    /// Burst length, inclusive.
    pub burst_len: (u32, u32),
    /// `Retry-After` seconds sent with 429.
    pub retry_after_secs: u32,
    pub truncate_body: f64,
    pub delay: f64,
    pub max_delay: Duration,
}

impl FaultConfig {
    /// No random faults.
    pub fn none() -> FaultConfig {
        FaultConfig {
            cut_upload: 0.0,
            drop_request: 0.0,
            drop_response: 0.0,
            error_burst: 0.0,
            burst_statuses: vec![500, 503, 429],
            burst_len: (1, 3),
            retry_after_secs: 1,
            truncate_body: 0.0,
            delay: 0.0,
            max_delay: Duration::ZERO,
        }
    }

    /// A bad mobile link: roughly one request in three goes wrong.
    pub fn flaky() -> FaultConfig {
        FaultConfig {
            cut_upload: 0.12,
            drop_request: 0.06,
            drop_response: 0.08,
            error_burst: 0.05,
            burst_len: (1, 3),
            truncate_body: 0.05,
            delay: 0.08,
            max_delay: Duration::from_millis(150),
            ..FaultConfig::none()
        }
    }
}

/// What the proxy did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub connections: u64,
    pub requests: u64,
    /// Forwarded and answered without a fault.
    pub passed: u64,
    pub dropped_requests: u64,
    pub dropped_responses: u64,
    pub delayed: u64,
    pub replied_500: u64,
    pub replied_503: u64,
    pub replied_429: u64,
    /// Other statuses answered by the proxy.
    pub replied_other: u64,
    pub truncated_bodies: u64,
    pub cut_uploads: u64,
    /// `PUT …/chunks` requests seen.
    pub chunk_puts: u64,
    /// Chunk body bytes written to the server, cut bodies included: what
    /// the server received for uploads.
    pub chunk_bytes_forwarded: u64,
    /// Chunk requests whose whole body reached the server.
    pub chunk_puts_forwarded_whole: u64,
    /// Chunk requests being handled right now (a gauge).
    pub chunk_puts_in_flight: u64,
    /// Clients that went away in the middle of an exchange.
    pub client_disconnects: u64,
    /// The server could not be reached or answered garbage.
    pub upstream_errors: u64,
}

impl ProxyStats {
    /// Faults the proxy caused (delays included).
    pub fn faults(&self) -> u64 {
        self.dropped_requests
            + self.dropped_responses
            + self.delayed
            + self.replied_500
            + self.replied_503
            + self.replied_429
            + self.replied_other
            + self.truncated_bodies
            + self.cut_uploads
    }

    /// Kinds of fault seen at least once, by name.
    pub fn kinds_seen(&self) -> Vec<&'static str> {
        [
            ("drop_request", self.dropped_requests),
            ("drop_response", self.dropped_responses),
            ("delay", self.delayed),
            ("reply_500", self.replied_500),
            ("reply_503", self.replied_503),
            ("reply_429", self.replied_429),
            ("truncate_body", self.truncated_bodies),
            ("cut_upload", self.cut_uploads),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, _)| name)
        .collect()
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    passed: AtomicU64,
    dropped_requests: AtomicU64,
    dropped_responses: AtomicU64,
    delayed: AtomicU64,
    replied_500: AtomicU64,
    replied_503: AtomicU64,
    replied_429: AtomicU64,
    replied_other: AtomicU64,
    truncated_bodies: AtomicU64,
    cut_uploads: AtomicU64,
    chunk_puts: AtomicU64,
    chunk_bytes_forwarded: AtomicU64,
    chunk_puts_forwarded_whole: AtomicU64,
    chunk_puts_in_flight: AtomicU64,
    client_disconnects: AtomicU64,
    upstream_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> ProxyStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProxyStats {
            connections: get(&self.connections),
            requests: get(&self.requests),
            passed: get(&self.passed),
            dropped_requests: get(&self.dropped_requests),
            dropped_responses: get(&self.dropped_responses),
            delayed: get(&self.delayed),
            replied_500: get(&self.replied_500),
            replied_503: get(&self.replied_503),
            replied_429: get(&self.replied_429),
            replied_other: get(&self.replied_other),
            truncated_bodies: get(&self.truncated_bodies),
            cut_uploads: get(&self.cut_uploads),
            chunk_puts: get(&self.chunk_puts),
            chunk_bytes_forwarded: get(&self.chunk_bytes_forwarded),
            chunk_puts_forwarded_whole: get(&self.chunk_puts_forwarded_whole),
            chunk_puts_in_flight: get(&self.chunk_puts_in_flight),
            client_disconnects: get(&self.client_disconnects),
            upstream_errors: get(&self.upstream_errors),
        }
    }
}

/// What a scripted fault's matcher sees of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    pub method: String,
    /// Path without the query.
    pub path: String,
    pub query: String,
    /// From Content-Length; `None` without one.
    pub body_len: Option<u64>,
}

impl RequestInfo {
    /// `PUT /v1/blobs/{sha256}/chunks?offset=N`.
    pub fn is_chunk(&self) -> bool {
        self.method.eq_ignore_ascii_case("PUT") && self.path.ends_with("/chunks")
    }

    /// The blob a chunk or status request is about.
    pub fn blob_sha256(&self) -> Option<&str> {
        let rest = self.path.strip_prefix("/v1/blobs/")?;
        Some(rest.split('/').next().unwrap_or(rest))
    }

    /// The `offset` query parameter of a chunk upload.
    pub fn chunk_offset(&self) -> Option<u64> {
        self.query.split('&').find_map(|kv| kv.strip_prefix("offset=")).and_then(|v| v.parse().ok())
    }
}

/// One `PUT …/chunks` as the proxy handled it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRecord {
    pub sha256: String,
    pub offset: u64,
    pub body_len: u64,
    /// Body bytes written to the server.
    pub forwarded: u64,
    /// The server's status, when it answered.
    pub status: Option<u16>,
    /// The fault applied.
    pub fault: String,
}

type Matcher = Box<dyn Fn(&RequestInfo) -> bool + Send>;

struct Scripted {
    matches: Matcher,
    /// Matching requests still to let by before this one applies.
    skip: u32,
    fault: Fault,
}

/// The random part: one RNG for all connections, so a single-threaded
/// client replays the same faults from the same seed.
struct Decider {
    config: FaultConfig,
    rng: StdRng,
    /// (status, further requests still to answer with it)
    burst: Option<(u16, u32)>,
}

struct Shared {
    upstream: SocketAddr,
    enabled: AtomicBool,
    stopping: AtomicBool,
    /// Request body bytes per second towards the server; 0: unlimited.
    throttle: AtomicU64,
    decider: Mutex<Decider>,
    script: Mutex<VecDeque<Scripted>>,
    chunks: Mutex<Vec<ChunkRecord>>,
    counters: Counters,
    /// Client connections being served, to cut them all at once.
    open: Mutex<HashMap<u64, TcpStream>>,
    next_connection: AtomicU64,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn decide(&self, request: &RequestInfo) -> Fault {
        {
            let mut script = locked(&self.script);
            let mut chosen = None;
            for (index, scripted) in script.iter_mut().enumerate() {
                if !(scripted.matches)(request) {
                    continue;
                }
                if scripted.skip > 0 {
                    scripted.skip -= 1;
                } else if chosen.is_none() {
                    chosen = Some(index);
                }
            }
            if let Some(index) = chosen {
                return script.remove(index).expect("index is in range").fault;
            }
        }
        let is_chunk = request.is_chunk();
        if !self.enabled.load(Ordering::SeqCst) {
            return Fault::Pass;
        }
        let mut guard = locked(&self.decider);
        let decider = &mut *guard;
        if let Some((status, remaining)) = decider.burst {
            decider.burst = if remaining > 1 { Some((status, remaining - 1)) } else { None };
            return Fault::Reply(status);
        }
        let c = &decider.config;
        let rng = &mut decider.rng;
        let roll: f64 = rng.random();
        let mut threshold = 0.0;
        let mut hit = |p: f64| {
            threshold += p;
            roll < threshold
        };
        if is_chunk && hit(c.cut_upload) {
            return Fault::CutUpload { fraction: rng.random() };
        }
        if hit(c.drop_request) {
            return Fault::DropRequest { fraction: rng.random() };
        }
        if hit(c.drop_response) {
            return Fault::DropResponse { fraction: rng.random() };
        }
        if hit(c.error_burst) && !c.burst_statuses.is_empty() {
            let status = c.burst_statuses[rng.random_range(0..c.burst_statuses.len())];
            let (low, high) = c.burst_len;
            let len = rng.random_range(low.max(1)..=high.max(low.max(1)));
            decider.burst = (len > 1).then_some((status, len - 1));
            return Fault::Reply(status);
        }
        if hit(c.truncate_body) {
            return Fault::TruncateBody { fraction: rng.random() };
        }
        if hit(c.delay) {
            let max = c.max_delay.as_millis().max(1) as u64;
            return Fault::Delay(Duration::from_millis(rng.random_range(1..=max)));
        }
        Fault::Pass
    }

    fn retry_after_secs(&self) -> u32 {
        locked(&self.decider).config.retry_after_secs
    }
}

/// A running proxy. Stops (and cuts its connections) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listen on `127.0.0.1:0` and forward to `upstream`, with random
    /// faults per `config` drawn from `seed` (the switch starts on).
    pub fn start(upstream: SocketAddr, seed: u64, config: FaultConfig) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            enabled: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            throttle: AtomicU64::new(0),
            decider: Mutex::new(Decider { config, rng: StdRng::seed_from_u64(seed), burst: None }),
            script: Mutex::new(VecDeque::new()),
            chunks: Mutex::new(Vec::new()),
            counters: Counters::default(),
            open: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
        });
        let accept_shared = shared.clone();
        let accept = std::thread::Builder::new()
            .name("fault-proxy-accept".into())
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("spawn proxy");
        Proxy { addr, shared, accept: Some(accept) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Random faults on or off. Scripted faults apply either way.
    pub fn set_faults(&self, on: bool) {
        self.shared.enabled.store(on, Ordering::SeqCst);
        if !on {
            locked(&self.shared.decider).burst = None;
        }
    }

    pub fn faults_enabled(&self) -> bool {
        self.shared.enabled.load(Ordering::SeqCst)
    }

    pub fn set_config(&self, config: FaultConfig) {
        locked(&self.shared.decider).config = config;
    }

    /// Limit how fast request bodies reach the server; `None`: unlimited.
    pub fn set_throttle(&self, bytes_per_second: Option<u64>) {
        self.shared.throttle.store(bytes_per_second.unwrap_or(0), Ordering::SeqCst);
    }

    /// The next request with this method whose path contains
    /// `path_contains` gets `fault` (before any random fault).
    pub fn inject(&self, method: &str, path_contains: &str, fault: Fault) {
        self.inject_nth(method, path_contains, 0, fault);
    }

    /// Like [`Proxy::inject`], but let `skip` matching requests by first.
    pub fn inject_nth(&self, method: &str, path_contains: &str, skip: u32, fault: Fault) {
        let (method, needle) = (method.to_owned(), path_contains.to_owned());
        self.inject_when(skip, fault, move |r| r.method.eq_ignore_ascii_case(&method) && r.path.contains(&needle));
    }

    /// The `skip + 1`-th request from now that `matches` gets `fault`.
    /// Scripted faults are checked in the order they were injected.
    pub fn inject_when(&self, skip: u32, fault: Fault, matches: impl Fn(&RequestInfo) -> bool + Send + 'static) {
        locked(&self.shared.script).push_back(Scripted { matches: Box::new(matches), skip, fault });
    }

    /// Every chunk upload so far, in the order they arrived.
    pub fn chunk_log(&self) -> Vec<ChunkRecord> {
        locked(&self.shared.chunks).clone()
    }

    /// Scripted faults not yet used.
    pub fn pending_injections(&self) -> usize {
        locked(&self.shared.script).len()
    }

    pub fn stats(&self) -> ProxyStats {
        self.shared.counters.snapshot()
    }

    /// Cut every client connection now (a network drop).
    pub fn drop_connections(&self) {
        for (_, stream) in locked(&self.shared.open).drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.accept.take() {
            let _ = thread.join();
        }
        self.drop_connections();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        bump(&shared.counters.connections);
        let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            locked(&shared.open).insert(id, clone);
        }
        let conn_shared = shared.clone();
        let spawned = std::thread::Builder::new().name(format!("fault-proxy-{id}")).spawn(move || {
            let _ = serve_client(&conn_shared, stream);
            if let Some(stream) = locked(&conn_shared.open).remove(&id) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        });
        if spawned.is_err() {
            locked(&shared.open).remove(&id);
        }
    }
}

// ---- HTTP/1.1 framing ----

const MAX_HEAD_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the server closes (responses only).
    UntilClose,
}

struct Head {
    raw: Vec<u8>,
    /// Request: method, target. Response: version, status.
    first: (String, String),
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn wants_close(&self) -> bool {
        self.header("connection").is_some_and(|v| v.to_ascii_lowercase().contains("close"))
    }

    fn body_framing(&self) -> io::Result<Framing> {
        if self.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            return Ok(Framing::Chunked);
        }
        match self.header("content-length") {
            Some(v) => v.trim().parse::<u64>().map(Framing::Length).map_err(|_| bad("bad content-length")),
            None => Ok(Framing::None),
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Read a message head. `Ok(None)`: the peer closed before sending a byte.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        let n = reader.read_until(b'\n', &mut raw)?;
        if n == 0 {
            return if raw.is_empty() { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
        if raw.len() > MAX_HEAD_BYTES {
            return Err(bad("head too long"));
        }
        let line = &raw[before..];
        if (line == b"\r\n" || line == b"\n") && before > 0 {
            break;
        }
        if (line == b"\r\n" || line == b"\n") && before == 0 {
            // Stray empty line between messages: ignore it.
            raw.clear();
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let first_line = lines.next().unwrap_or_default();
    let mut parts = first_line.splitn(3, ' ');
    let first = (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Some(Head { raw, first, headers }))
}

/// Where a body's bytes go while it is copied: a cap on how many may be
/// written (a cut), a throttle, and a tally.
struct Sink<'a, W: Write> {
    out: &'a mut W,
    /// Bytes that may still be written; `None`: no cap.
    remaining: Option<u64>,
    written: u64,
    throttle: u64,
    started: Instant,
}

impl<W: Write> Sink<'_, W> {
    /// Write what the cap allows; `Ok(false)` once the cap is reached.
    fn put(&mut self, mut bytes: &[u8]) -> io::Result<bool> {
        let mut capped = false;
        if let Some(remaining) = self.remaining
            && (bytes.len() as u64) >= remaining
        {
            bytes = &bytes[..remaining as usize];
            capped = true;
        }
        for slice in bytes.chunks(16 * 1024) {
            self.out.write_all(slice)?;
            self.written += slice.len() as u64;
            if self.throttle > 0 {
                let due = Duration::from_secs_f64(self.written as f64 / self.throttle as f64);
                if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        if let Some(remaining) = &mut self.remaining {
            *remaining -= bytes.len() as u64;
        }
        Ok(!capped)
    }
}

/// Copy a body of the given framing from `reader` to `sink`, raw (chunk
/// framing included). `Ok(false)`: the sink's cap was reached first.
fn copy_body<W: Write>(reader: &mut impl BufRead, framing: Framing, sink: &mut Sink<'_, W>) -> io::Result<bool> {
    let mut buffer = vec![0u8; 32 * 1024];
    match framing {
        Framing::None => Ok(true),
        Framing::Length(mut left) => {
            while left > 0 {
                let want = left.min(buffer.len() as u64) as usize;
                let n = reader.read(&mut buffer[..want])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                left -= n as u64;
                if !sink.put(&buffer[..n])? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Framing::UntilClose => loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                return Ok(true);
            }
            if !sink.put(&buffer[..n])? {
                return Ok(false);
            }
        },
        Framing::Chunked => loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if !sink.put(&line)? {
                return Ok(false);
            }
            let text = String::from_utf8_lossy(&line);
            let size_text = text.trim().split(';').next().unwrap_or("").trim().to_owned();
            let size = u64::from_str_radix(&size_text, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                // Trailers, then an empty line.
                loop {
                    let mut trailer = Vec::new();
                    if reader.read_until(b'\n', &mut trailer)? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    if !sink.put(&trailer)? {
                        return Ok(false);
                    }
                    if trailer == b"\r\n" || trailer == b"\n" {
                        return Ok(true);
                    }
                }
            }
            let mut left = size + 2; // data and its CRLF
            while left > 0 {
                let want = left.min(buffer.len() as u64) as usize;
                let n = reader.read(&mut buffer[..want])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                left -= n as u64;
                if !sink.put(&buffer[..n])? {
                    return Ok(false);
                }
            }
        },
    }
}

/// Decode a chunked body read raw.
fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let size_text = String::from_utf8_lossy(&rest[..end]).trim().split(';').next().unwrap_or("").trim().to_owned();
        let Ok(size) = usize::from_str_radix(&size_text, 16) else { break };
        rest = &rest[end + 1..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    }
}

fn injected_reply(status: u16, retry_after_secs: u32) -> Vec<u8> {
    let code = match status {
        429 => "rate_limited",
        500 => "internal",
        503 => "unavailable",
        _ => "injected",
    };
    let body = serde_json::json!({"code": code, "message": format!("fault injected by the test proxy ({status})")}).to_string();
    let mut out = format!("HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n", reason(status), body.len());
    if status == 429 {
        out.push_str(&format!("retry-after: {retry_after_secs}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// A response head with its body framing replaced by a Content-Length.
fn reframed_head(head: &Head, length: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(&head.raw);
    let mut out = String::new();
    for (i, line) in text.split("\r\n").enumerate() {
        if line.is_empty() {
            continue;
        }
        let name = line.split(':').next().unwrap_or("").trim();
        if i > 0 && (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("content-length: {length}\r\n\r\n"));
    out.into_bytes()
}

/// Counts a request as in flight until dropped.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a AtomicU64) -> InFlight<'a> {
        gauge.fetch_add(1, Ordering::SeqCst);
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serve one client connection: requests one after another (keep-alive).
fn serve_client(shared: &Shared, client: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, client.try_clone()?);
    let mut client = client;
    let counters = &shared.counters;
    loop {
        let head = match read_head(&mut reader) {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(()),
            Err(e) => {
                bump(&counters.client_disconnects);
                return Err(e);
            }
        };
        bump(&counters.requests);
        let (method, target) = head.first.clone();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let framing = head.body_framing()?;
        let request = RequestInfo {
            method: method.clone(),
            path: path.to_owned(),
            query: query.to_owned(),
            body_len: match framing {
                Framing::Length(n) => Some(n),
                _ => None,
            },
        };
        let is_chunk = request.is_chunk();
        let _in_flight = is_chunk.then(|| InFlight::new(&counters.chunk_puts_in_flight));
        if is_chunk {
            bump(&counters.chunk_puts);
        }
        let mut fault = shared.decide(&request);
        if !is_chunk && matches!(fault, Fault::CutUpload { .. }) {
            fault = Fault::Pass; // only chunk uploads are cut
        }
        let log_chunk = |forwarded: u64, status: Option<u16>| {
            if is_chunk {
                locked(&shared.chunks).push(ChunkRecord {
                    sha256: request.blob_sha256().unwrap_or_default().to_owned(),
                    offset: request.chunk_offset().unwrap_or(u64::MAX),
                    body_len: request.body_len.unwrap_or(0),
                    forwarded,
                    status,
                    fault: format!("{fault:?}"),
                });
            }
        };

        if let Fault::Reply(status) = fault {
            // Read the body away so the connection stays usable.
            let mut discard = io::sink();
            let mut sink = Sink { out: &mut discard, remaining: None, written: 0, throttle: 0, started: Instant::now() };
            log_chunk(0, None);
            if copy_body(&mut reader, framing, &mut sink).is_err() {
                bump(&counters.client_disconnects);
                return Ok(());
            }
            match status {
                500 => bump(&counters.replied_500),
                503 => bump(&counters.replied_503),
                429 => bump(&counters.replied_429),
                _ => bump(&counters.replied_other),
            }
            client.write_all(&injected_reply(status, shared.retry_after_secs()))?;
            if head.wants_close() {
                return Ok(());
            }
            continue;
        }
        if let Fault::Delay(wait) = fault {
            bump(&counters.delayed);
            std::thread::sleep(wait);
        }

        let mut upstream = match TcpStream::connect(shared.upstream) {
            Ok(s) => s,
            Err(_) => {
                // The server is down: the device sees a closed connection.
                log_chunk(0, None);
                bump(&counters.upstream_errors);
                return Ok(());
            }
        };
        let _ = upstream.set_nodelay(true);
        let _ = upstream.set_read_timeout(Some(Duration::from_secs(60)));

        // How many request bytes may reach the server.
        let body_len = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let head_len = head.raw.len() as u64;
        let cap = match fault {
            Fault::DropRequest { fraction } => Some(((head_len + body_len) as f64 * fraction.clamp(0.0, 1.0)).floor() as u64),
            Fault::CutUpload { fraction } => Some(head_len + (body_len as f64 * fraction.clamp(0.0, 1.0)).floor() as u64),
            _ => None,
        };
        let cap = cap.map(|c| c.min((head_len + body_len).saturating_sub(1)));

        // Forward the head (perhaps only part of it).
        let head_part = cap.map(|c| c.min(head_len) as usize).unwrap_or(head.raw.len());
        if upstream.write_all(&head.raw[..head_part]).is_err() {
            log_chunk(0, None);
            bump(&counters.upstream_errors);
            return Ok(());
        }
        let mut complete = head_part == head.raw.len();
        let mut body_written = 0;
        let mut client_gone = false;
        if complete {
            let throttle = shared.throttle.load(Ordering::SeqCst);
            let mut sink = Sink { out: &mut upstream, remaining: cap.map(|c| c - head_len), written: 0, throttle, started: Instant::now() };
            match copy_body(&mut reader, framing, &mut sink) {
                Ok(whole) => complete = whole,
                Err(_) => {
                    // The client went away (or the server stopped reading).
                    complete = false;
                    client_gone = true;
                }
            }
            body_written = sink.written;
        }
        if is_chunk {
            counters.chunk_bytes_forwarded.fetch_add(body_written, Ordering::Relaxed);
            if complete {
                bump(&counters.chunk_puts_forwarded_whole);
            }
        }
        if !complete {
            // A cut request: the server never gets the rest.
            log_chunk(body_written, None);
            let _ = upstream.shutdown(Shutdown::Both);
            if client_gone {
                bump(&counters.client_disconnects);
            } else {
                match fault {
                    Fault::CutUpload { .. } => bump(&counters.cut_uploads),
                    _ => bump(&counters.dropped_requests),
                }
            }
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }

        // The response, read whole.
        let mut up_reader = BufReader::new(upstream);
        let response = match read_head(&mut up_reader) {
            Ok(Some(h)) => h,
            _ => {
                log_chunk(body_written, None);
                bump(&counters.upstream_errors);
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
        };
        let status: u16 = response.first.1.parse().unwrap_or(0);
        log_chunk(body_written, Some(status));
        let response_framing = if method.eq_ignore_ascii_case("HEAD") || status < 200 || status == 204 || status == 304 {
            Framing::None
        } else {
            match response.body_framing()? {
                Framing::None => Framing::UntilClose,
                other => other,
            }
        };
        let mut raw_body = Vec::new();
        {
            let mut sink = Sink { out: &mut raw_body, remaining: None, written: 0, throttle: 0, started: Instant::now() };
            if copy_body(&mut up_reader, response_framing, &mut sink).is_err() {
                bump(&counters.upstream_errors);
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
        let close_after = head.wants_close() || response.wants_close() || response_framing == Framing::UntilClose;

        let sent = match fault {
            Fault::DropResponse { fraction } => {
                let mut whole = response.raw.clone();
                whole.extend_from_slice(&raw_body);
                let keep = ((whole.len() as f64) * fraction.clamp(0.0, 1.0)).floor() as usize;
                let keep = keep.min(whole.len().saturating_sub(1));
                let _ = client.write_all(&whole[..keep]);
                let _ = client.flush();
                bump(&counters.dropped_responses);
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            Fault::TruncateBody { fraction } => {
                let body = if response_framing == Framing::Chunked { dechunk(&raw_body) } else { raw_body.clone() };
                if body.is_empty() {
                    bump(&counters.passed);
                    client.write_all(&response.raw).and_then(|_| client.write_all(&raw_body))
                } else {
                    let keep = ((body.len() as f64) * fraction.clamp(0.0, 1.0)).floor() as usize;
                    let keep = keep.min(body.len() - 1);
                    bump(&counters.truncated_bodies);
                    let mut out = reframed_head(&response, keep);
                    out.extend_from_slice(&body[..keep]);
                    client.write_all(&out)
                }
            }
            _ => {
                if fault == Fault::Pass {
                    bump(&counters.passed);
                }
                let mut out = response.raw.clone();
                out.extend_from_slice(&raw_body);
                client.write_all(&out)
            }
        };
        if sent.is_err() {
            bump(&counters.client_disconnects);
            return Ok(());
        }
        if close_after {
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunk_reads_chunked_bodies() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"), b"abcde");
    }

    #[test]
    fn same_seed_same_faults() {
        let decide_many = |seed| {
            let shared = Shared {
                upstream: "127.0.0.1:9".parse().unwrap(),
                enabled: AtomicBool::new(true),
                stopping: AtomicBool::new(false),
                throttle: AtomicU64::new(0),
                decider: Mutex::new(Decider { config: FaultConfig::flaky(), rng: StdRng::seed_from_u64(seed), burst: None }),
                script: Mutex::new(VecDeque::new()),
                chunks: Mutex::new(Vec::new()),
                counters: Counters::default(),
                open: Mutex::new(HashMap::new()),
                next_connection: AtomicU64::new(1),
            };
            let request = |i: usize| RequestInfo {
                method: if i.is_multiple_of(2) { "PUT".into() } else { "GET".into() },
                path: "/v1/blobs/x/chunks".into(),
                query: "offset=0".into(),
                body_len: Some(10),
            };
            (0..200).map(|i| format!("{:?}", shared.decide(&request(i)))).collect::<Vec<_>>()
        };
        assert_eq!(decide_many(5), decide_many(5));
        assert_ne!(decide_many(5), decide_many(6));
        assert!(decide_many(5).iter().any(|f| f != "Pass"));
    }
}
