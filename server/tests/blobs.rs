//! Resumable photo upload by SHA-256 over real HTTP: announce, interrupt,
//! ask where to resume, finish; refusals with stable codes; the case's
//! missing-evidence flag, its photos' arrival and its timeline; the admin
//! CLI's view of the same. Blobs live in a folder on SQLite and in the
//! database on PostgreSQL, so both stores are exercised.

mod common;

use std::process::{Command, Output};

use common::*;
use gridwork_protocol::api;
use reqwest::blocking::Response;
use serde_json::{Value, json};
use uuid::Uuid;

/// ~1 MB, not a multiple of any chunk size used below.
const PHOTO_LEN: usize = 1_048_576 + 4_321;
/// Uneven chunk sizes; the rest goes in 256 KiB chunks.
const CHUNK_PLAN: [usize; 7] = [40_000, 100_003, 7, 250_001, 65_536, 1, 123_457];

/// Status and error code of a reply (the code is empty for a success).
fn status_and_code(response: Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or("").to_owned())
}

fn announce(device: &Device, sha: &str, size: u64) -> Response {
    device.post("/v1/blobs", &json!({"sha256": sha, "size": size}))
}

fn blob_status(device: &Device, sha: &str) -> Value {
    let response = device.get(&format!("/v1/blobs/{sha}/status"));
    assert_eq!(response.status(), 200, "blob status");
    response.json().unwrap()
}

fn offset_of(device: &Device, sha: &str) -> u64 {
    blob_status(device, sha)["offset"].as_u64().unwrap()
}

/// A chunk with an explicit (possibly wrong) checksum header.
fn put_chunk_claiming(device: &Device, sha: &str, offset: u64, chunk: &[u8], claimed_sha: &str) -> Response {
    device
        .client
        .put(format!("{}/v1/blobs/{sha}/chunks?offset={offset}", device.base))
        .header(api::DEVICE_ID_HEADER, &device.id)
        .header("x-gridwork-chunk-sha256", claimed_sha)
        .header("content-type", "application/octet-stream")
        .bearer_auth(device.token())
        .body(chunk.to_vec())
        .send()
        .unwrap()
}

/// The chunk sizes for a blob of `len` bytes: the uneven plan, then 256 KiB.
fn chunk_sizes(len: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut done = 0;
    for size in CHUNK_PLAN.iter().copied().chain(std::iter::repeat(256 * 1024)) {
        if done >= len {
            break;
        }
        let size = size.min(len - done);
        sizes.push(size);
        done += size;
    }
    sizes
}

/// Upload chunks `from..to` of the plan, starting at the server's offset
/// (which must be the start of chunk `from`). Returns the last reply body.
fn upload_chunks(device: &Device, sha: &str, bytes: &[u8], from: usize, to: usize, backend: &str) -> Value {
    let sizes = chunk_sizes(bytes.len());
    let mut offset: usize = sizes[..from].iter().sum();
    assert_eq!(offset_of(device, sha), offset as u64, "{backend}: resume offset before chunk {from}");
    let mut last = Value::Null;
    for size in &sizes[from..to.min(sizes.len())] {
        let response = device.put_chunk(sha, offset as u64, &bytes[offset..offset + size]);
        assert_eq!(response.status(), 200, "{backend}: chunk at {offset}");
        last = response.json().unwrap();
        offset += size;
        assert_eq!(last["offset"], json!(offset), "{backend}: offset after chunk");
    }
    last
}

fn incident(device: &Device, id: Uuid) -> Value {
    let response = device.get(&format!("/v1/incidents/{id}"));
    assert_eq!(response.status(), 200, "incident {id}");
    response.json().unwrap()
}

fn timeline(device: &Device, id: Uuid) -> Vec<Value> {
    let response = device.get(&format!("/v1/incidents/{id}/timeline"));
    assert_eq!(response.status(), 200, "timeline {id}");
    response.json().unwrap()
}

/// Run the admin CLI against the test server's storage.
fn cli(server: &TestServer, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gridwork-server"));
    command.env_remove("GRIDWORK_DATABASE_URL").env("GRIDWORK_LOG", "warn").arg("--data").arg(&server.data_dir);
    if let Backend::Postgres(admin_url) = &server.backend {
        let name = server.db.read(|tx| Ok(tx.query_one("SELECT current_database()::text", &[])?.text(0))).unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        command.arg("--database-url").arg(format!("{base}/{name}"));
    }
    command.args(args).output().expect("run gridwork-server")
}

