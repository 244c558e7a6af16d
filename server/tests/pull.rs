//! Incremental pull over real HTTP: reference data on a first pull, pages by
//! cursor in commit order, only what the caller may see, removals when a
//! case leaves a caller's scope, and no change skipped while devices push
//! concurrently (commit-order cursors on PostgreSQL).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use serde_json::{Value, json};
use uuid::Uuid;

/// One page, checked for the invariants every page must hold.
fn page(device: &Device, since: i64, limit: u32, backend: &str) -> Value {
    let response = device.get(&format!("/v1/pull?since={since}&limit={limit}"));
    assert_eq!(response.status(), 200, "{backend}: pull");
    let page: Value = response.json().unwrap();
    let changes = page["changes"].as_array().unwrap();
    assert!(changes.len() <= limit as usize, "{backend}: page larger than limit");
    let mut previous = since;
    let mut seen = HashSet::new();
    for change in changes {
        let cursor = change["cursor"].as_i64().unwrap();
        assert!(cursor > previous, "{backend}: cursors strictly increase past `since`: {page}");
        previous = cursor;
        let key = (change["entity_kind"].as_str().unwrap().to_owned(), change["entity_id"].as_str().unwrap().to_owned());
        assert!(seen.insert(key.clone()), "{backend}: {key:?} twice in one page: {page}");
        match change["op"].as_str().unwrap() {
            "upsert" => assert!(change["data"].is_object(), "{backend}: upsert without data: {change}"),
            "remove" => assert!(change.get("data").is_none(), "{backend}: removal with data: {change}"),
            other => panic!("{backend}: unknown op {other}"),
        }
    }
    let next = page["next_cursor"].as_i64().unwrap();
    assert!(next >= previous, "{backend}: next_cursor {next} behind the page's last change {previous}");
    if !changes.is_empty() || page["has_more"] == true {
        assert!(next > since, "{backend}: a page that moved on advances the cursor");
    } else {
        assert_eq!(next, since, "{backend}: an empty last page keeps the cursor");
    }
    page
}

/// Follow pages from `since` to the end.
fn pull_pages(device: &Device, since: i64, limit: u32, backend: &str) -> (Vec<Value>, i64) {
    let mut cursor = since;
    let mut changes = Vec::new();
    loop {
        let page = page(device, cursor, limit, backend);
        changes.extend(page["changes"].as_array().unwrap().iter().cloned());
        cursor = page["next_cursor"].as_i64().unwrap();
        if page["has_more"] == false {
            return (changes, cursor);
        }
    }
}

/// A device's view of cases, kept up to date by pulling.
struct View {
    cursor: i64,
    cases: HashMap<String, Value>,
}

impl View {
    /// Pull everything so far (reference data included) and start from there.
    fn start(device: &Device, backend: &str) -> View {
        let mut view = View { cursor: 0, cases: HashMap::new() };
        view.sync(device, backend);
        view
    }

    /// Pull what changed; return the incident changes of this round.
    fn sync(&mut self, device: &Device, backend: &str) -> Vec<Value> {
        let (changes, cursor) = pull_pages(device, self.cursor, 7, backend);
        self.cursor = cursor;
        // Across pages a case may come more than once; its last change wins.
        let mut incidents: Vec<Value> = Vec::new();
        for change in changes.into_iter().filter(|c| c["entity_kind"] == "incident") {
            incidents.retain(|earlier| earlier["entity_id"] != change["entity_id"]);
            incidents.push(change);
        }
        for change in &incidents {
            let id = change["entity_id"].as_str().unwrap().to_owned();
            if change["op"] == "remove" {
                self.cases.remove(&id);
            } else {
                self.cases.insert(id, change["data"].clone());
            }
        }
        incidents
    }
}

fn id_of(change: &Value) -> Uuid {
    Uuid::parse_str(change["entity_id"].as_str().unwrap()).unwrap()
}

fn step(device: &Device, id: Uuid, body: Value, backend: &str) -> Value {
    let response = device.transition(id, body.clone());
    assert_eq!(response.status(), 200, "{backend}: {body}: {}", response.text().unwrap());
    response.json().unwrap()
}

