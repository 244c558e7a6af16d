//! Administration shared by the command line and the admin API: users and
//! their grids, and a system caller for command-line workflow steps.

use gridwork_protocol::Named;
use gridwork_protocol::api::{Role, UserInfo};
use uuid::Uuid;

use crate::auth::{self, Caller};
use crate::db::Tx;
use crate::error::{Result, ServerError};
use crate::{params, text};

pub fn add_user(tx: &mut dyn Tx, username: &str, password_hash: &str, role: Role, grids: &[String], now_ms: i64) -> Result<UserInfo> {
    let username = text::clean("username", username, 64)?;
    if username.is_empty() || username.chars().any(char::is_whitespace) {
        return Err(ServerError::bad_request("invalid_username", "user names are non-empty and have no spaces"));
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
