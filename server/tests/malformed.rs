//! Malformed requests over real HTTP: every way a body, a query, a path or
//! a method can be wrong gets a stable code in a JSON `{code, message}`
//! body, and the server keeps serving afterwards.

mod common;

use common::*;
use gridwork_protocol::api::{self, MAX_BLOB_CHUNK_BYTES, MAX_JSON_BODY_BYTES};
use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};
use uuid::Uuid;

/// Send raw bytes as `device`, with exactly the content type given.
fn send(device: &Device, method: Method, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Response {
    let mut request = device.client.request(method, format!("{}{path}", device.base)).header(api::DEVICE_ID_HEADER, &device.id).bearer_auth(device.token());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.body(body).send().unwrap()
}

fn send_json(device: &Device, method: Method, path: &str, body: &str) -> Response {
    send(device, method, path, Some("application/json"), body.as_bytes().to_vec())
}

/// Assert an error reply: the status, a JSON body whose `code` is a string
/// equal to `code` and whose `message` is a non-empty string.
#[track_caller]
fn expect_error(response: Response, status: u16, code: &str, context: &str) -> Value {
    let actual = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let text = response.text().unwrap_or_default();
    assert_eq!(actual, status, "{context}: status (body {text})");
    assert!(content_type.starts_with("application/json"), "{context}: content type {content_type:?} (body {text})");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{context}: error body is not JSON ({e}): {text}"));
    assert!(body["code"].is_string(), "{context}: code is not a string: {text}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{context}: message is not a non-empty string: {text}");
    assert_eq!(body["code"], code, "{context}: code (body {text})");
    body
}

/// The server still answers: health, a login, a normal push and a read.
fn assert_still_serving(server: &TestServer, context: &str) {
    let health = reqwest::blocking::get(server.url("/v1/health")).unwrap();
    assert_eq!(health.status(), 200, "{context}: health");
    let health: Value = health.json().unwrap();
    assert_eq!(health["status"], "ok", "{context}: health");
    let worker = server.device("worker1");
    assert_eq!(worker.get("/v1/me").status(), 200, "{context}: login after abuse");
    let (id, op) = report("0602", Some("G-001"), &[]);
    let results = worker.push_ok(&[op]);
    assert_eq!(results[0]["status"], "applied", "{context}: push after abuse");
    let incident = worker.get(&format!("/v1/incidents/{id}"));
    assert_eq!(incident.status(), 200, "{context}: read after abuse");
    assert_eq!(incident.json::<Value>().unwrap()["state"], "reported", "{context}");
}

/// A case with one announced photo of `len` bytes and its blob created.
fn announced_photo(worker: &Device, len: usize, context: &str) -> (Uuid, Vec<u8>, String) {
    let mut photo = photo_bytes(9, len);
    photo[..16].copy_from_slice(Uuid::now_v7().as_bytes());
    let sha = sha256_hex(&photo);
    let (id, op) = report("0602", Some("G-001"), &[&photo]);
    assert_eq!(worker.push_ok(&[op])[0]["status"], "applied", "{context}");
    let created = worker.post("/v1/blobs", &json!({"sha256": sha, "size": photo.len()}));
    assert_eq!(created.status(), 201, "{context}: create blob");
    (id, photo, sha)
}

fn blob_offset(device: &Device, sha: &str, context: &str) -> u64 {
    let status = device.get(&format!("/v1/blobs/{sha}/status"));
    assert_eq!(status.status(), 200, "{context}: blob status");
    status.json::<Value>().unwrap()["offset"].as_u64().unwrap()
}

/// The JSON endpoints, each with a body of the right shape.
fn json_endpoints(incident: Uuid) -> Vec<(String, Value)> {
    vec![
        ("/v1/auth/login".into(), json!({"username": "worker1", "password": PASSWORD})),
        ("/v1/auth/refresh".into(), json!({"refresh_token": "gwr_x"})),
        ("/v1/push".into(), json!({"operations": []})),
        ("/v1/blobs".into(), json!({"sha256": "0".repeat(64), "size": 10})),
        (format!("/v1/incidents/{incident}/transitions"), json!({"action": "register"})),
        ("/v1/admin/users".into(), json!({"username": "newbie", "password": PASSWORD, "role": "volunteer"})),
        ("/v1/admin/grids".into(), serde_json::from_str(&two_grids_geojson()).unwrap()),
        ("/v1/admin/categories".into(), serde_json::from_str(gridwork_protocol::DEFAULT_CATEGORY_TABLE).unwrap()),
    ]
}

#[test]
fn malformed_json_is_invalid_json() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let admin = server.device("admin");
        let incident = Uuid::now_v7();
        let deep = format!(r#"{{"operations": {}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        let bodies = [r#"{"operations": ["#, "not json", "", "{", r#"{'operations': []}"#, r#"{"operations": [],}"#];
        for (path, valid) in json_endpoints(incident) {
            // A body of the right shape followed by garbage, or cut short.
            let valid = serde_json::to_string(&valid).unwrap();
            let trailing = format!("{valid} trailing");
            let cut = &valid[..valid.len() - 1];
            for body in bodies.iter().copied().chain([trailing.as_str(), cut]) {
                let context = format!("{name}: POST {path} {:?}", &body[..body.len().min(40)]);
                expect_error(send_json(&admin, Method::POST, &path, body), 400, "invalid_json", &context);
            }
        }
        // Nesting past serde_json's recursion limit where the body is parsed
        // as free JSON: refused as malformed, not a stack overflow.
        for path in ["/v1/push", "/v1/admin/grids", "/v1/admin/categories"] {
            expect_error(send_json(&admin, Method::POST, path, &deep), 400, "invalid_json", &format!("{name}: POST {path} nested 100000 deep"));
        }
        assert_still_serving(&server, name);
    }
}