#[test]
fn a_first_pull_brings_categories_and_grids() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        for user in ["worker1", "volunteer1", "worker2", "dispatcher"] {
            let device = server.device(user);
            let (changes, cursor) = pull_pages(&device, 0, 50, name);
            assert!(cursor > 0, "{name}/{user}");
            let by_key: HashMap<(String, String), &Value> =
                changes.iter().map(|c| ((c["entity_kind"].as_str().unwrap().to_owned(), c["entity_id"].as_str().unwrap().to_owned()), c)).collect();
            assert_eq!(by_key.len(), changes.len(), "{name}/{user}: each entity once in a first pull");
            assert!(changes.iter().all(|c| c["entity_kind"] == "category" || c["entity_kind"] == "grid"), "{name}/{user}: no cases yet");

            let category = by_key.get(&("category".into(), "0101".into())).unwrap_or_else(|| panic!("{name}/{user}: category 0101 missing"));
            assert_eq!(category["op"], "upsert", "{name}");
            assert_eq!(category["data"]["code"], "0101", "{name}");
            assert_eq!(category["data"]["parent_code"], "01", "{name}");
            assert_eq!(category["data"]["name_zh"], "私搭乱建", "{name}");
            assert_eq!(category["data"]["active"], true, "{name}");
            let categories = changes.iter().filter(|c| c["entity_kind"] == "category").count();
            assert_eq!(categories, 40, "{name}/{user}: the whole default table");

            let grid = by_key.get(&("grid".into(), "G-001".into())).unwrap_or_else(|| panic!("{name}/{user}: grid G-001 missing"));
            assert_eq!(grid["data"]["tier"], "grid", "{name}");
            assert_eq!(grid["data"]["level"], "key_attention", "{name}");
            assert_eq!(grid["data"]["name"], "第一网格", "{name}");
            assert_eq!(grid["data"]["parent_code"], "C-01", "{name}");
            assert_eq!(grid["data"]["boundary"]["type"], "Polygon", "{name}");
            assert_eq!(grid["data"]["boundary"]["coordinates"][0][0], json!([121.46, 31.22]), "{name}");
            assert_eq!(by_key[&("grid".into(), "G-002".into())]["data"]["level"], "routine", "{name}");
            assert_eq!(by_key[&("grid".into(), "C-01".into())]["data"]["tier"], "community", "{name}");
            assert_eq!(by_key[&("grid".into(), "C-01".into())]["data"]["parent_code"], "S-01", "{name}");
            assert_eq!(by_key[&("grid".into(), "S-01".into())]["data"]["tier"], "street", "{name}");

            // Nothing new after the end.
            let again = page(&device, cursor, 50, name);
            assert_eq!(again["changes"], json!([]), "{name}/{user}");
            assert_eq!(again["has_more"], false, "{name}/{user}");
        }
        let device = server.device("worker1");
        let bad = device.get("/v1/pull?since=abc");
        assert_eq!(bad.status(), 400, "{name}");
        assert_eq!(bad.json::<Value>().unwrap()["code"], "invalid_query", "{name}");
    }
}

