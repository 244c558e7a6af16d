//! The closed loop across devices, over real HTTP against the real server:
//! a volunteer reports, a supervisor registers offline, the command center
//! dispatches to a department, the department signs, starts and reports
//! back with after-photos, a grid worker verifies on site (rework twice,
//! then a rated close), and the volunteer sees the answer. Every device step is
//! taken offline and synced later; photos at every step arrive once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gridwork_core::clock::{Clock, SystemClock};
use gridwork_core::{
    CaseAction, CaseState, DeadlineLight, DraftFields, GeoPoint, Gridwork, IncidentStatus, OperationState, PhotoRole, Stats, StatsQuery, StepInput,
    SyncState, TaskFilter, TaskKind, TimedStep, Trigger, Uuid,
};
use gridwork_protocol::api::{PhotoRendition, Role, TransitionRequest};
use gridwork_server::{admin, cases};
use gridwork_tests::server::{LocalServer, PASSWORD, default_policy};
use gridwork_tests::*;

/// Inside G-001.
const STREET: GeoPoint = GeoPoint { lat: 31.23, lon: 121.465, accuracy_m: Some(5.0) };

struct Phone {
    gw: Gridwork,
    _dir: tempfile::TempDir,
}

fn phone(server: &LocalServer, user: &str) -> Phone {
    phone_with_clock(server, user, Box::new(SystemClock))
}

fn phone_with_clock(server: &LocalServer, user: &str, clock: Box<dyn Clock>) -> Phone {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gridwork::open_with_clock(config(dir.path(), user), clock).unwrap();
    gw.login(&server.url(), user, PASSWORD, false).unwrap();
    sync(&gw);
    Phone { gw, _dir: dir }
}

fn sync(gw: &Gridwork) -> gridwork_core::SyncReport {
    let report = gw.sync_now(Trigger::AppForegrounded, Duration::from_secs(60)).unwrap();
    assert!(report.completed, "{report:?}");
    report
}

fn photo(dir: &Path, seed: u32) -> PathBuf {
    write_file(dir, &format!("p{seed}.jpg"), &jpeg_bytes(&scene(800, 600, seed), 85, None))
}

fn step(action: CaseAction, note: Option<&str>, rating: Option<u8>) -> StepInput {
    StepInput { note: note.map(str::to_owned), rating, ..StepInput::new(action) }
}

/// A step of the command center, as its console takes it.
fn center(server: &LocalServer, id: Uuid, request: TransitionRequest) -> CaseState {
    let caller = admin::system_caller();
    let id = id.to_string();
    server
        .db
        .write(|tx| match cases::transition(tx, &caller, &id, &request, gridwork_server::http::now_ms())? {
            Ok(_) => Ok(cases::view_after_step(tx, &id)?.state),
            Err(r) => Err(gridwork_server::ServerError::bad_request(r.code, r.message)),
        })
        .unwrap()
}

fn dispatch(server: &LocalServer, id: Uuid, to: &str, deadline_ms: i64) -> CaseState {
    let request = TransitionRequest {
        assignee: Some(to.to_owned()),
        deadline_ms: Some(deadline_ms),
        note: Some("请尽快修复公厕墙体裂缝".into()),
        ..TransitionRequest::new(CaseAction::Dispatch)
    };
    center(server, id, request)
}

fn status(gw: &Gridwork, id: Uuid) -> IncidentStatus {
    gw.get_incident(id).unwrap().incident.status
}

fn setup() -> (tempfile::TempDir, LocalServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    server.add_user("sanitation", Role::Department, &[]);
    (dir, server)
}

