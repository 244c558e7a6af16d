//! The case workflow over real HTTP (POST /v1/incidents/{id}/transitions)
//! and through push (`transition_incident` operations): every step allowed
//! and refused as GB/T 30428's closed loop and the roles say, each step in
//! the timeline with its actor, states and note, each bumping the version.

mod common;

use common::*;
use gridwork_protocol::PhotoRef;
use serde_json::{Value, json};
use uuid::Uuid;

const STATES: [&str; 12] = [
    "reported",
    "pending_review",
    "registered",
    "rejected",
    "merged",
    "dispatched",
    "in_progress",
    "handled",
    "closed",
    "reopened",
    "signed",
    "info_requested",
];
const ACTIONS: [&str; 13] =
    ["register", "reject", "merge", "dispatch", "start", "handle", "close", "reopen", "sign", "hand_back", "ask_info", "answer", "note"];
/// The only (state, action) pairs that are transitions.
const VALID: [(&str, &str); 33] = [
    ("pending_review", "ask_info"),
    ("info_requested", "answer"),
    ("info_requested", "register"),
    ("info_requested", "reject"),
    ("info_requested", "merge"),
    ("dispatched", "note"),
    ("signed", "note"),
    ("in_progress", "note"),
    ("reopened", "note"),
    ("dispatched", "sign"),
    ("reopened", "sign"),
    ("signed", "start"),
    ("signed", "handle"),
    ("dispatched", "hand_back"),
    ("signed", "hand_back"),
    ("in_progress", "hand_back"),
    ("reopened", "hand_back"),
    ("reported", "register"),
    ("pending_review", "register"),
    ("reported", "reject"),
    ("pending_review", "reject"),
    ("reported", "merge"),
    ("pending_review", "merge"),
    ("registered", "merge"),
    ("registered", "dispatch"),
    ("reopened", "dispatch"),
    ("dispatched", "start"),
    ("reopened", "start"),
    ("dispatched", "handle"),
    ("in_progress", "handle"),
    ("handled", "close"),
    ("handled", "reopen"),
    ("closed", "reopen"),
];

/// Take a step that must succeed; returns the case as the reply shows it.
fn ok(device: &Device, id: Uuid, body: Value, state: &str, backend: &str) -> Value {
    let response = device.transition(id, body.clone());
    let status = response.status();
    let text = response.text().unwrap();
    assert_eq!(status, 200, "{backend}: {body} should succeed: {text}");
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["state"], state, "{backend}: {body}");
    view
}

/// Take a step that must be refused; returns (HTTP status, code).
fn refused(device: &Device, id: Uuid, body: Value) -> (u16, String) {
    let response = device.transition(id, body);
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap();
    (status, body["code"].as_str().unwrap_or("").to_owned())
}

fn incident(device: &Device, id: Uuid) -> Value {
    let response = device.get(&format!("/v1/incidents/{id}"));
    assert_eq!(response.status(), 200);
    response.json().unwrap()
}

fn timeline(device: &Device, id: Uuid) -> Vec<Value> {
    let response = device.get(&format!("/v1/incidents/{id}/timeline"));
    assert_eq!(response.status(), 200);
    response.json().unwrap()
}

/// (action, actor, from, to, note) of each timeline entry.
fn steps(entries: &[Value]) -> Vec<(String, String, Value, String, Value)> {
    entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["actor"].as_str().unwrap().to_owned(), e["from_state"].clone(), e["to_state"].as_str().unwrap().to_owned(), e["note"].clone()))
        .collect()
}

fn entry(action: &str, actor: &str, from: Option<&str>, to: &str, note: Option<&str>) -> (String, String, Value, String, Value) {
    (action.to_owned(), actor.to_owned(), json!(from), to.to_owned(), json!(note))
}

fn submit(device: &Device, grid: &str) -> Uuid {
    let (id, op) = report("0101", Some(grid), &[]);
    assert_eq!(device.push_ok(&[op])[0]["status"], "applied");
    id
}