fn cli_incidents(server: &TestServer) -> Vec<Value> {
    let output = cli(server, &["incidents", "list", "--json"]);
    assert!(output.status.success(), "{}: incidents list failed: {}", server.backend.name(), String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("incidents list --json prints JSON")
}

#[test]
fn an_interrupted_upload_resumes_and_completes_the_evidence() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let phone = server.device("worker1");
        let big = photo_bytes(7, PHOTO_LEN);
        let small = photo_bytes(9, 5_000);
        let (big_sha, small_sha) = (sha256_hex(&big), sha256_hex(&small));
        let (id, op) = report("0101", Some("G-001"), &[&big, &small]);
        assert_eq!(phone.push_ok(&[op])[0]["status"], "applied", "{name}");

        // Text first: the case is there, its evidence is not.
        let case = incident(&phone, id);
        assert_eq!(case["missing_evidence"], true, "{name}");
        assert_eq!(case["photos"][0]["sha256"], big_sha.as_str(), "{name}");
        assert_eq!(case["photos"][0]["arrived"], false, "{name}");
        assert_eq!(case["photos"][1]["arrived"], false, "{name}");
        assert_eq!(case["version"], 1, "{name}");
        assert_eq!(status_and_code(phone.get(&format!("/v1/blobs/{big_sha}"))), (404, "blob_incomplete".into()), "{name}: before any upload");

        // Announce: created at offset 0; announcing again is idempotent.
        let created = announce(&phone, &big_sha, PHOTO_LEN as u64);
        assert_eq!(created.status(), 201, "{name}");
        let created: Value = created.json().unwrap();
        assert_eq!(created, json!({"sha256": big_sha, "size": PHOTO_LEN, "offset": 0, "complete": false}), "{name}");
        let again = announce(&phone, &big_sha, PHOTO_LEN as u64);
        assert_eq!(again.status(), 201, "{name}: still incomplete");
        assert_eq!(again.json::<Value>().unwrap()["offset"], 0, "{name}");

        // Session 1: one chunk, then the link drops.
        upload_chunks(&phone, &big_sha, &big, 0, 1, name);
        let after_one = CHUNK_PLAN[0] as u64;
        assert_eq!(blob_status(&phone, &big_sha), json!({"sha256": big_sha, "size": PHOTO_LEN, "offset": after_one, "complete": false}), "{name}");
        // The reply to that chunk was lost; the phone resends it at its old offset.
        let resent = phone.put_chunk(&big_sha, 0, &big[..CHUNK_PLAN[0]]);
        assert_eq!(status_and_code(resent), (409, "offset_mismatch".into()), "{name}");
        assert_eq!(offset_of(&phone, &big_sha), after_one, "{name}: a resent chunk does not move the offset");

        // Session 2, after a restart (a new login): resume where the server says.
        let phone = server.device("worker1");
        upload_chunks(&phone, &big_sha, &big, 1, 3, name);
        let after_three: u64 = CHUNK_PLAN[..3].iter().sum::<usize>() as u64;
        assert_eq!(offset_of(&phone, &big_sha), after_three, "{name}");

        // Refusals mid-way never move the offset.
        let next = &big[after_three as usize..after_three as usize + 1000];
        let wrong_checksum = put_chunk_claiming(&phone, &big_sha, after_three, next, &sha256_hex(b"something else"));
        assert_eq!(status_and_code(wrong_checksum), (400, "chunk_checksum_mismatch".into()), "{name}");
        assert_eq!(offset_of(&phone, &big_sha), after_three, "{name}: checksum mismatch keeps the offset");
        for wrong in [after_three + 1, after_three - 1, 0, PHOTO_LEN as u64 - 1000] {
            let response = phone.put_chunk(&big_sha, wrong, next);
            let message = {
                assert_eq!(response.status(), 409, "{name}: chunk at {wrong}");
                response.json::<Value>().unwrap()
            };
            assert_eq!(message["code"], "offset_mismatch", "{name}: chunk at {wrong}");
            assert!(message["message"].as_str().unwrap().contains(&after_three.to_string()), "{name}: the reply names the offset: {message}");
        }
        let mut past_end = big[after_three as usize..].to_vec();
        past_end.push(0);
        assert_eq!(status_and_code(phone.put_chunk(&big_sha, after_three, &past_end)), (400, "chunk_past_end".into()), "{name}");
        assert_eq!(offset_of(&phone, &big_sha), after_three, "{name}: past-end chunk keeps the offset");

        // Session 3: up to seven chunks, interrupted again.
        upload_chunks(&phone, &big_sha, &big, 3, 7, name);
        let after_seven: u64 = CHUNK_PLAN.iter().sum::<usize>() as u64;
        assert_eq!(offset_of(&phone, &big_sha), after_seven, "{name}");
        assert_eq!(status_and_code(phone.get(&format!("/v1/blobs/{big_sha}"))), (404, "blob_incomplete".into()), "{name}: partial blob not served");
        assert_eq!(incident(&phone, id)["photos"][0]["arrived"], false, "{name}");

        // Session 4: the rest.
        let last = upload_chunks(&phone, &big_sha, &big, 7, usize::MAX, name);
        assert_eq!(last, json!({"sha256": big_sha, "size": PHOTO_LEN, "offset": PHOTO_LEN, "complete": true}), "{name}");

        // Byte-identical download, for the reporter and the command center.
        let downloaded = phone.get(&format!("/v1/blobs/{big_sha}"));
        assert_eq!(downloaded.status(), 200, "{name}");
        let downloaded = downloaded.bytes().unwrap();
        assert_eq!(downloaded.len(), PHOTO_LEN, "{name}");
        assert_eq!(sha256_hex(&downloaded), big_sha, "{name}: downloaded bytes hash to the announced SHA-256");
        assert!(downloaded[..] == big[..], "{name}: byte-identical");
        let dispatcher = server.device("dispatcher");
        assert_eq!(sha256_hex(&dispatcher.get(&format!("/v1/blobs/{big_sha}")).bytes().unwrap()), big_sha, "{name}");
        // Outside the case's scope the blob does not exist.
        let stranger = server.device("worker2");
        assert_eq!(status_and_code(stranger.get(&format!("/v1/blobs/{big_sha}"))), (404, "not_found".into()), "{name}");

        // "Already have it."
        let known = announce(&phone, &big_sha, PHOTO_LEN as u64);
        assert_eq!(known.status(), 200, "{name}");
        assert_eq!(known.json::<Value>().unwrap(), json!({"sha256": big_sha, "size": PHOTO_LEN, "offset": PHOTO_LEN, "complete": true}), "{name}");

        // One of two photos arrived: the flag stays up, that photo flips.
        let case = incident(&phone, id);
        assert_eq!(case["photos"][0]["arrived"], true, "{name}");
        assert_eq!(case["photos"][1]["arrived"], false, "{name}");
        assert_eq!(case["missing_evidence"], true, "{name}: one photo is still missing");
        assert_eq!(case["version"], 2, "{name}: arrival changes the case");
        let entries = timeline(&phone, id);
        let arrivals: Vec<&Value> = entries.iter().filter(|e| e["action"] == "photo_arrived").collect();
        assert_eq!(arrivals.len(), 1, "{name}: {entries:?}");
        assert_eq!(arrivals[0]["actor"], "system", "{name}");
        assert_eq!(arrivals[0]["from_state"], "reported", "{name}");
        assert_eq!(arrivals[0]["to_state"], "reported", "{name}");
        assert_eq!(arrivals[0]["note"], &big_sha[..12], "{name}");

        // The admin CLI shows each photo and whether it arrived.
        let listed = cli_incidents(&server);
        let row = listed.iter().find(|v| v["id"] == json!(id)).unwrap_or_else(|| panic!("{name}: case not listed: {listed:?}"));
        assert_eq!(row["missing_evidence"], true, "{name}");
        let photos: Vec<(String, bool)> =
            row["photos"].as_array().unwrap().iter().map(|p| (p["sha256"].as_str().unwrap().to_owned(), p["arrived"].as_bool().unwrap())).collect();
        assert_eq!(photos, [(big_sha.clone(), true), (small_sha.clone(), false)], "{name}");

        // The second photo in one chunk: now all evidence is in.
        assert_eq!(announce(&phone, &small_sha, small.len() as u64).status(), 201, "{name}");
        let done: Value = phone.put_chunk(&small_sha, 0, &small).json().unwrap();
        assert_eq!(done["complete"], true, "{name}");
        let case = incident(&phone, id);
        assert_eq!(case["missing_evidence"], false, "{name}");
        assert_eq!(case["photos"][1]["arrived"], true, "{name}");
        assert_eq!(case["version"], 3, "{name}");
        assert_eq!(timeline(&phone, id).iter().filter(|e| e["action"] == "photo_arrived").count(), 2, "{name}");
        let row = cli_incidents(&server).into_iter().find(|v| v["id"] == json!(id)).unwrap();
        assert!(row["photos"].as_array().unwrap().iter().all(|p| p["arrived"] == true), "{name}: {row}");
        assert_eq!(row["missing_evidence"], false, "{name}");
    }
}

