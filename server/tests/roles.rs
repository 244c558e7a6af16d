//! The role-and-scope table over real HTTP: for every endpoint, every role,
//! in scope and out of scope, the status and code the server must answer.
//!
//! The rules (DESIGN.md, server/src/scope.rs, protocol/src/case.rs):
//! - reporters see their own reports; supervisors see every case in their
//!   grids (volunteers' pending_review reports too), and so do the grids'
//!   workers (they review, verify and count them); everyone sees the cases
//!   dispatched to them;
//!   volunteers see only their own; dispatcher and admin see everything;
//! - a case out of scope answers exactly like a case that does not exist
//!   (404 `not_found`), on every read and every write;
//! - register/reject/merge/ask_info: dispatcher, admin, the supervisor of the
//!   case's grid, or (volunteers' reports under review) a worker of the grid;
//!   answer: the reporter alone; dispatch: dispatcher and admin only; start/handle: the
//!   assignee (or dispatcher/admin), as are sign and hand_back;
//!   close/reopen (核查): dispatcher, admin, the grid's supervisor, or a
//!   worker of the grid who did not handle the case. A refused step is 403 `forbidden` over HTTP and a
//!   `rejected` result with code `forbidden` over push;
//! - departments see only the cases dispatched to them;
//! - photos are uploaded by whoever announced them in a step (or the command
//!   center) and downloaded by whoever sees the case;
//! - the admin API is the admin's alone.
//!
//! The tables below are data: one line per endpoint and case, one column
//! per actor. They expand into rows (endpoint, actor, case, expected), and
//! one runner checks every row, collecting every mismatch before failing.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;

use common::*;
use gridwork_protocol::api::Role;
use gridwork_protocol::PhotoRef;
use reqwest::blocking::Response;
use serde_json::{Value, json};
use uuid::Uuid;

// ───────────────────────────── the vocabulary ─────────────────────────────

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Actor {
    /// Grid worker of G-001.
    Worker1,
    /// Grid worker of G-002: out of scope for G-001 cases.
    Worker2,
    /// Volunteer of G-001.
    Volunteer1,
    /// Supervisor of G-001.
    Supervisor1,
    /// Supervisor of G-002 (added to the standard cast).
    Supervisor2,
    Dispatcher,
    Admin,
    /// A department (职能部门, added to the standard cast).
    Department1,
}

use Actor::*;

/// The column order of every table.
const ACTORS: [Actor; 8] = [Worker1, Worker2, Volunteer1, Supervisor1, Supervisor2, Dispatcher, Admin, Department1];

impl Actor {
    fn username(self) -> &'static str {
        match self {
            Worker1 => "worker1",
            Worker2 => "worker2",
            Volunteer1 => "volunteer1",
            Supervisor1 => "supervisor1",
            Supervisor2 => "supervisor2",
            Dispatcher => "dispatcher",
            Admin => "admin",
            Department1 => "department1",
        }
    }
    fn role(self) -> Role {
        match self {
            Worker1 | Worker2 => Role::GridWorker,
            Volunteer1 => Role::Volunteer,
            Supervisor1 | Supervisor2 => Role::Supervisor,
            Dispatcher => Role::Dispatcher,
            Admin => Role::Admin,
            Department1 => Role::Department,
        }
    }
}

/// The case a row acts on, and how it came to be. "Hotline" cases are
/// reported by the dispatcher (12345 hotline), so nobody in the field sees
/// them as their own report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Case {
    /// No case (admin endpoints, new reports).
    Nothing,
    /// worker1 reported it in G-001: `reported`.
    Reported,
    /// volunteer1 reported it in G-001: `pending_review`.
    Pending,
    /// volunteer1's report, rejected by supervisor1.
    Rejected,
    /// volunteer1's report; supervisor1 asked for more information.
    InfoRequested,
    /// A hotline case in G-001, registered.
    Registered,
    /// A hotline case in G-001, dispatched to worker1.
    DispatchedToWorker1,
    /// A hotline case in G-001, dispatched across grids to worker2.
    DispatchedToWorker2,
    /// A hotline case in G-001, dispatched to a department only.
    DispatchedToDepartment,
    /// Dispatched to worker1 and started by worker1.
    InProgress,
    /// Dispatched to worker1, started and handled by worker1.
    Handled,
    /// Handled by worker1, closed by the dispatcher.
    Closed,
    /// Handled by worker1, reopened by supervisor1.
    Reopened,
    /// worker2 reported it in G-002.
    ReportedInG002,
    /// worker1 reported it outside every known grid.
    ReportedNoGrid,
    /// worker1 reported it in G-001 with a photo and started the upload (no bytes yet).
    PhotoAnnounced,
    /// As above, with the photo fully uploaded.
    PhotoArrived,
    /// volunteer1 reported it in G-001 with a photo (uploaded); registered
    /// by supervisor1 and dispatched to a department: a task of G-001.
    TaskWithPhoto,
    /// A hotline case dispatched to worker1, handled with an after-photo
    /// whose upload worker1 started (no bytes yet).
    AfterPhotoAnnounced,
    /// A hotline case in G-001 dispatched to department1.
    DispatchedToDepartment1,
    /// As above, signed for by department1 (签收).
    SignedByDepartment1,
    /// As above, handled by department1.
    HandledByDepartment1,
    /// Handled by department1, verified and closed by worker1 with an
    /// on-site photo whose upload worker1 started (no bytes yet).
    VerificationPhotoAnnounced,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Register,
    Reject,
    Merge,
    Dispatch,
    Start,
    Handle,
    Close,
    Reopen,
    Sign,
    HandBack,
    AskInfo,
    Answer,
    Note,
}