fn after_photo(bytes: &[u8]) -> PhotoRef {
    PhotoRef {
        photo_id: Uuid::now_v7(),
        sha256: sha256_hex(bytes),
        byte_size: bytes.len() as u64,
        mime_type: "image/jpeg".into(),
        width: 10,
        height: 10,
        taken_at_ms: None,
        location: None,
        dhash: "0000000000000000".into(),
    }
}

#[test]
fn the_closed_loop_over_http() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let reporter = server.device("supervisor1");
        let center = server.device("dispatcher");
        let worker = server.device("worker1");
        let id = submit(&reporter, "G-001");
        assert_eq!(incident(&center, id)["state"], "reported", "{name}");

        let deadline = 1_900_000_000_000i64;
        let after = photo_bytes(11, 4_000);
        let mut version = 1;
        let loop_steps: Vec<(&Device, Value, &str)> = vec![
            (&center, json!({"action": "register", "note": "立案"}), "registered"),
            (&center, json!({"action": "dispatch", "assignee": "worker1", "deadline_ms": deadline, "note": "请今日处理"}), "dispatched"),
            (&worker, json!({"action": "start"}), "in_progress"),
            (&worker, json!({"action": "handle", "note": "已清理", "photos": [after_photo(&after)]}), "handled"),
            (&center, json!({"action": "reopen", "note": "复核未通过"}), "reopened"),
            (&worker, json!({"action": "start"}), "in_progress"),
            (&worker, json!({"action": "handle", "note": "二次清理"}), "handled"),
            (&center, json!({"action": "close", "note": "核查通过"}), "closed"),
        ];
        for (device, body, state) in loop_steps {
            let view = ok(device, id, body.clone(), state, name);
            version += 1;
            assert_eq!(view["version"], version, "{name}: {body} bumps the version");
            assert_eq!(view, incident(device, id), "{name}: the reply is the case");
            if body["action"] == "dispatch" {
                assert_eq!(view["assignee"], "worker1", "{name}");
                assert_eq!(view["deadline_ms"], deadline, "{name}");
            }
            if body["action"] == "handle" && body["photos"].is_array() {
                let photos = view["photos"].as_array().unwrap();
                assert_eq!(photos.len(), 1, "{name}");
                assert_eq!(photos[0]["role"], "after", "{name}");
                assert_eq!(photos[0]["sha256"], sha256_hex(&after).as_str(), "{name}");
                assert_eq!(photos[0]["arrived"], false, "{name}");
                assert_eq!(view["missing_evidence"], true, "{name}: the after-photo is announced, not uploaded");
            }
        }
        let closed = incident(&center, id);
        assert_eq!(closed["assignee"], "worker1", "{name}");
        assert_eq!(closed["version"], 9, "{name}");

        assert_eq!(
            steps(&timeline(&center, id)),
            [
                entry("report", "supervisor1", None, "reported", None),
                entry("register", "dispatcher", Some("reported"), "registered", Some("立案")),
                entry("dispatch", "dispatcher", Some("registered"), "dispatched", Some("请今日处理")),
                entry("start", "worker1", Some("dispatched"), "in_progress", None),
                entry("handle", "worker1", Some("in_progress"), "handled", Some("已清理")),
                entry("reopen", "dispatcher", Some("handled"), "reopened", Some("复核未通过")),
                entry("start", "worker1", Some("reopened"), "in_progress", None),
                entry("handle", "worker1", Some("in_progress"), "handled", Some("二次清理")),
                entry("close", "dispatcher", Some("handled"), "closed", Some("核查通过")),
            ],
            "{name}"
        );
        let seqs: Vec<i64> = timeline(&reporter, id).iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{name}: timeline in order: {seqs:?}");

        // The assignee uploads the after-photo; the case's evidence is complete.
        let sha = sha256_hex(&after);
        assert_eq!(worker.post("/v1/blobs", &json!({"sha256": sha, "size": after.len()})).status(), 201, "{name}");
        assert_eq!(worker.put_chunk(&sha, 0, &after).status(), 200, "{name}");
        let done = incident(&center, id);
        assert_eq!(done["missing_evidence"], false, "{name}");
        assert_eq!(done["photos"][0]["arrived"], true, "{name}");
        assert_eq!(done["state"], "closed", "{name}");
        assert_eq!(timeline(&center, id).last().unwrap()["action"], "photo_arrived", "{name}");
    }
}

