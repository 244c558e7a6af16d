//! The sync engine: a sans-IO state machine that owns the sync policy.
//!
//! It is fed events (a trigger woke it, the network changed, a server reply
//! or failure arrived, the store answered a question, the run was
//! cancelled) and answers with concrete requests ([`Action`]): push up to N
//! ready operations, announce this blob, send these bytes at this offset,
//! pull from this cursor, refresh the token, record these verdicts. It
//! never touches the network, the database or the clock itself, so its
//! policy is unit-tested without I/O, a simulation runs many devices from
//! one seed, and any driver (the blocking runner today, another transport
//! tomorrow) performs the same decisions.
//!
//! A round is: push every ready operation (text first), upload the photos
//! the network policy allows, pull until the server has no more, then fetch
//! the thumbnails of other devices' photos on the cases the user works
//! (tasks, the review queue), so those screens work offline. Failures
//! fall in four classes, each with its own answer:
//!
//! | class | answer |
//! | --- | --- |
//! | network | wait for the link (and probe again after a while) |
//! | transient (429, 5xx) | back off exponentially with jitter, honour Retry-After |
//! | auth | refresh the token once; if that fails, pause and ask the app |
//! | rejected | the operation is parked and the round goes on |
//!
//! The driver's contract: call [`SyncEngine::start_run`], feed the trigger,
//! then loop on [`SyncEngine::poll`]. A request action (push, blob, pull,
//! refresh, or a question to the store) is answered by exactly one event
//! before the next poll; a [`Action::Record`] needs no answer; the run ends
//! at [`Action::Finish`], and [`SyncEngine::finish_run`] gives its report.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use gridwork_protocol::api::{self, BlobStatus, OperationOutcome, PullResponse, PushResponse, SkipSpan};
use uuid::Uuid;

use super::transport::TransportError;
use crate::observe::{SyncProgress, UploadPosition};
use crate::outbox::ParkReason;
use crate::photo::{Rendition, THUMBNAIL_LONG_EDGE};

pub const BASE_BACKOFF_MS: i64 = 1_000;
pub const MAX_BACKOFF_MS: i64 = 5 * 60 * 1_000;
pub const NETWORK_PROBE_MS: i64 = 60 * 1_000;
/// A refresh that could not reach the server is tried again after this.
pub const REFRESH_RETRY_MS: i64 = 5 * BASE_BACKOFF_MS;
/// Operations in the first push request of a run. Each fully answered
/// batch doubles the next, up to what the protocol allows, so a long
/// offline backlog goes in few requests; a failed batch halves it, so a
/// poor link resends less, and a refused one is halved until the operation
/// at fault travels alone.
pub const FIRST_PUSH_BATCH: u32 = 100;
pub const MAX_PUSH_BATCH: u32 = gridwork_protocol::api::MAX_PUSH_OPERATIONS as u32;
/// Changes per pull page.
pub const PULL_PAGE: u32 = 500;
/// Before the link's rate is known, uploads start with small chunks, so a
/// weak 2G/3G link loses little when it drops, and double after every
/// acknowledged chunk up to the server's limit. Once it is known (measured
/// from chunk round trips), a chunk is what the link carries in
/// [`CHUNK_TARGET_MS`]: a good link sends a photo in one chunk, a cut on a
/// poor one loses about that much sending.
pub const FIRST_CHUNK_BYTES: usize = 256 * 1024;
pub const CHUNK_TARGET_MS: u64 = 2_000;
pub const MAX_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// A proxy that refuses bodies (413) halves chunks down to this.
pub const MIN_CHUNK_BYTES: usize = 32 * 1024;
/// Chunks that arrive damaged are resent this often before the upload
/// counts as a transient failure (never a reason to park evidence).
const MAX_DAMAGED_CHUNKS: u32 = 3;

/// Why the engine was woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    OperationQueued,
    NetworkUp,
    AppForegrounded,
    TimerFired,
    ManualRetry,
}

/// One step of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Push,
    Upload,
    Pull,
    Thumbnails,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// No connection, connection dropped, timeout.
    Network,
    /// 429 or 5xx; `retry_after_ms` from the server if it said.
    Transient { retry_after_ms: Option<i64> },
    /// 401: the access token is expired, revoked or unknown.
    Auth,
}

impl FailureClass {
    /// The outbox's `last_error` for work retried after this failure.
    fn name(self) -> &'static str {
        match self {
            FailureClass::Network => "network",
            FailureClass::Transient { .. } => "transient",
            FailureClass::Auth => "auth",
        }
    }
}

/// How a failed request is treated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Retry the whole step later according to the class.
    Retry(FailureClass),
    /// The server refused this item for good.
    Reject { code: String, message: String },
}

/// Map a failure to one of the four classes (network, transient, auth,
/// rejected). Unknown server behaviour is treated as transient: retrying
/// later never loses anything, parking might strand a report.
pub fn classify(error: &TransportError) -> Disposition {
    match error {
        TransportError::Network(_) => Disposition::Retry(FailureClass::Network),
        TransportError::Malformed(_) => Disposition::Retry(FailureClass::Transient { retry_after_ms: None }),
        TransportError::Http { status, code, message, retry_after_ms } => match *status {
            401 => Disposition::Retry(FailureClass::Auth),
            408 | 409 | 413 | 425 | 429 | 500..=599 => Disposition::Retry(FailureClass::Transient { retry_after_ms: *retry_after_ms }),
            // A 4xx without our error body came from something in between
            // (a captive portal, a firewall, a proxy): not the server's word.
            400..=499 if code.starts_with("http_") => Disposition::Retry(FailureClass::Transient { retry_after_ms: *retry_after_ms }),
            400..=499 => Disposition::Reject { code: code.clone(), message: message.clone() },
            _ => Disposition::Retry(FailureClass::Transient { retry_after_ms: *retry_after_ms }),
        },
    }
}

