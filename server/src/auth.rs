//! Authentication: argon2id password hashes, opaque bearer tokens stored as
//! SHA-256 hashes (a leaked database does not leak usable tokens), sessions
//! bound to the device that logged in, refresh with rotation, logout, and
//! devices an administrator revoked (refused at every sign-in, refresh and
//! request).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use gridwork_protocol::Named;
use gridwork_protocol::api::{self, Role, TokenResponse, UserInfo};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::Tx;
use crate::error::{Result, ServerError};
use crate::params;

#[derive(Clone, Copy, Debug)]
pub struct TokenPolicy {
    pub access_ttl_ms: i64,
    pub refresh_ttl_ms: i64,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy { access_ttl_ms: 60 * 60 * 1000, refresh_ttl_ms: 30 * 24 * 60 * 60 * 1000 }
    }
}

/// Who is calling, established from a valid access token.
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    pub user_id: Uuid,
    pub username: String,
    pub role: Role,
    pub grids: Vec<String>,
    pub session_id: String,
    pub device_id: String,
}

impl Caller {
    pub fn info(&self) -> UserInfo {
        UserInfo { id: self.user_id, username: self.username.clone(), role: self.role, grids: self.grids.clone() }
    }
    pub fn in_grid(&self, grid: Option<&str>) -> bool {
        grid.is_some_and(|g| self.grids.iter().any(|mine| mine == g))
    }
}

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|_| ServerError::internal("salt"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| ServerError::internal("password hashing failed"))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash to verify against when the user does not exist, so a login for
/// an unknown name takes as long as one with a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("gridwork-dummy-password").expect("hashing works"))
}