#[test]
fn review_and_dispatch_refusals_have_stable_codes() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let volunteer = server.device("volunteer1");
        let supervisor = server.device("supervisor1");
        let center = server.device("dispatcher");
        let worker1 = server.device("worker1");
        let worker2 = server.device("worker2");

        // A volunteer's report waits for review.
        let pending = submit(&volunteer, "G-001");
        let case = incident(&volunteer, pending);
        assert_eq!(case["state"], "pending_review", "{name}");
        assert_eq!(case["reporter_role"], "volunteer", "{name}");
        assert_eq!(refused(&volunteer, pending, json!({"action": "register"})), (403, "forbidden".into()), "{name}: volunteers do not review");
        assert_eq!(refused(&worker1, pending, json!({"action": "start"})), (409, "invalid_transition".into()), "{name}: the grid's worker sees it (核实)");
        assert_eq!(refused(&worker2, pending, json!({"action": "reject", "note": "x"})), (404, "not_found".into()), "{name}: other grid");

        // Reject needs a note.
        assert_eq!(refused(&supervisor, pending, json!({"action": "reject"})), (400, "note_required".into()), "{name}");
        assert_eq!(refused(&supervisor, pending, json!({"action": "reject", "note": "   "})), (400, "note_required".into()), "{name}: blank note");
        assert_eq!(refused(&supervisor, pending, json!({"action": "reject", "note": "bad\u{0}"})), (400, "text_control_character".into()), "{name}");
        // Unknown actions, photos on a step that carries none.
        assert_eq!(refused(&supervisor, pending, json!({"action": "teleport"})), (400, "unknown_action".into()), "{name}");
        assert_eq!(refused(&supervisor, pending, json!({"action": "Register"})), (400, "unknown_action".into()), "{name}");
        let photo = after_photo(b"photo");
        assert_eq!(refused(&supervisor, pending, json!({"action": "register", "photos": [photo]})), (400, "invalid_payload".into()), "{name}");
        // Merge needs another, unmerged case.
        assert_eq!(refused(&supervisor, pending, json!({"action": "merge"})), (400, "merge_target_required".into()), "{name}");
        assert_eq!(refused(&supervisor, pending, json!({"action": "merge", "merge_into": pending})), (400, "invalid_merge_target".into()), "{name}");
        assert_eq!(refused(&supervisor, pending, json!({"action": "merge", "merge_into": Uuid::now_v7()})), (400, "invalid_merge_target".into()), "{name}");
        // Nothing refused left a trace.
        assert_eq!(incident(&supervisor, pending)["version"], 1, "{name}: refusals do not bump the version");
        assert_eq!(timeline(&supervisor, pending).len(), 1, "{name}: refusals are not in the timeline");

        let rejected = ok(&supervisor, pending, json!({"action": "reject", "note": "非本网格事项"}), "rejected", name);
        assert_eq!(rejected["version"], 2, "{name}");
        assert_eq!(timeline(&volunteer, pending).last().unwrap()["note"], "非本网格事项", "{name}: the reporter sees why");

        // Merge a duplicate into a live case; nothing merges into a merged one.
        let original = submit(&volunteer, "G-001");
        let duplicate = submit(&volunteer, "G-001");
        let merged = ok(&supervisor, duplicate, json!({"action": "merge", "merge_into": original, "note": "重复上报"}), "merged", name);
        assert_eq!(merged["merged_into"], json!(original), "{name}");
        let third = submit(&volunteer, "G-001");
        assert_eq!(refused(&supervisor, third, json!({"action": "merge", "merge_into": duplicate})), (400, "invalid_merge_target".into()), "{name}");

        // A supervisor elsewhere may not review.
        let far = submit(&worker2, "G-002");
        assert_eq!(refused(&supervisor, far, json!({"action": "register"})), (404, "not_found".into()), "{name}: out of sight");

        // Dispatch: the command center's alone, to a worker or a department.
        ok(&supervisor, original, json!({"action": "register"}), "registered", name);
        assert_eq!(refused(&supervisor, original, json!({"action": "dispatch", "assignee": "worker1"})), (403, "forbidden".into()), "{name}");
        assert_eq!(refused(&center, original, json!({"action": "dispatch"})), (400, "assignee_required".into()), "{name}");
        assert_eq!(refused(&center, original, json!({"action": "dispatch", "department": "  "})), (400, "assignee_required".into()), "{name}");
        assert_eq!(refused(&center, original, json!({"action": "dispatch", "assignee": "nobody"})), (400, "unknown_assignee".into()), "{name}");
        assert_eq!(refused(&center, original, json!({"action": "dispatch", "assignee": "volunteer1"})), (400, "unknown_assignee".into()), "{name}: volunteers take no tasks");
        assert_eq!(refused(&center, original, json!({"action": "dispatch", "assignee": "dispatcher"})), (400, "unknown_assignee".into()), "{name}");
        assert_eq!(incident(&center, original)["version"], 2, "{name}");
        let dispatched = ok(&center, original, json!({"action": "dispatch", "department": "城管中队"}), "dispatched", name);
        assert_eq!(dispatched["department"], "城管中队", "{name}");
        assert!(dispatched.get("assignee").is_none(), "{name}: {dispatched}");

        // Only the assignee (or the center) works a task; handle needs a note.
        assert_eq!(refused(&worker1, original, json!({"action": "start"})), (403, "forbidden".into()), "{name}: not worker1's task");
        assert_eq!(refused(&supervisor, original, json!({"action": "handle", "note": "x"})), (403, "forbidden".into()), "{name}");
        assert_eq!(refused(&center, original, json!({"action": "handle"})), (400, "note_required".into()), "{name}");
        ok(&center, original, json!({"action": "handle", "note": "城管已处置"}), "handled", name);
        assert_eq!(refused(&worker2, original, json!({"action": "close"})), (404, "not_found".into()), "{name}: a worker of another grid does not even see it");
        assert_eq!(refused(&volunteer, original, json!({"action": "close"})), (403, "forbidden".into()), "{name}: nor do reporters");
        assert_eq!(refused(&supervisor, original, json!({"action": "close", "rating": 6})), (400, "invalid_rating".into()), "{name}");
        assert_eq!(refused(&supervisor, original, json!({"action": "reopen", "note": "n", "rating": 3})), (400, "invalid_payload".into()), "{name}: only a close rates");
        assert_eq!(refused(&supervisor, original, json!({"action": "reopen"})), (400, "note_required".into()), "{name}: a rework says why");
        let closed = ok(&worker1, original, json!({"action": "close", "rating": 2, "note": "基本处理"}), "closed", name);
        assert_eq!(closed["rating"], 2, "{name}: a worker of the grid verifies on site and rates");

        // Ids.
        assert_eq!(refused(&center, Uuid::now_v7(), json!({"action": "register"})), (404, "not_found".into()), "{name}");
        let bad_id = center.post("/v1/incidents/not-a-uuid/transitions", &json!({"action": "register"}));
        assert_eq!(bad_id.status(), 400, "{name}");
        assert_eq!(bad_id.json::<Value>().unwrap()["code"], "invalid_id", "{name}");
        let no_action = center.post(&format!("/v1/incidents/{original}/transitions"), &json!({"note": "x"}));
        assert_eq!(no_action.status(), 400, "{name}");
        assert_eq!(no_action.json::<Value>().unwrap()["code"], "invalid_request", "{name}");
    }
}