#[test]
fn pages_follow_the_cursor_in_commit_order() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let reader = server.device("dispatcher");
        let (_, start) = pull_pages(&reader, 0, 50, name);

        let reporter = server.device("supervisor1");
        let worker = server.device("worker1");
        let mut pushed = Vec::new();
        for _ in 0..7 {
            let (id, op) = report("0602", Some("G-001"), &[]);
            reporter.push_ok(&[op]);
            pushed.push(id);
        }

        // Pages of three: 3 + 3 + 1, in the order the reports committed.
        let first = page(&reader, start, 3, name);
        assert_eq!(first["changes"].as_array().unwrap().len(), 3, "{name}");
        assert_eq!(first["has_more"], true, "{name}");
        assert_eq!(first["next_cursor"], first["changes"][2]["cursor"], "{name}");
        let second = page(&reader, first["next_cursor"].as_i64().unwrap(), 3, name);
        assert_eq!(second["changes"].as_array().unwrap().len(), 3, "{name}");
        assert_eq!(second["has_more"], true, "{name}");
        let third = page(&reader, second["next_cursor"].as_i64().unwrap(), 3, name);
        assert_eq!(third["changes"].as_array().unwrap().len(), 1, "{name}");
        assert_eq!(third["has_more"], false, "{name}");
        let order: Vec<Uuid> = [&first, &second, &third].iter().flat_map(|p| p["changes"].as_array().unwrap().iter().map(id_of)).collect();
        assert_eq!(order, pushed, "{name}: commit order");
        for change in [&first, &second, &third].iter().flat_map(|p| p["changes"].as_array().unwrap().iter()) {
            assert_eq!(change["op"], "upsert", "{name}");
            assert_eq!(change["data"]["state"], "reported", "{name}");
        }
        let end = third["next_cursor"].as_i64().unwrap();
        let nothing = page(&reader, end, 3, name);
        assert_eq!(nothing["changes"], json!([]), "{name}");
        assert_eq!(nothing["next_cursor"], json!(end), "{name}");
        // Limits are clamped, never refused.
        let clamped: Value = reader.get(&format!("/v1/pull?since={start}&limit=0")).json().unwrap();
        assert_eq!(clamped["changes"].as_array().unwrap().len(), 1, "{name}: limit 0 means 1");
        assert_eq!(clamped["has_more"], true, "{name}");

        // After a cursor: only what changed since.
        let registered = step(&reader, pushed[3], json!({"action": "register"}), name);
        let (after, end2) = pull_pages(&reader, end, 3, name);
        assert_eq!(after.len(), 1, "{name}: {after:?}");
        assert_eq!(id_of(&after[0]), pushed[3], "{name}");
        assert_eq!(after[0]["data"]["state"], "registered", "{name}");
        assert_eq!(after[0]["data"], registered, "{name}: the pulled case is the case");

        // Several changes to one case land in one page once, as its last state.
        step(&reader, pushed[3], json!({"action": "dispatch", "assignee": "worker1"}), name);
        step(&reader, pushed[5], json!({"action": "register"}), name);
        step(&worker, pushed[3], json!({"action": "start"}), name);
        let last = step(&worker, pushed[3], json!({"action": "handle", "note": "已清理"}), name);
        let burst = page(&reader, end2, 50, name);
        let changes = burst["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 2, "{name}: {burst}");
        assert_eq!(id_of(&changes[0]), pushed[5], "{name}: ordered by each case's last change");
        assert_eq!(id_of(&changes[1]), pushed[3], "{name}");
        assert_eq!(changes[1]["data"]["state"], "handled", "{name}");
        assert_eq!(changes[1]["data"]["version"], last["version"], "{name}");
        // With pages of one the same steps come one by one, each page holding one.
        let (one_by_one, _) = pull_pages(&reader, end2, 1, name);
        assert_eq!(one_by_one.len(), 4, "{name}: every change of the burst, each in its own page: {one_by_one:?}");
        assert_eq!(one_by_one.last().unwrap()["data"]["state"], "handled", "{name}");
    }
}