#[test]
fn bytes_that_do_not_match_the_hash_are_refused_and_the_upload_starts_over() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let phone = server.device("worker1");
        let right = photo_bytes(3, 300_000);
        let wrong = photo_bytes(4, 300_000);
        assert_ne!(right, wrong);
        let sha = sha256_hex(&right);
        let (id, op) = report("0101", Some("G-001"), &[&right]);
        phone.push_ok(&[op]);
        assert_eq!(announce(&phone, &sha, right.len() as u64).status(), 201, "{name}");

        // Every chunk of the wrong bytes is accepted on its own checksum...
        let sizes = [100_000, 150_000, 50_000];
        let mut offset = 0;
        for (index, size) in sizes.iter().enumerate() {
            let response = phone.put_chunk(&sha, offset as u64, &wrong[offset..offset + size]);
            if index + 1 < sizes.len() {
                assert_eq!(response.status(), 200, "{name}: chunk {index}");
            } else {
                // ...until the whole does not hash to the announced SHA-256.
                assert_eq!(status_and_code(response), (422, "blob_hash_mismatch".into()), "{name}");
            }
            offset += size;
        }
        assert_eq!(blob_status(&phone, &sha), json!({"sha256": sha, "size": 300_000, "offset": 0, "complete": false}), "{name}: starts over");
        assert_eq!(status_and_code(phone.get(&format!("/v1/blobs/{sha}"))), (404, "blob_incomplete".into()), "{name}");
        let case = incident(&phone, id);
        assert_eq!(case["missing_evidence"], true, "{name}");
        assert_eq!(case["version"], 1, "{name}: nothing arrived");
        assert!(timeline(&phone, id).iter().all(|e| e["action"] != "photo_arrived"), "{name}");

        // The right bytes from offset 0 complete it.
        let mut offset = 0;
        for size in [120_000, 180_000] {
            let response = phone.put_chunk(&sha, offset as u64, &right[offset..offset + size]);
            assert_eq!(response.status(), 200, "{name}: right chunk at {offset}");
            offset += size;
        }
        assert_eq!(blob_status(&phone, &sha)["complete"], true, "{name}");
        assert_eq!(sha256_hex(&phone.get(&format!("/v1/blobs/{sha}")).bytes().unwrap()), sha, "{name}");
        let case = incident(&phone, id);
        assert_eq!(case["missing_evidence"], false, "{name}");
        assert_eq!(case["photos"][0]["arrived"], true, "{name}");
    }
}

