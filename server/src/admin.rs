//! Administration shared by the command line and the admin API: users and
//! their grids, devices (revoking a lost or stolen phone), and a system
//! caller for command-line workflow steps.

use gridwork_protocol::Named;
use gridwork_protocol::api::{Role, UserInfo};
use uuid::Uuid;

use crate::auth::{self, Caller};
use crate::db::Tx;
use crate::error::{Result, ServerError};
use crate::{params, text};

/// A user as an administrator sees them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UserRow {
    #[serde(flatten)]
    pub info: UserInfo,
    pub disabled: bool,
    pub created_at_ms: i64,
}

pub fn add_user(tx: &mut dyn Tx, username: &str, password_hash: &str, role: Role, grids: &[String], now_ms: i64) -> Result<UserInfo> {
    let username = text::clean("username", username, 64)?;
    if username.is_empty() || username.chars().any(char::is_whitespace) {
        return Err(ServerError::bad_request("invalid_username", "user names are non-empty and have no spaces"));
    }
    // Grid workers and supervisors work in grids: without one they would
    // see nothing and their reports would belong nowhere.
    if grids.is_empty() && matches!(role, Role::GridWorker | Role::Supervisor) {
        return Err(ServerError::bad_request("grid_required", "a grid worker or supervisor needs at least one --grid"));
    }
    if tx.query_opt("SELECT 1 FROM users WHERE username = $1", params![username.clone()])?.is_some() {
        return Err(ServerError::new(409, "user_exists", "a user with this name exists"));
    }
    let id = Uuid::now_v7();
    tx.execute(
        "INSERT INTO users (id, username, password_hash, role, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
        params![id.to_string(), username.clone(), password_hash, role.as_str(), now_ms],
    )?;
    let mut cleaned = Vec::new();
    for grid in grids {
        let grid = text::clean("grid", grid, 200)?;
        tx.execute("INSERT INTO user_grids (user_id, grid_code) VALUES ($1, $2) ON CONFLICT DO NOTHING", params![id.to_string(), grid.clone()])?;
        cleaned.push(grid);
    }
    Ok(UserInfo { id, username, role, grids: auth::user_grids(tx, id)? })
}

pub fn validate_password(password: &str) -> Result<()> {
    if password.chars().count() < 8 || password.len() > 1024 {
        return Err(ServerError::bad_request("weak_password", "passwords have 8 to 1024 characters"));
    }
    Ok(())
}

/// The command line acts as an administrator named `cli` on device `cli`.
pub fn system_caller() -> Caller {
    Caller {
        user_id: Uuid::nil(),
        username: "cli".to_owned(),
        role: Role::Admin,
        grids: Vec::new(),
        session_id: String::new(),
        device_id: "cli".to_owned(),
    }
}

/// Grids a user was given that this server does not have (yet): imported
/// grids are what place reports, so a typo here strands a worker.
pub fn unknown_grids(tx: &mut dyn Tx, grids: &[String]) -> Result<Vec<String>> {
    let mut unknown = Vec::new();
    for grid in grids {
        if !crate::reference::grid_exists(tx, grid)? {
            unknown.push(grid.clone());
        }
    }
    Ok(unknown)
}

pub fn list_users(tx: &mut dyn Tx) -> Result<Vec<UserRow>> {
    let rows = tx.query("SELECT id, username, role, disabled, created_at_ms FROM users ORDER BY username", &[])?;
    let mut users = Vec::with_capacity(rows.len());
    for r in rows {
        let id = Uuid::parse_str(&r.text(0)).map_err(|_| ServerError::internal("a stored user id is not a UUID"))?;
        let role = Role::parse(&r.text(2)).ok_or_else(|| ServerError::internal("a stored role is unknown"))?;
        let grids = auth::user_grids(tx, id)?;
        users.push(UserRow { info: UserInfo { id, username: r.text(1), role, grids }, disabled: r.int(3) != 0, created_at_ms: r.int(4) });
    }
    Ok(users)
}

fn user_row(tx: &mut dyn Tx, username: &str) -> Result<UserRow> {
    list_users(tx)?
        .into_iter()
        .find(|u| u.info.username == username)
        .ok_or_else(|| ServerError::new(404, "unknown_user", "no user with this name"))
}

/// Sign a user out everywhere: every session and token they hold.
fn revoke_sessions(tx: &mut dyn Tx, user_id: Uuid) -> Result<()> {
    let id = user_id.to_string();
    tx.execute("UPDATE tokens SET revoked = 1 WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1)", params![id.clone()])?;
    tx.execute("UPDATE sessions SET revoked = 1 WHERE user_id = $1", params![id])?;
    Ok(())
}

/// Disable (or enable again) a user. Disabling signs them out everywhere:
/// their phones' next request is refused and they cannot log in. Their
/// cases and reports stay as they are.
pub fn set_disabled(tx: &mut dyn Tx, username: &str, disabled: bool) -> Result<UserRow> {
    let user = user_row(tx, username)?;
    tx.execute("UPDATE users SET disabled = $1 WHERE id = $2", params![i64::from(disabled), user.info.id.to_string()])?;
    if disabled {
        revoke_sessions(tx, user.info.id)?;
    }
    user_row(tx, username)
}

