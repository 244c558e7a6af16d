//! Clients slow or greedy on purpose, over real TCP: a client that never
//! finishes its headers or its body is cut off, and one address cannot hold
//! more than its share of connections; ordinary requests are served
//! meanwhile, and a body that keeps trickling is not cut off.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gridwork_server::{ConnectionLimits, StorageConfig};

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.thread.take().map(|t| t.join());
    }
}

fn start(limits: ConnectionLimits) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig { data_dir: dir.path().to_owned(), database_url: None, max_connections: 4 };
    let (db, blobs) = gridwork_server::open_storage(&config).unwrap();
    let app = gridwork_server::app_state(db, blobs, Default::default());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        runtime.block_on(gridwork_server::serve_with(listener, app, limits, async {
            let _ = stopped.await;
        }))
        .unwrap();
    });
    Running { addr, stop: Some(stop), thread: Some(thread), _dir: dir }
}

/// Reads until the peer closes (Ok(bytes)) or `wait` passes (Err).
fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Result<Vec<u8>, ()> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut all = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(all),
            Ok(n) => all.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(all),
            Err(_) => return Err(()),
        }
    }
}

fn health(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    String::from_utf8_lossy(&read_until_closed(&mut stream, Duration::from_secs(5)).expect("health answers")).into_owned()
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let server = start(ConnectionLimits { header_read_timeout: Duration::from_secs(1), ..Default::default() });
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").unwrap();
    let started = Instant::now();
    // Served meanwhile.
    assert!(health(server.addr).starts_with("HTTP/1.1 200"));
    let closed = read_until_closed(&mut slow, Duration::from_secs(10));
    let waited = started.elapsed();
    assert!(closed.is_ok(), "the slow client still holds its connection after {waited:?}");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "{waited:?}");
}

#[test]
fn one_address_cannot_hold_more_than_its_connections() {
    let server = start(ConnectionLimits { max_connections_per_client: 3, ..Default::default() });
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    // The accept loop sees them in order; give it a moment to count them.
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(server.addr).unwrap();
    let _ = extra.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let answer = read_until_closed(&mut extra, Duration::from_secs(5)).expect("the extra connection is closed at once");
    assert!(answer.is_empty(), "served beyond the cap: {}", String::from_utf8_lossy(&answer));
    // Released slots are given back.
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert!(health(server.addr).starts_with("HTTP/1.1 200"));
}

#[test]
fn a_client_that_stops_sending_its_body_is_cut_off_but_a_trickle_is_not() {
    let server = start(ConnectionLimits { body_idle_timeout: Duration::from_secs(1), ..Default::default() });
    let body = br#"{"username": "nobody", "password": "wrong-password"}"#;
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nx-gridwork-device: d1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // Declares the body, sends ten bytes, stops.
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled.write_all(head.as_bytes()).unwrap();
    stalled.write_all(&body[..10]).unwrap();
    let started = Instant::now();
    assert!(health(server.addr).starts_with("HTTP/1.1 200"), "served meanwhile");
    let answer = read_until_closed(&mut stalled, Duration::from_secs(10));
    let waited = started.elapsed();
    let answer = String::from_utf8_lossy(&answer.expect("the stalled client is cut off")).into_owned();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "{waited:?}");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");

    // The same body a byte every 300 ms (slower than any 2G link) is heard out.
    let mut trickle = TcpStream::connect(server.addr).unwrap();
    trickle.write_all(head.as_bytes()).unwrap();
    for byte in body.iter().take(8) {
        trickle.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    trickle.write_all(&body[8..]).unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut trickle, Duration::from_secs(10)).unwrap_or_default()).into_owned();
    assert!(answer.starts_with("HTTP/1.1 401"), "a wrong password, heard out: {answer}");
}

/// Behind a reverse proxy: the proxy's connections are not capped as one
/// client's, and login throttling sees the client the proxy names, so one
/// client's guessing does not lock out everyone behind the proxy. From
/// anyone else, X-Forwarded-For is not believed.
#[test]
fn a_trusted_proxy_names_its_clients_and_is_not_capped_as_one() {
    let proxy: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let server = start(ConnectionLimits { max_connections_per_client: 3, trusted_proxies: vec![proxy], ..Default::default() });
    let held: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    assert!(health(server.addr).starts_with("HTTP/1.1 200"), "the proxy is not capped at 3 connections");
    drop(held);

    let login = |forwarded_for: &str| guess_via(server.addr, forwarded_for);
    let guesses: Vec<u16> = (0..6).map(|_| login("203.0.113.7")).collect();
    assert_eq!(guesses, [401, 401, 401, 401, 401, 429], "one client's guesses are throttled");
    // The same name from another client behind the proxy is not kept out by them;
    // a client cannot pose as another by adding hops of its own before the proxy's.
    assert_eq!(login("203.0.113.8"), 401);
    assert_eq!(login("203.0.113.8, 203.0.113.7"), 429, "the last hop the proxy added counts");

    // Not a trusted proxy: the header is not believed.
    let server = start(ConnectionLimits::default());
    let statuses: Vec<u16> = (0..6).map(|n| guess_via(server.addr, &format!("203.0.113.{n}"))).collect();
    assert_eq!(statuses[5], 429, "made-up addresses do not escape the throttle: {statuses:?}");
}

/// A wrong password for an unknown name, with this X-Forwarded-For; the status.
fn guess_via(addr: SocketAddr, forwarded_for: &str) -> u16 {
    reqwest::blocking::Client::new()
        .post(format!("http://{addr}/v1/auth/login"))
        .header("x-gridwork-device", "d1")
        .header("x-forwarded-for", forwarded_for)
        .json(&serde_json::json!({"username": "nobody", "password": "guess"}))
        .send()
        .unwrap()
        .status()
        .as_u16()
}