#[test]
fn announcements_are_checked_against_the_cases() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let phone = server.device("worker1");
        let photo = photo_bytes(5, 20_000);
        let sha = sha256_hex(&photo);
        phone.push_ok(&[report("0101", Some("G-001"), &[&photo]).1]);

        // A blob no case announced.
        let orphan = sha256_hex(&photo_bytes(6, 20_000));
        assert_eq!(status_and_code(announce(&phone, &orphan, 20_000)), (409, "blob_not_announced".into()), "{name}");
        assert_eq!(status_and_code(phone.get(&format!("/v1/blobs/{orphan}/status"))), (404, "not_found".into()), "{name}");
        assert_eq!(status_and_code(phone.put_chunk(&orphan, 0, &photo)), (404, "not_found".into()), "{name}");
        // Announced by someone else's case: not this caller's to upload.
        let stranger = server.device("worker2");
        assert_eq!(status_and_code(announce(&stranger, &sha, 20_000)), (409, "blob_not_announced".into()), "{name}");

        // Another size than the case announced, before and after the blob row exists.
        assert_eq!(status_and_code(announce(&phone, &sha, 20_001)), (400, "blob_size_mismatch".into()), "{name}");
        assert_eq!(announce(&phone, &sha, 20_000).status(), 201, "{name}");
        assert_eq!(status_and_code(announce(&phone, &sha, 19_999)), (400, "blob_size_mismatch".into()), "{name}");
        assert_eq!(blob_status(&phone, &sha)["size"], 20_000, "{name}");

        // Malformed requests.
        assert_eq!(status_and_code(announce(&phone, "ABC", 10)), (400, "invalid_sha256".into()), "{name}");
        assert_eq!(status_and_code(announce(&phone, &sha.to_uppercase(), 20_000)), (400, "invalid_sha256".into()), "{name}");
        assert_eq!(status_and_code(announce(&phone, &sha, 0)), (400, "invalid_blob_size".into()), "{name}");
        assert_eq!(status_and_code(announce(&phone, &sha, api::MAX_BLOB_BYTES + 1)), (400, "invalid_blob_size".into()), "{name}");
        let no_checksum = phone
            .client
            .put(format!("{}/v1/blobs/{sha}/chunks?offset=0", phone.base))
            .header(api::DEVICE_ID_HEADER, &phone.id)
            .header("content-type", "application/octet-stream")
            .bearer_auth(phone.token())
            .body(photo.clone())
            .send()
            .unwrap();
        assert_eq!(status_and_code(no_checksum), (400, "chunk_checksum_missing".into()), "{name}");
        let empty = put_chunk_claiming(&phone, &sha, 0, &[], &sha256_hex(&[]));
        assert_eq!(status_and_code(empty), (400, "empty_chunk".into()), "{name}");
        assert_eq!(offset_of(&phone, &sha), 0, "{name}: refusals leave the offset at 0");

        // Download before completion.
        phone.put_chunk(&sha, 0, &photo[..5_000]);
        assert_eq!(status_and_code(phone.get(&format!("/v1/blobs/{sha}"))), (404, "blob_incomplete".into()), "{name}");
        assert_eq!(offset_of(&phone, &sha), 5_000, "{name}");
    }
}

