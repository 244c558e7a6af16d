//! Push over real HTTP: per-operation results, exactly-once effect under
//! replay and under concurrent duplicates, refusals with stable codes.

mod common;

use common::*;
use gridwork_protocol::OperationKind;
use serde_json::json;

#[test]
fn a_report_is_applied_once_and_replays_as_duplicate() {
    for backend in backends() {
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let (id, op) = report("0602", Some("G-001"), &[]);
        let (id2, op2) = report("0101", Some("G-001"), &[]);
        let batch = vec![op.clone(), op2.clone()];
        let first = worker.push_ok(&batch);
        assert_eq!(first[0]["status"], "applied", "{}", backend.name());
        assert_eq!(first[0]["entity_version"], 1);
        assert_eq!(first[0]["op_id"], json!(op.op_id));
        assert_eq!(first[1]["status"], "applied");

        // The whole batch again (a lost response): every result replayed.
        let replay = worker.push_ok(&batch);
        for result in &replay {
            assert_eq!(result["status"], "duplicate", "{}", backend.name());
            assert_eq!(result["first"]["status"], "applied");
        }
        let incident: serde_json::Value = worker.get(&format!("/v1/incidents/{id}")).json().unwrap();
        assert_eq!(incident["state"], "reported");
        assert_eq!(incident["version"], 1, "applied once");
        assert_eq!(incident["reporter"], "worker1");
        let count = server.db.read(|tx| Ok(tx.query_one("SELECT COUNT(*) FROM incidents", &[])?.int(0))).unwrap();
        assert_eq!(count, 2);
        let timeline: Vec<serde_json::Value> = worker.get(&format!("/v1/incidents/{id2}/timeline")).json().unwrap();
        assert_eq!(timeline.len(), 1);
    }
}

#[test]
fn concurrent_pushes_of_the_same_op_apply_once() {
    for backend in backends() {
        let server = TestServer::with_cast(&backend);
        let worker = arc(server.device("worker1"));
        for _ in 0..5 {
            let (id, op) = report("0602", Some("G-001"), &[]);
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let worker = worker.clone();
                    let op = op.clone();
                    // Separate HTTP connections each.
                    std::thread::spawn(move || {
                        let client = reqwest::blocking::Client::new();
                        let response = client
                            .post(format!("{}/v1/push", worker.base))
                            .header(gridwork_protocol::api::DEVICE_ID_HEADER, &worker.id)
                            .bearer_auth(worker.token())
                            .json(&json!({"operations": [op]}))
                            .send()
                            .unwrap();
                        assert_eq!(response.status(), 200);
                        let body: serde_json::Value = response.json().unwrap();
                        body["results"][0]["status"].as_str().unwrap().to_owned()
                    })
                })
                .collect();
            let statuses: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            assert_eq!(statuses.iter().filter(|s| *s == "applied").count(), 1, "{}: {statuses:?}", backend.name());
            assert_eq!(statuses.iter().filter(|s| *s == "duplicate").count(), 3);
            let timeline = server
                .db
                .read(|tx| Ok(tx.query_one("SELECT COUNT(*) FROM timeline WHERE incident_id = $1", gridwork_server::params![id.to_string()])?.int(0)))
                .unwrap();
            assert_eq!(timeline, 1, "effect applied exactly once");
        }
    }
}

