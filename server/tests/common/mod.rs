//! Test harness: a real gridwork-server on loopback over real HTTP, on the
//! embedded SQLite default and on a real PostgreSQL (`scripts/test` starts
//! one and sets GRIDWORK_TEST_POSTGRES_URL). Every test runs on both.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use gridwork_protocol::api::{self, Role, TokenResponse};
use gridwork_protocol::{CapturedAt, OperationEnvelope, OperationKind, PhotoRef, SubmitIncident};
use gridwork_server::auth::TokenPolicy;
use gridwork_server::db::Database;
use gridwork_server::{BackgroundServer, StorageConfig, admin, auth};
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// SQLite always; PostgreSQL when GRIDWORK_TEST_POSTGRES_URL names an admin
/// connection. Under CI the PostgreSQL run is mandatory.
pub fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Sqlite];
    match std::env::var("GRIDWORK_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => list.push(Backend::Postgres(url)),
        _ => assert!(std::env::var_os("CI").is_none(), "CI must run the server tests on PostgreSQL too (scripts/test starts it)"),
    }
    list
}

/// A fresh PostgreSQL database for one test; dropped when the server is.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    fn create(admin_url: &str) -> (PgDatabase, String) {
        let name = format!("gw_test_{}", Uuid::now_v7().simple());
        let mut client = postgres::Client::connect(admin_url, postgres::NoTls).expect("connect to test PostgreSQL");
        client.batch_execute(&format!("CREATE DATABASE {name}")).expect("create test database");
        let url = replace_database(admin_url, &name);
        (PgDatabase { admin_url: admin_url.to_owned(), name }, url)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("URL has a database part");
    format!("{base}/{name}")
}

pub struct TestServer {
    pub base: String,
    pub addr: SocketAddr,
    pub db: Database,
    pub backend: Backend,
    pub data_dir: PathBuf,
    running: BackgroundServer,
    _tempdir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

impl TestServer {
    pub fn start(backend: &Backend) -> TestServer {
        Self::start_with(backend, TokenPolicy::default())
    }

    pub fn start_with(backend: &Backend, policy: TokenPolicy) -> TestServer {
        let tempdir = tempfile::tempdir().unwrap();
        let (pg, database_url) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres(admin) => {
                let (pg, url) = PgDatabase::create(admin);
                (Some(pg), Some(url))
            }
        };
        let config = StorageConfig { data_dir: tempdir.path().join("server"), database_url, max_connections: 16 };
        let (db, blobs) = gridwork_server::open_storage(&config).expect("open storage");
        let running = BackgroundServer::start(gridwork_server::app_state(db.clone(), blobs, policy), "127.0.0.1:0").unwrap();
        let addr = running.addr;
        TestServer {
            base: format!("http://{addr}"),
            addr,
            db,
            backend: backend.clone(),
            data_dir: config.data_dir,
            running,
            _tempdir: tempdir,
            _pg: pg,
        }
    }

    /// The database URL of a PostgreSQL-backed server.
    pub fn database_url(&self) -> Option<String> {
        self._pg.as_ref().map(|pg| replace_database(&pg.admin_url, &pg.name))
    }