#[test]
fn the_district_case_from_a_volunteers_photo_to_a_rated_close() {
    let (_server_dir, server) = setup();
    let files = tempfile::tempdir().unwrap();
    let volunteer = phone(&server, "volunteer1");
    let supervisor = phone(&server, "supervisor1");
    let department = phone(&server, "sanitation");
    let worker = phone(&server, "worker1");

    // 15:05 a volunteer photographs a cracked wall of a public toilet.
    let draft = volunteer
        .gw
        .create_draft(DraftFields { category_code: Some("0602".into()), description: "公厕墙体开裂".into(), location: Some(STREET), ..Default::default() })
        .unwrap();
    volunteer.gw.attach_photo(draft.id, &photo(files.path(), 1)).unwrap();
    volunteer.gw.submit(draft.id).unwrap();
    let id = draft.id;
    sync(&volunteer.gw);
    assert_eq!(status(&volunteer.gw, id), IncidentStatus::Case(CaseState::PendingReview));

    // 15:15 the supervisor verifies and registers it, offline in a stairwell.
    sync(&supervisor.gw);
    supervisor.gw.set_network(false, false);
    let registered = supervisor.gw.take_step(id, step(CaseAction::Register, Some("属实"), None), &[]).unwrap();
    assert_eq!(registered.status, IncidentStatus::Case(CaseState::Registered), "shown at once in the state it leads to");
    assert_eq!(server.step_state(id), "pending_review", "nothing sent yet");
    supervisor.gw.set_network(true, false);
    sync(&supervisor.gw);
    assert_eq!(server.step_state(id), "registered");

    // The command center dispatches it to the sanitation department, due in two days.
    let now = gridwork_server::http::now_ms();
    assert_eq!(dispatch(&server, id, "sanitation", now + 48 * 3_600_000), CaseState::Dispatched);

    // Next day the department finds it on its task list, offline, with a
    // thumbnail of the volunteer's photo fetched by the sync.
    let report = sync(&department.gw);
    assert_eq!(report.thumbnails_fetched, 1, "{report:?}");
    let tasks = department.gw.tasks(TaskFilter::default()).unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let task = &tasks[0];
    assert_eq!((task.incident_id, task.kind, task.state), (id, TaskKind::Handle, CaseState::Dispatched));
    assert_eq!(task.light, Some(DeadlineLight::Green));
    assert_eq!(task.note.as_deref(), Some("请尽快修复公厕墙体裂缝"));
    assert_eq!(task.assignee.as_deref(), Some("sanitation"));
    assert!(task.thumbnail_path.as_ref().is_some_and(|t| t.exists()), "the task list shows the photo");
    let detail = department.gw.get_incident(id).unwrap();
    let case = detail.case.expect("the server's story of the case is on the device");
    assert_eq!(case.photos.len(), 1, "the volunteer's photo is announced with the task");
    assert_eq!(case.photos[0].role, "evidence");
    let thumbnail = case.photos[0].thumbnail_path.clone().expect("the evidence thumbnail is on the department's phone");
    let (width, height) = image::image_dimensions(&thumbnail).unwrap();
    assert!(width.max(height) <= 320 && width.max(height) >= 200, "{width}x{height}");
    assert_eq!(department.gw.sync_now(Trigger::AppForegrounded, Duration::from_secs(30)).unwrap().thumbnails_fetched, 0, "fetched once");
    let actions: Vec<&str> = case.timeline.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["report", "photo_arrived", "register", "dispatch"]);

    // Steps the department may not take are refused on the spot, offline.
    department.gw.set_network(false, false);
    let refused = department.gw.take_step(id, step(CaseAction::Close, None, Some(5)), &[]).unwrap_err();
    assert_eq!(refused.code(), "invalid_state", "not handled yet");

    // 签收, 处置, then 反馈 with an after-photo; all offline.
    department.gw.take_step(id, step(CaseAction::Sign, None, None), &[]).unwrap();
    department.gw.take_step(id, step(CaseAction::Start, None, None), &[]).unwrap();
    let noted = department.gw.take_step(id, step(CaseAction::Note, Some("已联系物业，明日施工"), None), &[]).unwrap();
    assert_eq!(noted.status, IncidentStatus::Case(CaseState::InProgress), "a note keeps the state");
    let refused = department.gw.take_step(id, step(CaseAction::Handle, None, None), &[photo(files.path(), 2)]).unwrap_err();
    assert_eq!(refused.code(), "note_required");
    let handled = department.gw.take_step(id, step(CaseAction::Handle, Some("已修补墙体"), None), &[photo(files.path(), 2)]).unwrap();
    assert_eq!(handled.status, IncidentStatus::Case(CaseState::Handled));
    let refused = department.gw.take_step(id, step(CaseAction::Close, None, Some(5)), &[]).unwrap_err();
    assert_eq!(refused.code(), "step_not_allowed", "the handler never verifies their own work");
    assert!(department.gw.tasks(TaskFilter::default()).unwrap().is_empty(), "handled: no longer the department's task");
    assert_eq!(department.gw.get_incident(id).unwrap().sync_state, SyncState::Unsent { pending_operations: 5 });
    department.gw.set_network(true, false);
    let report = sync(&department.gw);
    assert_eq!((report.pushed, report.photos_uploaded), (4, 1), "{report:?}");
    assert_eq!(server.step_state(id), "handled");

    // 核查, first visit: not fixed. The worker reopens it with an on-site photo (返工).
    sync(&worker.gw);
    let tasks = worker.gw.tasks(TaskFilter::default()).unwrap();
    assert_eq!(tasks.iter().map(|t| (t.incident_id, t.kind)).collect::<Vec<_>>(), [(id, TaskKind::Verify)]);
    let photos = worker.gw.get_incident(id).unwrap().case.unwrap().photos;
    assert!(photos.iter().all(|p| p.thumbnail_path.as_ref().is_some_and(|t| t.exists())), "the verifier sees the before and after offline: {photos:?}");
    worker.gw.set_network(false, false);
    let refused = worker.gw.take_step(id, step(CaseAction::Close, None, Some(6)), &[]).unwrap_err();
    assert_eq!(refused.code(), "invalid_rating");
    worker.gw.take_step(id, step(CaseAction::Reopen, Some("裂缝仍在渗水"), None), &[photo(files.path(), 3)]).unwrap();
    worker.gw.set_network(true, false);
    sync(&worker.gw);
    assert_eq!(server.step_state(id), "reopened");

    // Rework: the same case is the department's task again.
    sync(&department.gw);
    let tasks = department.gw.tasks(TaskFilter::default()).unwrap();
    assert_eq!(tasks.iter().map(|t| (t.incident_id, t.state)).collect::<Vec<_>>(), [(id, CaseState::Reopened)]);
    assert_eq!(tasks[0].note.as_deref(), Some("裂缝仍在渗水"), "the reason for the rework comes with it");
    department.gw.take_step(id, step(CaseAction::Sign, None, None), &[]).unwrap();
    department.gw.take_step(id, step(CaseAction::Handle, Some("重新做防水"), None), &[photo(files.path(), 4)]).unwrap();
    sync(&department.gw);

    // Second visit: still not right; rework again, with a photo.
    sync(&worker.gw);
    worker.gw.take_step(id, step(CaseAction::Reopen, Some("防水层起皮"), None), &[photo(files.path(), 6)]).unwrap();
    sync(&worker.gw);
    sync(&department.gw);
    let tasks = department.gw.tasks(TaskFilter::default()).unwrap();
    assert_eq!(tasks.iter().map(|t| (t.incident_id, t.note.as_deref())).collect::<Vec<_>>(), [(id, Some("防水层起皮"))], "the second rework's reason");
    department.gw.take_step(id, step(CaseAction::Start, None, None), &[]).unwrap();
    department.gw.take_step(id, step(CaseAction::Handle, Some("整体重做"), None), &[photo(files.path(), 7)]).unwrap();
    sync(&department.gw);

    // Third visit: passed, 2 of 5 stars, with a photo.
    sync(&worker.gw);
    worker.gw.take_step(id, step(CaseAction::Close, Some("已修复，但施工粗糙"), Some(2)), &[photo(files.path(), 5)]).unwrap();
    sync(&worker.gw);
    assert_eq!(server.step_state(id), "closed");

    // 件件有回音: the volunteer sees the outcome, the result and every photo.
    sync(&volunteer.gw);
    let detail = volunteer.gw.get_incident(id).unwrap();
    assert_eq!(detail.incident.status, IncidentStatus::Case(CaseState::Closed));
    let case = detail.case.unwrap();
    assert_eq!(case.rating, Some(2));
    assert_eq!(case.light, None, "a closed case has no deadline light");
    let roles: Vec<&str> = case.photos.iter().map(|p| p.role.as_str()).collect();
    assert_eq!(roles, ["evidence", "after", "verification", "after", "verification", "after", "verification"]);
    assert!(case.photos.iter().all(|p| p.arrived), "every photo of every step arrived: {:?}", case.photos);
    let steps: Vec<(&str, &str)> = case
        .timeline
        .iter()
        .filter(|e| !e.action.ends_with("_arrived"))
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("report", "volunteer1"),
            ("register", "supervisor1"),
            ("dispatch", "cli"),
            ("sign", "sanitation"),
            ("start", "sanitation"),
            ("note", "sanitation"),
            ("handle", "sanitation"),
            ("reopen", "worker1"),
            ("sign", "sanitation"),
            ("handle", "sanitation"),
            ("reopen", "worker1"),
            ("start", "sanitation"),
            ("handle", "sanitation"),
            ("close", "worker1"),
        ]
    );
    let handle = case.timeline.iter().rfind(|e| e.action == "handle").unwrap();
    assert_eq!(handle.note.as_deref(), Some("整体重做"), "the handler's last result");
    assert_eq!(server.count("SELECT COUNT(*) FROM incident_photos"), 7, "each photo announced once");
    assert_eq!(server.count("SELECT COUNT(*) FROM blobs WHERE complete = 1"), 7, "and uploaded once");

    // 统计: the figures each device computes from what it holds equal the
    // server's once it has synced.
    for phone in [&worker, &department, &volunteer, &supervisor] {
        sync(&phone.gw);
    }
    let query = |grid: Option<&str>, user: Option<&str>| StatsQuery { grid_code: grid.map(Into::into), user: user.map(Into::into), from_ms: 0, to_ms: i64::MAX };
    let on_server = |q: &StatsQuery| server.db.read(|tx| cases::stats(tx, &admin::system_caller(), q)).unwrap();
    let grid = query(Some("G-001"), None);
    let figures = worker.gw.stats(&grid).unwrap();
    assert_eq!(
        figures,
        Stats { reported: 1, verified: 1, resolved_on_spot: 0, handled: 3, closed: 1, overdue: 0, rated: 1, average_rating: Some(2.0) }
    );
    assert_eq!(figures, on_server(&grid), "the grid's worker");
    assert_eq!(supervisor.gw.stats(&grid).unwrap(), on_server(&grid), "the grid's supervisor");
    for (phone, user) in [(&worker, "worker1"), (&department, "sanitation"), (&volunteer, "volunteer1"), (&supervisor, "supervisor1")] {
        let mine = query(None, Some(user));
        assert_eq!(phone.gw.stats(&mine).unwrap(), on_server(&mine), "{user}'s own figures");
    }
    assert_eq!(department.gw.stats(&query(None, Some("sanitation"))).unwrap().handled, 3);
    assert_eq!(worker.gw.stats(&query(None, Some("worker1"))).unwrap().closed, 1);

    // The worker's device keeps the closed case of its grid, with the local photos it took.
    let detail = worker.gw.get_incident(id).unwrap();
    assert_eq!(detail.incident.status, IncidentStatus::Case(CaseState::Closed));
    let local_roles: Vec<PhotoRole> = detail.photos.iter().map(|p| p.role).collect();
    assert_eq!(local_roles, [PhotoRole::Verification, PhotoRole::Verification, PhotoRole::Verification]);
}

