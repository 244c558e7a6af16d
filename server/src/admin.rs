//! Administration shared by the command line and the admin API: users and
//! their grids, and a system caller for command-line workflow steps.

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