    /// Serve an already opened storage (a second instance on the same
    /// database); it shares the first server's lifetime for its database.
    pub fn serve_existing(db: Database, blobs: gridwork_server::blobs::BlobStore, policy: TokenPolicy, first: &TestServer) -> TestServer {
        let running = BackgroundServer::start(gridwork_server::app_state(db.clone(), blobs, policy), "127.0.0.1:0").unwrap();
        let addr = running.addr;
        TestServer {
            base: format!("http://{addr}"),
            addr,
            db,
            backend: first.backend.clone(),
            data_dir: first.data_dir.clone(),
            running,
            _tempdir: tempfile::tempdir().unwrap(),
            _pg: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Add a user directly (as the admin CLI does).
    pub fn add_user(&self, username: &str, role: Role, grids: &[&str]) -> api::UserInfo {
        let hash = auth::hash_password(PASSWORD).unwrap();
        let grids: Vec<String> = grids.iter().map(|g| g.to_string()).collect();
        self.db.write(|tx| admin::add_user(tx, username, &hash, role, &grids, 0)).unwrap()
    }

    pub fn import_grids(&self) {
        let geojson: Value = serde_json::from_str(&two_grids_geojson()).unwrap();
        self.db.write(|tx| gridwork_server::reference::import_grids(tx, &geojson, 0)).unwrap();
    }

    /// Log in as `username` from a new device.
    pub fn device(&self, username: &str) -> Device {
        let device = Device::new(self, &format!("dev-{username}-{}", &Uuid::now_v7().simple().to_string()[20..]));
        device.login(username, PASSWORD);
        device
    }

    /// The standard cast: admin, dispatcher, a supervisor and a worker of
    /// G-001, a worker of G-002, a volunteer of G-001; grids imported.
    pub fn with_cast(backend: &Backend) -> TestServer {
        let server = TestServer::start(backend);
        server.import_grids();
        server.add_user("admin", Role::Admin, &[]);
        server.add_user("dispatcher", Role::Dispatcher, &[]);
        server.add_user("supervisor1", Role::Supervisor, &["G-001"]);
        server.add_user("worker1", Role::GridWorker, &["G-001"]);
        server.add_user("worker2", Role::GridWorker, &["G-002"]);
        server.add_user("volunteer1", Role::Volunteer, &["G-001"]);
        server
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Stop serving before the test database goes away.
        self.running.stop();
    }
}

pub const PASSWORD: &str = "correct horse battery";

/// A simulated phone: a device id, a session, an HTTP client.
pub struct Device {
    pub id: String,
    pub base: String,
    pub client: Client,
    pub tokens: std::sync::Mutex<Option<TokenResponse>>,
}

impl Device {
    pub fn new(server: &TestServer, id: &str) -> Device {
        Device { id: id.to_owned(), base: server.base.clone(), client: Client::new(), tokens: Default::default() }
    }

    pub fn token(&self) -> String {
        self.tokens.lock().unwrap().as_ref().map(|t| t.access_token.clone()).unwrap_or_default()
    }

    pub fn login(&self, username: &str, password: &str) -> Response {
        let response = self
            .client
            .post(format!("{}/v1/auth/login", self.base))
            .header(api::DEVICE_ID_HEADER, &self.id)
            .json(&json!({"username": username, "password": password}))
            .send()
            .unwrap();
        if response.status().is_success() {
            let tokens: TokenResponse = response.json().unwrap();
            *self.tokens.lock().unwrap() = Some(tokens);
            // Return a fresh, equivalent response for callers who want to look.
            return self.get("/v1/me");
        }
        response
    }

    pub fn get(&self, path: &str) -> Response {
        self.client.get(format!("{}{path}", self.base)).header(api::DEVICE_ID_HEADER, &self.id).bearer_auth(self.token()).send().unwrap()
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.client.post(format!("{}{path}", self.base)).header(api::DEVICE_ID_HEADER, &self.id).bearer_auth(self.token()).json(body).send().unwrap()
    }

    pub fn push(&self, operations: &[OperationEnvelope]) -> Response {
        self.post("/v1/push", &json!({ "operations": operations }))
    }

    /// Push and return the per-op results (asserting HTTP 200).
    pub fn push_ok(&self, operations: &[OperationEnvelope]) -> Vec<Value> {
        let response = self.push(operations);
        assert_eq!(response.status(), 200, "push failed: {}", response.text().unwrap());
        let body: Value = response.json().unwrap();
        body["results"].as_array().unwrap().clone()
    }

    pub fn put_chunk(&self, sha: &str, offset: u64, chunk: &[u8]) -> Response {
        self.client
            .put(format!("{}/v1/blobs/{sha}/chunks?offset={offset}", self.base))
            .header(api::DEVICE_ID_HEADER, &self.id)
            .header("x-gridwork-chunk-sha256", sha256_hex(chunk))
            .header("content-type", "application/octet-stream")
            .bearer_auth(self.token())
            .body(chunk.to_vec())
            .send()
            .unwrap()
    }

    /// Pull everything since `since`, following pages.
    pub fn pull_all(&self, since: i64) -> (Vec<Value>, i64) {
        let mut cursor = since;
        let mut changes = Vec::new();
        loop {
            let response = self.get(&format!("/v1/pull?since={cursor}&limit=50"));
            assert_eq!(response.status(), 200);
            let page: Value = response.json().unwrap();
            changes.extend(page["changes"].as_array().unwrap().iter().cloned());
            cursor = page["next_cursor"].as_i64().unwrap();
            if !page["has_more"].as_bool().unwrap() {
                return (changes, cursor);
            }
        }
    }

    pub fn transition(&self, id: Uuid, body: Value) -> Response {
        self.post(&format!("/v1/incidents/{id}/transitions"), &body)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A report as a device would push it, with photos announced by hash.
pub fn report(category: &str, grid: Option<&str>, photos: &[&[u8]]) -> (Uuid, OperationEnvelope) {
    let incident_id = Uuid::now_v7();
    let payload = SubmitIncident {
        incident_id,
        category_code: category.to_owned(),
        description: "楼道堆物，占用消防通道".to_owned(),
        address: Some("南京东路 100 弄".into()),
        // Inside the grid it names (G-001 west of 121.47, G-002 east), or
        // outside both for none: the server places a report by its location.
        location: Some(gridwork_protocol::GeoPoint {
            lat: if grid.is_some() { 31.23 } else { 31.30 },
            lon: if grid == Some("G-002") { 121.475 } else { 121.465 },
            accuracy_m: Some(5.0),
        }),
        grid_code: grid.map(str::to_owned),
        captured_at: CapturedAt { device_ms: 1, corrected_ms: 1 },
        submitted_at: CapturedAt { device_ms: 2, corrected_ms: 2 },
        photos: photos
            .iter()
            .map(|bytes| PhotoRef {
                photo_id: Uuid::now_v7(),
                sha256: sha256_hex(bytes),
                byte_size: bytes.len() as u64,
                mime_type: "image/jpeg".into(),
                width: 10,
                height: 10,
                taken_at_ms: None,
                location: None,
                dhash: "0000000000000000".into(),
            })
            .collect(),
        resolved_on_spot: None,
        resubmission_of: None,
    };
    (incident_id, envelope(incident_id, OperationKind::SubmitIncident, serde_json::to_value(payload).unwrap()))
}

pub fn envelope(entity_id: Uuid, kind: OperationKind, payload: Value) -> OperationEnvelope {
    OperationEnvelope { op_id: Uuid::now_v7(), entity_id, kind, schema_version: kind.current_schema(), payload }
}

pub fn transition_op(incident_id: Uuid, body: Value) -> OperationEnvelope {
    let mut payload = body;
    payload["incident_id"] = json!(incident_id);
    envelope(incident_id, OperationKind::TransitionIncident, payload)
}

pub fn two_grids_geojson() -> String {
    json!({
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"code": "G-001", "name": "第一网格", "level": "key_attention", "community": "C-01", "street": "S-01"},
             "geometry": {"type": "Polygon", "coordinates": [[[121.46, 31.22], [121.47, 31.22], [121.47, 31.24], [121.46, 31.24], [121.46, 31.22]]]}},
            {"type": "Feature", "properties": {"code": "G-002", "name": "第二网格", "level": "routine", "community": "C-01", "street": "S-01"},
             "geometry": {"type": "Polygon", "coordinates": [[[121.47, 31.22], [121.48, 31.22], [121.48, 31.24], [121.47, 31.24], [121.47, 31.22]]]}}
        ]
    })
    .to_string()
}

/// Some bytes that stand in for a photo (the server does not decode).
pub fn photo_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed as u32).to_le_bytes()[1]).collect()
}

pub fn arc<T>(t: T) -> Arc<T> {
    Arc::new(t)
}