#[test]
fn refused_operations_carry_stable_codes_and_do_not_block_others() {
    for backend in backends() {
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let (_, good) = report("0602", Some("G-001"), &[]);
        let (_, unknown_category) = report("9999", Some("G-001"), &[]);
        let (_, mut future_schema) = report("0602", None, &[]);
        future_schema.schema_version = 99;
        let (existing_id, mut duplicate_entity) = report("0602", None, &[]);
        duplicate_entity.op_id = uuid::Uuid::now_v7();
        let mut nul = report("0602", None, &[]).1;
        nul.payload["description"] = json!("bad\u{0}text");
        let mut mismatched = report("0602", None, &[]).1;
        mismatched.entity_id = uuid::Uuid::now_v7();
        let upload = envelope(uuid::Uuid::now_v7(), OperationKind::UploadPhoto, json!({}));
        let results = worker.push_ok(&[good, unknown_category, future_schema, nul, mismatched, upload]);
        let codes: Vec<_> = results.iter().map(|r| r["code"].as_str().unwrap_or(r["status"].as_str().unwrap()).to_owned()).collect();
        assert_eq!(
            codes,
            ["applied", "unknown_category", "unsupported_schema_version", "text_control_character", "invalid_payload", "not_a_push_operation"],
            "{}",
            backend.name()
        );
        // An operation kind this server has never heard of, from a newer device.
        let raw = json!({"operations": [{"op_id": uuid::Uuid::now_v7(), "entity_id": uuid::Uuid::now_v7(), "kind": "teleport_incident", "schema_version": 1, "payload": {}}]});
        let body: serde_json::Value = worker.post("/v1/push", &raw).json().unwrap();
        assert_eq!(body["results"][0]["code"], "unknown_operation_kind");
        // The same incident id twice through different ops.
        let (_, first) = report("0602", None, &[]);
        let mut second = first.clone();
        second.op_id = uuid::Uuid::now_v7();
        let results = worker.push_ok(&[first, second]);
        assert_eq!(results[0]["status"], "applied");
        assert_eq!(results[1]["code"], "incident_exists");
        let _ = existing_id;
    }
}

#[test]
fn batch_limits_are_enforced() {
    for backend in backends() {
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let ops: Vec<_> = (0..gridwork_protocol::api::MAX_PUSH_OPERATIONS + 1).map(|_| report("0602", None, &[]).1).collect();
        let response = worker.push(&ops);
        assert_eq!(response.status(), 413);
        assert_eq!(response.json::<serde_json::Value>().unwrap()["code"], "batch_too_large");
        let no_op_id = worker.post("/v1/push", &json!({"operations": [{"kind": "submit_incident"}]}));
        assert_eq!(no_op_id.status(), 400);
        assert_eq!(no_op_id.json::<serde_json::Value>().unwrap()["code"], "invalid_operation");
    }
}

#[test]
fn a_report_is_placed_by_its_location_and_photo_fields_are_checked() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let dispatcher = server.device("dispatcher");
        let grid_of = |id: uuid::Uuid| -> serde_json::Value { dispatcher.get(&format!("/v1/incidents/{id}")).json::<serde_json::Value>().unwrap()["grid_code"].clone() };

        // Claims G-002, stands in G-001: the location decides.
        let (lying, mut op) = report("0602", Some("G-002"), &[]);
        op.payload["location"] = json!({"lat": 31.23, "lon": 121.465});
        // Stands outside every grid: no grid, whatever it claims.
        let (outside, mut far) = report("0602", Some("G-001"), &[]);
        far.payload["location"] = json!({"lat": 30.0, "lon": 120.0});
        // No location: the claim stands if the grid exists, and not otherwise.
        let (claimed, mut no_location) = report("0602", Some("G-002"), &[]);
        no_location.payload["location"] = json!(null);
        let (unknown, mut no_such_grid) = report("0602", Some("G-999"), &[]);
        no_such_grid.payload["location"] = json!(null);
        let results = worker.push_ok(&[op, far, no_location, no_such_grid]);
        assert!(results.iter().all(|r| r["status"] == "applied"), "{name}: {results:?}");
        assert_eq!(grid_of(lying), "G-001", "{name}");
        assert_eq!(grid_of(outside), serde_json::Value::Null, "{name}");
        assert_eq!(grid_of(claimed), "G-002", "{name}");
        assert_eq!(grid_of(unknown), serde_json::Value::Null, "{name}");

        // A photo reference whose fields no device could have produced.
        let mut refused = Vec::new();
        for (field, value) in [("dhash", json!("<script>")), ("dhash", json!("ABCDEF0123456789")), ("width", json!(0)), ("location", json!({"lat": 91.0, "lon": 0.0}))] {
            let (_, mut op) = report("0602", Some("G-001"), &[b"jpeg bytes"]);
            op.payload["photos"][0][field] = value;
            refused.push(op);
        }
        let results = worker.push_ok(&refused);
        for result in &results {
            assert_eq!(result["code"], "invalid_payload", "{name}: {results:?}");
        }
        assert!(results[0]["message"].as_str().unwrap().contains("dhash"), "{name}: {results:?}");
    }
}