/// What may travel on a metered link. Originals that do not travel wait
/// for an unmetered one; a preview lets the command center see the scene
/// meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MeteredPolicy {
    /// Operations only.
    TextOnly,
    /// Operations and a 320 px thumbnail of each photo.
    Thumbnails,
    /// Operations and a 1280 px rendition of each photo.
    Renditions,
    /// Operations and original photos (the default: evidence matters more
    /// than data plans).
    #[default]
    Everything,
}

/// A blob to upload: the original photo of an upload operation, or a
/// smaller preview of it sent ahead on a metered link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobJob {
    /// The upload operation this blob serves.
    pub op_id: Uuid,
    pub sha256: String,
    pub size: u64,
    pub path: PathBuf,
    /// Set when this blob is a preview.
    pub preview: Option<PreviewOf>,
    /// This device recorded sending some of it before (an earlier run was
    /// cut off): ask the server where it stands instead of starting at 0.
    pub sent_before: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviewOf {
    pub original_sha256: String,
    pub long_edge: u32,
}

/// What becomes of one pushed operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The server applied it (now or before): it is done.
    Acknowledge,
    /// Refused for a reason retrying cannot fix: wait for the user.
    Park(ParkReason),
    /// Not done: send it again later; the text is the outbox's last error.
    RetryLater(&'static str),
}

/// A write the driver performs in the store; no event answers it.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// The fate of each operation of a request, in one transaction, then
    /// any pulled state that waited for them.
    Verdicts(Vec<(Uuid, Verdict)>),
    /// An upload operation is on its way.
    UploadStarted { op_id: Uuid },
    /// The server acknowledged bytes up to `offset`.
    UploadProgress { sha256: String, size: u64, offset: u64 },
    /// The original arrived whole: the upload operation is done.
    UploadDone { op_id: Uuid, sha256: String },
    /// A preview of an original went ahead (`None`: none can or need be
    /// sent at this edge; the original follows on an unmetered link).
    PreviewSent { original_sha256: String, preview_sha256: Option<String>, long_edge: u32 },
    /// Apply a pulled page and move the cursor, in one transaction.
    ApplyPage(PullResponse),
    /// Apply the changes a push reply echoed (the cursor stays: pull skips
    /// their span instead, see [`Action::Pull`]).
    ApplyEcho(Vec<api::Change>),
    /// Keep a fetched thumbnail of a case's photo.
    ThumbnailFetched { sha256: String, bytes: Vec<u8> },
    /// The server's clock, read off a reply.
    ServerTime(i64),
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Take up to `limit` ready operations (incident text, transitions) in
    /// queue order, mark them in flight and push them in one request;
    /// answer [`Event::Pushed`], or [`Event::NothingReady`] when none is.
    Push { limit: u32 },
    /// Find the next original photo to upload; answer
    /// [`Event::UploadSelected`], [`Event::UploadUnreadable`] or
    /// [`Event::NothingReady`].
    NextUpload,
    /// Find the next photo without a preview of at least this edge and make
    /// one; answer [`Event::UploadSelected`], [`Event::PreviewUnavailable`]
    /// or [`Event::NothingReady`].
    NextPreview { long_edge: u32 },
    /// Announce a blob (the server says where it stands); answer
    /// [`Event::BlobReply`].
    AnnounceBlob { sha256: String, size: u64, preview_of: Option<String> },
    /// Ask where an upload stands; answer [`Event::BlobReply`].
    BlobStatus { sha256: String },
    /// Send `len` bytes of the file from `offset`; answer [`Event::BlobReply`],
    /// or [`Event::UploadFileUnreadable`] when the file cannot be read.
    /// With `announce_size`, the chunk also announces the blob (the first
    /// chunk of a fresh original: one request instead of two).
    SendChunk { sha256: String, path: PathBuf, offset: u64, len: usize, announce_size: Option<u64> },
    /// Pull one page of changes, leaving out the spans this run's push
    /// replies already echoed; answer [`Event::Pulled`].
    Pull { cursor: i64, limit: u32, skip: Vec<SkipSpan> },
    /// Find the next photo of a case the user works whose thumbnail this
    /// device lacks, other than `skip`; answer [`Event::ThumbnailWanted`]
    /// or [`Event::NothingReady`].
    NextThumbnail { skip: Vec<String> },
    /// Download that thumbnail; answer [`Event::Thumbnail`].
    FetchThumbnail { sha256: String },
    /// Refresh the access token; answer [`Event::TokenProvided`] or
    /// [`Event::RefreshFailed`].
    RefreshToken,
    /// Is any work ready now (photos included when allowed)? Answer
    /// [`Event::Remaining`].
    CheckRemaining { uploads_allowed: bool },
    /// Write this to the store.
    Record(Record),
    /// Tell the app a person must log in again; nothing is dropped.
    NeedLogin,
    /// The server revoked this device: end the session for good and tell
    /// the app; the wipe follows the run (nothing unsent may be lost).
    DeviceRevoked,
    /// The run is over; [`SyncEngine::finish_run`] tells what it did.
    Finish,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Wake(Trigger),
    NetworkChanged { online: bool, metered: bool },
    PolicyChanged(MeteredPolicy),
    /// The app (or a refresh) supplied a usable access token.
    TokenProvided,
    RefreshFailed(TransportError),
    /// The store has nothing ready for the step asked about.
    NothingReady,
    Pushed { ops: Vec<Uuid>, result: Result<PushResponse, TransportError> },
    UploadSelected(BlobJob),
    /// An upload operation whose payload this build cannot read.
    UploadUnreadable { op_id: Uuid },
    /// No preview can be made of this original at this edge.
    PreviewUnavailable { original_sha256: String, long_edge: u32 },
    BlobReply(Result<BlobStatus, TransportError>),
    /// The photo file cannot be read on this device (the error's code).
    UploadFileUnreadable { code: String },
    Pulled(Result<PullResponse, TransportError>),
    ThumbnailWanted { sha256: String },
    Thumbnail { sha256: String, result: Result<Vec<u8>, TransportError> },
    Remaining { ready: bool },
    /// Stop at this request boundary: the run was cancelled or its time
    /// budget is spent. A later run picks up where this one stopped.
    Cancel,
}