#[test]
fn two_verifiers_offline_the_first_wins_and_the_second_is_told_plainly() {
    let (_server_dir, server) = setup();
    let files = tempfile::tempdir().unwrap();
    let worker = phone(&server, "worker1");
    let supervisor = phone(&server, "supervisor1");
    let department = phone(&server, "sanitation");
    let id = report_and_dispatch(&server, &worker, "sanitation");
    sync(&department.gw);
    department.gw.take_step(id, step(CaseAction::Handle, Some("已处理"), None), &[]).unwrap();
    sync(&department.gw);
    sync(&worker.gw);
    sync(&supervisor.gw);

    // Both verify offline; they disagree.
    worker.gw.set_network(false, false);
    supervisor.gw.set_network(false, false);
    worker.gw.take_step(id, step(CaseAction::Reopen, Some("未处理干净"), None), &[]).unwrap();
    supervisor.gw.take_step(id, step(CaseAction::Close, Some("合格"), Some(4)), &[photo(files.path(), 7)]).unwrap();
    assert_eq!(status(&supervisor.gw, id), IncidentStatus::Case(CaseState::Closed), "predicted");

    // The worker's signal comes back first.
    worker.gw.set_network(true, false);
    sync(&worker.gw);
    supervisor.gw.set_network(true, false);
    let report = sync(&supervisor.gw);
    assert_eq!(report.parked, 1, "{report:?}");

    // The supervisor's device shows the case as it is, and why the close was refused.
    assert_eq!(status(&supervisor.gw, id), IncidentStatus::Case(CaseState::Reopened));
    let detail = supervisor.gw.get_incident(id).unwrap();
    let SyncState::Parked { code, message } = &detail.sync_state else { panic!("{:?}", detail.sync_state) };
    assert_eq!(code, "invalid_transition");
    assert_eq!(message, "cannot close a case that is reopened: its last step was \"reopen\" by worker1; your close was not applied");
    // Its photo waits with the refused step instead of blocking the case.
    let parked: Vec<_> = supervisor.gw.outbox_items().unwrap().into_iter().filter(|op| op.state == OperationState::Parked).collect();
    assert_eq!(parked.len(), 2, "{parked:?}");
    assert_eq!(server.count("SELECT COUNT(*) FROM incident_photos"), 0, "the refused step's photo was never announced");
    assert_eq!(server.step_state(id), "reopened");

    // The refused step holds nothing back: once the rework is handled, the
    // supervisor closes it with the same on-site photo, and it travels.
    sync(&department.gw);
    department.gw.take_step(id, step(CaseAction::Start, None, None), &[]).unwrap();
    department.gw.take_step(id, step(CaseAction::Handle, Some("重新清理"), None), &[]).unwrap();
    sync(&department.gw);
    sync(&supervisor.gw);
    supervisor.gw.take_step(id, step(CaseAction::Close, Some("合格"), Some(4)), &[photo(files.path(), 7)]).unwrap();
    let report = sync(&supervisor.gw);
    assert_eq!((report.pushed, report.photos_uploaded), (1, 1), "{report:?}");
    assert_eq!(server.step_state(id), "closed");
    assert_eq!(server.count("SELECT COUNT(*) FROM incident_photos"), 1, "the photo, announced once");
    // Retrying the held-back photo goes through its step, which the server refuses again.
    let held = supervisor.gw.outbox_items().unwrap().into_iter().find(|op| op.park_reason.as_ref().is_some_and(|r| r.code == "dependency_parked"));
    assert!(held.is_none(), "the photo travelled with the new step; nothing is held back any more");
}