#[test]
fn every_invalid_state_action_pair_is_refused() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let center = server.device("dispatcher");
        let reporter = server.device("supervisor1");
        let volunteer = server.device("volunteer1");
        let target = submit(&reporter, "G-001");

        // One case in each state, brought there by the command center.
        let path: [(&str, &[Value]); 12] = [
            ("reported", &[]),
            ("pending_review", &[]),
            ("registered", &[json!({"action": "register"})]),
            ("rejected", &[json!({"action": "reject", "note": "不予立案"})]),
            ("merged", &[json!({"action": "merge", "merge_into": target})]),
            ("dispatched", &[json!({"action": "register"}), json!({"action": "dispatch", "assignee": "worker1"})]),
            ("in_progress", &[json!({"action": "register"}), json!({"action": "dispatch", "assignee": "worker1"}), json!({"action": "start"})]),
            ("handled", &[json!({"action": "register"}), json!({"action": "dispatch", "assignee": "worker1"}), json!({"action": "handle", "note": "ok"})]),
            (
                "closed",
                &[json!({"action": "register"}), json!({"action": "dispatch", "assignee": "worker1"}), json!({"action": "handle", "note": "ok"}), json!({"action": "close"})],
            ),
            (
                "reopened",
                &[json!({"action": "register"}), json!({"action": "dispatch", "assignee": "worker1"}), json!({"action": "handle", "note": "ok"}), json!({"action": "reopen", "note": "返工"})],
            ),
            ("signed", &[json!({"action": "register"}), json!({"action": "dispatch", "assignee": "worker1"}), json!({"action": "sign"})]),
            ("info_requested", &[json!({"action": "ask_info", "note": "请补充照片"})]),
        ];
        let mut refusals = 0;
        for (state, steps) in path {
            let id = if matches!(state, "pending_review" | "info_requested") { submit(&volunteer, "G-001") } else { submit(&reporter, "G-001") };
            for body in steps {
                let reply = center.transition(id, body.clone());
                assert_eq!(reply.status(), 200, "{name}: reaching {state} with {body}: {}", reply.text().unwrap());
            }
            let case = incident(&center, id);
            assert_eq!(case["state"], state, "{name}");
            let version = case["version"].clone();
            for action in ACTIONS {
                if VALID.contains(&(state, action)) {
                    continue;
                }
                // A body that would satisfy every action's needs.
                let body = json!({"action": action, "note": "n", "assignee": "worker1", "department": "d", "merge_into": target});
                assert_eq!(refused(&center, id, body), (409, "invalid_transition".into()), "{name}: {action} on a {state} case");
                refusals += 1;
            }
            let after = incident(&center, id);
            assert_eq!(after["version"], version, "{name}: refusals leave {state} untouched");
            assert_eq!(after["state"], state, "{name}");
        }
        assert_eq!(refusals, STATES.len() * ACTIONS.len() - VALID.len(), "{name}: every invalid pair tried");
    }
}

