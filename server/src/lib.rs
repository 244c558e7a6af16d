//! gridwork-server: the reference sync server for Gridwork devices.
//!
//! Embedded default: one data directory holding a SQLite file and a blob
//! folder, zero setup. At scale: the same server on PostgreSQL with blobs in
//! the database, stateless, so several instances can run side by side.

pub mod admin;
pub mod auth;
pub mod blobs;
pub mod cases;
pub mod changes;
pub mod db;
pub mod error;
pub mod http;
pub mod pull;
pub mod push;
pub mod reference;
pub mod renditions;
pub mod scope;
pub mod text;
pub mod throttle;
pub mod workflow;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use blobs::BlobStore;
use db::{Database, PostgresDatabase, SqliteDatabase};
pub use error::{Result, ServerError};

/// Where the server keeps its state.
#[derive(Clone, Debug)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// `postgres://…`; `None` for the embedded SQLite default.
    pub database_url: Option<String>,
    pub max_connections: usize,
}

pub fn open_storage(config: &StorageConfig) -> Result<(Database, BlobStore)> {
    let io = |e: std::io::Error| ServerError::storage(format!("data directory: {}", e.kind()));
    let (db, blobs) = match &config.database_url {
        Some(url) => (Database::Postgres(PostgresDatabase::connect(url, config.max_connections)?), BlobStore::Database),
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(io)?;
            let db = Database::Sqlite(SqliteDatabase::open(&config.data_dir.join("gridwork-server.db"))?);
            (db, BlobStore::folder(config.data_dir.join("blobs"))?)
        }
    };
    db.migrate()?;
    seed_default_categories(&db)?;
    Ok((db, blobs))
}

/// A new server starts with the default category table.
fn seed_default_categories(db: &Database) -> Result<()> {
    db.write(|tx| {
        if tx.query_opt("SELECT 1 FROM categories", &[])?.is_none() {
            let table: serde_json::Value = serde_json::from_str(gridwork_protocol::DEFAULT_CATEGORY_TABLE).expect("embedded table is JSON");
            reference::import_categories(tx, &table, http::now_ms())?;
        }
        Ok(())
    })
}

pub fn app_state(db: Database, blobs: BlobStore, policy: auth::TokenPolicy) -> http::App {
    Arc::new(http::AppState { db, blobs, policy, login_throttle: throttle::LoginThrottle::default() })
}

/// Serve until the future `shutdown` completes.
pub async fn serve(listener: tokio::net::TcpListener, app: http::App, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, http::router(app).into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown).await
}

/// A server running on a thread of its own (tests, benchmarks, the demo):
/// bound when this returns, stopped when dropped.
pub struct BackgroundServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Serve `app` on `addr` ("127.0.0.1:0" for any free port).
    pub fn start(app: http::App, addr: &str) -> std::io::Result<BackgroundServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let _ = serve(listener, app, async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        Ok(BackgroundServer { addr, stop: Some(stop), thread: Some(thread) })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop serving and wait for the server thread to end.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.stop();
    }
}