#[test]
fn a_hand_back_returns_the_task_to_the_command_center() {
    let (_server_dir, server) = setup();
    let worker = phone(&server, "worker1");
    let department = phone(&server, "sanitation");
    let id = report_and_dispatch(&server, &worker, "sanitation");
    sync(&department.gw);
    let refused = department.gw.take_step(id, step(CaseAction::HandBack, Some("  "), None), &[]).unwrap_err();
    assert_eq!(refused.code(), "note_required", "a blank reason is no reason");
    department.gw.take_step(id, step(CaseAction::HandBack, Some("不属本部门职责"), None), &[]).unwrap();
    assert!(department.gw.tasks(TaskFilter::default()).unwrap().is_empty());
    sync(&department.gw);
    assert_eq!(server.step_state(id), "registered");
    let timeline = server.timeline(id);
    assert_eq!(timeline.last().map(|(action, note)| (action.as_str(), note.as_deref())), Some(("hand_back", Some("不属本部门职责"))));
    // Out of the department's hands: its device forgets the case.
    sync(&department.gw);
    assert_eq!(department.gw.get_incident(id).unwrap_err().code(), "not_found");
}

/// A device clock hours off does not change a deadline light: it runs on
/// server-corrected time.
#[test]
fn deadline_lights_run_on_server_time_whatever_the_device_clock_says() {
    struct Skewed(i64);
    impl Clock for Skewed {
        fn now_ms(&self) -> i64 {
            SystemClock.now_ms() + self.0
        }
    }
    let (_server_dir, server) = setup();
    let reporter = phone(&server, "worker1");
    let ahead = phone_with_clock(&server, "sanitation", Box::new(Skewed(5 * 3_600_000)));
    let now = gridwork_server::http::now_ms();
    // Due in 4 h (green), in 30 min of a 4 h window... and one already overdue.
    let green = report_and_dispatch_due(&server, &reporter, "sanitation", now + 4 * 3_600_000);
    let overdue = report_and_dispatch_due(&server, &reporter, "sanitation", now - 60_000);
    sync(&ahead.gw);
    let lights: Vec<(Uuid, Option<DeadlineLight>)> = ahead.gw.tasks(TaskFilter::default()).unwrap().iter().map(|t| (t.incident_id, t.light)).collect();
    assert_eq!(lights, [(overdue, Some(DeadlineLight::Red)), (green, Some(DeadlineLight::Green))], "sorted by deadline; the 5 h skew changes nothing");
    let red = ahead.gw.tasks(TaskFilter { light: Some(DeadlineLight::Red), ..Default::default() }).unwrap();
    assert_eq!(red.iter().map(|t| t.incident_id).collect::<Vec<_>>(), [overdue]);
}

fn report_and_dispatch(server: &LocalServer, reporter: &Phone, to: &str) -> Uuid {
    report_and_dispatch_due(server, reporter, to, gridwork_server::http::now_ms() + 24 * 3_600_000)
}

fn report_and_dispatch_due(server: &LocalServer, reporter: &Phone, to: &str, deadline_ms: i64) -> Uuid {
    let draft = reporter
        .gw
        .create_draft(DraftFields { category_code: Some("0602".into()), description: "路灯不亮".into(), location: Some(STREET), ..Default::default() })
        .unwrap();
    reporter.gw.submit(draft.id).unwrap();
    sync(&reporter.gw);
    center(server, draft.id, TransitionRequest::new(CaseAction::Register));
    assert_eq!(dispatch(server, draft.id, to, deadline_ms), CaseState::Dispatched);
    draft.id
}

fn volunteer_report(volunteer: &Phone, files: &Path, seed: u32, description: &str) -> Uuid {
    let draft = volunteer
        .gw
        .create_draft(DraftFields { category_code: Some("0602".into()), description: description.into(), location: Some(STREET), ..Default::default() })
        .unwrap();
    volunteer.gw.attach_photo(draft.id, &photo(files, seed)).unwrap();
    volunteer.gw.submit(draft.id).unwrap();
    sync(&volunteer.gw);
    draft.id
}