#[test]
fn the_same_steps_through_push_apply_once_and_replay_as_duplicates() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let reporter = server.device("supervisor1");
        let center = server.device("dispatcher");
        let worker = server.device("worker1");
        let id = submit(&reporter, "G-001");
        let deadline = 1_900_000_000_000i64;

        let batches: Vec<(&Device, Vec<gridwork_protocol::OperationEnvelope>)> = vec![
            (
                &center,
                vec![
                    transition_op(id, json!({"action": "register", "note": "立案"})),
                    transition_op(id, json!({"action": "dispatch", "assignee": "worker1", "deadline_ms": deadline})),
                ],
            ),
            (
                &worker,
                vec![
                    transition_op(id, json!({"action": "start"})),
                    transition_op(id, json!({"action": "handle", "note": "已清理", "photos": [after_photo(b"after")]})),
                ],
            ),
            (&center, vec![transition_op(id, json!({"action": "reopen", "note": "返工"}))]),
            (&worker, vec![transition_op(id, json!({"action": "start"})), transition_op(id, json!({"action": "handle", "note": "再次清理"}))]),
            (&reporter, vec![transition_op(id, json!({"action": "close", "note": "核查通过"}))]),
        ];
        let mut version = 1;
        for (device, ops) in &batches {
            let results = device.push_ok(ops);
            for (op, result) in ops.iter().zip(&results) {
                version += 1;
                assert_eq!(result["op_id"], json!(op.op_id), "{name}");
                assert_eq!(result["status"], "applied", "{name}: {}: {result}", op.payload);
                assert_eq!(result["entity_version"], version, "{name}: {}", op.payload);
            }
        }
        let case = incident(&center, id);
        assert_eq!(case["state"], "closed", "{name}");
        assert_eq!(case["version"], 9, "{name}");
        assert_eq!(case["deadline_ms"], deadline, "{name}");
        assert_eq!(case["photos"][0]["role"], "after", "{name}");

        // Every batch again (lost replies): the first outcomes, no effect.
        let mut version = 1;
        for (device, ops) in &batches {
            for result in device.push_ok(ops) {
                version += 1;
                assert_eq!(result["status"], "duplicate", "{name}: {result}");
                assert_eq!(result["first"]["status"], "applied", "{name}");
                assert_eq!(result["first"]["entity_version"], version, "{name}");
            }
        }
        assert_eq!(incident(&center, id)["version"], 9, "{name}: replays change nothing");
        let entries = timeline(&center, id);
        assert_eq!(
            steps(&entries),
            [
                entry("report", "supervisor1", None, "reported", None),
                entry("register", "dispatcher", Some("reported"), "registered", Some("立案")),
                entry("dispatch", "dispatcher", Some("registered"), "dispatched", None),
                entry("start", "worker1", Some("dispatched"), "in_progress", None),
                entry("handle", "worker1", Some("in_progress"), "handled", Some("已清理")),
                entry("reopen", "dispatcher", Some("handled"), "reopened", Some("返工")),
                entry("start", "worker1", Some("reopened"), "in_progress", None),
                entry("handle", "worker1", Some("in_progress"), "handled", Some("再次清理")),
                entry("close", "supervisor1", Some("handled"), "closed", Some("核查通过")),
            ],
            "{name}"
        );

        // Refusals through push are per-op results; a resend is judged afresh
        // (a rejection had no effect) and here is refused again.
        let invalid = transition_op(id, json!({"action": "start"}));
        let unknown = transition_op(id, json!({"action": "teleport"}));
        let reopen = transition_op(id, json!({"action": "reopen", "note": "返工"}));
        let mut mismatched = transition_op(id, json!({"action": "reopen", "note": "x"}));
        mismatched.entity_id = Uuid::now_v7();
        let ops = vec![invalid, unknown, mismatched];
        let results = worker.push_ok(&ops);
        let codes: Vec<&str> = results.iter().map(|r| r["code"].as_str().unwrap()).collect();
        assert!(results.iter().all(|r| r["status"] == "rejected"), "{name}: {results:?}");
        assert_eq!(codes, ["invalid_transition", "unknown_action", "invalid_payload"], "{name}");
        let again = worker.push_ok(&ops);
        let again_codes: Vec<&str> = again.iter().map(|r| r["code"].as_str().unwrap()).collect();
        assert!(again.iter().all(|r| r["status"] == "rejected"), "{name}: {again:?}");
        assert_eq!(again_codes, codes, "{name}");
        // A worker elsewhere cannot see it; reopening needs the role.
        let outsider = server.device("worker2");
        assert_eq!(outsider.push_ok(&[transition_op(id, json!({"action": "reopen", "note": "x"}))])[0]["code"], "not_found", "{name}");
        assert_eq!(worker.push_ok(std::slice::from_ref(&reopen))[0]["code"], "forbidden", "{name}: workers do not reopen");
        let reopened = center.push_ok(&[reopen])[0].clone();
        assert_eq!(reopened["status"], "applied", "{name}: the same op id from another device is that device's op");
        assert_eq!(incident(&center, id)["state"], "reopened", "{name}");
        assert_eq!(timeline(&center, id).len(), 10, "{name}");
    }
}