/// Failures seen in a run, by class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    pub network: u32,
    pub transient: u32,
    pub auth: u32,
    pub rejected: u32,
}

/// What one sync run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Operations the server acknowledged (applied or duplicate).
    pub pushed: u32,
    /// Operations the server refused, now parked.
    pub parked: u32,
    pub uploaded_bytes: u64,
    pub photos_uploaded: u32,
    /// Previews (thumbnails or renditions) sent ahead on a metered link.
    pub previews_uploaded: u32,
    /// Changes pulled and applied (or deferred).
    pub pulled: u32,
    /// Thumbnails of other devices' photos fetched for offline screens.
    pub thumbnails_fetched: u32,
    pub errors: ErrorCounts,
    /// When to run again (device time, Unix ms); `None` when the round
    /// finished and only a new trigger needs another.
    pub next_wake_ms: Option<i64>,
    /// A person must log in again; nothing was dropped.
    pub needs_login: bool,
    /// An administrator revoked this device: no login helps; it stops
    /// syncing and its data is wiped once nothing unsent would be lost.
    pub device_revoked: bool,
    /// The round finished: nothing left that can be done now.
    pub completed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Running(Step),
    BackingOff { until_ms: i64, resume: Step },
    WaitingForNetwork { resume: Step },
    Refreshing { resume: Step },
    NeedsToken { resume: Step },
}

/// The request an upload waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    Announce,
    Status,
    Chunk { offset: u64 },
}

/// One blob on its way.
#[derive(Clone, Debug)]
struct Upload {
    job: BlobJob,
    awaiting: Awaiting,
    chunk_bytes: usize,
    restarted: bool,
    damaged: u32,
    /// When the chunk awaited was asked for, to measure the link.
    chunk_asked_ms: Option<i64>,
    /// The next chunk announces the blob too (see [`Action::SendChunk`]).
    announce: bool,
}

/// State of one run (one `sync_now`).
#[derive(Clone, Debug, Default)]
struct Run {
    report: SyncReport,
    cursor: i64,
    upload: Option<Upload>,
    /// The thumbnail being fetched.
    thumbnail: Option<String>,
    /// Thumbnails the server would not give this run (not arrived yet, not
    /// an image): asked for again in a later run.
    skipped_thumbnails: Vec<String>,
    /// Progress (pushed + uploaded + parked) when the last round ended, so
    /// a new round starts only when the last one moved something.
    round_progress: u32,
    /// Spans of cursors whose changes push replies echoed and the store
    /// applied in this run. Kept for the run only: a run that fails midway
    /// (a record not written) forgets them, and pull brings those changes
    /// again, which only costs bytes.
    echoed: Vec<SkipSpan>,
    /// The cursor of each entity's echoed change: a pulled change of that
    /// entity from before it is stale (a removal the push has since
    /// outdated, say) and is dropped.
    echoed_at: HashMap<(String, String), i64>,
    finished: bool,
}

impl Run {
    /// Remember an echoed span, joined to the last one when they touch (a
    /// backlog's pushes, one after another, make one span).
    fn echoed(&mut self, span: SkipSpan) {
        if let Some(last) = self.echoed.last_mut()
            && last.until == span.after
        {
            last.until = span.until;
        } else if self.echoed.len() < api::MAX_PULL_SKIPS {
            self.echoed.push(span);
        }
        // Otherwise more spans than a pull may name: the rest come as downloads.
    }

    fn pull_action(&self) -> Action {
        let skip = self.echoed.iter().filter(|s| s.until > self.cursor).copied().collect();
        Action::Pull { cursor: self.cursor, limit: PULL_PAGE, skip }
    }
}

impl Run {
    fn progress(&self) -> u32 {
        self.report.pushed + self.report.photos_uploaded + self.report.parked
    }

    fn count(&mut self, class: FailureClass) {
        match class {
            FailureClass::Network => self.report.errors.network += 1,
            FailureClass::Transient { .. } => self.report.errors.transient += 1,
            // A 401 leads to a refresh; only a refused refresh is an auth
            // error (counted at `RefreshFailed`), not one that worked.
            FailureClass::Auth => {}
        }
    }
}