/// 核实 offline: volunteers' reports wait in the queue of the grid's worker
/// and supervisor; both decide offline, the first to sync wins and the
/// other is told plainly; a question goes to the reporter and comes back
/// answered; a duplicate is merged into the case it repeats.
#[test]
fn the_review_queue_decides_offline_and_the_first_reviewer_wins() {
    let (_server_dir, server) = setup();
    let files = tempfile::tempdir().unwrap();
    let volunteer = phone(&server, "volunteer1");
    let worker = phone(&server, "worker1");
    let supervisor = phone(&server, "supervisor1");
    let first = volunteer_report(&volunteer, files.path(), 31, "消防通道被占用");
    let second = volunteer_report(&volunteer, files.path(), 32, "楼道有异味");

    sync(&worker.gw);
    sync(&supervisor.gw);
    for reviewer in [&worker, &supervisor] {
        let queue = reviewer.gw.tasks(TaskFilter { kind: Some(TaskKind::Review), ..Default::default() }).unwrap();
        assert_eq!(queue.iter().map(|t| t.incident_id).collect::<Vec<_>>(), [first, second], "oldest first");
        assert_eq!(queue[0].reporter.as_deref(), Some("volunteer1"));
        let case = reviewer.gw.get_incident(first).unwrap().case.unwrap();
        assert_eq!(case.photos.len(), 1, "the evidence is listed with the report");
    }

    // Both decide the first report in a basement; they disagree.
    worker.gw.set_network(false, false);
    supervisor.gw.set_network(false, false);
    worker.gw.take_step(first, step(CaseAction::Register, Some("现场核实属实"), None), &[]).unwrap();
    supervisor.gw.take_step(first, step(CaseAction::Reject, Some("非本网格问题"), None), &[]).unwrap();
    assert!(worker.gw.tasks(TaskFilter { kind: Some(TaskKind::Review), ..Default::default() }).unwrap().iter().all(|t| t.incident_id != first));
    worker.gw.set_network(true, false);
    sync(&worker.gw);
    supervisor.gw.set_network(true, false);
    let report = sync(&supervisor.gw);
    assert_eq!(report.parked, 1);
    let detail = supervisor.gw.get_incident(first).unwrap();
    assert_eq!(detail.incident.status, IncidentStatus::Case(CaseState::Registered), "the supervisor's phone shows what really happened");
    let SyncState::Parked { code, message } = detail.sync_state else { panic!("{:?}", detail.sync_state) };
    assert_eq!(code, "invalid_transition");
    assert_eq!(message, "cannot reject a case that is registered: its last step was \"register\" by worker1; your reject was not applied");
    assert_eq!(detail.case.unwrap().timeline.iter().rfind(|e| e.action == "register").map(|e| e.actor.as_str()), Some("worker1"));

    // A question for the reporter about the second report.
    let refused = supervisor.gw.take_step(second, step(CaseAction::AskInfo, None, None), &[]).unwrap_err();
    assert_eq!(refused.code(), "note_required", "a question needs words");
    supervisor.gw.take_step(second, step(CaseAction::AskInfo, Some("请补充气味来源的照片"), None), &[]).unwrap();
    sync(&supervisor.gw);
    sync(&volunteer.gw);
    let asked = volunteer.gw.tasks(TaskFilter::default()).unwrap();
    assert_eq!(asked.iter().map(|t| (t.incident_id, t.kind)).collect::<Vec<_>>(), [(second, TaskKind::Answer)]);
    assert_eq!(asked[0].note.as_deref(), Some("请补充气味来源的照片"));
    sync(&worker.gw);
    let refused = worker.gw.take_step(second, step(CaseAction::Answer, Some("不是我报的"), None), &[]).unwrap_err();
    assert_eq!(refused.code(), "step_not_allowed", "only the reporter answers");
    volunteer.gw.take_step(second, step(CaseAction::Answer, Some("垃圾桶在3号楼后门"), None), &[photo(files.path(), 33)]).unwrap();
    sync(&volunteer.gw);

    // Back in the queue with the answer; it repeats the first case: merged.
    sync(&worker.gw);
    let queue = worker.gw.tasks(TaskFilter { kind: Some(TaskKind::Review), ..Default::default() }).unwrap();
    assert_eq!(queue.iter().map(|t| (t.incident_id, t.note.as_deref())).collect::<Vec<_>>(), [(second, Some("垃圾桶在3号楼后门"))]);
    let refused = worker.gw.take_step(second, step(CaseAction::Merge, None, None), &[]).unwrap_err();
    assert_eq!(refused.code(), "merge_target_required");
    let merge_into = |target| StepInput { merge_into: Some(target), ..StepInput::new(CaseAction::Merge) };
    let refused = worker.gw.take_step(second, merge_into(Uuid::now_v7()), &[]).unwrap_err();
    assert_eq!(refused.code(), "invalid_merge_target", "a case this phone does not hold");
    worker.gw.take_step(second, merge_into(first), &[]).unwrap();
    sync(&worker.gw);
    assert_eq!(server.step_state(second), "merged");

    // 件件有回音: the volunteer sees how each report ended.
    sync(&volunteer.gw);
    let merged = volunteer.gw.get_incident(second).unwrap();
    assert_eq!(merged.incident.status, IncidentStatus::Case(CaseState::Merged));
    assert_eq!(merged.case.as_ref().unwrap().merged_into, Some(first));
    let roles: Vec<&str> = merged.case.as_ref().unwrap().photos.iter().map(|p| p.role.as_str()).collect();
    assert_eq!(roles, ["evidence", "evidence"], "the answer's photo joins the evidence");
    assert!(merged.case.unwrap().photos.iter().all(|p| p.arrived));
    assert_eq!(status(&volunteer.gw, first), IncidentStatus::Case(CaseState::Registered));
}