#[test]
fn a_blob_with_every_byte_but_no_verification_is_finished_on_the_next_announce() {
    for backend in backends() {
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let photo = photo_bytes(3, 70_000);
        let (id, op) = report("0602", Some("G-001"), &[&photo]);
        assert_eq!(worker.push_ok(&[op])[0]["status"], "applied");
        let sha = sha256_hex(&photo);
        assert_eq!(worker.post("/v1/blobs", &serde_json::json!({"sha256": sha, "size": photo.len()})).status(), 201);
        assert_eq!(worker.put_chunk(&sha, 0, &photo).status(), 200);
        // As if the server had died between the last chunk and verifying it.
        server.db.write(|tx| tx.execute("UPDATE blobs SET complete = 0 WHERE sha256 = $1", gridwork_server::params![sha.clone()])).unwrap();
        let again: serde_json::Value = worker.post("/v1/blobs", &serde_json::json!({"sha256": sha, "size": photo.len()})).json().unwrap();
        assert_eq!(again["complete"], true, "{}", backend.name());
        let view: serde_json::Value = worker.get(&format!("/v1/incidents/{id}")).json().unwrap();
        assert_eq!(view["missing_evidence"], false);
        assert_eq!(sha256_hex(&worker.get(&format!("/v1/blobs/{sha}")).bytes().unwrap()), sha);
    }
}

