//! `tasks`: the task list (待办) and the review queue (核实) on a device
//! holding a long history: 100,000 cases pulled from the server (closed
//! ones with their timelines), 200 open tasks of this user and 500
//! volunteers' reports waiting for review, all applied through the real
//! pull path. Timed: the core's task query (deadline lights, the note that
//! matters), against the same rows selected by plain rusqlite from an
//! unencrypted copy (no lights, no notes: the floor).

use std::path::Path;
use std::time::{Duration, Instant};

use gridwork_core::model::task::{self, TaskFilter, TaskKind};
use gridwork_core::sync::apply;
use gridwork_core::{Gridwork, Uuid};
use gridwork_protocol::api::{Change, ChangeBody, IncidentView, PhotoView, Role, TimelineEntry, UserInfo};
use gridwork_protocol::CaseState;
use rusqlite::Connection;

use crate::report::{self, Table, percentile};
use crate::BenchResult;

const ACCOUNT: &str = "bench-tasks";
const USER: &str = "worker1";
const OPEN_TASKS: usize = 200;
const PENDING_REVIEWS: usize = 500;
const RUNS: usize = 200;

fn entry(action: &str, actor: &str, from: Option<CaseState>, to: CaseState, note: Option<&str>, at_ms: i64) -> TimelineEntry {
    TimelineEntry { seq: 0, action: action.into(), actor: actor.into(), from_state: from, to_state: to, note: note.map(str::to_owned), at_ms }
}

/// A case as the server would send it, in one of three shapes.
fn view(n: usize, now_ms: i64) -> IncidentView {
    use CaseState as S;
    let at = now_ms - 90 * 86_400_000 + n as i64 * 60_000;
    let report = entry("report", "volunteer1", None, S::PendingReview, None, at);
    let (state, assignee, deadline_ms, rating, timeline) = if n < PENDING_REVIEWS {
        (S::PendingReview, None, None, None, vec![report])
    } else if n < PENDING_REVIEWS + OPEN_TASKS {
        let dispatched = now_ms - 3_600_000;
        let timeline = vec![
            report,
            entry("register", "supervisor1", Some(S::PendingReview), S::Registered, Some("属实"), at + 1),
            entry("dispatch", "dispatcher", Some(S::Registered), S::Dispatched, Some("请24小时内处理"), dispatched),
        ];
        (S::Dispatched, Some(USER.to_owned()), Some(dispatched + (n as i64 % 48) * 3_600_000), None, timeline)
    } else {
        let timeline = vec![
            report,
            entry("register", "supervisor1", Some(S::PendingReview), S::Registered, Some("属实"), at + 1),
            entry("dispatch", "dispatcher", Some(S::Registered), S::Dispatched, Some("请24小时内处理"), at + 2),
            entry("handle", "sanitation", Some(S::Dispatched), S::Handled, Some("已处理完毕"), at + 3),
            entry("close", "worker2", Some(S::Handled), S::Closed, Some("核查通过"), at + 4),
        ];
        (S::Closed, Some("sanitation".to_owned()), Some(at + 86_400_000), Some(4), timeline)
    };
    IncidentView {
        id: Uuid::now_v7(),
        state,
        category_code: "0602".into(),
        description: format!("楼道堆物，堵塞消防通道 #{n}"),
        address: Some("南京东路街道 3号楼2单元".into()),
        location: None,
        grid_code: Some("G-001".into()),
        reporter: "volunteer1".into(),
        reporter_role: Role::Volunteer,
        assignee,
        department: None,
        deadline_ms,
        step_deadline_ms: None,
        merged_into: None,
        resubmission_of: None,
        rating,
        // Each report to review has a photo whose thumbnail sync fetched.
        photos: if n < PENDING_REVIEWS { vec![photo(n)] } else { vec![] },
        missing_evidence: false,
        version: timeline.len() as i64,
        reported_at_ms: at,
        updated_at_ms: at,
        timeline,
    }
}

fn photo_sha(n: usize) -> String {
    format!("{n:064x}")
}

fn photo(n: usize) -> PhotoView {
    PhotoView {
        photo_id: Uuid::now_v7(),
        sha256: photo_sha(n),
        byte_size: 3_000_000,
        mime_type: "image/jpeg".into(),
        role: "evidence".into(),
        arrived: true,
        preview_arrived: false,
    }
}

fn populate(gridwork: &Gridwork, cases: usize) -> BenchResult<()> {
    let now_ms = gridwork.now().corrected_ms;
    gridwork.with_connection(|conn| {
        let tx = conn.transaction()?;
        for start in (0..cases).step_by(1_000) {
            let page: Vec<Change> = (start..(start + 1_000).min(cases))
                .map(|n| {
                    let view = view(n, now_ms);
                    Change {
                        cursor: n as i64,
                        entity_kind: "incident".into(),
                        entity_id: view.id.to_string(),
                        body: ChangeBody::Upsert { data: serde_json::to_value(&view).expect("serializes") },
                    }
                })
                .collect();
            apply::apply_page(&tx, &page)?;
        }
        for n in 0..PENDING_REVIEWS {
            task::record_thumbnail(&tx, &photo_sha(n), now_ms)?;
        }
        tx.commit()?;
        Ok(())
    })?;
    Ok(())
}