#[derive(Clone, Debug)]
pub struct SyncEngine {
    state: State,
    online: bool,
    metered: bool,
    metered_policy: MeteredPolicy,
    /// Consecutive transient failures, for the backoff exponent.
    failures: u32,
    /// xorshift state for jitter; seeded so runs replay.
    jitter_state: u64,
    /// Operations per push request: [`FIRST_PUSH_BATCH`] at the start of a
    /// run, doubled after each answered batch up to [`MAX_PUSH_BATCH`],
    /// halved when a request fails or is refused as a whole (to isolate the
    /// culprit, or fit a proxy's body limit).
    push_batch: u32,
    /// The upload rate measured from chunk round trips (bytes per second,
    /// smoothed); kept across runs, the link is likely the same, and
    /// forgotten when a chunk fails (the link changed: start small again).
    link_bytes_per_s: Option<u64>,
    /// The largest body something on the way took (a proxy's 413 lowers
    /// it), so later uploads do not learn it again.
    chunk_ceiling: usize,
    run: Option<Run>,
    /// Writes and notices queued by the last event, handed out first.
    out: VecDeque<Action>,
}

impl SyncEngine {
    pub fn new(jitter_seed: u64) -> SyncEngine {
        SyncEngine {
            state: State::Idle,
            online: true,
            metered: false,
            metered_policy: MeteredPolicy::default(),
            failures: 0,
            jitter_state: jitter_seed | 1,
            push_batch: FIRST_PUSH_BATCH,
            link_bytes_per_s: None,
            chunk_ceiling: MAX_CHUNK_BYTES,
            run: None,
            out: VecDeque::new(),
        }
    }

    pub fn is_online(&self) -> bool {
        self.online
    }

    pub fn needs_token(&self) -> bool {
        matches!(self.state, State::NeedsToken { .. })
    }

    /// Whether any photo bytes (originals or previews) may travel now.
    pub fn uploads_allowed(&self) -> bool {
        !self.metered || self.metered_policy != MeteredPolicy::TextOnly
    }

    /// Whether original photos may travel now.
    pub fn originals_allowed(&self) -> bool {
        !self.metered || self.metered_policy == MeteredPolicy::Everything
    }

    /// The long edge of the previews to send ahead now, if any.
    pub fn preview_edge(&self) -> Option<u32> {
        match (self.metered, self.metered_policy) {
            (true, MeteredPolicy::Thumbnails) => Some(THUMBNAIL_LONG_EDGE),
            (true, MeteredPolicy::Renditions) => Rendition::LongEdge1280.long_edge(),
            _ => None,
        }
    }

    /// Begin a run; `cursor` is the store's pull cursor.
    pub fn start_run(&mut self, cursor: i64) {
        self.out.clear();
        self.push_batch = FIRST_PUSH_BATCH;
        self.run = Some(Run { cursor, ..Run::default() });
    }

    /// How far the run has got; `None` between runs.
    pub fn progress(&self) -> Option<SyncProgress> {
        let run = self.run.as_ref()?;
        let upload = run.upload.as_ref().map(|u| UploadPosition {
            size: u.job.size,
            // Before the first chunk the server has told nothing yet.
            sent: match u.awaiting {
                Awaiting::Chunk { offset } => offset,
                Awaiting::Announce | Awaiting::Status => 0,
            },
        });
        let r = &run.report;
        Some(SyncProgress { pushed: r.pushed, parked: r.parked, photos_uploaded: r.photos_uploaded, uploaded_bytes: r.uploaded_bytes, pulled: r.pulled, upload })
    }

    /// End the run and tell what it did.
    pub fn finish_run(&mut self) -> SyncReport {
        self.out.clear();
        self.run.take().map(|run| run.report).unwrap_or_default()
    }