#[test]
fn a_workers_own_report_can_be_dispatched_back_to_them() {
    // The everyday case: a grid worker reports, the command center registers
    // it and dispatches it back to the same worker, who fixes it.
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let center = server.device("dispatcher");
        let id = submit(&worker, "G-001");
        ok(&center, id, json!({"action": "register"}), "registered", name);
        let dispatched = ok(&center, id, json!({"action": "dispatch", "assignee": "worker1"}), "dispatched", name);
        assert_eq!(dispatched["assignee"], "worker1", "{name}");
        assert_eq!(dispatched["reporter"], "worker1", "{name}");
        ok(&worker, id, json!({"action": "start"}), "in_progress", name);
        ok(&worker, id, json!({"action": "handle", "note": "已处理"}), "handled", name);
        ok(&center, id, json!({"action": "close"}), "closed", name);
        assert_eq!(timeline(&worker, id).len(), 6, "{name}");
    }
}

#[test]
fn a_dispatch_back_to_the_reporter_through_push_is_a_per_op_result() {
    // The same through push, for a supervisor taking their own report: each
    // operation gets its own result; the batch as a whole never fails.
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let center = server.device("dispatcher");
        let supervisor = server.device("supervisor1");
        let own = submit(&supervisor, "G-001");
        let ops = [transition_op(own, json!({"action": "register"})), transition_op(own, json!({"action": "dispatch", "assignee": "supervisor1"}))];
        let response = center.push(&ops);
        let status = response.status();
        let body: Value = response.json().unwrap();
        assert_eq!(status, 200, "{name}: push answers per operation: {body}");
        assert_eq!(body["results"][0]["status"], "applied", "{name}");
        assert_eq!(body["results"][1]["status"], "applied", "{name}: {body}");
        assert_eq!(incident(&supervisor, own)["assignee"], "supervisor1", "{name}");
    }
}