/// The task list's statement without what the core adds (lights, notes).
const PEER_TASKS: &str = "SELECT id, status, category_code, description, address, grid_code, assignee, department, deadline_ms, task_since_ms
    FROM incidents WHERE status IN ('dispatched', 'signed', 'in_progress', 'reopened') AND assignee = ?1 ORDER BY deadline_ms, id";
const PEER_REVIEW: &str = "SELECT id, status, category_code, description, address, grid_code, assignee, department, deadline_ms, task_since_ms,
        EXISTS (SELECT 1 FROM case_thumbnails WHERE sha256 = json_extract(server_view, '$.photos[0].sha256'))
    FROM incidents WHERE status = 'pending_review' AND grid_code = ?1 ORDER BY id";

fn time(mut f: impl FnMut() -> BenchResult<usize>, expected: usize) -> BenchResult<Vec<Duration>> {
    let mut samples = Vec::with_capacity(RUNS);
    for n in 0..=RUNS {
        let started = Instant::now();
        let rows = f()?;
        let elapsed = started.elapsed();
        assert_eq!(rows, expected, "the query found what was stored");
        if n > 0 {
            samples.push(elapsed);
        }
    }
    Ok(samples)
}

pub fn run(cases: usize) -> BenchResult<()> {
    let cases = cases.max(PENDING_REVIEWS + OPEN_TASKS + 1);
    eprintln!("tasks: {cases} cases on the device ({OPEN_TASKS} open tasks, {PENDING_REVIEWS} reports to review), {RUNS} queries each");
    let dir = tempfile::Builder::new().prefix("gridwork-bench-tasks").tempdir()?;
    let data_dir = dir.path().join("device");
    let started = Instant::now();
    let gridwork = Gridwork::open(gridwork_tests::config(&data_dir, ACCOUNT))?;
    populate(&gridwork, cases)?;
    let plain = dir.path().join("plain.db");
    drop(gridwork);
    crate::open::export_plain(&data_dir, ACCOUNT, &plain)?;
    eprintln!("  built the store through the pull path in {:.1} s", started.elapsed().as_secs_f64());

    let gridwork = Gridwork::open(gridwork_tests::config(&data_dir, ACCOUNT))?;
    let me = UserInfo { id: Uuid::now_v7(), username: USER.into(), role: Role::GridWorker, grids: vec!["G-001".into()] };
    let now_ms = gridwork.now().corrected_ms;
    let handle = TaskFilter { kind: Some(TaskKind::Handle), ..Default::default() };
    let review = TaskFilter { kind: Some(TaskKind::Review), ..Default::default() };
    let thumbnails = data_dir.join("thumbs");
    let thumbnail_path = |sha: &str| thumbnails.join(format!("{sha}.jpg"));
    let ours_tasks = time(|| Ok(gridwork.with_connection(|c| task::tasks(c, &me, &handle, now_ms, &thumbnail_path))?.len()), OPEN_TASKS)?;
    let ours_review = time(
        || {
            let queue = gridwork.with_connection(|c| task::tasks(c, &me, &review, now_ms, &thumbnail_path))?;
            assert!(queue.iter().all(|t| t.thumbnail_path.is_some()), "every report shows its thumbnail");
            Ok(queue.len())
        },
        PENDING_REVIEWS,
    )?;
    let peer = Connection::open(&plain)?;
    let rows = |sql: &str, arg: &str| -> BenchResult<usize> { Ok(peer.prepare_cached(sql)?.query_map([arg], |r| r.get::<_, String>(0))?.count()) };
    let peer_tasks = time(|| rows(PEER_TASKS, USER), OPEN_TASKS)?;
    let peer_review = time(|| rows(PEER_REVIEW, "G-001"), PENDING_REVIEWS)?;

    let mut table = Table::new(
        format!("tasks: a device holding {cases} cases ({} encrypted), {RUNS} queries each", report::bytes(file_size(gridwork.database_path()))),
        "plain rusqlite: the same rows from an unencrypted copy, without lights or notes",
    );
    for (label, ours, peer) in [
        (format!("task list ({OPEN_TASKS} open tasks), p50"), percentile(&ours_tasks, 50), percentile(&peer_tasks, 50)),
        (format!("task list ({OPEN_TASKS} open tasks), p99"), percentile(&ours_tasks, 99), percentile(&peer_tasks, 99)),
        (format!("review queue ({PENDING_REVIEWS} reports with thumbnails), p50"), percentile(&ours_review, 50), percentile(&peer_review, 50)),
        (format!("review queue ({PENDING_REVIEWS} reports with thumbnails), p99"), percentile(&ours_review, 99), percentile(&peer_review, 99)),
    ] {
        table.time_row(&label, Some(ours), Some(peer));
    }
    table.note("ours: gridwork_core::model::task::tasks, what Gridwork::tasks runs after reading the session; lower is better");
    table.print();
    Ok(())
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
