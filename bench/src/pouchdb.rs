//! The offline-first peer of `sync`: PouchDB 9 replicating to express-pouchdb
//! 4.2 (leveldb on both sides), the classic offline-first stack. The
//! benchmark installs it itself from npm, pinned by
//! `bench/peers/pouchdb/package-lock.json`, into `GRIDWORK_TOOLS_DIR`
//! (default `/var/tmp/gridwork-tools`); without node and npm the peer rows
//! say so and the benchmark goes on.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::BenchResult;

pub const UNAVAILABLE: &str = "peer unavailable: install node and npm";

const FILES: [&str; 4] = ["package.json", "package-lock.json", "server.js", "peer.js"];

/// The peer's folder with its scripts and node_modules, installed on first use.
pub fn install() -> BenchResult<PathBuf> {
    let tools = std::env::var_os("GRIDWORK_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp/gridwork-tools"));
    let dir = tools.join("pouchdb-peer");
    std::fs::create_dir_all(&dir)?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers").join("pouchdb");
    let mut changed = false;
    for file in FILES {
        let bytes = std::fs::read(source.join(file))?;
        if std::fs::read(dir.join(file)).ok().as_deref() != Some(&bytes[..]) {
            std::fs::write(dir.join(file), &bytes)?;
            changed = true;
        }
    }
    if changed || !dir.join("node_modules").join("pouchdb").is_dir() {
        eprintln!("installing the PouchDB peer from npm (once)…");
        let status = Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&dir).stdout(Stdio::null()).status()?;
        if !status.success() {
            return Err("npm ci of the PouchDB peer failed".into());
        }
    }
    Ok(dir)
}

/// express-pouchdb serving databases under a folder of its own; stopped on drop.
pub struct PeerServer {
    child: Child,
    pub url: String,
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(peer: &Path, data_dir: &Path) -> BenchResult<PeerServer> {
    std::fs::create_dir_all(data_dir)?;
    let mut child = Command::new("node").arg(peer.join("server.js")).arg(data_dir).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let port = line.trim().strip_prefix("listening ").ok_or_else(|| format!("express-pouchdb did not start: {line:?}"))?;
    Ok(PeerServer { url: format!("127.0.0.1:{port}"), child })
}

/// Run `node peer.js ARGS`; its one JSON line.
pub fn run(peer: &Path, args: &[&str]) -> BenchResult<serde_json::Value> {
    let output = Command::new("node").arg(peer.join("peer.js")).args(args).output()?;
    if !output.status.success() {
        return Err(format!("PouchDB peer {args:?} failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}