#[test]
fn figures_over_http_are_scoped_to_own_grids_and_self() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let center = server.device("dispatcher");
        let worker1 = server.device("worker1");
        let worker2 = server.device("worker2");
        let supervisor = server.device("supervisor1");
        let id = submit(&worker1, "G-001");
        ok(&center, id, json!({"action": "register"}), "registered", name);
        ok(&center, id, json!({"action": "dispatch", "assignee": "worker1", "deadline_ms": 1}), "dispatched", name);
        ok(&worker1, id, json!({"action": "handle", "note": "已处理"}), "handled", name);
        ok(&supervisor, id, json!({"action": "close", "rating": 3}), "closed", name);

        let figures = |device: &Device, query: &str| -> (u16, Value) {
            let response = device.get(&format!("/v1/stats?from_ms=0&to_ms=9999999999999&{query}"));
            (response.status().as_u16(), response.json().unwrap())
        };
        let (status, grid) = figures(&supervisor, "grid_code=G-001");
        assert_eq!(status, 200, "{name}: {grid}");
        assert_eq!((grid["reported"].as_u64(), grid["handled"].as_u64(), grid["closed"].as_u64(), grid["overdue"].as_u64()), (Some(1), Some(1), Some(1), Some(1)), "{name}: {grid}");
        assert_eq!(grid["average_rating"], 3.0, "{name}");
        let (status, mine) = figures(&worker1, "user=worker1");
        assert_eq!((status, mine["reported"].as_u64(), mine["handled"].as_u64(), mine["rated"].as_u64()), (200, Some(1), Some(1), Some(1)), "{name}: {mine}");
        assert_eq!(figures(&worker2, "grid_code=G-001").1["code"], "forbidden", "{name}: another grid's figures");
        assert_eq!(figures(&worker2, "user=worker1").1["code"], "forbidden", "{name}: another person's figures");
        assert_eq!(figures(&center, "user=worker1").0, 200, "{name}: the command center sees everyone's");
        assert_eq!(worker1.get("/v1/stats?grid_code=G-001").status(), 400, "{name}: a period is required");
    }
}
