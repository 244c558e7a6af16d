//! At scale several server instances run on one PostgreSQL database behind
//! a load balancer. They keep no state of their own: a device may hit any
//! of them for any request, including the chunks of one upload.

mod common;

use common::*;
use gridwork_server::auth::TokenPolicy;
use gridwork_server::StorageConfig;

#[test]
fn two_instances_on_one_postgresql_share_everything() {
    let Some(Backend::Postgres(admin_url)) = backends().into_iter().find(|b| matches!(b, Backend::Postgres(_))) else {
        eprintln!("skipped: no PostgreSQL (CI always has one)");
        return;
    };
    let first = TestServer::with_cast(&Backend::Postgres(admin_url));
    // A second instance on the first one's database.
    let url = match &first.db {
        gridwork_server::db::Database::Postgres(_) => first.database_url().expect("postgres url"),
        _ => unreachable!(),
    };
    let config = StorageConfig { data_dir: first.data_dir.join("second"), database_url: Some(url), max_connections: 8 };
    let (db, blobs) = gridwork_server::open_storage(&config).unwrap();
    let second = TestServer::serve_existing(db, blobs, TokenPolicy::default(), &first);

    // Log in on one instance, use the token on the other.
    let on_first = first.device("worker1");
    let on_second = Device::new(&second, &on_first.id);
    *on_second.tokens.lock().unwrap() = on_first.tokens.lock().unwrap().clone();
    assert_eq!(on_second.get("/v1/me").status(), 200);

    let photo = photo_bytes(9, 300_000);
    let (id, op) = report("0602", Some("G-001"), &[&photo]);
    assert_eq!(on_first.push_ok(std::slice::from_ref(&op))[0]["status"], "applied");
    assert_eq!(on_second.push_ok(&[op])[0]["status"], "duplicate", "dedupe is in the shared database");

    // Chunks of one upload alternate between instances.
    let sha = sha256_hex(&photo);
    assert_eq!(on_second.post("/v1/blobs", &serde_json::json!({"sha256": sha, "size": photo.len()})).status(), 201);
    for (i, chunk) in photo.chunks(50_000).enumerate() {
        let device = if i % 2 == 0 { &on_first } else { &on_second };
        assert_eq!(device.put_chunk(&sha, (i * 50_000) as u64, chunk).status(), 200, "chunk {i}");
    }
    let bytes = on_first.get(&format!("/v1/blobs/{sha}")).bytes().unwrap();
    assert_eq!(sha256_hex(&bytes), sha);

    // A step on one instance is pulled from the other.
    let dispatcher = first.device("dispatcher");
    assert_eq!(dispatcher.transition(id, serde_json::json!({"action": "register"})).status(), 200);
    let supervisor_on_second = Device::new(&second, "sup-dev");
    supervisor_on_second.login("supervisor1", PASSWORD);
    let (changes, _) = supervisor_on_second.pull_all(0);
    let case = changes.iter().rev().find(|c| c["entity_id"] == id.to_string()).expect("case pulled");
    assert_eq!(case["data"]["state"], "registered");
    assert_eq!(case["data"]["missing_evidence"], false);
}
