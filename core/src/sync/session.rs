//! The signed-in session, kept in the account's encrypted database, and the
//! device id the server binds tokens to.

use gridwork_protocol::api::{TokenResponse, UserInfo};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub server_url: String,
    pub access_token: String,
    pub refresh_token: String,
    pub access_expires_at_ms: i64,
    pub refresh_expires_at_ms: i64,
    pub user: UserInfo,
}

impl Session {
    pub fn from_tokens(server_url: &str, tokens: TokenResponse) -> Session {
        Session {
            server_url: server_url.to_owned(),
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            access_expires_at_ms: tokens.access_expires_at_ms,
            refresh_expires_at_ms: tokens.refresh_expires_at_ms,
            user: tokens.user,
        }
    }
}

pub(crate) fn get_meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
}

pub(crate) fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2", params![key, value])?;
    Ok(())
}

pub fn load(conn: &Connection) -> Result<Option<Session>> {
    Ok(get_meta(conn, "session")?.and_then(|text| serde_json::from_str(&text).ok()))
}

/// Keep a session (a login, or a refresh the server granted): its tokens
/// are good, so any earlier "needs a new login" is over.
pub fn save(conn: &Connection, session: &Session) -> Result<()> {
    set_meta(conn, "session", &serde_json::to_string(session).expect("session serializes"))?;
    conn.execute("DELETE FROM meta WHERE key = 'needs_login'", [])?;
    Ok(())
}

pub fn clear(conn: &Connection) -> Result<()> {
    conn.execute("DELETE FROM meta WHERE key IN ('session', 'needs_login')", [])?;
    Ok(())
}

/// The server refused to refresh the session (expired, revoked): remembered
/// in the store, so the next process knows before it tries the network.
pub fn mark_needs_login(conn: &Connection) -> Result<()> {
    set_meta(conn, "needs_login", "1")
}

/// The server revoked this device: the session is gone for good (no
/// login from this device is accepted), remembered until the wipe.
pub fn mark_device_revoked(conn: &Connection) -> Result<()> {
    let tx = conn.unchecked_transaction()?;
    clear(&tx)?;
    set_meta(&tx, "device_revoked", "1")?;
    tx.commit()?;
    Ok(())
}

pub fn device_revoked(conn: &Connection) -> Result<bool> {
    Ok(get_meta(conn, "device_revoked")?.is_some())
}

/// Whether the session has ended: the server refused it, or its refresh
/// token has expired by server time (`now_ms`, server-corrected).
pub fn needs_login(conn: &Connection, now_ms: i64) -> Result<bool> {
    if get_meta(conn, "needs_login")?.is_some() {
        return Ok(true);
    }
    Ok(load(conn)?.is_some_and(|s| s.refresh_expires_at_ms <= now_ms))
}

/// This install's device id for this account, made once.
pub fn device_id(conn: &Connection) -> Result<String> {
    if let Some(id) = get_meta(conn, "device_id")? {
        return Ok(id);
    }
    let id = format!("dev-{}", uuid::Uuid::now_v7().simple());
    set_meta(conn, "device_id", &id)?;
    Ok(id)
}

pub fn pull_cursor(conn: &Connection) -> Result<i64> {
    Ok(get_meta(conn, "pull_cursor")?.and_then(|c| c.parse().ok()).unwrap_or(0))
}

pub fn set_pull_cursor(conn: &Connection, cursor: i64) -> Result<()> {
    set_meta(conn, "pull_cursor", &cursor.to_string())
}

/// The user (id @ server) this store belongs to, fixed at the first login.
pub fn owner(conn: &Connection) -> Result<Option<String>> {
    get_meta(conn, "owner")
}

const CLOCK_OFFSET_KEY: &str = "server_clock_offset_ms";

/// The offset to server time (server minus device, ms) learned from sync
/// replies; 0 until the first reply.
pub fn clock_offset(conn: &Connection) -> Result<i64> {
    Ok(get_meta(conn, CLOCK_OFFSET_KEY)?.and_then(|o| o.parse().ok()).unwrap_or(0))
}

pub fn save_clock_offset(conn: &Connection, offset_ms: i64) -> Result<()> {
    set_meta(conn, CLOCK_OFFSET_KEY, &offset_ms.to_string())
}