#[test]
fn scope_decides_who_sees_a_case_and_leaving_it_is_a_removal() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let volunteer = server.device("volunteer1");
        let supervisor = server.device("supervisor1");
        let worker1 = server.device("worker1");
        let worker2 = server.device("worker2");
        let dispatcher = server.device("dispatcher");
        let mut v = View::start(&volunteer, name);
        let mut s = View::start(&supervisor, name);
        let mut w1 = View::start(&worker1, name);
        let mut w2 = View::start(&worker2, name);
        let mut d = View::start(&dispatcher, name);

        // A volunteer's report waits for review (核实): the reporter, the grid's
        // supervisor and workers, and the command center see it.
        let (case, op) = report("0101", Some("G-001"), &[]);
        volunteer.push_ok(&[op]);
        let key = case.to_string();
        let seen = s.sync(&supervisor, name);
        assert_eq!(seen.len(), 1, "{name}: supervisor sees the volunteer's report");
        assert_eq!(seen[0]["data"]["state"], "pending_review", "{name}");
        assert_eq!(v.sync(&volunteer, name).len(), 1, "{name}: reporter");
        assert_eq!(d.sync(&dispatcher, name).len(), 1, "{name}: command center");
        assert_eq!(w1.sync(&worker1, name)[0]["data"]["state"], "pending_review", "{name}: the grid's worker reviews it");
        assert!(w2.sync(&worker2, name).is_empty(), "{name}: other grid");

        step(&supervisor, case, json!({"action": "register"}), name);
        assert_eq!(w1.sync(&worker1, name)[0]["data"]["state"], "registered", "{name}: the grid's worker sees every case of its grid");
        assert_eq!(v.sync(&volunteer, name)[0]["data"]["state"], "registered", "{name}");

        // Dispatched to worker1: now it is worker1's task.
        step(&dispatcher, case, json!({"action": "dispatch", "assignee": "worker1", "deadline_ms": 1_900_000_000_000i64}), name);
        let got = w1.sync(&worker1, name);
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(got[0]["op"], "upsert", "{name}");
        assert_eq!(got[0]["data"]["state"], "dispatched", "{name}");
        assert_eq!(got[0]["data"]["assignee"], "worker1", "{name}");
        assert!(w2.sync(&worker2, name).is_empty(), "{name}: worker2 sees nothing of G-001");

        // Handled and closed: still visible to its reporter and its assignee.
        step(&worker1, case, json!({"action": "start"}), name);
        step(&worker1, case, json!({"action": "handle", "note": "已清理"}), name);
        step(&supervisor, case, json!({"action": "close"}), name);
        for (view, device, who) in [(&mut v, &volunteer, "reporter"), (&mut w1, &worker1, "assignee"), (&mut s, &supervisor, "supervisor")] {
            let got = view.sync(device, name);
            assert_eq!(got.len(), 1, "{name}: {who}: {got:?}");
            assert_eq!(got[0]["op"], "upsert", "{name}: {who}");
            assert_eq!(got[0]["data"]["state"], "closed", "{name}: {who}");
        }
        assert!(w2.sync(&worker2, name).is_empty(), "{name}: worker2 still sees nothing");

        // 返工: reopened and dispatched to worker2 of the other grid.
        step(&supervisor, case, json!({"action": "reopen", "note": "未清理干净"}), name);
        step(&dispatcher, case, json!({"action": "dispatch", "assignee": "worker2"}), name);
        let got = w2.sync(&worker2, name);
        assert_eq!(got.len(), 1, "{name}: the new assignee sees it");
        assert_eq!(got[0]["data"]["assignee"], "worker2", "{name}");
        let got = w1.sync(&worker1, name);
        assert_eq!(got.len(), 1, "{name}: still a task of worker1's grid");
        assert_eq!(got[0]["op"], "upsert", "{name}");
        assert_eq!(got[0]["data"]["assignee"], "worker2", "{name}");

        // Closed by worker2's hand: worker1's grid keeps it (a grid's workers
        // verify its cases and count the closed ones), as do the others.
        step(&worker2, case, json!({"action": "handle", "note": "已处理"}), name);
        step(&dispatcher, case, json!({"action": "close", "rating": 4}), name);
        for (view, device, who) in
            [(&mut v, &volunteer, "reporter"), (&mut w1, &worker1, "grid worker"), (&mut w2, &worker2, "assignee"), (&mut s, &supervisor, "supervisor"), (&mut d, &dispatcher, "center")]
        {
            let got = view.sync(device, name);
            assert_eq!(got.len(), 1, "{name}: {who}");
            assert_eq!(got[0]["op"], "upsert", "{name}: {who}");
            assert_eq!(got[0]["data"]["state"], "closed", "{name}: {who}");
            assert_eq!(got[0]["data"]["assignee"], "worker2", "{name}: {who}");
        }
        // A fresh device of worker1 gets it closed, with its rating and whole timeline.
        let (fresh, _) = pull_pages(&server.device("worker1"), 0, 50, name);
        let about: Vec<&Value> = fresh.iter().filter(|c| c["entity_id"] == key.as_str()).collect();
        let last = about.last().expect("worker1 sees the closed case");
        assert_eq!(last["data"]["state"], "closed", "{name}: {about:?}");
        assert_eq!(last["data"]["rating"], 4, "{name}");
        let actions: Vec<&str> = last["data"]["timeline"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["report", "register", "dispatch", "start", "handle", "close", "reopen", "dispatch", "handle", "close"], "{name}");

        // A duplicate merged into the first case stays visible to its reporter.
        let (duplicate, op) = report("0101", Some("G-001"), &[]);
        volunteer.push_ok(&[op]);
        step(&supervisor, duplicate, json!({"action": "merge", "merge_into": case}), name);
        let got = v.sync(&volunteer, name);
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(got[0]["data"]["state"], "merged", "{name}");
        assert_eq!(got[0]["data"]["merged_into"], key.as_str(), "{name}");
        assert_eq!(s.sync(&supervisor, name).len(), 1, "{name}");
        assert_eq!(w1.sync(&worker1, name)[0]["data"]["state"], "merged", "{name}: the grid's workers see how a review ended");
        assert!(w2.sync(&worker2, name).is_empty(), "{name}");

        // Dispatched across grids to worker2, who hands it back: it leaves
        // worker2's view (a removal); the grid's worker and supervisor keep it.
        let (task, op) = report("0602", Some("G-001"), &[]);
        supervisor.push_ok(&[op]);
        step(&dispatcher, task, json!({"action": "register"}), name);
        assert_eq!(w1.sync(&worker1, name)[0]["data"]["state"], "registered", "{name}");
        assert!(w2.sync(&worker2, name).is_empty(), "{name}: not worker2's grid");
        step(&dispatcher, task, json!({"action": "dispatch", "assignee": "worker2"}), name);
        let got = w2.sync(&worker2, name);
        assert_eq!((got.len(), &got[0]["data"]["assignee"]), (1, &json!("worker2")), "{name}");
        step(&worker2, task, json!({"action": "hand_back", "note": "不属本网格"}), name);
        let got = w2.sync(&worker2, name);
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(got[0]["op"], "remove", "{name}: handed back, it is no longer worker2's");
        assert_eq!(worker2.get(&format!("/v1/incidents/{task}")).status(), 404, "{name}: out of scope reads as absent");
        assert_eq!(w1.sync(&worker1, name)[0]["data"]["state"], "registered", "{name}: the grid's worker keeps it");
        assert_eq!(s.sync(&supervisor, name).len(), 1, "{name}: the supervisor keeps it");

        // Every view equals what each caller may list right now.
        for (view, device, who) in
            [(&mut v, &volunteer, "volunteer1"), (&mut s, &supervisor, "supervisor1"), (&mut w1, &worker1, "worker1"), (&mut w2, &worker2, "worker2"), (&mut d, &dispatcher, "dispatcher")]
        {
            view.sync(device, name);
            assert_views_match(view, device, &format!("{name}/{who}"));
        }
        assert_eq!(w1.cases.len(), 3, "{name}: worker1 keeps every case of its grid");
        assert_eq!(w2.cases.len(), 1, "{name}: worker2 keeps the case it handled");
    }
}