    fn next_jitter(&mut self, bound: i64) -> i64 {
        // xorshift64*: enough for jitter, and deterministic per seed.
        let mut x = self.jitter_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.jitter_state = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1) as u64) as i64
    }

    /// Exponential backoff with full jitter: a random delay up to
    /// base·2^failures, capped, so a crowd of phones does not return at once.
    fn backoff_ms(&mut self) -> i64 {
        let ceiling = (BASE_BACKOFF_MS << self.failures.min(20)).min(MAX_BACKOFF_MS);
        BASE_BACKOFF_MS / 2 + self.next_jitter(ceiling)
    }

    fn run(&mut self) -> &mut Run {
        // Events outside a run (a login, a network change) touch no run
        // state; this keeps the rare stray one harmless.
        self.run.get_or_insert_with(Run::default)
    }

    fn record(&mut self, record: Record) {
        self.out.push_back(Action::Record(record));
    }

    /// End the run, to be woken again at `wake_at` (if any).
    fn finish(&mut self, wake_at: Option<i64>) {
        let run = self.run();
        run.report.next_wake_ms = wake_at;
        run.finished = true;
    }

    pub fn handle(&mut self, event: Event, now_ms: i64) {
        match event {
            Event::NetworkChanged { online, metered } => {
                self.online = online;
                self.metered = metered;
                self.state = match self.state {
                    State::WaitingForNetwork { resume } if online => State::Running(resume),
                    State::Running(step) if !online => State::WaitingForNetwork { resume: step },
                    other => other,
                };
            }
            Event::PolicyChanged(policy) => self.metered_policy = policy,
            Event::Wake(trigger) => self.wake(trigger),
            Event::TokenProvided => {
                if let State::Refreshing { resume } | State::NeedsToken { resume } = self.state {
                    self.state = State::Running(resume);
                }
            }
            Event::RefreshFailed(error) => match classify(&error) {
                Disposition::Retry(FailureClass::Auth) | Disposition::Reject { .. } => {
                    self.run().report.errors.auth += 1;
                    if matches!(&error, TransportError::Http { code, .. } if code == api::DEVICE_REVOKED) {
                        self.run().report.device_revoked = true;
                    }
                    if let State::Refreshing { resume } = self.state {
                        self.state = State::NeedsToken { resume };
                    }
                }
                // The refresh could not reach the server: try it again soon,
                // the pause for a new login is only for a refused refresh.
                Disposition::Retry(class) => {
                    self.run().count(class);
                    self.finish(Some(now_ms + REFRESH_RETRY_MS));
                }
            },
            Event::NothingReady => {
                if let State::Running(step @ (Step::Push | Step::Upload | Step::Thumbnails)) = self.state {
                    self.step_done(step, false);
                }
            }
            Event::ThumbnailWanted { sha256 } => self.run().thumbnail = Some(sha256),
            Event::Thumbnail { sha256, result } => self.thumbnail(sha256, result, now_ms),
            Event::Pushed { ops, result } => self.pushed(ops, result, now_ms),
            Event::UploadSelected(job) => {
                if job.preview.is_none() {
                    self.record(Record::UploadStarted { op_id: job.op_id });
                }
                let chunk_bytes = self.chunk_for_link().unwrap_or(FIRST_CHUNK_BYTES.min(self.chunk_ceiling));
                // A fresh original goes with its announcement in its first
                // chunk. A preview is announced apart (it names its
                // original), a blob sent before asks where it stands, and
                // an empty one (no photo is; the server refuses it) has no
                // first chunk to carry anything.
                let announce = job.preview.is_none() && !job.sent_before && job.size > 0;
                if announce {
                    // Recorded before the first byte goes: if its reply is
                    // lost, the next attempt asks the server where it stands
                    // instead of sending a chunk it may already hold.
                    self.record(Record::UploadProgress { sha256: job.sha256.clone(), size: job.size, offset: 0 });
                }
                self.run().upload = Some(Upload {
                    job,
                    awaiting: if announce { Awaiting::Chunk { offset: 0 } } else { Awaiting::Announce },
                    chunk_bytes,
                    restarted: false,
                    damaged: 0,
                    chunk_asked_ms: None,
                    announce,
                });
            }
            Event::UploadUnreadable { op_id } => {
                let reason = ParkReason { code: "invalid_payload".into(), message: "unreadable upload".into() };
                self.record(Record::Verdicts(vec![(op_id, Verdict::Park(reason))]));
                self.step_done(Step::Upload, true);
            }
            Event::PreviewUnavailable { original_sha256, long_edge } => {
                self.record(Record::PreviewSent { original_sha256, preview_sha256: None, long_edge });
                self.step_done(Step::Upload, true);
            }
            Event::BlobReply(result) => self.blob_reply(result, now_ms),
            Event::UploadFileUnreadable { code } => {
                let Some(upload) = self.run().upload.take() else { return };
                match upload.job.preview {
                    None => {
                        let reason = ParkReason { code, message: "the photo file cannot be read on this device".into() };
                        self.record(Record::Verdicts(vec![(upload.job.op_id, Verdict::Park(reason))]));
                        self.run().report.parked += 1;
                    }
                    // Not chosen again at this edge; the original follows.
                    Some(preview) => self.record(Record::PreviewSent {
                        original_sha256: preview.original_sha256,
                        preview_sha256: None,
                        long_edge: preview.long_edge,
                    }),
                }
                self.step_done(Step::Upload, true);
            }
            Event::Pulled(result) => self.pulled(result, now_ms),
            Event::Remaining { ready } => {
                let run = self.run();
                // Work that became ready during the round (an upload whose
                // case was acknowledged late, an operation queued meanwhile)
                // starts another round, as long as the last one moved
                // something; otherwise the run ends.
                if ready && run.progress() > run.round_progress {
                    run.round_progress = run.progress();
                    self.state = State::Running(Step::Push);
                } else {
                    run.report.completed = !ready;
                    self.finish(ready.then_some(now_ms + BASE_BACKOFF_MS));
                }
            }
            Event::Cancel => {
                if let Some(upload) = self.run().upload.take()
                    && upload.job.preview.is_none()
                {
                    self.record(Record::Verdicts(vec![(upload.job.op_id, Verdict::RetryLater("budget"))]));
                }
                self.finish(Some(now_ms));
            }
        }
    }

    fn wake(&mut self, trigger: Trigger) {
        self.state = match (self.state, trigger) {
            // Any trigger starts a round, or cuts a wait short, except a
            // pause for a token: only a token ends that.
            (state @ (State::NeedsToken { .. } | State::Refreshing { .. }), _) => state,
            (State::Idle, _) => State::Running(Step::Push),
            (State::BackingOff { resume, .. }, Trigger::ManualRetry | Trigger::TimerFired | Trigger::NetworkUp) => State::Running(resume),
            (state @ State::BackingOff { .. }, _) => state,
            (State::WaitingForNetwork { resume }, _) => State::Running(resume),
            (State::Running(step), Trigger::OperationQueued) => State::Running(step.min(Step::Push)),
            (running @ State::Running(_), _) => running,
        };
    }

    /// A step's request succeeded; `more`: the step has further work now.
    fn step_done(&mut self, step: Step, more: bool) {
        if self.state != State::Running(step) {
            return; // stale
        }
        self.failures = 0;
        self.state = match (step, more) {
            (_, true) => State::Running(step),
            (Step::Push, false) => State::Running(Step::Upload),
            (Step::Upload, false) => State::Running(Step::Pull),
            (Step::Pull, false) => State::Running(Step::Thumbnails),
            (Step::Thumbnails, false) => State::Idle,
        };
    }

    fn step_failed(&mut self, step: Step, class: FailureClass, now_ms: i64) {
        if self.state != State::Running(step) {
            return; // stale
        }
        self.state = match class {
            FailureClass::Network => State::WaitingForNetwork { resume: step },
            FailureClass::Transient { retry_after_ms } => {
                self.failures += 1;
                let delay = self.backoff_ms().max(retry_after_ms.unwrap_or(0).min(MAX_BACKOFF_MS * 2));
                State::BackingOff { until_ms: now_ms + delay, resume: step }
            }
            FailureClass::Auth => State::Refreshing { resume: step },
        };
    }

    fn pushed(&mut self, ops: Vec<Uuid>, result: Result<PushResponse, TransportError>, now_ms: i64) {
        if self.state != State::Running(Step::Push) {
            return; // stale: the operations are recovered at the next run
        }
        match result {
            Ok(response) => {
                let verdicts: Vec<(Uuid, Verdict)> = ops.iter().map(|op| (*op, push_verdict(*op, &response))).collect();
                let parked = verdicts.iter().filter(|(_, v)| matches!(v, Verdict::Park(_))).count() as u32;
                let acked = verdicts.iter().filter(|(_, v)| *v == Verdict::Acknowledge).count() as u32;
                self.record(Record::Verdicts(verdicts));
                // After the verdicts: the echoed cases' operations are
                // acknowledged by then, so their views apply at once.
                if let Some(echo) = response.echo {
                    let run = self.run();
                    for change in &echo.changes {
                        run.echoed_at.insert((change.entity_kind.clone(), change.entity_id.clone()), change.cursor);
                    }
                    run.echoed(echo.span);
                    self.record(Record::ApplyEcho(echo.changes));
                }
                self.record(Record::ServerTime(response.server_time_ms));
                let report = &mut self.run().report;
                report.pushed += acked;
                report.parked += parked;
                report.errors.rejected += parked;
                self.push_batch = (self.push_batch * 2).min(MAX_PUSH_BATCH);
                self.step_done(Step::Push, true);
            }
            Err(error) => match classify(&error) {
                Disposition::Retry(class) => {
                    // A dropped link or an overloaded server: send less at
                    // once. An expired token says nothing about the link.
                    if class != FailureClass::Auth {
                        self.push_batch = (ops.len() as u32 / 2).max(1);
                    }
                    self.record(Record::Verdicts(ops.iter().map(|op| (*op, Verdict::RetryLater(class.name()))).collect()));
                    self.run().count(class);
                    self.step_failed(Step::Push, class, now_ms);
                }
                // The request as a whole was refused. Only a per-operation
                // result may park an operation, so narrow it down: halve the
                // batch until the refused operation travels alone, and park
                // it only then.
                Disposition::Reject { code, message } if ops.len() == 1 => {
                    self.record(Record::Verdicts(vec![(ops[0], Verdict::Park(ParkReason { code, message }))]));
                    let report = &mut self.run().report;
                    report.parked += 1;
                    report.errors.rejected += 1;
                    self.push_batch = FIRST_PUSH_BATCH;
                    self.step_done(Step::Push, true);
                }
                Disposition::Reject { .. } => {
                    self.push_batch = (ops.len() as u32 / 2).max(1);
                    self.record(Record::Verdicts(ops.into_iter().map(|op| (op, Verdict::RetryLater("batch_refused"))).collect()));
                    self.step_done(Step::Push, true);
                }
            },
        }
    }

    fn blob_reply(&mut self, result: Result<BlobStatus, TransportError>, now_ms: i64) {
        let Some(mut upload) = self.run().upload.take() else { return };
        let announced = std::mem::take(&mut upload.announce);
        let status = match (upload.awaiting, result) {
            // An announcing chunk the server did not take: it held this blob
            // already (whole, or part of it from an attempt this device did
            // not record). Nothing of ours arrived; go on from its offset.
            (Awaiting::Chunk { offset }, Ok(status)) if announced && status.offset != offset + (upload.job.size - offset).min(upload.chunk_bytes as u64) => status,
            (Awaiting::Chunk { offset }, Ok(status)) => {
                let sent = status.offset.saturating_sub(offset);
                self.measure_link(sent, upload.chunk_asked_ms.map(|at| now_ms - at));
                upload.chunk_bytes = self.chunk_for_link().unwrap_or((upload.chunk_bytes * 2).min(self.chunk_ceiling));
                self.run().report.uploaded_bytes += sent;
                self.record(Record::UploadProgress { sha256: upload.job.sha256.clone(), size: upload.job.size, offset: status.offset });
                status
            }
            (_, Ok(status)) => status,
            (Awaiting::Chunk { .. }, Err(error)) => match chunk_refused(&mut upload, &mut self.chunk_ceiling, error) {
                None => {
                    // Sent again as it was: still announcing if it was.
                    upload.announce = announced && matches!(upload.awaiting, Awaiting::Chunk { .. });
                    self.run().upload = Some(upload);
                    return;
                }
                // A server from before announcing chunks took the chunk for
                // one of a blob it never heard of: announce apart.
                Some(TransportError::Http { status: 404, .. }) if announced => {
                    upload.awaiting = Awaiting::Announce;
                    self.run().upload = Some(upload);
                    return;
                }
                // The announcement was refused (the case is not pushed yet,
                // say): a verdict on the blob, not a chunk lost on the way.
                Some(error @ TransportError::Http { .. }) if announced => return self.upload_failed(upload.job, error, now_ms),
                Some(error) => {
                    // A chunk lost on the way: the link is not what was
                    // measured (a weak uplink now, say), and a chunk sized
                    // for the old one might never get through. Start small.
                    self.link_bytes_per_s = None;
                    return self.upload_failed(upload.job, error, now_ms);
                }
            },
            (_, Err(error)) => return self.upload_failed(upload.job, error, now_ms),
        };
        if status.complete {
            let job = upload.job;
            match job.preview {
                None => {
                    self.record(Record::UploadDone { op_id: job.op_id, sha256: job.sha256 });
                    self.run().report.photos_uploaded += 1;
                }
                Some(preview) => {
                    self.record(Record::PreviewSent {
                        original_sha256: preview.original_sha256,
                        preview_sha256: Some(job.sha256),
                        long_edge: preview.long_edge,
                    });
                    self.run().report.previews_uploaded += 1;
                }
            }
            self.step_done(Step::Upload, true);
        } else if status.offset >= upload.job.size {
            // The server holds every byte but has not finished verifying:
            // ask again later (announcing it again completes it).
            self.upload_failed(upload.job, TransportError::Malformed("upload awaits the server's verification".into()), now_ms);
        } else {
            upload.awaiting = Awaiting::Chunk { offset: status.offset };
            self.run().upload = Some(upload);
        }
    }

    /// One chunk's round trip: `bytes` acknowledged in `elapsed_ms`. A
    /// round trip under a millisecond (or a clock that stood still) tells
    /// nothing about the link.
    fn measure_link(&mut self, bytes: u64, elapsed_ms: Option<i64>) {
        let Some(ms) = elapsed_ms.filter(|ms| *ms > 0) else { return };
        if bytes == 0 {
            return;
        }
        let sample = bytes.saturating_mul(1000) / ms as u64;
        self.link_bytes_per_s = Some(match self.link_bytes_per_s {
            Some(rate) => rate / 2 + sample / 2,
            None => sample,
        });
    }

    /// The chunk the measured link carries in [`CHUNK_TARGET_MS`], within
    /// the floor and the ceiling; `None` before anything was measured.
    fn chunk_for_link(&self) -> Option<usize> {
        let ceiling = self.chunk_ceiling;
        let rate = self.link_bytes_per_s?;
        let bytes = rate.saturating_mul(CHUNK_TARGET_MS) / 1000;
        Some((bytes.min(ceiling as u64) as usize).max(MIN_CHUNK_BYTES.min(ceiling)))
    }

    fn upload_failed(&mut self, job: BlobJob, error: TransportError, now_ms: i64) {
        match (classify(&error), job.preview) {
            (Disposition::Retry(class), preview) => {
                if preview.is_none() {
                    self.record(Record::Verdicts(vec![(job.op_id, Verdict::RetryLater(class.name()))]));
                }
                self.run().count(class);
                self.step_failed(Step::Upload, class, now_ms);
            }
            (Disposition::Reject { code, message }, None) => {
                self.record(Record::Verdicts(vec![(job.op_id, Verdict::Park(ParkReason { code, message }))]));
                let report = &mut self.run().report;
                report.parked += 1;
                report.errors.rejected += 1;
                self.step_done(Step::Upload, true);
            }
            // A refused preview is not worth parking the evidence for: note
            // it as sent, the original follows on Wi-Fi.
            (Disposition::Reject { .. }, Some(preview)) => {
                self.record(Record::PreviewSent { original_sha256: preview.original_sha256, preview_sha256: None, long_edge: preview.long_edge });
                self.run().report.errors.rejected += 1;
                self.step_done(Step::Upload, true);
            }
        }
    }

    fn thumbnail(&mut self, sha256: String, result: Result<Vec<u8>, TransportError>, now_ms: i64) {
        if self.state != State::Running(Step::Thumbnails) {
            return; // stale
        }
        self.run().thumbnail = None;
        match result {
            Ok(bytes) => {
                self.record(Record::ThumbnailFetched { sha256, bytes });
                self.run().report.thumbnails_fetched += 1;
                self.step_done(Step::Thumbnails, true);
            }
            Err(error) => match classify(&error) {
                Disposition::Retry(class) => {
                    self.run().count(class);
                    self.step_failed(Step::Thumbnails, class, now_ms);
                }
                // Not there yet (the photo is still uploading) or not an
                // image: nothing is lost, a later run asks again.
                Disposition::Reject { .. } => {
                    self.run().skipped_thumbnails.push(sha256);
                    self.step_done(Step::Thumbnails, true);
                }
            },
        }
    }

    fn pulled(&mut self, result: Result<PullResponse, TransportError>, now_ms: i64) {
        if self.state != State::Running(Step::Pull) {
            return; // stale: the cursor did not move, the page comes again
        }
        match result {
            Ok(mut page) => {
                let run = self.run();
                if !run.echoed_at.is_empty() {
                    let echoed_at = &run.echoed_at;
                    page.changes.retain(|c| echoed_at.get(&(c.entity_kind.clone(), c.entity_id.clone())).is_none_or(|at| c.cursor > *at));
                }
                run.report.pulled += page.changes.len() as u32;
                run.cursor = page.next_cursor;
                let cursor = run.cursor;
                run.echoed.retain(|span| span.until > cursor);
                let (more, server_time) = (page.has_more, page.server_time_ms);
                self.record(Record::ApplyPage(page));
                self.record(Record::ServerTime(server_time));
                self.step_done(Step::Pull, more);
            }
            Err(error) => match classify(&error) {
                Disposition::Retry(class) => {
                    self.run().count(class);
                    self.step_failed(Step::Pull, class, now_ms);
                }
                // A refused pull has nothing to park; try again later.
                Disposition::Reject { .. } => {
                    self.run().report.errors.rejected += 1;
                    self.step_failed(Step::Pull, FailureClass::Transient { retry_after_ms: None }, now_ms);
                }
            },
        }
    }

    /// The next action. Call after every event.
    pub fn poll(&mut self, now_ms: i64) -> Action {
        if let Some(action) = self.out.pop_front() {
            return action;
        }
        if self.run.as_ref().is_none_or(|run| run.finished) {
            return Action::Finish;
        }
        match self.state {
            State::Idle => Action::CheckRemaining { uploads_allowed: self.uploads_allowed() },
            State::Running(step) if !self.online => {
                self.state = State::WaitingForNetwork { resume: step };
                self.poll(now_ms)
            }
            State::Running(Step::Push) => Action::Push { limit: self.push_batch },
            State::Running(Step::Upload) => self.next_upload_action(now_ms),
            State::Running(Step::Pull) => self.run().pull_action(),
            // Thumbnails are small, but on a text-only link they wait too.
            State::Running(Step::Thumbnails) if !self.uploads_allowed() => {
                self.step_done(Step::Thumbnails, false);
                self.poll(now_ms)
            }
            State::Running(Step::Thumbnails) => match self.run().thumbnail.clone() {
                Some(sha256) => Action::FetchThumbnail { sha256 },
                None => Action::NextThumbnail { skip: self.run().skipped_thumbnails.clone() },
            },
            State::BackingOff { until_ms, resume } => {
                if now_ms >= until_ms {
                    self.state = State::Running(resume);
                    self.poll(now_ms)
                } else {
                    self.finish(Some(until_ms));
                    Action::Finish
                }
            }
            State::WaitingForNetwork { .. } => {
                self.finish(Some(now_ms + NETWORK_PROBE_MS));
                Action::Finish
            }
            State::Refreshing { .. } => Action::RefreshToken,
            State::NeedsToken { .. } => {
                let revoked = self.run().report.device_revoked;
                self.run().report.needs_login = !revoked;
                self.finish(None);
                if revoked { Action::DeviceRevoked } else { Action::NeedLogin }
            }
        }
    }

    fn next_upload_action(&mut self, now_ms: i64) -> Action {
        if !self.uploads_allowed() {
            // Photos wait for Wi-Fi; the round goes on with the pull.
            self.state = State::Running(Step::Pull);
            return self.run().pull_action();
        }
        let originals = self.originals_allowed();
        let preview_edge = self.preview_edge();
        let Some(upload) = self.run().upload.as_mut() else {
            return match (originals, preview_edge) {
                (true, _) => Action::NextUpload,
                (false, Some(long_edge)) => Action::NextPreview { long_edge },
                (false, None) => {
                    self.step_done(Step::Upload, false);
                    self.poll(now_ms)
                }
            };
        };
        if let Awaiting::Chunk { .. } = upload.awaiting {
            upload.chunk_asked_ms = Some(now_ms);
        }
        let job = &upload.job;
        match upload.awaiting {
            Awaiting::Announce => Action::AnnounceBlob {
                sha256: job.sha256.clone(),
                size: job.size,
                preview_of: job.preview.as_ref().map(|p| p.original_sha256.clone()).filter(|original| *original != job.sha256),
            },
            Awaiting::Status => Action::BlobStatus { sha256: job.sha256.clone() },
            Awaiting::Chunk { offset } => Action::SendChunk {
                sha256: job.sha256.clone(),
                path: job.path.clone(),
                offset,
                len: (job.size - offset).min(upload.chunk_bytes as u64) as usize,
                announce_size: upload.announce.then_some(job.size),
            },
        }
    }
}