fn new_token(prefix: &str) -> String {
    format!("{prefix}_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub struct UserRecord {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
}

pub fn find_user(tx: &mut dyn Tx, username: &str) -> Result<Option<UserRecord>> {
    let row = tx.query_opt("SELECT id, username, password_hash, role, disabled FROM users WHERE username = $1", params![username])?;
    row.map(|r| {
        Ok(UserRecord {
            id: Uuid::parse_str(&r.text(0)).map_err(|_| ServerError::internal("bad user id"))?,
            username: r.text(1),
            password_hash: r.text(2),
            role: Role::parse(&r.text(3)).ok_or_else(|| ServerError::internal("bad role"))?,
            disabled: r.int(4) != 0,
        })
    })
    .transpose()
}

pub fn user_grids(tx: &mut dyn Tx, user_id: Uuid) -> Result<Vec<String>> {
    Ok(tx
        .query("SELECT grid_code FROM user_grids WHERE user_id = $1 ORDER BY grid_code", params![user_id.to_string()])?
        .into_iter()
        .map(|r| r.text(0))
        .collect())
}

/// The refusal of a revoked device. It names no user or device: the phone
/// in hand may be a thief's, and it only needs to know to stop and wipe.
pub fn device_revoked() -> ServerError {
    ServerError::unauthorized(api::DEVICE_REVOKED, "this device was revoked by an administrator")
}

/// Start a session for a verified user on a device and issue its tokens.
/// A revoked device is refused here, after the password was checked, so
/// only someone who knows it learns that the device was revoked.
pub fn start_session(tx: &mut dyn Tx, user: &UserRecord, device_id: &str, now_ms: i64, policy: TokenPolicy) -> Result<TokenResponse> {
    if tx.query_opt("SELECT 1 FROM revoked_devices WHERE device_id = $1", params![device_id])?.is_some() {
        tracing::warn!("sign-in from a revoked device refused");
        return Err(device_revoked());
    }
    let session_id = Uuid::now_v7().to_string();
    tx.execute(
        "INSERT INTO sessions (id, user_id, device_id, created_at_ms) VALUES ($1, $2, $3, $4)",
        params![session_id.clone(), user.id.to_string(), device_id, now_ms],
    )?;
    issue_tokens(tx, &session_id, user, now_ms, policy)
}

fn issue_tokens(tx: &mut dyn Tx, session_id: &str, user: &UserRecord, now_ms: i64, policy: TokenPolicy) -> Result<TokenResponse> {
    let access = new_token("gwa");
    let refresh = new_token("gwr");
    let access_expires = now_ms + policy.access_ttl_ms;
    let refresh_expires = now_ms + policy.refresh_ttl_ms;
    for (token, kind, expires) in [(&access, "access", access_expires), (&refresh, "refresh", refresh_expires)] {
        tx.execute(
            "INSERT INTO tokens (token_hash, session_id, kind, expires_at_ms) VALUES ($1, $2, $3, $4)",
            params![token_hash(token), session_id, kind, expires],
        )?;
    }
    Ok(TokenResponse {
        access_token: access,
        refresh_token: refresh,
        access_expires_at_ms: access_expires,
        refresh_expires_at_ms: refresh_expires,
        user: UserInfo { id: user.id, username: user.username.clone(), role: user.role, grids: user_grids(tx, user.id)? },
        server_time_ms: now_ms,
    })
}

struct TokenRow {
    session_id: String,
    kind: String,
    expires_at_ms: i64,
    revoked: bool,
    user_id: String,
    device_id: String,
    session_revoked: bool,
    username: String,
    role: String,
    disabled: bool,
    spent_at_ms: Option<i64>,
    replays: i64,
    /// The device presenting the token (not necessarily the session's) was
    /// revoked by an administrator.
    device_revoked: bool,
}

/// The token and, in the same query, whether `device_id` (the device
/// presenting it) was revoked. The request's device, not the token's: it is
/// the one told to wipe itself, and a device that presents a revoked
/// device's token (say, restored from its backup) is only told to log in.
fn lookup(tx: &mut dyn Tx, token: &str, device_id: &str) -> Result<Option<TokenRow>> {
    let row = tx.query_opt(
        "SELECT t.session_id, t.kind, t.expires_at_ms, t.revoked, s.user_id, s.device_id, s.revoked, u.username, u.role, u.disabled, t.spent_at_ms, t.replays,
                r.revoked_at_ms
         FROM tokens t JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id
         LEFT JOIN revoked_devices r ON r.device_id = $2
         WHERE t.token_hash = $1",
        params![token_hash(token), device_id],
    )?;
    Ok(row.map(|r| TokenRow {
        session_id: r.text(0),
        kind: r.text(1),
        expires_at_ms: r.int(2),
        revoked: r.int(3) != 0,
        user_id: r.text(4),
        device_id: r.text(5),
        session_revoked: r.int(6) != 0,
        username: r.text(7),
        role: r.text(8),
        disabled: r.int(9) != 0,
        spent_at_ms: r.opt_int(10),
        replays: r.int(11),
        device_revoked: r.opt_int(12).is_some(),
    }))
}

fn check(row: Option<TokenRow>, kind: &str, device_id: &str, now_ms: i64) -> Result<TokenRow> {
    let row = row.filter(|r| r.kind == kind).ok_or_else(|| ServerError::unauthorized("auth_invalid", "the token is not valid"))?;
    // Before the ended session: revocation ended it too, and only this
    // answer tells the device to stop syncing and wipe what it holds.
    if row.device_revoked {
        return Err(device_revoked());
    }
    if row.revoked || row.session_revoked || row.disabled {
        return Err(ServerError::unauthorized("auth_revoked", "the session has ended; log in again"));
    }
    if row.expires_at_ms <= now_ms {
        return Err(ServerError::unauthorized("auth_expired", "the token has expired; refresh it"));
    }
    if row.device_id != device_id {
        return Err(ServerError::unauthorized("auth_device_mismatch", "the token belongs to another device"));
    }
    Ok(row)
}

pub fn authenticate(tx: &mut dyn Tx, access_token: &str, device_id: &str, now_ms: i64) -> Result<Caller> {
    let row = check(lookup(tx, access_token, device_id)?, "access", device_id, now_ms)?;
    let user_id = Uuid::parse_str(&row.user_id).map_err(|_| ServerError::internal("bad user id"))?;
    Ok(Caller {
        user_id,
        username: row.username,
        role: Role::parse(&row.role).ok_or_else(|| ServerError::internal("bad role"))?,
        grids: user_grids(tx, user_id)?,
        session_id: row.session_id,
        device_id: row.device_id,
    })
}

/// How long a spent refresh token may be presented once more by the same
/// device: the reply to a refresh can be lost on a bad link, and the device
/// retries at once with the token it still holds. Seconds, one replay, the
/// same device (OAuth 2.0 Security BCP, refresh token rotation): any other
/// use of a spent token is taken as theft.
pub const REFRESH_REPLAY_GRACE_MS: i64 = 60 * 1000;

/// Rotate: the refresh token is spent, a new pair is issued in the same
/// session. Replaying a just-spent token once, from the same device within
/// the grace period, issues another pair. Any further use of a spent token
/// ends the whole session (every token it minted, the thief's and the
/// owner's), and a new login is needed. The outer `Result` is storage; the
/// inner refusal is committed with that revocation.
pub fn refresh(tx: &mut dyn Tx, refresh_token: &str, device_id: &str, now_ms: i64, policy: TokenPolicy) -> Result<Result<TokenResponse>> {
    let mut found = lookup(tx, refresh_token, device_id)?;
    let spent = found.as_ref().filter(|r| r.kind == "refresh" && r.revoked && !r.session_revoked).and_then(|r| r.spent_at_ms);
    if let (Some(spent_at), Some(row)) = (spent, found.as_mut()) {
        let lost_reply = row.device_id == device_id && row.replays == 0 && now_ms - spent_at <= REFRESH_REPLAY_GRACE_MS;
        if !lost_reply {
            logout(tx, &row.session_id)?;
            tracing::warn!("refresh token reuse: session revoked");
            return Ok(Err(ServerError::unauthorized("auth_revoked", "the refresh token was used twice; the session has ended, log in again")));
        }
        tx.execute("UPDATE tokens SET replays = replays + 1 WHERE token_hash = $1", params![token_hash(refresh_token)])?;
        row.revoked = false;
    }
    let row = match check(found, "refresh", device_id, now_ms) {
        Ok(row) => row,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if spent.is_none() {
        let spent_now = tx.execute(
            "UPDATE tokens SET revoked = 1, spent_at_ms = $2 WHERE token_hash = $1 AND revoked = 0",
            params![token_hash(refresh_token), now_ms],
        )?;
        if spent_now != 1 {
            return Ok(Err(ServerError::unauthorized("auth_revoked", "the refresh token was already used")));
        }
    }
    let user = UserRecord {
        id: Uuid::parse_str(&row.user_id).map_err(|_| ServerError::internal("bad user id"))?,
        username: row.username,
        password_hash: String::new(),
        role: Role::parse(&row.role).ok_or_else(|| ServerError::internal("bad role"))?,
        disabled: false,
    };
    issue_tokens(tx, &row.session_id, &user, now_ms, policy).map(Ok)
}

pub fn logout(tx: &mut dyn Tx, session_id: &str) -> Result<()> {
    tx.execute("UPDATE sessions SET revoked = 1 WHERE id = $1", params![session_id])?;
    tx.execute("UPDATE tokens SET revoked = 1 WHERE session_id = $1", params![session_id])?;
    Ok(())
}