/// What a device assembled by pulling equals what the server lists for it.
fn assert_views_match(view: &View, device: &Device, label: &str) {
    let listed: Vec<Value> = device.get("/v1/incidents?limit=1000").json().unwrap();
    let listed: HashMap<String, Value> = listed.into_iter().map(|v| (v["id"].as_str().unwrap().to_owned(), v)).collect();
    let mut pulled: Vec<&String> = view.cases.keys().collect();
    let mut expected: Vec<&String> = listed.keys().collect();
    pulled.sort();
    expected.sort();
    assert_eq!(pulled, expected, "{label}: pulled cases differ from the server's");
    for (id, case) in &listed {
        assert_eq!(view.cases[id]["version"], case["version"], "{label}: {id} version");
        assert_eq!(view.cases[id]["state"], case["state"], "{label}: {id} state");
    }
}

#[test]
fn concurrent_pushes_while_pulling_skip_no_change() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let readers = [server.device("dispatcher"), server.device("supervisor1"), server.device("worker1")];
        let done = AtomicBool::new(false);
        let views: Vec<View> = std::thread::scope(|scope| {
            let pullers: Vec<_> = readers
                .iter()
                .map(|reader| {
                    let done = &done;
                    scope.spawn(move || {
                        let mut view = View { cursor: 0, cases: HashMap::new() };
                        let mut rounds = 0;
                        while !done.load(Ordering::Acquire) {
                            view.sync(reader, name);
                            rounds += 1;
                        }
                        view.sync(reader, name);
                        (view, rounds)
                    })
                })
                .collect();

            let pushers: Vec<_> = ["worker1", "worker1", "worker2", "volunteer1", "supervisor1"]
                .into_iter()
                .enumerate()
                .map(|(n, user)| {
                    let server = &server;
                    scope.spawn(move || {
                        let device = server.device(user);
                        for i in 0..12 {
                            let grid = if (n + i) % 3 == 0 { "G-002" } else { "G-001" };
                            let batch: Vec<_> = (0..1 + (i % 3)).map(|_| report("0602", Some(grid), &[]).1).collect();
                            for result in device.push_ok(&batch) {
                                assert_eq!(result["status"], "applied", "{name}: {result}");
                            }
                        }
                    })
                })
                .collect();

            // The command center works cases through to closed meanwhile, so
            // the workers' views gain and lose tasks.
            let center = scope.spawn(|| {
                let device = server.device("dispatcher");
                for i in 0..10 {
                    let (id, op) = report("0101", Some("G-001"), &[]);
                    device.push_ok(&[op]);
                    let mut steps = vec![json!({"action": "register"}), json!({"action": "dispatch", "department": "市政"})];
                    if i % 2 == 0 {
                        steps.push(json!({"action": "handle", "note": "done"}));
                        steps.push(json!({"action": "close"}));
                    }
                    for body in steps {
                        let ops = vec![transition_op(id, body)];
                        assert_eq!(device.push_ok(&ops)[0]["status"], "applied", "{name}");
                    }
                }
            });

            for pusher in pushers {
                pusher.join().unwrap();
            }
            center.join().unwrap();
            done.store(true, Ordering::Release);
            pullers
                .into_iter()
                .map(|p| {
                    let (view, rounds) = p.join().unwrap();
                    assert!(rounds > 1, "{name}: pulled while pushing");
                    view
                })
                .collect()
        });

        for (view, (reader, who)) in views.iter().zip(readers.iter().zip(["dispatcher", "supervisor1", "worker1"])) {
            assert_views_match(view, reader, &format!("{name}/{who}"));
        }
        let total = server.db.read(|tx| Ok(tx.query_one("SELECT COUNT(*) FROM incidents", &[])?.int(0))).unwrap();
        assert_eq!(views[0].cases.len() as i64, total, "{name}: the command center pulled every case");
        assert_eq!(views[2].cases.values().filter(|c| c["state"] == "dispatched").count(), 5, "{name}: worker1's open tasks");
    }
}