/// What to do about a refused chunk: send again (the upload, or the
/// `ceiling` on chunks, was adjusted), or fail the upload with this error.
fn chunk_refused(upload: &mut Upload, ceiling: &mut usize, error: TransportError) -> Option<TransportError> {
    let TransportError::Http { status, code, .. } = &error else { return Some(error) };
    match (*status, code.as_str()) {
        // Someone (an earlier, killed attempt) moved the offset: ask.
        (_, "offset_mismatch") => upload.awaiting = Awaiting::Status,
        // Something on the way (a proxy) takes smaller bodies only.
        (413, _) if upload.chunk_bytes > MIN_CHUNK_BYTES => {
            upload.chunk_bytes = (upload.chunk_bytes / 2).max(MIN_CHUNK_BYTES);
            *ceiling = upload.chunk_bytes;
        }
        // The chunk was damaged on the way: send it again (a few times;
        // after that it is a transient failure, never a reason to park).
        (_, "chunk_checksum_mismatch") if upload.damaged < MAX_DAMAGED_CHUNKS => upload.damaged += 1,
        (_, "chunk_checksum_mismatch") => return Some(TransportError::Malformed("chunks keep arriving damaged".into())),
        // The bytes on the server did not hash right: start over once.
        (_, "blob_hash_mismatch") if !upload.restarted => {
            upload.restarted = true;
            upload.awaiting = Awaiting::Status;
        }
        _ => return Some(error),
    }
    None
}

/// A pushed operation's fate from the server's per-operation result. A
/// duplicate carries the first outcome: a replayed rejection is still a
/// rejection. An operation the reply does not mention is sent again.
fn push_verdict(op_id: Uuid, response: &PushResponse) -> Verdict {
    let outcome = response.results.iter().find(|r| r.op_id == op_id).map(|r| match &r.outcome {
        OperationOutcome::Duplicate { first } => first.as_ref(),
        other => other,
    });
    match outcome {
        Some(OperationOutcome::Applied { .. } | OperationOutcome::Duplicate { .. }) => Verdict::Acknowledge,
        Some(OperationOutcome::Rejected { code, message }) => Verdict::Park(ParkReason { code: code.clone(), message: message.clone() }),
        None => Verdict::RetryLater("unanswered"),
    }
}

#[cfg(test)]
mod tests;