/// Issue 11, hole 1: content addressing grants nothing. A worker of another
/// grid who knows a private case's photo hash announces it in a report of
/// their own: the server neither lets them download it nor tells them it
/// exists (their upload looks like any other, from offset 0, and their
/// photo has not arrived); bytes that are not the photo's are refused. Only
/// sending every byte of the photo (which they then have anyway) backs
/// their reference. A legitimate second reporter of the same photo shows
/// its bytes the same way, and then both cases have it.
#[test]
fn a_photo_hash_learned_elsewhere_grants_nothing() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let owner = server.device("worker1");
        let photo = photo_bytes(31, 300_000);
        let sha = sha256_hex(&photo);
        let (private, op) = report("0101", Some("G-001"), &[&photo]);
        owner.push_ok(&[op]);
        assert_eq!(announce(&owner, &sha, photo.len() as u64).status(), 201, "{name}");
        upload_chunks(&owner, &sha, &photo, 0, usize::MAX, name);
        assert_eq!(incident(&owner, private)["photos"][0]["arrived"], true, "{name}");

        // The attacker, in G-002, announces the hash in a report of their own.
        let attacker = server.device("worker2");
        let (own, op) = report("0101", Some("G-002"), &[&photo]);
        assert_eq!(attacker.push_ok(&[op])[0]["status"], "applied", "{name}");
        let told = announce(&attacker, &sha, photo.len() as u64);
        assert!(told.status().is_success(), "{name}");
        let told: Value = told.json().unwrap();
        assert_eq!((told["offset"].as_u64(), told["complete"].as_bool()), (Some(0), Some(false)), "{name}: nothing says the photo is here");
        assert_eq!(blob_status(&attacker, &sha)["complete"], false, "{name}");
        for rendition in ["original", "thumb", "1280"] {
            let got = attacker.get(&format!("/v1/blobs/{sha}?rendition={rendition}"));
            assert_eq!(status_and_code(got), (404, "blob_incomplete".into()), "{name}: {rendition}: as if the bytes were not here");
        }
        let view = incident(&attacker, own);
        assert_eq!((view["photos"][0]["arrived"].as_bool(), view["missing_evidence"].as_bool()), (Some(false), Some(true)), "{name}");

        // Nor is it reached as "a preview" of a photo of the attacker's own.
        let decoy = photo_bytes(32, 20_000);
        let decoy_sha = sha256_hex(&decoy);
        attacker.push_ok(&[report("0101", Some("G-002"), &[&decoy]).1]);
        announce(&attacker, &decoy_sha, decoy.len() as u64);
        upload_chunks(&attacker, &decoy_sha, &decoy, 0, usize::MAX, name);
        let as_preview = attacker.post("/v1/blobs", &json!({"sha256": sha, "size": photo.len(), "preview_of": decoy_sha}));
        assert_eq!(status_and_code(as_preview), (400, "invalid_preview".into()), "{name}");
        let announced_elsewhere = sha256_hex(&photo_bytes(33, 1_000));
        owner.push_ok(&[report("0101", Some("G-001"), &[&photo_bytes(33, 1_000)]).1]);
        let as_preview = attacker.post("/v1/blobs", &json!({"sha256": announced_elsewhere, "size": 1_000, "preview_of": decoy_sha}));
        assert_eq!(status_and_code(as_preview), (400, "invalid_preview".into()), "{name}: a photo announced, not yet uploaded");
        assert_eq!(status_and_code(attacker.get(&format!("/v1/blobs/{sha}?rendition=thumb"))), (404, "blob_incomplete".into()), "{name}");

        // Bytes that are not the photo's: refused, and shown from 0 again.
        let mut forged = photo[..100_000].to_vec();
        forged[50_000] ^= 1;
        assert_eq!(attacker.put_chunk(&sha, 0, &forged[..40_000]).status(), 200, "{name}: a matching prefix is taken");
        assert_eq!(status_and_code(attacker.put_chunk(&sha, 40_000, &forged[40_000..])), (422, "blob_hash_mismatch".into()), "{name}");
        assert_eq!(offset_of(&attacker, &sha), 0, "{name}");
        assert_eq!(status_and_code(attacker.get(&format!("/v1/blobs/{sha}"))), (404, "blob_incomplete".into()), "{name}");
        // The owner's case is untouched by all this.
        let mine = incident(&owner, private);
        assert_eq!((mine["photos"][0]["arrived"].as_bool(), mine["missing_evidence"].as_bool()), (Some(true), Some(false)), "{name}");
        assert_eq!(owner.get(&format!("/v1/blobs/{sha}")).bytes().unwrap().to_vec(), photo, "{name}");

        // Every byte of the photo backs the reference (a second reporter of the same photo).
        let done = upload_chunks(&attacker, &sha, &photo, 0, usize::MAX, name);
        assert_eq!(done["complete"], true, "{name}");
        assert_eq!(incident(&attacker, own)["photos"][0]["arrived"], true, "{name}");
        assert!(timeline(&attacker, own).iter().any(|e| e["action"] == "photo_arrived"), "{name}");
        assert_eq!(attacker.get(&format!("/v1/blobs/{sha}")).bytes().unwrap().to_vec(), photo, "{name}");
        assert_eq!(timeline(&owner, private).iter().filter(|e| e["action"] == "photo_arrived").count(), 1, "{name}: the owner's case told once");
        // The owner announcing it again in another report needs nothing more.
        let (again, op) = report("0101", Some("G-001"), &[&photo]);
        owner.push_ok(&[op]);
        assert_eq!(announce(&owner, &sha, photo.len() as u64).json::<Value>().unwrap()["complete"], true, "{name}");
        assert_eq!(incident(&owner, again)["photos"][0]["arrived"], true, "{name}");
    }
}

