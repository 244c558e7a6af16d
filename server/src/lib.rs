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

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// What one client may hold, against clients slow or greedy on purpose.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// A request's headers must arrive within this.
    pub header_read_timeout: Duration,
    /// A request body may pause this long between two pieces, and no
    /// longer: a client that declares a body and stops sending is cut off,
    /// while a slow 2G upload that keeps trickling is not.
    pub body_idle_timeout: Duration,
    /// Open connections per client address; more are closed at once.
    pub max_connections_per_client: usize,
    /// Reverse proxies in front of the server (they terminate TLS): their
    /// connections are not capped per address, and a request through one
    /// is from the address it names last in `X-Forwarded-For`, so login
    /// throttling sees the real client. Never trusted from anyone else.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(20),
            body_idle_timeout: Duration::from_secs(30),
            max_connections_per_client: 64,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Serve until the future `shutdown` completes.
pub async fn serve(listener: tokio::net::TcpListener, app: http::App, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    serve_with(listener, app, ConnectionLimits::default(), shutdown).await
}

/// [`serve`] with explicit connection limits. Our own accept loop (axum's
/// `serve` has no header timeout): each connection gets the client address
/// as axum's `ConnectInfo`, a header read timeout, a body idle timeout, and
/// a slot among its address's connections; shutdown lets requests in
/// progress finish.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: http::App,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let router = http::router(app);
    let open: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1.1: what the devices speak (and all the timeouts apply to).
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: breathe, go on.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let proxy = limits.trusted_proxies.contains(&peer.ip());
        let slot = if proxy {
            None // the proxy limits its clients; capping it would cap everyone
        } else {
            let Some(slot) = ClientSlot::take(&open, peer.ip(), limits.max_connections_per_client) else {
                tracing::warn!("connection refused: too many from one client");
                continue;
            };
            Some(slot)
        };
        let router = router.clone();
        let body_idle = limits.body_idle_timeout;
        let trusted = limits.trusted_proxies.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let client = if proxy { http::forwarded_client(request.headers(), &trusted).unwrap_or(peer.ip()) } else { peer.ip() };
            request.extensions_mut().insert(http::ClientIp(client));
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            let request = request.map(|body| axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_idle, body)));
            router.clone().oneshot(request)
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// One open connection of a client address, released when dropped.
struct ClientSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    address: IpAddr,
}

impl ClientSlot {
    fn take(open: &Arc<Mutex<HashMap<IpAddr, usize>>>, address: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut counts = open.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(address).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientSlot { open: open.clone(), address })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.address);
            }
        }
    }
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
        Self::start_with(app, addr, ConnectionLimits::default())
    }

    /// [`BackgroundServer::start`] with explicit connection limits (a
    /// benchmark's hundreds of phones all come from loopback).
    pub fn start_with(app: http::App, addr: &str, limits: ConnectionLimits) -> std::io::Result<BackgroundServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let _ = serve_with(listener, app, limits, async {
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
