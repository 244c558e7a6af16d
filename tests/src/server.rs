//! A real gridwork-server on loopback for end-to-end tests, on the embedded
//! SQLite default, with a cast of users and two grids.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gridwork_protocol::Named;
use gridwork_protocol::api::Role;
use gridwork_server::auth::TokenPolicy;
use gridwork_server::db::Database;
use gridwork_server::{BackgroundServer, StorageConfig, admin, auth};

pub const PASSWORD: &str = "correct horse battery";

pub struct LocalServer {
    pub addr: SocketAddr,
    pub db: Database,
    pub data_dir: PathBuf,
    running: BackgroundServer,
}

impl LocalServer {
    /// Start on `data_dir` (reused across restarts) at `addr` (port 0 for any).
    pub fn start(data_dir: &Path, addr: &str, policy: TokenPolicy) -> LocalServer {
        let config = StorageConfig { data_dir: data_dir.to_owned(), database_url: None, max_connections: 8 };
        let (db, blobs) = gridwork_server::open_storage(&config).expect("open server storage");
        let app = gridwork_server::app_state(db.clone(), blobs, policy);
        let running = BackgroundServer::start(app, addr).expect("bind");
        LocalServer { addr: running.addr, db, data_dir: data_dir.to_owned(), running }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Users: dispatcher, supervisor1 (G-001), worker1 (G-001), volunteer1 (G-001); grids G-001, G-002.
    pub fn seed(&self) {
        let grids: serde_json::Value = serde_json::from_str(&crate::two_grids_geojson()).unwrap();
        self.db.write(|tx| gridwork_server::reference::import_grids(tx, &grids, 0)).unwrap();
        let hash = auth::hash_password(PASSWORD).unwrap();
        for (name, role) in [("dispatcher", Role::Dispatcher), ("supervisor1", Role::Supervisor), ("worker1", Role::GridWorker), ("volunteer1", Role::Volunteer)] {
            let grids = if role == Role::Dispatcher { vec![] } else { vec!["G-001".to_owned()] };
            self.db.write(|tx| admin::add_user(tx, name, &hash, role, &grids, 0)).unwrap();
        }
    }

    /// One more user with the test password.
    pub fn add_user(&self, name: &str, role: Role, grids: &[&str]) {
        let hash = auth::hash_password(PASSWORD).unwrap();
        let grids: Vec<String> = grids.iter().map(|g| (*g).to_owned()).collect();
        self.db.write(|tx| admin::add_user(tx, name, &hash, role, &grids, 0)).unwrap();
    }

    /// A workflow step as the command line takes it.
    pub fn step(&self, id: &str, action: &str, assignee: Option<&str>) -> String {
        let request = gridwork_protocol::api::TransitionRequest {
            action: action.into(),
            note: Some("ok".into()),
            assignee: assignee.map(str::to_owned),
            department: None,
            deadline_ms: None,
            merge_into: None,
            rating: None,
            photos: vec![],
        };
        let caller = admin::system_caller();
        self.db
            .write(|tx| match gridwork_server::cases::transition(tx, &caller, id, &request, 1)? {
                Ok(_) => Ok(gridwork_server::cases::load_view_for(tx, &caller, id)?.unwrap().state.as_str().to_owned()),
                Err(r) => Err(gridwork_server::ServerError::bad_request(r.code, r.message)),
            })
            .unwrap()
    }

    /// A case's state on the server.
    pub fn step_state(&self, id: gridwork_core::Uuid) -> String {
        self.db.read(|tx| Ok(tx.query_one("SELECT state FROM incidents WHERE id = $1", gridwork_server::params![id.to_string()])?.text(0))).unwrap()
    }

    /// A case's timeline on the server: (action, note), oldest first.
    pub fn timeline(&self, id: gridwork_core::Uuid) -> Vec<(String, Option<String>)> {
        self.db
            .read(|tx| {
                let rows = tx.query("SELECT action, note FROM timeline WHERE incident_id = $1 ORDER BY seq", gridwork_server::params![id.to_string()])?;
                Ok(rows.iter().map(|r| (r.text(0), r.opt_text(1))).collect())
            })
            .unwrap()
    }

    /// Count of rows in a server table (for exactly-once checks).
    pub fn count(&self, sql: &str) -> i64 {
        self.db.read(|tx| Ok(tx.query_one(sql, &[])?.int(0))).unwrap()
    }

    /// A case's photos: (sha256, arrived).
    pub fn photos(&self, incident_id: &str) -> Vec<(String, bool)> {
        self.db
            .read(|tx| {
                Ok(tx
                    .query(
                        "SELECT p.sha256, COALESCE(b.complete, 0) FROM incident_photos p LEFT JOIN blobs b ON b.sha256 = p.sha256 WHERE p.incident_id = $1 ORDER BY p.position",
                        gridwork_server::params![incident_id],
                    )?
                    .iter()
                    .map(|r| (r.text(0), r.int(1) != 0))
                    .collect())
            })
            .unwrap()
    }

    /// The bytes of a complete blob as the server stores them (folder store).
    pub fn blob_bytes(&self, sha256: &str) -> Vec<u8> {
        std::fs::read(self.data_dir.join("blobs").join("complete").join(sha256))
            .or_else(|_| std::fs::read(self.data_dir.join("blobs").join("partial").join(sha256)))
            .expect("blob on server")
    }

    pub fn stop(mut self) {
        self.running.stop();
    }
}

pub fn default_policy() -> TokenPolicy {
    TokenPolicy::default()
}