/// A chunk PUT with `size` announces the blob in the same request: a photo
/// travels in one request on a good link. The announcement is checked as
/// `POST /v1/blobs` checks it; a blob the server holds already is not
/// appended to, the reply says where to go on from.
fn put_announcing(device: &Device, sha: &str, size: u64, offset: u64, chunk: &[u8]) -> Response {
    device
        .client
        .put(format!("{}/v1/blobs/{sha}/chunks?offset={offset}&size={size}", device.base))
        .header(api::DEVICE_ID_HEADER, &device.id)
        .header("x-gridwork-chunk-sha256", sha256_hex(chunk))
        .header("content-type", "application/octet-stream")
        .bearer_auth(device.token())
        .body(chunk.to_vec())
        .send()
        .unwrap()
}

#[test]
fn the_first_chunk_may_carry_the_announcement() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let phone = server.device("worker1");
        let (whole, split) = (photo_bytes(21, 30_000), photo_bytes(22, 30_000));
        let (id, op) = report("0101", Some("G-001"), &[&whole, &split]);
        phone.push_ok(&[op]);

        // In one request, announced and complete.
        let done = put_announcing(&phone, &sha256_hex(&whole), 30_000, 0, &whole);
        assert_eq!(done.status(), 200, "{name}");
        let done: Value = done.json().unwrap();
        assert_eq!((done["offset"].as_u64(), done["complete"].as_bool()), (Some(30_000), Some(true)), "{name}: {done}");
        assert_eq!(phone.get(&format!("/v1/blobs/{}", sha256_hex(&whole))).bytes().unwrap().to_vec(), whole, "{name}");
        // Sent again (a reply lost): nothing appended, the blob is complete.
        let again: Value = put_announcing(&phone, &sha256_hex(&whole), 30_000, 0, &whole).json().unwrap();
        assert_eq!(again["complete"], true, "{name}");

        // A first part announced, the rest as plain chunks.
        let sha = sha256_hex(&split);
        let first: Value = put_announcing(&phone, &sha, 30_000, 0, &split[..10_000]).json().unwrap();
        assert_eq!((first["offset"].as_u64(), first["complete"].as_bool()), (Some(10_000), Some(false)), "{name}");
        // An announcing chunk for a blob that already holds bytes is not appended.
        let held: Value = put_announcing(&phone, &sha, 30_000, 0, &split[..5_000]).json().unwrap();
        assert_eq!(held["offset"], 10_000, "{name}: where to go on from");
        assert_eq!(phone.put_chunk(&sha, 10_000, &split[10_000..]).status(), 200, "{name}");
        assert_eq!(blob_status(&phone, &sha)["complete"], true, "{name}");
        assert_eq!(incident(&phone, id)["missing_evidence"], false, "{name}");

        // Checked as an announcement: not announced by a case, another size, not at 0.
        let orphan = photo_bytes(23, 1_000);
        assert_eq!(status_and_code(put_announcing(&phone, &sha256_hex(&orphan), 1_000, 0, &orphan)), (409, "blob_not_announced".into()), "{name}");
        let (_, op) = report("0101", Some("G-001"), &[&orphan]);
        phone.push_ok(&[op]);
        assert_eq!(status_and_code(put_announcing(&phone, &sha256_hex(&orphan), 999, 0, &orphan)), (400, "blob_size_mismatch".into()), "{name}");
        assert_eq!(status_and_code(put_announcing(&phone, &sha256_hex(&orphan), 1_000, 10, &orphan[10..])), (400, "invalid_query".into()), "{name}");
        assert_eq!(status_and_code(put_announcing(&server.device("worker2"), &sha256_hex(&orphan), 1_000, 0, &orphan)), (409, "blob_not_announced".into()), "{name}");
    }
}