#[test]
fn json_of_the_wrong_shape_is_invalid_request() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let admin = server.device("admin");
        let incident = Uuid::now_v7();
        let transitions = format!("/v1/incidents/{incident}/transitions");
        let cases: Vec<(&str, &str)> = vec![
            ("/v1/auth/login", r#"{"username": "worker1"}"#),
            ("/v1/auth/login", r#"{"username": 1, "password": "x"}"#),
            ("/v1/auth/login", r#"["worker1"]"#),
            ("/v1/auth/refresh", r#"{}"#),
            ("/v1/auth/refresh", r#"null"#),
            ("/v1/push", r#"{"operations": 5}"#),
            ("/v1/push", r#"{"operations": {"op_id": "x"}}"#),
            ("/v1/push", r#"[]"#),
            ("/v1/push", r#"{}"#),
            ("/v1/push", r#""operations""#),
            ("/v1/blobs", r#"{"sha256": "ab"}"#),
            ("/v1/blobs", r#"{"sha256": "ab", "size": "big"}"#),
            ("/v1/blobs", r#"{"sha256": "ab", "size": -1}"#),
            (&transitions, r#"{"act": "register"}"#),
            (&transitions, r#"{"action": "merge", "merge_into": "not-a-uuid"}"#),
            (&transitions, r#"{"action": "handle", "photos": "many"}"#),
            ("/v1/admin/users", r#"{"username": "x"}"#),
            ("/v1/admin/users", r#"{"username": "x", "password": "long enough", "role": "admin", "grids": "G-001"}"#),
        ];
        for (path, body) in cases {
            expect_error(send_json(&admin, Method::POST, path, body), 400, "invalid_request", &format!("{name}: POST {path} {body}"));
        }
        // Any JSON passes the extractor of the import endpoints; the importers refuse it.
        for body in [r#"{}"#, r#"[]"#, r#"{"type": "Feature"}"#, r#"{"type": "FeatureCollection", "features": 1}"#] {
            expect_error(send_json(&admin, Method::POST, "/v1/admin/grids", body), 400, "invalid_geojson", &format!("{name}: grids {body}"));
        }
        for body in [r#"{}"#, r#"[]"#, r#"{"categories": [{"name_zh": "无代码"}]}"#, r#"{"categories": [{"code": 1, "name_zh": "x"}]}"#] {
            expect_error(send_json(&admin, Method::POST, "/v1/admin/categories", body), 400, "invalid_category_table", &format!("{name}: categories {body}"));
        }
        // The refused imports changed nothing: the default categories still take reports.
        assert_still_serving(&server, name);
    }
}

#[test]
fn json_endpoints_want_a_json_content_type() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let admin = server.device("admin");
        let incident = Uuid::now_v7();
        for (path, body) in json_endpoints(incident) {
            let bytes = serde_json::to_vec(&body).unwrap();
            for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/octet-stream"), Some("multipart/form-data; boundary=x"), Some("json")] {
                let response = send(&admin, Method::POST, &path, content_type, bytes.clone());
                expect_error(response, 415, "unsupported_media_type", &format!("{name}: POST {path} as {content_type:?}"));
            }
        }
        // A charset parameter is still JSON.
        let response = send(&admin, Method::POST, "/v1/push", Some("application/json; charset=utf-8"), br#"{"operations": []}"#.to_vec());
        assert_eq!(response.status(), 200, "{name}: JSON with a charset");
        assert_eq!(response.json::<Value>().unwrap()["results"], json!([]), "{name}");
        assert_still_serving(&server, name);
    }
}

#[test]
fn oversized_json_bodies_are_refused() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let padding = "x".repeat(MAX_JSON_BODY_BYTES);
        // Valid JSON of the right shape, just too big.
        let push = format!(r#"{{"operations": [], "padding": "{padding}"}}"#);
        assert!(push.len() > MAX_JSON_BODY_BYTES);
        expect_error(send_json(&worker, Method::POST, "/v1/push", &push), 413, "body_too_large", &format!("{name}: push"));
        let login = format!(r#"{{"username": "worker1", "password": "{padding}"}}"#);
        expect_error(send_json(&worker, Method::POST, "/v1/auth/login", &login), 413, "body_too_large", &format!("{name}: login"));
        // A push whose one operation has a huge description.
        let (_, mut op) = report("0602", Some("G-001"), &[]);
        op.payload["description"] = json!(padding);
        let body = serde_json::to_string(&json!({"operations": [op]})).unwrap();
        expect_error(send_json(&worker, Method::POST, "/v1/push", &body), 413, "body_too_large", &format!("{name}: big operation"));
        // Just under the limit is read (and then judged on its content).
        let under = format!(r#"{{"operations": [], "padding": "{}"}}"#, "x".repeat(MAX_JSON_BODY_BYTES - 64));
        assert!(under.len() <= MAX_JSON_BODY_BYTES);
        let response = send_json(&worker, Method::POST, "/v1/push", &under);
        assert_eq!(response.status(), 200, "{name}: a body under the limit");
        assert_still_serving(&server, name);
    }
}

#[test]
fn oversized_and_mistyped_chunks_are_refused() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let (id, photo, sha) = announced_photo(&worker, MAX_BLOB_CHUNK_BYTES + 100, name);

        // One byte over the chunk limit.
        let response = worker.put_chunk(&sha, 0, &photo[..MAX_BLOB_CHUNK_BYTES + 1]);
        expect_error(response, 413, "body_too_large", &format!("{name}: oversized chunk"));
        assert_eq!(blob_offset(&worker, &sha, name), 0, "{name}: nothing was stored");

        // Chunks are octet streams.
        let small = &photo[..1000];
        for content_type in [None, Some("application/json"), Some("image/jpeg"), Some("text/plain")] {
            let mut request = worker
                .client
                .put(format!("{}/v1/blobs/{sha}/chunks?offset=0", worker.base))
                .header(api::DEVICE_ID_HEADER, &worker.id)
                .header("x-gridwork-chunk-sha256", sha256_hex(small))
                .bearer_auth(worker.token());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = request.body(small.to_vec()).send().unwrap();
            expect_error(response, 415, "unsupported_media_type", &format!("{name}: chunk as {content_type:?}"));
        }
        assert_eq!(blob_offset(&worker, &sha, name), 0, "{name}: nothing was stored");

        // A chunk without its checksum, or with a wrong one.
        let response = send(&worker, Method::PUT, &format!("/v1/blobs/{sha}/chunks?offset=0"), Some("application/octet-stream"), small.to_vec());
        expect_error(response, 400, "chunk_checksum_missing", &format!("{name}: no chunk checksum"));
        let response = worker
            .client
            .put(format!("{}/v1/blobs/{sha}/chunks?offset=0", worker.base))
            .header(api::DEVICE_ID_HEADER, &worker.id)
            .header("x-gridwork-chunk-sha256", sha256_hex(b"other bytes"))
            .header("content-type", "application/octet-stream")
            .bearer_auth(worker.token())
            .body(small.to_vec())
            .send()
            .unwrap();
        expect_error(response, 400, "chunk_checksum_mismatch", &format!("{name}: wrong chunk checksum"));
        assert_eq!(blob_offset(&worker, &sha, name), 0, "{name}: nothing was stored");

        // Exactly the limit is a valid chunk; the upload then completes.
        let response = worker.put_chunk(&sha, 0, &photo[..MAX_BLOB_CHUNK_BYTES]);
        assert_eq!(response.status(), 200, "{name}: a chunk of exactly the limit");
        assert_eq!(response.json::<Value>().unwrap()["offset"], MAX_BLOB_CHUNK_BYTES, "{name}");
        let response = worker.put_chunk(&sha, MAX_BLOB_CHUNK_BYTES as u64, &photo[MAX_BLOB_CHUNK_BYTES..]);
        assert_eq!(response.status(), 200, "{name}: last chunk");
        assert_eq!(response.json::<Value>().unwrap()["complete"], true, "{name}");
        let download = worker.get(&format!("/v1/blobs/{sha}"));
        assert_eq!(download.status(), 200, "{name}");
        assert!(download.bytes().unwrap().as_ref() == photo.as_slice(), "{name}: the photo arrived intact");
        let incident: Value = worker.get(&format!("/v1/incidents/{id}")).json().unwrap();
        assert_eq!(incident["missing_evidence"], false, "{name}");
        assert_still_serving(&server, name);
    }
}

#[test]
fn bad_query_strings_are_invalid_query() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let (_, photo, sha) = announced_photo(&worker, 100, name);
        for path in [
            "/v1/pull?since=abc",
            "/v1/pull?since=1.5",
            "/v1/pull?since=",
            "/v1/pull?since=99999999999999999999999",
            "/v1/pull?limit=-1",
            "/v1/pull?limit=ten",
            "/v1/pull?limit=99999999999",
            "/v1/pull?since=1&since=2",
            "/v1/incidents?limit=abc",
            "/v1/incidents?limit=-3",
            "/v1/incidents?limit=1e3",
        ] {
            expect_error(worker.get(path), 400, "invalid_query", &format!("{name}: GET {path}"));
        }
        for query in ["", "?", "?offset=-1", "?offset=abc", "?offset=1.0", "?position=0", "?offset=18446744073709551616"] {
            let response = send(&worker, Method::PUT, &format!("/v1/blobs/{sha}/chunks{query}"), Some("application/octet-stream"), photo.clone());
            expect_error(response, 400, "invalid_query", &format!("{name}: PUT chunks{query}"));
        }
        assert_eq!(blob_offset(&worker, &sha, name), 0, "{name}: nothing was stored");
        // Good queries, including unknown extra parameters, still work.
        for path in ["/v1/pull?since=0&limit=5", "/v1/pull", "/v1/pull?since=-5", "/v1/incidents?limit=2&state=reported", "/v1/incidents?grid=G-001&whatever=1"] {
            assert_eq!(worker.get(path).status(), 200, "{name}: GET {path}");
        }
        assert_still_serving(&server, name);
    }
}

#[test]
fn bad_ids_in_paths_are_refused() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let dispatcher = server.device("dispatcher");
        for id in ["not-a-uuid", "123", "0190c2a0-0000-7000-8000-00000000000g", "0190c2a0-0000-7000-8000-0000000000001", "%00", "..%2F..%2Fetc"] {
            expect_error(dispatcher.get(&format!("/v1/incidents/{id}")), 400, "invalid_id", &format!("{name}: GET incident {id}"));
            expect_error(dispatcher.get(&format!("/v1/incidents/{id}/timeline")), 400, "invalid_id", &format!("{name}: timeline {id}"));
            let response = dispatcher.post(&format!("/v1/incidents/{id}/transitions"), &json!({"action": "register"}));
            expect_error(response, 400, "invalid_id", &format!("{name}: transition {id}"));
        }
        // A well-formed id of no case is simply not found.
        let absent = Uuid::now_v7();
        expect_error(dispatcher.get(&format!("/v1/incidents/{absent}")), 404, "not_found", &format!("{name}: absent incident"));
        expect_error(dispatcher.get(&format!("/v1/incidents/{absent}/timeline")), 404, "not_found", &format!("{name}: absent timeline"));
        expect_error(dispatcher.transition(absent, json!({"action": "register"})), 404, "not_found", &format!("{name}: absent transition"));
        // Blob paths want 64 lowercase hex digits.
        let upper = "A".repeat(64);
        let short = "a".repeat(63);
        for sha in [upper.as_str(), short.as_str(), "xyz"] {
            expect_error(dispatcher.get(&format!("/v1/blobs/{sha}")), 400, "invalid_sha256", &format!("{name}: download {sha}"));
            expect_error(dispatcher.get(&format!("/v1/blobs/{sha}/status")), 400, "invalid_sha256", &format!("{name}: status {sha}"));
            expect_error(dispatcher.put_chunk(sha, 0, b"abc"), 400, "invalid_sha256", &format!("{name}: chunk {sha}"));
        }
        assert_still_serving(&server, name);
    }
}

#[test]
fn unknown_endpoints_and_wrong_methods() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let id = Uuid::now_v7();
        let sha = "a".repeat(64);
        for (method, path) in [
            (Method::GET, "/".to_owned()),
            (Method::GET, "/v1".to_owned()),
            (Method::GET, "/v1/nope".to_owned()),
            (Method::GET, "/v2/health".to_owned()),
            (Method::POST, format!("/v1/incidents/{id}/close")),
            (Method::GET, format!("/v1/incidents/{id}/photos")),
            (Method::GET, "/v1/admin".to_owned()),
            (Method::DELETE, "/v1/admin/users/worker1".to_owned()),
            (Method::GET, "/V1/HEALTH".to_owned()),
        ] {
            let response = send(&worker, method.clone(), &path, None, Vec::new());
            expect_error(response, 404, "not_found", &format!("{name}: {method} {path}"));
        }
        // Unknown endpoints answer the same with or without credentials.
        let anonymous = reqwest::blocking::get(server.url("/v1/nope")).unwrap();
        expect_error(anonymous, 404, "not_found", &format!("{name}: anonymous unknown endpoint"));

        for (method, path) in [
            (Method::DELETE, "/v1/push".to_owned()),
            (Method::GET, "/v1/push".to_owned()),
            (Method::GET, "/v1/auth/login".to_owned()),
            (Method::PUT, "/v1/auth/refresh".to_owned()),
            (Method::POST, "/v1/health".to_owned()),
            (Method::POST, "/v1/me".to_owned()),
            (Method::POST, "/v1/pull".to_owned()),
            (Method::PUT, format!("/v1/incidents/{id}")),
            (Method::DELETE, format!("/v1/incidents/{id}")),
            (Method::GET, format!("/v1/incidents/{id}/transitions")),
            (Method::POST, format!("/v1/incidents/{id}/timeline")),
            (Method::POST, "/v1/incidents".to_owned()),
            (Method::GET, "/v1/blobs".to_owned()),
            (Method::POST, format!("/v1/blobs/{sha}/chunks")),
            (Method::GET, format!("/v1/blobs/{sha}/chunks")),
            (Method::PUT, format!("/v1/blobs/{sha}")),
            (Method::GET, "/v1/admin/users".to_owned()),
            (Method::PATCH, "/v1/admin/categories".to_owned()),
        ] {
            let response = send(&worker, method.clone(), &path, Some("application/json"), b"{}".to_vec());
            expect_error(response, 405, "method_not_allowed", &format!("{name}: {method} {path}"));
        }
        assert_still_serving(&server, name);
    }
}

#[test]
fn invalid_utf8_in_a_json_body_is_a_bad_request() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let admin = server.device("admin");
        let incident = Uuid::now_v7();
        let bad_strings: [&[u8]; 4] = [b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"caf\xe9"];
        for (path, body) in json_endpoints(incident) {
            let text = serde_json::to_string(&body).unwrap();
            for bad in bad_strings {
                // Put the bad bytes inside the first string value of the body.
                let at = text.find(":\"").map(|i| i + 2).unwrap_or(1);
                let mut bytes = text.as_bytes()[..at].to_vec();
                bytes.extend_from_slice(bad);
                bytes.extend_from_slice(&text.as_bytes()[at..]);
                let response = send(&admin, Method::POST, &path, Some("application/json"), bytes);
                expect_error(response, 400, "invalid_json", &format!("{name}: POST {path} with {bad:?}"));
            }
        }
        // Raw invalid bytes as the whole body, and as an operation's description.
        expect_error(send(&admin, Method::POST, "/v1/push", Some("application/json"), vec![0xff, 0xfe, 0x00, 0x7b]), 400, "invalid_json", &format!("{name}: binary body"));
        let (_, op) = report("0602", Some("G-001"), &[]);
        let text = serde_json::to_string(&json!({"operations": [op]})).unwrap();
        let description = text.find("楼道").unwrap();
        let mut bytes = text.as_bytes()[..description].to_vec();
        bytes.extend_from_slice(b"\xe6\xa5");
        bytes.extend_from_slice(&text.as_bytes()[description + 3..]);
        expect_error(send(&admin, Method::POST, "/v1/push", Some("application/json"), bytes), 400, "invalid_json", &format!("{name}: truncated UTF-8 in a description"));
        assert_still_serving(&server, name);
    }
}

#[test]
fn the_server_survives_a_burst_of_everything_at_once() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let admin = server.device("admin");
        let worker = server.device("worker1");
        let big = format!(r#"{{"operations": [], "padding": "{}"}}"#, "x".repeat(MAX_JSON_BODY_BYTES));
        let (_, photo, sha) = announced_photo(&worker, 200, name);
        for _ in 0..3 {
            expect_error(send_json(&admin, Method::POST, "/v1/push", "{"), 400, "invalid_json", name);
            expect_error(send_json(&admin, Method::POST, "/v1/push", "[]"), 400, "invalid_request", name);
            expect_error(send(&admin, Method::POST, "/v1/push", Some("text/plain"), b"{}".to_vec()), 415, "unsupported_media_type", name);
            expect_error(send_json(&admin, Method::POST, "/v1/push", &big), 413, "body_too_large", name);
            expect_error(send(&worker, Method::PUT, &format!("/v1/blobs/{sha}/chunks?offset=0"), Some("application/json"), photo.clone()), 415, "unsupported_media_type", name);
            expect_error(admin.get("/v1/pull?since=x"), 400, "invalid_query", name);
            expect_error(admin.get("/v1/incidents/x"), 400, "invalid_id", name);
            expect_error(admin.get("/v1/x"), 404, "not_found", name);
            expect_error(send(&admin, Method::DELETE, "/v1/push", None, Vec::new()), 405, "method_not_allowed", name);
            expect_error(send(&admin, Method::POST, "/v1/push", Some("application/json"), b"{\"operations\": [\"\xff\"]}".to_vec()), 400, "invalid_json", name);
        }
        // The upload that was pestered still works from where it was.
        assert_eq!(blob_offset(&worker, &sha, name), 0, "{name}");
        let response = worker.put_chunk(&sha, 0, &photo);
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(response.json::<Value>().unwrap()["complete"], true, "{name}");
        assert_still_serving(&server, name);
    }
}

#[test]
fn undecodable_path_segments_are_invalid_path_in_json() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let dispatcher = server.device("dispatcher");
        for segment in ["%FF", "%FF%FE", "%C3%28", "abc%80"] {
            let context = format!("{name}: segment {segment}");
            expect_error(dispatcher.get(&format!("/v1/incidents/{segment}")), 400, "invalid_path", &context);
            expect_error(dispatcher.get(&format!("/v1/incidents/{segment}/timeline")), 400, "invalid_path", &context);
            expect_error(dispatcher.post(&format!("/v1/incidents/{segment}/transitions"), &json!({"action": "register"})), 400, "invalid_path", &context);
            expect_error(dispatcher.get(&format!("/v1/blobs/{segment}")), 400, "invalid_path", &context);
            expect_error(dispatcher.get(&format!("/v1/blobs/{segment}/status")), 400, "invalid_path", &context);
            expect_error(dispatcher.put_chunk(segment, 0, b"abc"), 400, "invalid_path", &context);
        }
        assert_still_serving(&server, name);
    }
}

/// A raw HTTP/1.1 exchange: what the server answers to `head` (and `body`)
/// within `wait`, or "" if it answered nothing.
fn raw_exchange(server: &TestServer, head: &str, body: &[u8], wait: std::time::Duration) -> String {
    use std::io::{Read, Write};
    let address = server.url("").trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buffer[..n]);
        if reply.windows(4).any(|w| w == b"\r\n\r\n") && reply.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn a_body_declared_over_the_limit_is_refused_before_it_is_sent() {
    let backend = Backend::Sqlite;
    let server = TestServer::with_cast(&backend);
    let worker = server.device("worker1");
    let sha = "a".repeat(64);
    for (path, method, declared) in [
        ("/v1/push".to_owned(), "POST", 10u64 << 30),
        ("/v1/push".to_owned(), "POST", MAX_JSON_BODY_BYTES as u64 + 1),
        (format!("/v1/blobs/{sha}/chunks?offset=0"), "PUT", 5 << 20),
        (format!("/v1/blobs/{sha}/chunks?offset=0"), "PUT", 10u64 << 30),
    ] {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{}: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n",
            api::DEVICE_ID_HEADER,
            worker.id,
            worker.token()
        );
        let started = std::time::Instant::now();
        let reply = raw_exchange(&server, &head, b"{}", std::time::Duration::from_secs(5));
        let context = format!("{method} {path} declaring {declared}");
        assert!(reply.starts_with("HTTP/1.1 413"), "{context}: answered at once with 413, got {reply:?}");
        assert!(reply.contains("application/json") && reply.contains("\"code\":\"body_too_large\""), "{context}: {reply}");
        assert!(started.elapsed() < std::time::Duration::from_secs(4), "{context}: waited for the body");
    }
    // A chunk of the largest allowed size is not refused by its declaration.
    let head = format!(
        "PUT /v1/blobs/{sha}/chunks?offset=0 HTTP/1.1\r\nHost: localhost\r\n{}: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\n",
        api::DEVICE_ID_HEADER,
        worker.id,
        worker.token()
    );
    let reply = raw_exchange(&server, &head, b"abc", std::time::Duration::from_secs(5));
    assert!(!reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert_still_serving(&server, "after declared oversize");
}

#[test]
fn framework_rejections_are_json_too() {
    let backend = Backend::Sqlite;
    let server = TestServer::with_cast(&backend);
    let worker = server.device("worker1");
    // A query that does not even parse as key=value pairs, a path with a
    // stray encoded slash, an OPTIONS request: whatever answers, answers JSON.
    for (method, path) in [(Method::GET, "/v1/pull?since=%FF%FE&limit=x"), (Method::OPTIONS, "/v1/push"), (Method::GET, "/v1/blobs/%2F%2F/status"), (Method::DELETE, "/v1/me")] {
        let response = send(&worker, method.clone(), path, None, vec![]);
        let status = response.status().as_u16();
        assert!(status >= 400, "{method} {path}: {status}");
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(content_type.starts_with("application/json"), "{method} {path}: {content_type}");
        let body: Value = response.json().unwrap();
        assert!(body["code"].is_string() && body["message"].is_string(), "{method} {path}: {body}");
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

/// Compressed bodies both ways: a gzip push is applied, its limit counts
/// decompressed bytes (a small bomb is `body_too_large`), a lying or
/// unknown encoding is a JSON error; large JSON replies go gzip to a client
/// that accepts it, small ones and photos never.
#[test]
fn gzip_both_ways_within_the_same_limits() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let encoded = |encoding: &str, body: Vec<u8>| {
            worker
                .client
                .post(format!("{}/v1/push", worker.base))
                .header(api::DEVICE_ID_HEADER, &worker.id)
                .bearer_auth(worker.token())
                .header("content-type", "application/json")
                .header("content-encoding", encoding)
                .body(body)
                .send()
                .unwrap()
        };
        let (id, op) = report("0602", Some("G-001"), &[]);
        let push = serde_json::to_vec(&json!({ "operations": [op] })).unwrap();
        let applied = encoded("gzip", gzip(&push));
        assert_eq!(applied.status(), 200, "{name}");
        assert_eq!(applied.json::<Value>().unwrap()["results"][0]["status"], "applied", "{name}");

        let bomb = gzip(format!(r#"{{"operations": [], "padding": "{}"}}"#, "x".repeat(MAX_JSON_BODY_BYTES)).as_bytes());
        assert!(bomb.len() < 64 << 10, "{name}: {} bytes on the wire", bomb.len());
        expect_error(encoded("gzip", bomb), 413, "body_too_large", &format!("{name}: gzip bomb"));
        let lying = encoded("gzip", push.clone());
        assert!(lying.status().is_client_error(), "{name}: {}", lying.status());
        expect_error(lying, 400, "invalid_request", &format!("{name}: not gzip"));
        expect_error(encoded("br", push.clone()), 415, "unsupported_media_type", &format!("{name}: brotli"));

        // Replies: a pull page is large enough to travel compressed.
        let get = |path: &str| {
            worker
                .client
                .get(format!("{}{path}", worker.base))
                .header(api::DEVICE_ID_HEADER, &worker.id)
                .bearer_auth(worker.token())
                .header("accept-encoding", "gzip")
                .send()
                .unwrap()
        };
        let page = get("/v1/pull?since=0&limit=100");
        assert_eq!(page.headers().get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"), "{name}");
        let page: Value = serde_json::from_slice(&gunzip(&page.bytes().unwrap())).unwrap();
        assert!(page["changes"].as_array().unwrap().iter().any(|c| c["entity_id"] == id.to_string()), "{name}: {page}");
        let small = get("/v1/health");
        assert!(small.headers().get("content-encoding").is_none(), "{name}: a small reply goes as it is");
        let (_, photo, sha) = announced_photo(&worker, 300_000, name);
        assert_eq!(worker.put_chunk(&sha, 0, &photo).status(), 200, "{name}");
        let original = get(&format!("/v1/blobs/{sha}"));
        assert_eq!(original.status(), 200, "{name}");
        assert!(original.headers().get("content-encoding").is_none(), "{name}: photos are never recompressed");
        assert_eq!(original.bytes().unwrap().to_vec(), photo, "{name}");
        assert_still_serving(&server, name);
    }
}