/// A street's worker with 300 grids has more audience keys (two per grid)
/// than SQLite allows terms in one compound SELECT: the pull reads them in
/// groups and merges, and sees exactly what a one-grid colleague sees of
/// that grid, in order, across pages.
#[test]
fn a_caller_with_hundreds_of_grids_pulls_like_anyone_else() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        // Codes that sort before G-001, so its keys fall in a later group.
        let mut grids: Vec<String> = (0..299).map(|i| format!("A-{i:03}")).collect();
        grids.push("G-001".into());
        let grid_refs: Vec<&str> = grids.iter().map(String::as_str).collect();
        server.add_user("street1", gridwork_protocol::api::Role::GridWorker, &grid_refs);
        let worker = server.device("worker1");
        let ids: Vec<Uuid> = (0..5)
            .map(|_| {
                let (id, op) = report("0602", Some("G-001"), &[]);
                assert_eq!(worker.push_ok(&[op])[0]["status"], "applied", "{name}");
                id
            })
            .collect();

        let cases = |changes: &[Value]| -> Vec<String> {
            changes.iter().filter(|c| c["entity_kind"] == "incident").map(|c| c["entity_id"].as_str().unwrap().to_owned()).collect()
        };
        let (wide, _) = pull_pages(&server.device("street1"), 0, 3, name);
        let (narrow, _) = pull_pages(&server.device("worker1"), 0, 3, name);
        let expected: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        assert_eq!(cases(&wide), expected, "{name}: every case of G-001, once, in order");
        assert_eq!(cases(&wide), cases(&narrow), "{name}");
    }
}