/// Set a new password (hashed by the caller); every session ends, so a
/// phone that held the old credentials must log in again.
pub fn set_password(tx: &mut dyn Tx, username: &str, password_hash: &str) -> Result<UserRow> {
    let user = user_row(tx, username)?;
    tx.execute("UPDATE users SET password_hash = $1 WHERE id = $2", params![password_hash, user.info.id.to_string()])?;
    revoke_sessions(tx, user.info.id)?;
    user_row(tx, username)
}

/// A device as an administrator sees it: one row per device and user who
/// signed in on it. A phone has one device id per account store, so a
/// shared phone (AB岗) shows one row per account, each revoked on its own.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeviceRow {
    pub device_id: String,
    pub username: String,
    /// When the user first and last signed in on the device.
    pub first_sign_in_ms: i64,
    pub last_sign_in_ms: i64,
    /// A session of the user on the device has not ended (by logout,
    /// revocation, disabling or a new password); its tokens may have lapsed.
    pub active: bool,
    /// When the device was revoked, if it was.
    pub revoked_at_ms: Option<i64>,
}

/// Every device that ever signed in, most recently used first.
pub fn list_devices(tx: &mut dyn Tx) -> Result<Vec<DeviceRow>> {
    let rows = tx.query(
        "SELECT s.device_id, u.username, MIN(s.created_at_ms), MAX(s.created_at_ms), MIN(s.revoked), r.revoked_at_ms
         FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN revoked_devices r ON r.device_id = s.device_id
         GROUP BY s.device_id, s.user_id, u.username, r.revoked_at_ms
         ORDER BY MAX(s.created_at_ms) DESC, s.device_id, u.username",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| DeviceRow {
            device_id: r.text(0),
            username: r.text(1),
            first_sign_in_ms: r.int(2),
            last_sign_in_ms: r.int(3),
            // `revoked` is 0 or 1: a minimum of 0 is a session not ended.
            active: r.int(4) == 0,
            revoked_at_ms: r.opt_int(5),
        })
        .collect())
}

/// The shortest device id prefix accepted, as for case ids: shorter ones
/// would too easily name the wrong phone.
const DEVICE_PREFIX_MIN: usize = 4;

/// A device that ever signed in, named by its full id or a unique prefix of
/// it (at least 4 characters). The full id wins, so a device whose id
/// begins another's can still be named.
fn device_named(tx: &mut dyn Tx, text: &str) -> Result<String> {
    let text = text.trim();
    if tx.query_opt("SELECT 1 FROM sessions WHERE device_id = $1 LIMIT 1", params![text])?.is_some() {
        return Ok(text.to_owned());
    }
    let not_found = || ServerError::new(404, "device_not_found", "no device that signed in has this id or an id starting so (give at least 4 characters)");
    let length = text.chars().count();
    if length < DEVICE_PREFIX_MIN {
        return Err(not_found());
    }
    // substr, not LIKE: device ids may hold `_`, a LIKE wildcard, and
    // SQLite's LIKE ignores case where PostgreSQL's does not.
    let found = tx.query(
        "SELECT DISTINCT device_id FROM sessions WHERE substr(device_id, 1, $2) = $1 ORDER BY device_id LIMIT 2",
        params![text, i64::try_from(length).unwrap_or(i64::MAX)],
    )?;
    match found.as_slice() {
        [device] => Ok(device.text(0)),
        [] => Err(not_found()),
        _ => Err(ServerError::bad_request("device_ambiguous", "several devices start so: give more of the id")),
    }
}

/// Revoke a device (a lost or stolen phone): every session on it ends, and
/// from now on every sign-in, refresh and request from it is refused with
/// `device_revoked`, which tells the app to wipe its local data once nothing
/// unsent would be lost. Revoking again changes nothing and keeps the first
/// time. Returns the device's row of the user who signed in on it last.
pub fn revoke_device(tx: &mut dyn Tx, device: &str, now_ms: i64) -> Result<DeviceRow> {
    let device_id = device_named(tx, device)?;
    tx.execute(
        "INSERT INTO revoked_devices (device_id, revoked_at_ms) VALUES ($1, $2) ON CONFLICT (device_id) DO NOTHING",
        params![device_id.clone(), now_ms],
    )?;
    // Ending the sessions is what `active` shows; the refusal itself comes
    // from revoked_devices, checked on every request, so a sign-in racing
    // with this transaction gains nothing either.
    tx.execute("UPDATE tokens SET revoked = 1 WHERE session_id IN (SELECT id FROM sessions WHERE device_id = $1)", params![device_id.clone()])?;
    tx.execute("UPDATE sessions SET revoked = 1 WHERE device_id = $1", params![device_id.clone()])?;
    // Rows come most recently used first.
    list_devices(tx)?
        .into_iter()
        .find(|row| row.device_id == device_id)
        .ok_or_else(|| ServerError::internal("a revoked device has no row"))
}