impl Step {
    fn action(self) -> &'static str {
        match self {
            Step::Register => "register",
            Step::Reject => "reject",
            Step::Merge => "merge",
            Step::Dispatch => "dispatch",
            Step::Start => "start",
            Step::Handle => "handle",
            Step::Close => "close",
            Step::Reopen => "reopen",
            Step::Sign => "sign",
            Step::HandBack => "hand_back",
            Step::AskInfo => "ask_info",
            Step::Answer => "answer",
            Step::Note => "note",
        }
    }
    fn target_state(self) -> &'static str {
        match self {
            Step::Register => "registered",
            Step::Reject => "rejected",
            Step::Merge => "merged",
            Step::Dispatch => "dispatched",
            Step::Start => "in_progress",
            Step::Handle => "handled",
            Step::Close => "closed",
            Step::Reopen => "reopened",
            Step::Sign => "signed",
            Step::HandBack => "registered",
            Step::AskInfo => "info_requested",
            Step::Answer => "pending_review",
            Step::Note => "in_progress",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    /// POST /v1/push with a new report in G-001.
    PushSubmit,
    /// POST /v1/push with a workflow step on the case.
    PushTransition(Step),
    /// GET /v1/pull (from the start, all pages).
    Pull,
    /// GET /v1/incidents.
    List,
    /// GET /v1/incidents/{id}.
    Get,
    /// GET /v1/incidents/{id}/timeline.
    Timeline,
    /// POST /v1/incidents/{id}/transitions.
    Transition(Step),
    /// POST /v1/blobs for the case's photo.
    BlobCreate,
    /// GET /v1/blobs/{sha}/status.
    BlobStatus,
    /// PUT /v1/blobs/{sha}/chunks?offset=0 with the whole photo.
    ChunkPut,
    /// GET /v1/blobs/{sha}.
    BlobDownload,
    /// POST /v1/admin/users.
    AdminUsers,
    /// POST /v1/admin/grids.
    AdminGrids,
    /// POST /v1/admin/categories.
    AdminCategories,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Success. Reads return the case (lists and pulls include it); steps
    /// move it; pushes are `applied`; uploads advance.
    Ok,
    /// Out of scope: 404 `not_found` with the body a nonexistent case or
    /// blob gets; lists and pulls leave it out; pushes are rejected
    /// `not_found`. Nothing changes.
    Hidden,
    /// Seen but not allowed: 403 `forbidden`; pushes are rejected
    /// `forbidden`. Nothing changes.
    Forbidden,
    /// Any other refusal: status and code.
    Refused(u16, &'static str),
}

const OK: Expect = Expect::Ok;
const HIDE: Expect = Expect::Hidden;
const DENY: Expect = Expect::Forbidden;
/// An upload nobody may make answers like one nobody announced.
const UNANNOUNCED: Expect = Expect::Refused(409, "blob_not_announced");
const INCOMPLETE: Expect = Expect::Refused(404, "blob_incomplete");

#[derive(Clone, Copy, Debug)]
struct Row {
    endpoint: Endpoint,
    actor: Actor,
    case: Case,
    expect: Expect,
}

// ─────────────────────────────── the tables ───────────────────────────────

/// Who sees which case. Each line becomes rows for GET /v1/incidents/{id},
/// its timeline, GET /v1/incidents and /v1/pull.
#[rustfmt::skip]
const VISIBILITY: &[(Case, [Expect; 8])] = &[
    //                               worker1 worker2 volunteer1 supervisor1 supervisor2 dispatcher admin department1
    (Case::Reported,                 [OK,    HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Case::Pending,                  [OK,    HIDE,   OK,        OK,         HIDE,       OK,        OK, HIDE]),
    (Case::Rejected,                 [OK,    HIDE,   OK,        OK,         HIDE,       OK,        OK, HIDE]),
    (Case::Registered,               [OK,    HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Case::DispatchedToWorker1,      [OK,    HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Case::DispatchedToWorker2,      [OK,    OK,     HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Case::DispatchedToDepartment,   [OK,    HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Case::InProgress,               [OK,    HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Case::Handled,                  [OK,    HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Case::Closed,                   [OK,    HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Case::Reopened,                 [OK,    HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Case::ReportedInG002,           [HIDE,  OK,     HIDE,      HIDE,       OK,         OK,        OK, HIDE]),
    (Case::ReportedNoGrid,           [OK,    HIDE,   HIDE,      HIDE,       HIDE,       OK,        OK, HIDE]),
    (Case::InfoRequested,            [OK,    HIDE,   OK,        OK,         HIDE,       OK,        OK, HIDE]),
    // A department sees what is dispatched to it; the grid's workers see every case of their grid.
    (Case::DispatchedToDepartment1,  [OK,    HIDE,   HIDE,      OK,         HIDE,       OK,        OK, OK]),
    (Case::HandledByDepartment1,     [OK,    HIDE,   HIDE,      OK,         HIDE,       OK,        OK, OK]),
];

const READ_ENDPOINTS: [Endpoint; 4] = [Endpoint::Get, Endpoint::Timeline, Endpoint::List, Endpoint::Pull];

/// Who may take which step. Each line becomes a row over HTTP
/// (POST /v1/incidents/{id}/transitions) and one over push.
#[rustfmt::skip]
const WORKFLOW: &[(Step, Case, [Expect; 8])] = &[
    //                                              worker1 worker2 volunteer1 supervisor1 supervisor2 dispatcher admin department1
    (Step::Register, Case::Reported,               [DENY,  HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Step::Register, Case::Pending,                [OK,    HIDE,   DENY,      OK,         HIDE,       OK,        OK, HIDE]),
    (Step::Register, Case::ReportedInG002,         [HIDE,  DENY,   HIDE,      HIDE,       OK,         OK,        OK, HIDE]),
    (Step::Register, Case::ReportedNoGrid,         [DENY,  HIDE,   HIDE,      HIDE,       HIDE,       OK,        OK, HIDE]),
    (Step::Reject,   Case::Reported,               [DENY,  HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Step::Reject,   Case::Pending,                [OK,    HIDE,   DENY,      OK,         HIDE,       OK,        OK, HIDE]),
    (Step::Merge,    Case::Pending,                [OK,    HIDE,   DENY,      OK,         HIDE,       OK,        OK, HIDE]),
    (Step::Merge,    Case::Registered,             [DENY,  HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Step::Dispatch, Case::Registered,             [DENY,  HIDE,   HIDE,      DENY,       HIDE,       OK,        OK, HIDE]),
    (Step::Dispatch, Case::Reopened,               [DENY,  HIDE,   HIDE,      DENY,       HIDE,       OK,        OK, HIDE]),
    (Step::Start,    Case::DispatchedToWorker1,    [OK,    HIDE,   HIDE,      DENY,       HIDE,       OK,        OK, HIDE]),
    (Step::Start,    Case::DispatchedToWorker2,    [DENY,  OK,     HIDE,      DENY,       HIDE,       OK,        OK, HIDE]),
    (Step::Start,    Case::DispatchedToDepartment, [DENY,  HIDE,   HIDE,      DENY,       HIDE,       OK,        OK, HIDE]),
    (Step::Handle,   Case::DispatchedToWorker1,    [OK,    HIDE,   HIDE,      DENY,       HIDE,       OK,        OK, HIDE]),
    (Step::Handle,   Case::InProgress,             [OK,    HIDE,   HIDE,      DENY,       HIDE,       OK,        OK, HIDE]),
    (Step::Close,    Case::Handled,                [DENY,  HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Step::Reopen,   Case::Handled,                [DENY,  HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Step::Reopen,   Case::Closed,                 [DENY,  HIDE,   HIDE,      OK,         HIDE,       OK,        OK, HIDE]),
    (Step::Sign,     Case::DispatchedToWorker1,    [OK,    HIDE,   HIDE,      DENY,       HIDE,       OK,        OK, HIDE]),
    (Step::Sign,     Case::DispatchedToDepartment1,[DENY,  HIDE,   HIDE,      DENY,       HIDE,       OK,        OK, OK]),
    (Step::Start,    Case::SignedByDepartment1,    [DENY,  HIDE,   HIDE,      DENY,       HIDE,       OK,        OK, OK]),
    (Step::HandBack, Case::SignedByDepartment1,    [DENY,  HIDE,   HIDE,      DENY,       HIDE,       OK,        OK, OK]),
    (Step::HandBack, Case::InProgress,             [OK,    HIDE,   HIDE,      DENY,       HIDE,       OK,        OK, HIDE]),
    // 核实: the grid's workers review volunteers' reports; only the reporter answers a question.
    (Step::AskInfo,  Case::Pending,                [OK,    HIDE,   DENY,      OK,         HIDE,       OK,        OK, HIDE]),
    (Step::Register, Case::InfoRequested,          [OK,    HIDE,   DENY,      OK,         HIDE,       OK,        OK, HIDE]),
    (Step::Answer,   Case::InfoRequested,          [DENY,  HIDE,   OK,        DENY,       HIDE,       DENY,      DENY, HIDE]),
    // A note on work in progress: the handler's (or the command center's).
    (Step::Note,     Case::InProgress,             [OK,    HIDE,   HIDE,      DENY,       HIDE,       OK,        OK, HIDE]),
    // 核查: a worker of the grid who did not handle it, never the handler.
    (Step::Close,    Case::HandledByDepartment1,   [OK,    HIDE,   HIDE,      OK,         HIDE,       OK,        OK, DENY]),
    (Step::Reopen,   Case::HandledByDepartment1,   [OK,    HIDE,   HIDE,      OK,         HIDE,       OK,        OK, DENY]),
];

/// Photos: upload (announce, chunks) by reporter, assignee or command
/// center; status and download by whoever sees the case.
#[rustfmt::skip]
const BLOBS: &[(Endpoint, Case, [Expect; 8])] = &[
    //                                                   worker1     worker2      volunteer1   supervisor1  supervisor2  dispatcher  admin department1
    (Endpoint::BlobCreate,   Case::PhotoAnnounced,      [OK,         UNANNOUNCED, UNANNOUNCED, UNANNOUNCED, UNANNOUNCED, OK,         OK, UNANNOUNCED]),
    // A finished upload is no reason to tell strangers the photo exists.
    (Endpoint::BlobCreate,   Case::PhotoArrived,        [OK,         UNANNOUNCED, UNANNOUNCED, OK,          UNANNOUNCED, OK,         OK, UNANNOUNCED]),
    (Endpoint::BlobStatus,   Case::PhotoAnnounced,      [OK,         HIDE,        HIDE,        OK,          HIDE,        OK,         OK, HIDE]),
    (Endpoint::BlobStatus,   Case::PhotoArrived,        [OK,         HIDE,        HIDE,        OK,          HIDE,        OK,         OK, HIDE]),
    (Endpoint::BlobStatus,   Case::TaskWithPhoto,       [OK,         HIDE,        OK,          OK,          HIDE,        OK,         OK, HIDE]),
    // supervisor1 sees the case but does not upload its photos: to its chunks the blob is not there.
    (Endpoint::ChunkPut,     Case::PhotoAnnounced,      [OK,         HIDE,        HIDE,        HIDE,        HIDE,        OK,         OK, HIDE]),
    (Endpoint::ChunkPut,     Case::AfterPhotoAnnounced, [OK,         HIDE,        HIDE,        HIDE,        HIDE,        OK,         OK, HIDE]),
    // The verifier announced it: they upload it, though neither reporter nor assignee.
    (Endpoint::ChunkPut,     Case::VerificationPhotoAnnounced, [OK,  HIDE,        HIDE,        HIDE,        HIDE,        OK,         OK, HIDE]),
    (Endpoint::BlobDownload, Case::PhotoArrived,        [OK,         HIDE,        HIDE,        OK,          HIDE,        OK,         OK, HIDE]),
    (Endpoint::BlobDownload, Case::PhotoAnnounced,      [INCOMPLETE, HIDE,        HIDE,        INCOMPLETE,  HIDE,        INCOMPLETE, INCOMPLETE, HIDE]),
    (Endpoint::BlobDownload, Case::TaskWithPhoto,       [OK,         HIDE,        OK,          OK,          HIDE,        OK,         OK, HIDE]),
];

/// Reports from anyone, and the admin API.
#[rustfmt::skip]
const OTHERS: &[(Endpoint, Case, [Expect; 8])] = &[
    //                                             worker1 worker2 volunteer1 supervisor1 supervisor2 dispatcher admin department1
    (Endpoint::PushSubmit,      Case::Nothing,    [OK,    OK,     OK,        OK,         OK,         OK,        OK, OK]),
    (Endpoint::AdminUsers,      Case::Nothing,    [DENY,  DENY,   DENY,      DENY,       DENY,       DENY,      OK, DENY]),
    (Endpoint::AdminGrids,      Case::Nothing,    [DENY,  DENY,   DENY,      DENY,       DENY,       DENY,      OK, DENY]),
    (Endpoint::AdminCategories, Case::Nothing,    [DENY,  DENY,   DENY,      DENY,       DENY,       DENY,      OK, DENY]),
];

fn expand(lines: &[(Endpoint, Case, [Expect; 8])]) -> Vec<Row> {
    lines
        .iter()
        .flat_map(|&(endpoint, case, expects)| ACTORS.into_iter().zip(expects).map(move |(actor, expect)| Row { endpoint, actor, case, expect }))
        .collect()
}

fn read_rows() -> Vec<Row> {
    let lines: Vec<_> = VISIBILITY.iter().flat_map(|&(case, expects)| READ_ENDPOINTS.map(|endpoint| (endpoint, case, expects))).collect();
    expand(&lines)
}

fn workflow_rows(over: fn(Step) -> Endpoint) -> Vec<Row> {
    let lines: Vec<_> = WORKFLOW.iter().map(|&(step, case, expects)| (over(step), case, expects)).collect();
    expand(&lines)
}

// ─────────────────────────────── the runner ───────────────────────────────

#[derive(Clone, Debug)]
struct Photo {
    bytes: Vec<u8>,
    sha: String,
}

#[derive(Clone, Debug)]
struct Fixture {
    id: Uuid,
    photo: Option<Photo>,
}

fn unique_photo() -> Photo {
    let mut bytes = photo_bytes(3, 300);
    bytes[..16].copy_from_slice(Uuid::now_v7().as_bytes());
    let sha = sha256_hex(&bytes);
    Photo { bytes, sha }
}

fn photo_ref(photo: &Photo) -> PhotoRef {
    PhotoRef {
        photo_id: Uuid::now_v7(),
        sha256: photo.sha.clone(),
        byte_size: photo.bytes.len() as u64,
        mime_type: "image/jpeg".into(),
        width: 10,
        height: 10,
        taken_at_ms: None,
        location: None,
        dhash: "0000000000000000".into(),
    }
}

/// A refusal as the server sent it.
fn refusal(response: Response, status: u16, code: &str) -> Result<Value, String> {
    let actual = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    if actual != status {
        return Err(format!("expected {status} {code}, got {actual}: {text}"));
    }
    let body: Value = serde_json::from_str(&text).map_err(|_| format!("error body is not JSON: {text}"))?;
    if body["code"] != code || !body["message"].is_string() {
        return Err(format!("expected code {code}, got {text}"));
    }
    Ok(body)
}

fn success(response: Response, statuses: &[u16]) -> Result<Response, String> {
    if statuses.contains(&response.status().as_u16()) {
        Ok(response)
    } else {
        let status = response.status();
        Err(format!("expected {statuses:?}, got {status}: {}", response.text().unwrap_or_default()))
    }
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

struct World<'a> {
    server: &'a TestServer,
    name: &'static str,
    devices: HashMap<Actor, Device>,
    /// Read-only rows share one fixture per case.
    shared: RefCell<HashMap<Case, Fixture>>,
    /// Each actor's whole pull, taken once all shared fixtures exist.
    pulls: RefCell<HashMap<Actor, Vec<Value>>>,
    serial: RefCell<u32>,
}

impl<'a> World<'a> {
    fn new(server: &'a TestServer, name: &'static str) -> World<'a> {
        server.add_user("supervisor2", Role::Supervisor, &["G-002"]);
        server.add_user("department1", Role::Department, &[]);
        let devices = ACTORS.into_iter().map(|actor| (actor, server.device(actor.username()))).collect();
        World { server, name, devices, shared: RefCell::default(), pulls: RefCell::default(), serial: RefCell::new(0) }
    }

    fn device(&self, actor: Actor) -> &Device {
        &self.devices[&actor]
    }

    fn next_serial(&self) -> u32 {
        let mut serial = self.serial.borrow_mut();
        *serial += 1;
        *serial
    }

    // ── building cases (setup failures panic: they are not what is tested) ──

    fn report(&self, by: Actor, grid: Option<&str>, photo: Option<Photo>) -> Fixture {
        let photos: Vec<&[u8]> = photo.iter().map(|p| p.bytes.as_slice()).collect();
        let (id, op) = report("0602", grid, &photos);
        let results = self.device(by).push_ok(&[op]);
        assert_eq!(results[0]["status"], "applied", "{}: setup report by {by:?}: {}", self.name, results[0]);
        Fixture { id, photo }
    }

    fn step(&self, by: Actor, fixture: &Fixture, body: Value) {
        let response = self.device(by).transition(fixture.id, body.clone());
        let status = response.status();
        assert_eq!(status, 200, "{}: setup step {body} by {by:?}: {}", self.name, response.text().unwrap_or_default());
    }

    fn start_upload(&self, by: Actor, photo: &Photo) {
        let response = self.device(by).post("/v1/blobs", &json!({"sha256": photo.sha, "size": photo.bytes.len()}));
        let status = response.status();
        assert_eq!(status, 201, "{}: setup upload by {by:?}: {}", self.name, response.text().unwrap_or_default());
    }

    fn finish_upload(&self, by: Actor, photo: &Photo) {
        let response = self.device(by).put_chunk(&photo.sha, 0, &photo.bytes);
        let status = response.status();
        assert_eq!(status, 200, "{}: setup chunk by {by:?}: {}", self.name, response.text().unwrap_or_default());
    }

    fn build(&self, case: Case) -> Fixture {
        let g1 = Some("G-001");
        let dispatch_to = |f: &Fixture, assignee: &str| self.step(Dispatcher, f, json!({"action": "dispatch", "assignee": assignee, "deadline_ms": 1}));
        match case {
            Case::Nothing => Fixture { id: Uuid::nil(), photo: None },
            Case::Reported => self.report(Worker1, g1, None),
            Case::Pending => self.report(Volunteer1, g1, None),
            Case::Rejected => {
                let f = self.build(Case::Pending);
                self.step(Supervisor1, &f, json!({"action": "reject", "note": "重复上报"}));
                f
            }
            Case::Registered => {
                let f = self.report(Dispatcher, g1, None);
                self.step(Dispatcher, &f, json!({"action": "register"}));
                f
            }
            Case::DispatchedToWorker1 => {
                let f = self.build(Case::Registered);
                dispatch_to(&f, "worker1");
                f
            }
            Case::DispatchedToWorker2 => {
                let f = self.build(Case::Registered);
                dispatch_to(&f, "worker2");
                f
            }
            Case::DispatchedToDepartment => {
                let f = self.build(Case::Registered);
                self.step(Dispatcher, &f, json!({"action": "dispatch", "department": "市容所"}));
                f
            }
            Case::InProgress => {
                let f = self.build(Case::DispatchedToWorker1);
                self.step(Worker1, &f, json!({"action": "start"}));
                f
            }
            Case::Handled => {
                let f = self.build(Case::InProgress);
                self.step(Worker1, &f, json!({"action": "handle", "note": "已清理"}));
                f
            }
            Case::Closed => {
                let f = self.build(Case::Handled);
                self.step(Dispatcher, &f, json!({"action": "close"}));
                f
            }
            Case::Reopened => {
                let f = self.build(Case::Handled);
                self.step(Supervisor1, &f, json!({"action": "reopen", "note": "未清理干净"}));
                f
            }
            Case::ReportedInG002 => self.report(Worker2, Some("G-002"), None),
            Case::ReportedNoGrid => self.report(Worker1, None, None),
            Case::PhotoAnnounced => {
                let f = self.report(Worker1, g1, Some(unique_photo()));
                self.start_upload(Worker1, f.photo.as_ref().unwrap());
                f
            }
            Case::PhotoArrived => {
                let f = self.build(Case::PhotoAnnounced);
                self.finish_upload(Worker1, f.photo.as_ref().unwrap());
                f
            }
            Case::TaskWithPhoto => {
                let f = self.report(Volunteer1, g1, Some(unique_photo()));
                self.start_upload(Volunteer1, f.photo.as_ref().unwrap());
                self.finish_upload(Volunteer1, f.photo.as_ref().unwrap());
                self.step(Supervisor1, &f, json!({"action": "register"}));
                self.step(Dispatcher, &f, json!({"action": "dispatch", "department": "市容所"}));
                f
            }
            Case::InfoRequested => {
                let f = self.build(Case::Pending);
                self.step(Supervisor1, &f, json!({"action": "ask_info", "note": "请补充照片"}));
                f
            }
            Case::DispatchedToDepartment1 => {
                let f = self.build(Case::Registered);
                dispatch_to(&f, "department1");
                f
            }
            Case::SignedByDepartment1 => {
                let f = self.build(Case::DispatchedToDepartment1);
                self.step(Department1, &f, json!({"action": "sign"}));
                f
            }
            Case::HandledByDepartment1 => {
                let f = self.build(Case::SignedByDepartment1);
                self.step(Department1, &f, json!({"action": "handle", "note": "已修复"}));
                f
            }
            Case::VerificationPhotoAnnounced => {
                let mut f = self.build(Case::HandledByDepartment1);
                let photo = unique_photo();
                self.step(Worker1, &f, json!({"action": "close", "rating": 2, "photos": [photo_ref(&photo)]}));
                self.start_upload(Worker1, &photo);
                f.photo = Some(photo);
                f
            }
            Case::AfterPhotoAnnounced => {
                let mut f = self.build(Case::InProgress);
                let photo = unique_photo();
                self.step(Worker1, &f, json!({"action": "handle", "note": "已清理", "photos": [photo_ref(&photo)]}));
                self.start_upload(Worker1, &photo);
                f.photo = Some(photo);
                f
            }
        }
    }

    fn mutates(endpoint: Endpoint) -> bool {
        matches!(endpoint, Endpoint::Transition(_) | Endpoint::PushTransition(_) | Endpoint::BlobCreate | Endpoint::ChunkPut)
    }

    fn fixture(&self, row: &Row) -> Fixture {
        if Self::mutates(row.endpoint) {
            return self.build(row.case);
        }
        if let Some(f) = self.shared.borrow().get(&row.case) {
            return f.clone();
        }
        let f = self.build(row.case);
        self.shared.borrow_mut().insert(row.case, f.clone());
        self.pulls.borrow_mut().clear();
        f
    }

    /// The case as the command center sees it (everyone who sees it sees this).
    fn truth(&self, id: Uuid) -> Value {
        let response = self.device(Dispatcher).get(&format!("/v1/incidents/{id}"));
        assert_eq!(response.status(), 200, "{}: the dispatcher sees every case", self.name);
        response.json().unwrap()
    }

    fn pull(&self, actor: Actor) -> Vec<Value> {
        if let Some(changes) = self.pulls.borrow().get(&actor) {
            return changes.clone();
        }
        let (changes, _) = self.device(actor).pull_all(0);
        self.pulls.borrow_mut().insert(actor, changes.clone());
        changes
    }

    fn step_body(&self, step: Step) -> Value {
        match step {
            Step::Register => json!({"action": "register"}),
            Step::Reject => json!({"action": "reject", "note": "不属于受理范围"}),
            Step::Merge => json!({"action": "merge", "merge_into": self.report(Worker1, Some("G-001"), None).id}),
            Step::Dispatch => json!({"action": "dispatch", "assignee": "worker1"}),
            Step::Start => json!({"action": "start"}),
            Step::Handle => json!({"action": "handle", "note": "已处理"}),
            Step::Close => json!({"action": "close"}),
            Step::Reopen => json!({"action": "reopen", "note": "返工"}),
            Step::Sign => json!({"action": "sign"}),
            Step::HandBack => json!({"action": "hand_back", "note": "不属本部门"}),
            Step::AskInfo => json!({"action": "ask_info", "note": "请补充具体楼号"}),
            Step::Answer => json!({"action": "answer", "note": "5号楼2单元"}),
            Step::Note => json!({"action": "note", "note": "已联系物业"}),
        }
    }

    /// Run every row; return one line per row that did not behave.
    fn run(&self, rows: &[Row]) -> Vec<String> {
        // Shared fixtures first, so whole-pull snapshots see all of them.
        for row in rows.iter().filter(|r| !Self::mutates(r.endpoint)) {
            self.fixture(row);
        }
        rows.iter()
            .filter_map(|row| {
                self.check(row)
                    .err()
                    .map(|why| format!("{}: {:?} by {} on {:?}, expected {:?}: {why}", self.name, row.endpoint, row.actor.username(), row.case, row.expect))
            })
            .collect()
    }

    fn check(&self, row: &Row) -> Result<(), String> {
        let fixture = self.fixture(row);
        let device = self.device(row.actor);
        let id = fixture.id;
        let absent = Uuid::now_v7();
        let absent_sha = unique_photo().sha;
        let photo = || fixture.photo.as_ref().expect("this case has a photo");
        match (row.endpoint, row.expect) {
            (Endpoint::Get, Expect::Ok) => {
                let view: Value = success(device.get(&format!("/v1/incidents/{id}")), &[200])?.json().unwrap();
                ensure!(view == self.truth(id), "sees another view than the dispatcher: {view}");
            }
            (Endpoint::Timeline, Expect::Ok) => {
                let timeline: Value = success(device.get(&format!("/v1/incidents/{id}/timeline")), &[200])?.json().unwrap();
                ensure!(timeline[0]["action"] == "report", "timeline does not start with the report: {timeline}");
                let full: Value = self.device(Dispatcher).get(&format!("/v1/incidents/{id}/timeline")).json().unwrap();
                ensure!(timeline == full, "sees another timeline than the dispatcher: {timeline}");
            }
            (Endpoint::Get | Endpoint::Timeline, Expect::Hidden) => {
                let suffix = if row.endpoint == Endpoint::Timeline { "/timeline" } else { "" };
                let body = refusal(device.get(&format!("/v1/incidents/{id}{suffix}")), 404, "not_found")?;
                let nothing = refusal(device.get(&format!("/v1/incidents/{absent}{suffix}")), 404, "not_found")?;
                ensure!(body == nothing, "out of scope ({body}) is told apart from absent ({nothing})");
            }
            (Endpoint::List, Expect::Ok | Expect::Hidden) => {
                let list: Vec<Value> = success(device.get("/v1/incidents?limit=1000"), &[200])?.json().unwrap();
                let listed = list.iter().any(|c| c["id"] == json!(id));
                ensure!(listed == (row.expect == OK), "listed: {listed}");
            }
            (Endpoint::Pull, Expect::Ok) => {
                let changes = self.pull(row.actor);
                let last = changes.iter().rev().find(|c| c["entity_id"] == json!(id)).ok_or("no change for the case in the pull")?;
                ensure!(last["entity_kind"] == "incident" && last["op"] == "upsert", "last change is not an upsert: {last}");
                ensure!(last["data"] == self.truth(id), "pulled another view than the dispatcher sees: {last}");
            }
            (Endpoint::Pull, Expect::Hidden) => {
                let changes = self.pull(row.actor);
                let leaked: Vec<&Value> = changes.iter().filter(|c| c["entity_id"] == json!(id)).collect();
                ensure!(leaked.is_empty(), "the pull carries the case: {leaked:?}");
            }
            (Endpoint::Transition(step), expect) => {
                let body = self.step_body(step);
                let before = self.truth(id);
                let response = device.transition(id, body.clone());
                self.check_step(step, expect, id, &before, || match expect {
                    Expect::Ok => {
                        let view: Value = success(response, &[200])?.json().unwrap();
                        ensure!(view["state"] == step.target_state(), "answered state {}", view["state"]);
                        Ok(())
                    }
                    Expect::Forbidden => refusal(response, 403, "forbidden").map(drop),
                    Expect::Hidden => {
                        let answer = refusal(response, 404, "not_found")?;
                        let nothing = refusal(device.transition(absent, body), 404, "not_found")?;
                        ensure!(answer == nothing, "out of scope ({answer}) is told apart from absent ({nothing})");
                        Ok(())
                    }
                    Expect::Refused(status, code) => refusal(response, status, code).map(drop),
                })?;
            }
            (Endpoint::PushTransition(step), expect) => {
                let body = self.step_body(step);
                let before = self.truth(id);
                let result = device.push_ok(&[transition_op(id, body.clone())]).remove(0);
                self.check_step(step, expect, id, &before, || {
                    let wanted = match expect {
                        Expect::Ok => {
                            ensure!(result["status"] == "applied", "push result {result}");
                            return Ok(());
                        }
                        Expect::Forbidden => "forbidden",
                        Expect::Hidden => "not_found",
                        Expect::Refused(_, code) => code,
                    };
                    ensure!(result["status"] == "rejected" && result["code"] == wanted, "push result {result}");
                    if expect == HIDE {
                        let nothing = device.push_ok(&[transition_op(absent, body)]).remove(0);
                        ensure!(result["message"] == nothing["message"], "out of scope ({result}) is told apart from absent ({nothing})");
                    }
                    Ok(())
                })?;
            }
            (Endpoint::PushSubmit, Expect::Ok) => {
                let (new_id, op) = report("0602", Some("G-001"), &[]);
                let result = device.push_ok(&[op]).remove(0);
                ensure!(result["status"] == "applied", "push result {result}");
                let view: Value = success(device.get(&format!("/v1/incidents/{new_id}")), &[200])?.json().unwrap();
                let initial = if row.actor.role() == Role::Volunteer { "pending_review" } else { "reported" };
                ensure!(view["state"] == initial && view["reporter"] == row.actor.username(), "the reporter sees {view}");
            }
            (Endpoint::BlobCreate, expect) => {
                let photo = photo();
                let create = |sha: &str| device.post("/v1/blobs", &json!({"sha256": sha, "size": photo.bytes.len()}));
                match expect {
                    Expect::Ok => {
                        let status: Value = success(create(&photo.sha), &[200, 201])?.json().unwrap();
                        ensure!(status["sha256"] == photo.sha.as_str(), "status {status}");
                    }
                    Expect::Refused(status, code) => {
                        let answer = refusal(create(&photo.sha), status, code)?;
                        let nothing = refusal(create(&absent_sha), status, code)?;
                        ensure!(answer == nothing, "a blob out of reach ({answer}) is told apart from an unknown one ({nothing})");
                    }
                    other => return Err(format!("no such expectation for uploads: {other:?}")),
                }
            }
            (Endpoint::BlobStatus, expect) => {
                let sha = &photo().sha;
                let status = |sha: &str| device.get(&format!("/v1/blobs/{sha}/status"));
                match expect {
                    Expect::Ok => {
                        let body: Value = success(status(sha), &[200])?.json().unwrap();
                        ensure!(body["sha256"] == sha.as_str(), "status {body}");
                    }
                    Expect::Hidden => {
                        let answer = refusal(status(sha), 404, "not_found")?;
                        let nothing = refusal(status(&absent_sha), 404, "not_found")?;
                        ensure!(answer == nothing, "out of scope ({answer}) is told apart from absent ({nothing})");
                    }
                    other => return Err(format!("no such expectation for status: {other:?}")),
                }
            }
            (Endpoint::ChunkPut, expect) => {
                let photo = photo();
                let response = device.put_chunk(&photo.sha, 0, &photo.bytes);
                match expect {
                    Expect::Ok => {
                        let status: Value = success(response, &[200])?.json().unwrap();
                        ensure!(status["complete"] == true, "status {status}");
                    }
                    Expect::Hidden => {
                        let answer = refusal(response, 404, "not_found")?;
                        let nothing = refusal(device.put_chunk(&absent_sha, 0, &photo.bytes), 404, "not_found")?;
                        ensure!(answer == nothing, "out of scope ({answer}) is told apart from absent ({nothing})");
                        let status: Value = self.device(Dispatcher).get(&format!("/v1/blobs/{}/status", photo.sha)).json().unwrap();
                        ensure!(status["offset"] == 0, "a refused chunk was stored: {status}");
                    }
                    other => return Err(format!("no such expectation for chunks: {other:?}")),
                }
            }
            (Endpoint::BlobDownload, expect) => {
                let photo = photo();
                let download = |sha: &str| device.get(&format!("/v1/blobs/{sha}"));
                match expect {
                    Expect::Ok => {
                        let bytes = success(download(&photo.sha), &[200])?.bytes().unwrap();
                        ensure!(bytes.as_ref() == photo.bytes.as_slice(), "downloaded other bytes");
                    }
                    Expect::Hidden => {
                        let answer = refusal(download(&photo.sha), 404, "not_found")?;
                        let nothing = refusal(download(&absent_sha), 404, "not_found")?;
                        ensure!(answer == nothing, "out of scope ({answer}) is told apart from absent ({nothing})");
                    }
                    Expect::Refused(status, code) => {
                        refusal(download(&photo.sha), status, code)?;
                    }
                    Expect::Forbidden => return Err("no such expectation for downloads".into()),
                }
            }
            (Endpoint::AdminUsers, expect) => {
                let username = format!("new-{}-{}", row.actor.username(), self.next_serial());
                let response = device.post("/v1/admin/users", &json!({"username": username, "password": PASSWORD, "role": "grid_worker", "grids": ["G-002"]}));
                match expect {
                    Expect::Ok => {
                        let user: Value = success(response, &[201])?.json().unwrap();
                        ensure!(user["username"] == username.as_str() && user["role"] == "grid_worker", "created {user}");
                    }
                    Expect::Forbidden => {
                        refusal(response, 403, "forbidden")?;
                    }
                    other => return Err(format!("no such expectation for admin: {other:?}")),
                }
                let exists = self
                    .server
                    .db
                    .read(|tx| Ok(tx.query_opt("SELECT 1 FROM users WHERE username = $1", gridwork_server::params![username.clone()])?.is_some()))
                    .unwrap();
                ensure!(exists == (expect == OK), "user exists afterwards: {exists}");
            }
            (Endpoint::AdminGrids | Endpoint::AdminCategories, expect) => {
                let (path, body, count) = if row.endpoint == Endpoint::AdminGrids {
                    ("/v1/admin/grids", serde_json::from_str::<Value>(&two_grids_geojson()).unwrap(), 2)
                } else {
                    let table: Value = serde_json::from_str(gridwork_protocol::DEFAULT_CATEGORY_TABLE).unwrap();
                    let count = table["categories"].as_array().unwrap().len();
                    ("/v1/admin/categories", table, count)
                };
                let response = device.post(path, &body);
                match expect {
                    Expect::Ok => {
                        let answer: Value = success(response, &[200])?.json().unwrap();
                        ensure!(answer["imported"] == count, "answer {answer}");
                    }
                    Expect::Forbidden => {
                        refusal(response, 403, "forbidden")?;
                    }
                    other => return Err(format!("no such expectation for admin: {other:?}")),
                }
            }
            (endpoint, expect) => return Err(format!("the table asks for {expect:?} from {endpoint:?}, which the runner cannot check")),
        }
        Ok(())
    }

    /// Check a step's answer, then its effect: moved on success, untouched otherwise.
    fn check_step(&self, step: Step, expect: Expect, id: Uuid, before: &Value, answer: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        answer()?;
        let after = self.truth(id);
        if expect == OK {
            ensure!(after["state"] == step.target_state(), "the case is {} afterwards", after["state"]);
            ensure!(after["version"].as_i64() == before["version"].as_i64().map(|v| v + 1), "version {} -> {}", before["version"], after["version"]);
            let timeline: Vec<Value> = self.device(Dispatcher).get(&format!("/v1/incidents/{id}/timeline")).json().unwrap();
            let last = timeline.last().cloned().unwrap_or_default();
            ensure!(last["action"] == step.action(), "timeline ends with {last}");
        } else {
            ensure!(&after == before, "a refused step changed the case: {before} -> {after}");
        }
        Ok(())
    }
}

fn run_table(rows: Vec<Row>) {
    assert!(!rows.is_empty());
    // Every backend runs the whole table before anything fails, so one
    // report shows every mismatch on every backend.
    let mut failures = Vec::new();
    let backends = backends();
    for backend in &backends {
        let server = TestServer::with_cast(backend);
        let world = World::new(&server, backend.name());
        failures.extend(world.run(&rows));
    }
    assert!(failures.is_empty(), "{} of {} rows failed ({} backends):\n{}", failures.len(), rows.len() * backends.len(), backends.len(), failures.join("\n"));
}

// ──────────────────────────────── the tests ────────────────────────────────

#[test]
fn reads_follow_scope() {
    let rows = read_rows();
    assert_eq!(rows.len(), VISIBILITY.len() * READ_ENDPOINTS.len() * ACTORS.len());
    run_table(rows);
}

#[test]
fn workflow_steps_over_http_follow_roles() {
    run_table(workflow_rows(Endpoint::Transition));
}

#[test]
fn workflow_steps_over_push_follow_roles() {
    run_table(workflow_rows(Endpoint::PushTransition));
}

#[test]
fn blob_endpoints_follow_scope() {
    run_table(expand(BLOBS));
}

#[test]
fn reports_from_anyone_and_admin_only_endpoints() {
    run_table(expand(OTHERS));
}

/// The pull story from the brief, step by step, with cursors.
#[test]
fn pull_is_scoped_to_what_each_user_may_see() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let world = World::new(&server, name);
        let mut cursors: HashMap<Actor, i64> = ACTORS.into_iter().map(|a| (a, 0)).collect();
        // Changes to `id` each actor pulls since its last cursor.
        let mut pull = |actor: Actor, id: Uuid| -> Vec<Value> {
            let (changes, next) = world.device(actor).pull_all(cursors[&actor]);
            assert!(next >= cursors[&actor], "{name}: cursor moves forward");
            cursors.insert(actor, next);
            changes.into_iter().filter(|c| c["entity_id"] == json!(id)).collect()
        };

        // worker1 reports in G-001.
        let (id, op) = report("0602", Some("G-001"), &[]);
        assert_eq!(world.device(Worker1).push_ok(&[op])[0]["status"], "applied", "{name}");
        for actor in [Worker2, Volunteer1, Supervisor2] {
            assert_eq!(pull(actor, id), Vec::<Value>::new(), "{name}: {actor:?} must not pull worker1's G-001 report");
        }
        for actor in [Worker1, Supervisor1, Dispatcher, Admin] {
            let changes = pull(actor, id);
            assert_eq!(changes.len(), 1, "{name}: {actor:?} pulls the report once: {changes:?}");
            assert_eq!(changes[0]["op"], "upsert", "{name}: {actor:?}");
            assert_eq!(changes[0]["data"]["state"], "reported", "{name}: {actor:?}");
            assert_eq!(changes[0]["data"]["reporter"], "worker1", "{name}: {actor:?}");
        }

        // The dispatcher registers it and dispatches it to worker1.
        let case = Fixture { id, photo: None };
        world.step(Dispatcher, &case, json!({"action": "register"}));
        world.step(Dispatcher, &case, json!({"action": "dispatch", "assignee": "worker1", "deadline_ms": 1_900_000_000_000_i64}));
        let changes = pull(Worker1, id);
        assert_eq!(changes.len(), 1, "{name}: worker1 pulls the latest state once: {changes:?}");
        assert_eq!(changes[0]["op"], "upsert", "{name}");
        assert_eq!(changes[0]["data"]["state"], "dispatched", "{name}: worker1's pull shows the task as dispatched");
        assert_eq!(changes[0]["data"]["assignee"], "worker1", "{name}");
        assert_eq!(changes[0]["data"]["deadline_ms"], 1_900_000_000_000_i64, "{name}");
        for actor in [Supervisor1, Dispatcher] {
            let changes = pull(actor, id);
            assert_eq!(changes.last().map(|c| c["data"]["state"].clone()), Some(json!("dispatched")), "{name}: {actor:?}");
        }
        for actor in [Worker2, Volunteer1, Supervisor2] {
            assert_eq!(pull(actor, id), Vec::<Value>::new(), "{name}: {actor:?} still pulls nothing of it");
        }

        // A volunteer's report: the volunteer, the grid's supervisor and worker (核实).
        let (vid, op) = report("0602", Some("G-001"), &[]);
        assert_eq!(world.device(Volunteer1).push_ok(&[op])[0]["status"], "applied", "{name}");
        assert_eq!(pull(Volunteer1, vid)[0]["data"]["state"], "pending_review", "{name}: the volunteer pulls their own report");
        assert_eq!(pull(Supervisor1, vid)[0]["data"]["state"], "pending_review", "{name}: the supervisor pulls the review queue");
        assert_eq!(pull(Worker1, vid)[0]["data"]["state"], "pending_review", "{name}: the grid's worker pulls the review queue");
        for actor in [Worker2, Supervisor2] {
            assert_eq!(pull(actor, vid), Vec::<Value>::new(), "{name}: {actor:?} must not pull a pending volunteer report");
        }
        // Approved and dispatched to a department, it becomes a task of G-001's workers.
        let vcase = Fixture { id: vid, photo: None };
        world.step(Supervisor1, &vcase, json!({"action": "register"}));
        world.step(Dispatcher, &vcase, json!({"action": "dispatch", "department": "市容所"}));
        let changes = pull(Worker1, vid);
        assert_eq!(changes.len(), 1, "{name}: worker1 pulls the new task: {changes:?}");
        assert_eq!(changes[0]["data"]["state"], "dispatched", "{name}");
        assert_eq!(pull(Worker2, vid), Vec::<Value>::new(), "{name}: not a task of G-002");
        assert_eq!(pull(Volunteer1, vid).last().unwrap()["data"]["state"], "dispatched", "{name}: the reporter follows their report");
        // Nothing a user may not see ever reached them, in the whole log.
        for actor in [Worker2, Supervisor2] {
            let (all, _) = world.device(actor).pull_all(0);
            assert!(all.iter().all(|c| c["entity_kind"] != "incident"), "{name}: {actor:?} pulled an incident: {all:?}");
        }
        let (all, _) = world.device(Volunteer1).pull_all(0);
        assert!(all.iter().filter(|c| c["entity_kind"] == "incident").all(|c| c["entity_id"] == json!(vid)), "{name}: the volunteer pulls only their own report");
    }
}

/// A merge names a second case. One the caller may not see must be refused
/// exactly like one that does not exist, or merging becomes a way to probe
/// (and to link to) cases out of scope.
#[test]
fn merging_into_a_case_out_of_scope_is_like_merging_into_nothing() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let world = World::new(&server, name);
        let supervisor = world.device(Supervisor1);
        let elsewhere = world.build(Case::ReportedInG002);
        let visible_target = world.build(Case::Reported);
        let merge = |into: Uuid| json!({"action": "merge", "merge_into": into});

        // Over HTTP.
        let nothing = refusal(supervisor.transition(world.build(Case::Pending).id, merge(Uuid::now_v7())), 400, "invalid_merge_target").unwrap();
        let case = world.build(Case::Pending);
        let before = world.truth(case.id);
        let answer = refusal(supervisor.transition(case.id, merge(elsewhere.id)), 400, "invalid_merge_target");
        assert_eq!(answer, Ok(nothing), "{name}: supervisor1 merging into a G-002 case over HTTP");
        assert_eq!(world.truth(case.id), before, "{name}: the refused merge changed nothing");

        // Over push.
        let nothing = supervisor.push_ok(&[transition_op(world.build(Case::Pending).id, merge(Uuid::now_v7()))]).remove(0);
        assert_eq!(nothing["code"], "invalid_merge_target", "{name}");
        let case = world.build(Case::Pending);
        let result = supervisor.push_ok(&[transition_op(case.id, merge(elsewhere.id))]).remove(0);
        assert_eq!((&result["status"], &result["code"], &result["message"]), (&nothing["status"], &nothing["code"], &nothing["message"]), "{name}: supervisor1 merging into a G-002 case over push");
        assert_eq!(world.truth(case.id)["state"], "pending_review", "{name}");

        // Into a case the supervisor does see, the merge goes through.
        let case = world.build(Case::Pending);
        let view: Value = supervisor.transition(case.id, merge(visible_target.id)).json().unwrap();
        assert_eq!(view["state"], "merged", "{name}");
        assert_eq!(view["merged_into"], json!(visible_target.id), "{name}");
    }
}

#[test]
fn the_tables_are_consistent() {
    // The tables are the specification: make sure none is accidentally thin.
    assert!(VISIBILITY.len() >= 10 && WORKFLOW.len() >= 15 && BLOBS.len() >= 8);
    let workflow_steps: Vec<&str> = WORKFLOW.iter().map(|(s, _, _)| s.action()).collect();
    for step in ["register", "reject", "merge", "dispatch", "start", "handle", "close", "reopen"] {
        assert!(workflow_steps.contains(&step), "the workflow table covers {step}");
    }
    // Dispatcher and admin may do every step the state allows; nobody else may dispatch.
    for (step, case, expects) in WORKFLOW {
        // Only the reporter answers a question about their own report.
        let expected = if *step == Step::Answer { (DENY, DENY) } else { (OK, OK) };
        assert_eq!((expects[5], expects[6]), expected, "{step:?} on {case:?}: command center");
        if *step == Step::Dispatch {
            assert!(expects[..5].iter().all(|e| *e != OK), "only the command center dispatches");
        }
    }
    // Out-of-scope actors never get more than "not found".
    for (case, expects) in VISIBILITY {
        for (step, wcase, wexpects) in WORKFLOW {
            if wcase == case {
                for (i, actor) in ACTORS.iter().enumerate() {
                    assert_eq!(expects[i] == HIDE, wexpects[i] == HIDE, "{actor:?}: {step:?} on {case:?} agrees with visibility");
                }
            }
        }
    }
}