/// A push reply echoes what the push changed, as the caller would pull it;
/// a pull that skips the echoed span leaves exactly those changes out and
/// moves its cursor past them; a malformed span list is refused.
#[test]
fn a_push_echoes_its_changes_and_pull_skips_them() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let (_, start) = pull_pages(&worker, 0, 100, name);
        // Someone else's report first: committed before the push, so the
        // push's echo may carry it too (it is what pull would bring).
        let (theirs, op) = report("0602", Some("G-001"), &[]);
        server.device("supervisor1").push_ok(&[op]);
        let (mine, ops): (Vec<Uuid>, Vec<_>) = (0..3).map(|_| report("0602", Some("G-001"), &[])).unzip();
        let reply: Value = worker.push(&ops).json().unwrap();
        let echo = &reply["echo"];
        let (after, until) = (echo["span"]["after"].as_i64().unwrap(), echo["span"]["until"].as_i64().unwrap());
        let echoed: Vec<Uuid> = echo["changes"].as_array().unwrap().iter().map(id_of).collect();
        assert!(after >= start && until > after, "{name}: {echo}");
        for id in &mine {
            assert!(echoed.contains(id), "{name}: the push's own report {id} is echoed: {echo}");
        }
        // The echo is what pull brings for the span, view for view.
        let pulled = page(&worker, after, 100, name);
        let in_span: Vec<&Value> = pulled["changes"].as_array().unwrap().iter().filter(|c| c["cursor"].as_i64().unwrap() <= until).collect();
        assert_eq!(in_span.len(), echoed.len(), "{name}");
        for (pulled, echoed) in in_span.iter().zip(echo["changes"].as_array().unwrap()) {
            assert_eq!(*pulled, echoed, "{name}");
        }

        // Skipping the span: nothing of it comes again, and the cursor moves past it.
        let skipping = |since: i64| -> Value { worker.get(&format!("/v1/pull?since={since}&skip={after}-{until}")).json().unwrap() };
        let skipped = skipping(start);
        let ids: Vec<Uuid> = skipped["changes"].as_array().unwrap().iter().map(id_of).collect();
        for id in &mine {
            assert!(!ids.contains(id), "{name}: {skipped}");
        }
        assert_eq!(ids.contains(&theirs), !echoed.contains(&theirs), "{name}: the other report comes once, by echo or by pull");
        assert_eq!(skipped["next_cursor"], json!(until), "{name}: past the skipped span: {skipped}");
        // A later change is still pulled past a skipped span.
        step(&server.device("dispatcher"), mine[1], json!({"action": "register"}), name);
        let later = skipping(until);
        assert_eq!(later["changes"].as_array().unwrap().iter().map(id_of).collect::<Vec<_>>(), vec![mine[1]], "{name}: {later}");
        assert_eq!(later["changes"][0]["data"]["state"], "registered", "{name}");
        // A span beyond the log's end does not move the cursor into the future.
        let end = later["next_cursor"].as_i64().unwrap();
        let ahead: Value = worker.get(&format!("/v1/pull?since={end}&skip={end}-{}", end + 1000)).json().unwrap();
        assert_eq!(ahead["next_cursor"], json!(end), "{name}: {ahead}");

        // A hostile span (the whole range of cursors) is clamped: the reply
        // is an ordinary one and the cursor stops at the log's end.
        let everything: Value = worker.get(&format!("/v1/pull?since={end}&skip=0-{}", i64::MAX)).json().unwrap();
        assert_eq!((everything["changes"].clone(), everything["next_cursor"].clone()), (json!([]), json!(end)), "{name}: {everything}");

        // Only duplicates: nothing applied, nothing echoed.
        let again: Value = worker.push(&ops).json().unwrap();
        assert!(again.get("echo").is_none(), "{name}: {again}");

        for bad in ["5-5", "a-b", "1-2,", &vec!["1-2"; 33].join(",")] {
            let response = worker.get(&format!("/v1/pull?since=0&skip={bad}"));
            assert_eq!(response.status(), 400, "{name}: skip={bad}");
            assert_eq!(response.json::<Value>().unwrap()["code"], "invalid_query", "{name}");
        }
    }
}

/// Devices pushing at once: each echo holds only its own push's changes
/// (the push takes the change log before it reads where the log ends, so
/// another device's commit cannot fall inside its span).
#[test]
fn concurrent_pushes_each_echo_only_their_own_changes() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let devices: Vec<Device> = ["worker1", "supervisor1", "dispatcher", "worker1"].iter().map(|user| server.device(user)).collect();
        std::thread::scope(|scope| {
            for device in &devices {
                scope.spawn(move || {
                    for _ in 0..8 {
                        let (ids, ops): (Vec<Uuid>, Vec<_>) = (0..3).map(|_| report("0602", Some("G-001"), &[])).unzip();
                        let reply: Value = device.push(&ops).json().unwrap();
                        let echoed: Vec<Uuid> = reply["echo"]["changes"].as_array().unwrap().iter().map(id_of).collect();
                        assert_eq!(echoed, ids, "{name}: an echo holds its push's reports and nothing else");
                        let span = &reply["echo"]["span"];
                        assert_eq!(span["until"].as_i64().unwrap() - span["after"].as_i64().unwrap(), 3, "{name}: {span}");
                    }
                });
            }
        });
    }
}