/// 能解决的问题现场解决: one report with before and after photos goes
/// straight to verification; the reporter never verifies it.
#[test]
fn a_problem_resolved_on_the_spot_goes_to_verification_not_dispatch() {
    let (_server_dir, server) = setup();
    let files = tempfile::tempdir().unwrap();
    let worker = phone(&server, "worker1");
    let supervisor = phone(&server, "supervisor1");
    let volunteer = phone(&server, "volunteer1");

    worker.gw.set_network(false, false);
    let draft = worker
        .gw
        .create_draft(DraftFields { category_code: Some("0602".into()), description: "楼道纸箱堵塞".into(), location: Some(STREET), ..Default::default() })
        .unwrap();
    worker.gw.attach_photo(draft.id, &photo(files.path(), 41)).unwrap();
    let refused = worker.gw.submit_resolved(draft.id, "已当场清理").unwrap_err();
    assert_eq!(refused.code(), "after_photo_required");
    let after = worker.gw.attach_photo_as(draft.id, &photo(files.path(), 42), PhotoRole::After).unwrap();
    assert_eq!(after.role, PhotoRole::After);
    assert_eq!(worker.gw.submit(draft.id).unwrap_err().code(), "incomplete", "after-photos make it a resolution, not a plain report");
    assert_eq!(worker.gw.submit_resolved(draft.id, "  ").unwrap_err().code(), "note_required");
    worker.gw.submit_resolved(draft.id, "已当场清理").unwrap();
    worker.gw.set_network(true, false);
    let report = sync(&worker.gw);
    assert_eq!((report.pushed, report.photos_uploaded), (1, 2), "{report:?}");
    assert_eq!(server.step_state(draft.id), "handled");

    // Not the reporter's to verify; the supervisor's.
    assert!(worker.gw.tasks(TaskFilter::default()).unwrap().is_empty());
    sync(&supervisor.gw);
    let verify = supervisor.gw.tasks(TaskFilter { kind: Some(TaskKind::Verify), ..Default::default() }).unwrap();
    assert_eq!(verify.iter().map(|t| (t.incident_id, t.note.as_deref())).collect::<Vec<_>>(), [(draft.id, Some("已当场清理"))]);
    let case = supervisor.gw.get_incident(draft.id).unwrap().case.unwrap();
    assert_eq!(case.assignee.as_deref(), Some("worker1"));
    assert_eq!(case.photos.iter().map(|p| p.role.as_str()).collect::<Vec<_>>(), ["evidence", "after"]);
    assert_eq!(case.timeline.iter().map(|e| e.action.as_str()).filter(|a| !a.ends_with("_arrived")).collect::<Vec<_>>(), ["report", "handle"]);
    supervisor.gw.take_step(draft.id, step(CaseAction::Close, None, Some(5)), &[]).unwrap();
    sync(&supervisor.gw);
    assert_eq!(server.step_state(draft.id), "closed");

    // A volunteer's report is reviewed first: a resolution from them is refused.
    let draft = volunteer
        .gw
        .create_draft(DraftFields { category_code: Some("0602".into()), description: "自行清理".into(), location: Some(STREET), ..Default::default() })
        .unwrap();
    volunteer.gw.attach_photo_as(draft.id, &photo(files.path(), 43), PhotoRole::After).unwrap();
    let refused = volunteer.gw.submit_resolved(draft.id, "已清理").unwrap_err();
    assert_eq!(refused.code(), "step_not_allowed", "refused on the phone, as the server would");
    assert_eq!(status(&volunteer.gw, draft.id), IncidentStatus::Draft, "the draft stays, to be sent as a plain report");
}

/// 件件有回音: a rejected volunteer learns why, corrects the report and
/// resubmits it as a new report linked to the first.
#[test]
fn a_rejected_report_is_corrected_and_resubmitted_linked_to_the_first() {
    let (_server_dir, server) = setup();
    let files = tempfile::tempdir().unwrap();
    let volunteer = phone(&server, "volunteer1");
    let worker = phone(&server, "worker1");
    let first = volunteer_report(&volunteer, files.path(), 61, "井盖松动");
    assert_eq!(volunteer.gw.resubmit(first).unwrap_err().code(), "invalid_state", "not rejected (yet)");
    sync(&worker.gw);
    worker.gw.take_step(first, step(CaseAction::Reject, Some("照片看不清，请重拍"), None), &[]).unwrap();
    sync(&worker.gw);

    sync(&volunteer.gw);
    let detail = volunteer.gw.get_incident(first).unwrap();
    assert_eq!(detail.incident.status, IncidentStatus::Case(CaseState::Rejected));
    let why = detail.case.unwrap().timeline.iter().rfind(|e| e.action == "reject").and_then(|e| e.note.clone());
    assert_eq!(why.as_deref(), Some("照片看不清，请重拍"), "the reporter reads why");
    assert_eq!(worker.gw.resubmit(first).unwrap_err().code(), "invalid_state", "only the reporter resubmits");

    let draft = volunteer.gw.resubmit(first).unwrap();
    assert_eq!((draft.status, draft.description.as_str()), (IncidentStatus::Draft, "井盖松动"), "the text comes along");
    assert_eq!(draft.location, Some(STREET));
    volunteer.gw.attach_photo(draft.id, &photo(files.path(), 62)).unwrap();
    volunteer.gw.submit(draft.id).unwrap();
    sync(&volunteer.gw);
    assert_eq!(server.step_state(draft.id), "pending_review", "reviewed again");
    let linked: String = server.db.read(|tx| Ok(tx.query_one("SELECT resubmission_of FROM incidents WHERE id = $1", gridwork_server::params![draft.id.to_string()])?.text(0))).unwrap();
    assert_eq!(linked, first.to_string());
    sync(&worker.gw);
    assert!(worker.gw.tasks(TaskFilter { kind: Some(TaskKind::Review), ..Default::default() }).unwrap().iter().any(|t| t.incident_id == draft.id));
}

/// 时限: a category's deadline applies when the dispatcher gives none, and
/// a rework is a new task with a new deadline.
#[test]
fn category_deadlines_apply_when_the_dispatcher_gives_none() {
    let (_server_dir, server) = setup();
    let reporter = phone(&server, "worker1");
    let department = phone(&server, "sanitation");
    let supervisor = phone(&server, "supervisor1");
    // 06 (the 大类) 72 h; 0602 itself 24 h.
    server.db.write(|tx| gridwork_server::reference::set_deadline(tx, "06", &hours(72, None, None))).unwrap();
    let refused = server.db.write(|tx| gridwork_server::reference::set_deadline(tx, "06", &hours(0, None, None))).unwrap_err();
    assert_eq!(refused.code, "invalid_deadline");
    let refused = server.db.write(|tx| gridwork_server::reference::set_deadline(tx, "06", &hours(72, Some(0), None))).unwrap_err();
    assert_eq!(refused.code, "invalid_deadline");
    let draft = reporter.gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "路灯不亮".into(), location: Some(STREET), ..Default::default() }).unwrap();
    reporter.gw.submit(draft.id).unwrap();
    sync(&reporter.gw);
    center(&server, draft.id, TransitionRequest::new(CaseAction::Register));
    let before = gridwork_server::http::now_ms();
    center(&server, draft.id, TransitionRequest { assignee: Some("sanitation".into()), ..TransitionRequest::new(CaseAction::Dispatch) });
    sync(&department.gw);
    let task = department.gw.tasks(TaskFilter::default()).unwrap().remove(0);
    let due = task.deadline_ms.expect("the category's deadline") - before;
    assert!((72 * 3_600_000..72 * 3_600_000 + 60_000).contains(&due), "the 大类's 72 h apply to its 小类: {due}");
    assert_eq!(task.light, Some(DeadlineLight::Green));

    server.db.write(|tx| gridwork_server::reference::set_deadline(tx, "0602", &hours(24, None, None))).unwrap();
    department.gw.take_step(draft.id, step(CaseAction::Handle, Some("已修复"), None), &[]).unwrap();
    sync(&department.gw);
    sync(&supervisor.gw);
    let before = gridwork_server::http::now_ms();
    supervisor.gw.take_step(draft.id, step(CaseAction::Reopen, Some("仍不亮"), None), &[]).unwrap();
    sync(&supervisor.gw);
    sync(&department.gw);
    let task = department.gw.tasks(TaskFilter::default()).unwrap().remove(0);
    let due = task.deadline_ms.unwrap() - before;
    assert!((24 * 3_600_000..24 * 3_600_000 + 60_000).contains(&due), "the rework gets the 小类's own 24 h: {due}");
}

fn hours(handle: i64, sign: Option<i64>, verify: Option<i64>) -> gridwork_server::reference::TimeLimits {
    gridwork_server::reference::TimeLimits { handle_hours: handle, sign_hours: sign, verify_hours: verify }
}

/// Due `hours` after `before`, within a minute.
fn due_in(due_ms: Option<i64>, before: i64, hours: i64) -> bool {
    due_ms.is_some_and(|due| (hours * 3_600_000..hours * 3_600_000 + 60_000).contains(&(due - before)))
}

/// 时限 per step: a category's time to sign (签收) runs from the dispatch,
/// its time to handle after the signature, its time to verify (核查) from
/// the handle; each task shows the limit of its current step, a step taken
/// offline moves the task to the next limit at once.
#[test]
fn sign_handle_and_verify_each_have_their_time_limit() {
    let (_server_dir, server) = setup();
    let reporter = phone(&server, "worker1");
    let department = phone(&server, "sanitation");
    let supervisor = phone(&server, "supervisor1");
    server.db.write(|tx| gridwork_server::reference::set_deadline(tx, "06", &hours(72, Some(2), Some(24)))).unwrap();
    let draft = reporter.gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "路灯不亮".into(), location: Some(STREET), ..Default::default() }).unwrap();
    reporter.gw.submit(draft.id).unwrap();
    sync(&reporter.gw);
    center(&server, draft.id, TransitionRequest::new(CaseAction::Register));
    let dispatched = gridwork_server::http::now_ms();
    center(&server, draft.id, TransitionRequest { assignee: Some("sanitation".into()), ..TransitionRequest::new(CaseAction::Dispatch) });
    sync(&department.gw);

    let task = department.gw.tasks(TaskFilter::default()).unwrap().remove(0);
    assert_eq!(task.deadline_step, Some(TimedStep::Sign));
    assert!(due_in(task.deadline_ms, dispatched, 2), "2 h to sign: {:?}", task.deadline_ms);
    assert_eq!(task.light, Some(DeadlineLight::Green));
    let case = department.gw.get_incident(draft.id).unwrap().case.unwrap();
    assert!(due_in(case.deadline_ms, dispatched, 72) && due_in(case.step_deadline_ms, dispatched, 2), "both limits on the case screen");
    assert_eq!(case.deadline_step, Some(TimedStep::Sign));

    // Signed offline: the task runs against the handling limit at once.
    department.gw.take_step(draft.id, step(CaseAction::Sign, None, None), &[]).unwrap();
    let task = department.gw.tasks(TaskFilter::default()).unwrap().remove(0);
    assert_eq!(task.deadline_step, Some(TimedStep::Handle));
    assert!(due_in(task.deadline_ms, dispatched, 72));
    sync(&department.gw);
    let case = department.gw.get_incident(draft.id).unwrap().case.unwrap();
    assert_eq!((case.state, case.step_deadline_ms), (CaseState::Signed, None), "the sign limit ends with the signature");

    department.gw.take_step(draft.id, step(CaseAction::Handle, Some("已修复"), None), &[]).unwrap();
    let handled = gridwork_server::http::now_ms();
    sync(&department.gw);
    assert!(department.gw.tasks(TaskFilter::default()).unwrap().is_empty(), "nothing left for the department");
    sync(&supervisor.gw);
    let task = supervisor.gw.tasks(TaskFilter { kind: Some(TaskKind::Verify), ..Default::default() }).unwrap().remove(0);
    assert_eq!(task.deadline_step, Some(TimedStep::Verify));
    assert!(due_in(task.deadline_ms, handled, 24), "24 h to verify from the handle: {:?}", task.deadline_ms);
    assert_eq!(task.light, Some(DeadlineLight::Green));

    // Reworked: handling again, against a fresh handling limit; no step limit.
    supervisor.gw.take_step(draft.id, step(CaseAction::Reopen, Some("仍不亮"), None), &[]).unwrap();
    sync(&supervisor.gw);
    sync(&department.gw);
    let task = department.gw.tasks(TaskFilter::default()).unwrap().remove(0);
    assert_eq!((task.state, task.deadline_step), (CaseState::Reopened, Some(TimedStep::Handle)));
    let case = department.gw.get_incident(draft.id).unwrap().case.unwrap();
    assert_eq!(case.step_deadline_ms, None);
}

/// Photos of other devices on demand: a worker opens a volunteer's photo
/// full size, zoomed and as a thumbnail; the server's bytes are checked and
/// kept, so the photo opens again with the server gone; the access token is
/// refreshed when it has expired; photos of cases the device does not hold
/// are never fetched.
#[test]
fn a_case_photo_is_fetched_on_demand_checked_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let policy = gridwork_server::auth::TokenPolicy { access_ttl_ms: 1_500, ..default_policy() };
    let server = LocalServer::start(dir.path(), "127.0.0.1:0", policy);
    server.seed();
    let files = tempfile::tempdir().unwrap();
    let volunteer = phone(&server, "volunteer1");
    let worker = phone(&server, "worker1");
    let big = write_file(files.path(), "big.jpg", &jpeg_bytes(&scene(2400, 1800, 5), 85, None));
    let draft = volunteer.gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "楼道堆物".into(), location: Some(STREET), ..Default::default() }).unwrap();
    volunteer.gw.attach_photo(draft.id, &big).unwrap();
    volunteer.gw.submit(draft.id).unwrap();
    sync(&volunteer.gw);
    sync(&worker.gw);
    let case = worker.gw.get_incident(draft.id).unwrap().case.expect("the worker holds the case");
    let sha = case.photos[0].sha256.clone();

    // The access token has expired by now: the fetch refreshes it first.
    std::thread::sleep(Duration::from_millis(1_600));
    let original = worker.gw.photo_file(&sha, PhotoRendition::Original).unwrap();
    assert_eq!(std::fs::read(&original).unwrap(), std::fs::read(&big).unwrap(), "the original, byte for byte");
    let screen = worker.gw.photo_file(&sha, PhotoRendition::LongEdge1280).unwrap();
    let decoded = image::open(&screen).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (1280, 960));
    let thumb = worker.gw.photo_file(&sha, PhotoRendition::Thumb).unwrap();
    assert_eq!(thumb, case.photos[0].thumbnail_path.clone().expect("sync kept the thumbnail"), "the kept thumbnail, not fetched again");
    // The volunteer's own photo never needs the network.
    let own = volunteer.gw.photo_file(&sha, PhotoRendition::Original).unwrap();
    assert!(own.starts_with(volunteer._dir.path()) && std::fs::read(&own).unwrap() == std::fs::read(&big).unwrap());

    // Kept: opens again with the server gone.
    server.stop();
    assert_eq!(worker.gw.photo_file(&sha, PhotoRendition::Original).unwrap(), original);
    assert_eq!(worker.gw.photo_file(&sha, PhotoRendition::LongEdge1280).unwrap(), screen);
    // Not a case photo here (never asked of a server), not a hash at all.
    let stranger = "ab".repeat(32);
    assert!(matches!(worker.gw.photo_file(&stranger, PhotoRendition::Original), Err(gridwork_core::Error::NotFound { .. })));
    assert!(matches!(worker.gw.photo_file("../../etc/passwd", PhotoRendition::Original), Err(gridwork_core::Error::InvalidId)));
    // 2048 was never fetched: with the server gone it is a network error, and nothing is kept.
    assert!(matches!(worker.gw.photo_file(&sha, PhotoRendition::LongEdge2048), Err(gridwork_core::Error::Network(_))));
    // The sweeper keeps what was fetched.
    worker.gw.sweep_orphan_files().unwrap();
    assert!(original.is_file() && screen.is_file());
}

/// A district that keeps originals (their EXIF holds the GPS position) from
/// a role: a worker of that role opening a volunteer's photo full size gets
/// the 2048 px rendition, re-encoded without EXIF; the volunteer keeps
/// their own original.
#[test]
fn originals_withheld_by_policy_open_as_a_rendition_without_exif() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    server.db.write(|tx| gridwork_server::blobs::set_originals_withheld_from(tx, &[gridwork_protocol::api::Role::GridWorker])).unwrap();
    let files = tempfile::tempdir().unwrap();
    let volunteer = phone(&server, "volunteer1");
    let worker = phone(&server, "worker1");
    let exif = ExifSpec { gps: Some((31.23, 121.465)), ..Default::default() };
    let shot = write_file(files.path(), "gps.jpg", &jpeg_bytes(&scene(3000, 2000, 6), 85, Some(&exif)));
    let draft = volunteer.gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "楼道堆物".into(), location: Some(STREET), ..Default::default() }).unwrap();
    volunteer.gw.attach_photo(draft.id, &shot).unwrap();
    volunteer.gw.submit(draft.id).unwrap();
    sync(&volunteer.gw);
    sync(&worker.gw);
    let sha = worker.gw.get_incident(draft.id).unwrap().case.unwrap().photos[0].sha256.clone();

    let shown = worker.gw.photo_file(&sha, PhotoRendition::Original).unwrap();
    let bytes = std::fs::read(&shown).unwrap();
    assert_ne!(sha256_hex(&bytes), sha, "not the original");
    let decoded = image::load_from_memory(&bytes).unwrap();
    assert_eq!(decoded.width().max(decoded.height()), 2048);
    assert!(exif::Reader::new().read_from_container(&mut std::io::Cursor::new(&bytes)).is_err(), "no EXIF, so no GPS");
    // The uploader is not kept from their own photo.
    let own = volunteer.gw.photo_file(&sha, PhotoRendition::Original).unwrap();
    assert_eq!(std::fs::read(own).unwrap(), std::fs::read(&shot).unwrap());
}

/// What a person saw of a case does not outlive the case on their phone:
/// once a handed-back case leaves the department's view, its kept thumbnail
/// and the photo fetched to look at go with it at the next sweep.
#[test]
fn photos_seen_on_a_case_leave_with_the_case() {
    let (_server_dir, server) = setup();
    let files = tempfile::tempdir().unwrap();
    let worker = phone(&server, "worker1");
    let department = phone(&server, "sanitation");
    let draft = worker.gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "路灯不亮".into(), location: Some(STREET), ..Default::default() }).unwrap();
    worker.gw.attach_photo(draft.id, &photo(files.path(), 71)).unwrap();
    worker.gw.submit(draft.id).unwrap();
    sync(&worker.gw);
    center(&server, draft.id, TransitionRequest::new(CaseAction::Register));
    dispatch(&server, draft.id, "sanitation", gridwork_server::http::now_ms() + 3_600_000);
    sync(&department.gw);
    let case = department.gw.get_incident(draft.id).unwrap().case.unwrap();
    let thumbnail = case.photos[0].thumbnail_path.clone().expect("sync kept the thumbnail");
    let original = department.gw.photo_file(&case.photos[0].sha256, PhotoRendition::Original).unwrap();
    department.gw.sweep_orphan_files().unwrap();
    assert!(thumbnail.is_file() && original.is_file(), "kept while the case is here");

    department.gw.take_step(draft.id, step(CaseAction::HandBack, Some("不属本部门职责"), None), &[]).unwrap();
    sync(&department.gw);
    sync(&department.gw);
    assert_eq!(department.gw.get_incident(draft.id).unwrap_err().code(), "not_found", "the case left");
    assert!(department.gw.sweep_orphan_files().unwrap() >= 2);
    assert!(!thumbnail.exists() && !original.exists(), "nothing of it stays on the phone");
}
