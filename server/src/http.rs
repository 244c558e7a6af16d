//! The `/v1` HTTP API over axum. Handlers are thin: check the device id and
//! token, run the synchronous domain code on the blocking pool, map errors
//! to `{code, message}` bodies. See docs/protocol.md.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use gridwork_protocol::Named;
use gridwork_protocol::api::{self, BlobStatus, CreateBlobRequest, LoginRequest, RefreshRequest, Role, TransitionRequest};
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;

use crate::auth::{self, Caller, TokenPolicy};
use crate::blobs::BlobStore;
use crate::cases::{self, Rejection};
use crate::db::Database;
use crate::error::{Result, ServerError};
use crate::renditions;
use gridwork_protocol::api::PhotoRendition;
use crate::throttle::LoginThrottle;
use crate::{admin, pull, push, reference};

pub struct AppState {
    pub db: Database,
    pub blobs: BlobStore,
    pub policy: TokenPolicy,
    pub login_throttle: LoginThrottle,
}

pub type App = Arc<AppState>;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn router(app: App) -> Router {
    let json_limit = DefaultBodyLimit::max(api::MAX_JSON_BODY_BYTES);
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/me", get(me))
        .route("/v1/push", post(push_handler))
        .route("/v1/pull", get(pull_handler))
        .route("/v1/blobs", post(create_blob))
        .route("/v1/blobs/{sha256}", get(download_blob))
        .route("/v1/blobs/{sha256}/status", get(blob_status))
        .route(
            CHUNK_ROUTE,
            put(append_chunk).layer(DefaultBodyLimit::max(api::MAX_BLOB_CHUNK_BYTES)),
        )
        .route("/v1/incidents", get(list_incidents))
        .route("/v1/stats", get(get_stats))
        .route("/v1/incidents/{id}", get(get_incident))
        .route("/v1/incidents/{id}/timeline", get(get_timeline))
        .route("/v1/incidents/{id}/transitions", post(transition))
        .route("/v1/admin/users", post(admin_add_user))
        .route("/v1/admin/grids", post(admin_import_grids))
        .route("/v1/admin/categories", post(admin_import_categories))
        .fallback(|| async { ServerError::not_found("endpoint") })
        .method_not_allowed_fallback(|| async { ServerError::new(405, "method_not_allowed", "method not allowed on this endpoint") })
        .layer(json_limit)
        // Inside the body limits, so they count decompressed bytes (a small
        // gzip bomb meets the same 413 as a large body).
        .layer(RequestDecompressionLayer::new().gzip(true))
        .layer(middleware::from_fn(refuse_declared_oversize))
        .layer(middleware::from_fn(errors_as_json))
        .layer(reply_compression())
        .layer(middleware::from_fn(log_request))
        .with_state(app)
}

/// gzip for replies of at least [`api::COMPRESS_MIN_BYTES`] to clients that
/// accept it (a pull page is repeated keys and text); never for photos
/// (originals go as octet-stream, renditions as JPEG), which are compressed
/// already.
fn reply_compression() -> CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
    let large = SizeAbove::new(u16::try_from(api::COMPRESS_MIN_BYTES - 1).unwrap_or(u16::MAX));
    let photos = NotForContentType::IMAGES.and(NotForContentType::const_new("application/octet-stream"));
    CompressionLayer::new().gzip(true).no_br().no_deflate().no_zstd().compress_when(large.and(photos))
}

/// Structured request log: method, route template (never ids or query
/// strings), status, duration. No tokens, passwords or report contents.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    tracing::info!(method = %method, route = %route, status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64, "request");
    response
}

const CHUNK_ROUTE: &str = "/v1/blobs/{sha256}/chunks";

/// A body declared larger than its route takes is refused at once, before
/// it arrives: a client announcing 10 GiB and sending two bytes must not
/// hold a connection and a worker waiting for the rest. An honest client
/// that is merely over the limit keeps sending while the reply goes out, so
/// up to twice the limit is read and dropped in the background (bounded in
/// time) for it to see the 413 rather than a broken pipe. Bodies with no
/// declared length are cut off by the body limit while reading.
async fn refuse_declared_oversize(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str());
    let limit = if route == Some(CHUNK_ROUTE) { api::MAX_BLOB_CHUNK_BYTES } else { api::MAX_JSON_BODY_BYTES };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => {
            if length <= 2 * limit as u64 {
                let body = request.into_body();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(DRAIN_TIME, axum::body::to_bytes(body, 2 * limit)).await;
                });
            }
            ServerError::new(413, "body_too_large", format!("the body is larger than the limit of {limit} bytes")).into_response()
        }
        _ => next.run(request).await,
    }
}

/// How long the rest of a refused body is read for.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Every error reply is `{code, message}` JSON: our handlers build them,
/// and this turns whatever the framework answers by itself (a rejection it
/// raised before a handler ran) into one, by status. Headers a client acts
/// on (`Allow`, `Retry-After`) are kept.
async fn errors_as_json(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status.as_u16() {
        400 | 422 => "invalid_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        411 => "length_required",
        413 => "body_too_large",
        415 => "unsupported_media_type",
        429 => "too_many_requests",
        _ if status.is_server_error() => "internal",
        _ => "invalid_request",
    };
    // The framework's own text can quote the request; it is not passed on.
    let message = format!("the request was refused ({})", status.canonical_reason().unwrap_or("HTTP error"));
    let mut json = ServerError::new(status.as_u16(), code, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = response.headers().get(&name) {
            json.headers_mut().insert(name, value.clone());
        }
    }
    json
}

/// One path parameter. A segment that does not decode (`%FF` is not UTF-8)
/// is `invalid_path`, in JSON like every error.
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ServerError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(segment)) => Ok(Segment(segment)),
            Err(_) => Err(ServerError::bad_request("invalid_path", "a path segment is not valid percent-encoded UTF-8")),
        }
    }
}

/// JSON body with our error codes for every way it can be wrong.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ServerError;
    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ServerError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ServerError::new(415, "unsupported_media_type", "send Content-Type: application/json"),
        JsonRejection::JsonSyntaxError(_) => ServerError::bad_request("invalid_json", "the body is not valid JSON"),
        // serde's text would echo the offending value (it could be a password).
        JsonRejection::JsonDataError(_) => ServerError::bad_request("invalid_request", "the body does not match the request schema (see docs/protocol.md)"),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ServerError::new(413, "body_too_large", "the body is larger than the limit"),
        other => ServerError::bad_request("invalid_request", other.body_text()),
    }
}

fn device_id(headers: &HeaderMap) -> Result<String> {
    let invalid = || ServerError::bad_request("device_id_invalid", "device ids are 1-128 of [A-Za-z0-9-_.:]");
    let value = headers
        .get(api::DEVICE_ID_HEADER)
        .ok_or_else(|| ServerError::bad_request("device_id_missing", format!("send the {} header", api::DEVICE_ID_HEADER)))?
        .to_str()
        .map_err(|_| invalid())?;
    let ok = !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok { Ok(value.to_owned()) } else { Err(invalid()) }
}

fn bearer(headers: &HeaderMap) -> Result<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| ServerError::unauthorized("auth_missing", "send Authorization: Bearer <access token>"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|_| ServerError::internal("worker failed"))?
}

/// Authenticate, then run `f` with the caller on the blocking pool.
async fn as_caller<T: Send + 'static>(app: &App, headers: &HeaderMap, f: impl FnOnce(&App, Caller) -> Result<T> + Send + 'static) -> Result<T> {
    let device = device_id(headers)?;
    let token = bearer(headers)?;
    let app = app.clone();
    blocking(move || {
        let caller = app.db.read(|tx| auth::authenticate(tx, &token, &device, now_ms()))?;
        f(&app, caller)
    })
    .await
}

fn require_role(caller: &Caller, roles: &[Role]) -> Result<()> {
    if roles.contains(&caller.role) { Ok(()) } else { Err(ServerError::forbidden("your role may not do this")) }
}

async fn health() -> Json<Json_> {
    Json(json!({"status": "ok", "protocol": gridwork_protocol::PROTOCOL_VERSION, "server_time_ms": now_ms()}))
}

/// The client's address as the socket saw it (unspecified when served
/// without connection info).
pub struct ClientAddress(pub IpAddr);

/// The client's address as the accept loop resolved it (through a trusted
/// proxy: the address the proxy names).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = ServerError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        let resolved = parts.extensions.get::<ClientIp>().map(|ip| ip.0);
        let address = resolved.or_else(|| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip()));
        Ok(ClientAddress(address.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))))
    }
}

/// The client a trusted proxy forwarded: the last address in
/// `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends
/// the address it saw; what comes before is the client's own say).
pub fn forwarded_client(headers: &HeaderMap, trusted: &[IpAddr]) -> Option<IpAddr> {
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|hop| hop.trim().parse::<IpAddr>())
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    hops.into_iter().rev().find(|hop| !trusted.contains(hop))
}

async fn login(State(app): State<App>, ClientAddress(address): ClientAddress, headers: HeaderMap, JsonBody(body): JsonBody<LoginRequest>) -> Result<Response> {
    let device = device_id(&headers)?;
    if body.username.len() > 256 || body.password.len() > 1024 {
        return Err(ServerError::unauthorized("auth_failed", "wrong user name or password"));
    }
    // Refused before any password check, for known and unknown names alike.
    if let Err(wait_ms) = app.login_throttle.begin(&body.username, address, now_ms()) {
        let seconds = (wait_ms + 999) / 1000;
        let mut response = ServerError::new(429, "login_throttled", format!("too many failed sign-ins; try again in {seconds} s")).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        return Ok(response);
    }
    blocking(move || {
        let user = match app.db.read(|tx| auth::find_user(tx, &body.username)) {
            Ok(user) => user,
            Err(error) => {
                app.login_throttle.abandoned(&body.username, address);
                return Err(error);
            }
        };
        // Verify against a dummy hash for unknown users: same time, same answer.
        let hash = user.as_ref().map(|u| u.password_hash.as_str()).unwrap_or(auth::dummy_hash());
        let verified = auth::verify_password(&body.password, hash);
        match user {
            Some(user) if verified && !user.disabled => {
                app.login_throttle.succeeded(&body.username, address);
                app.db.write(|tx| auth::start_session(tx, &user, &device, now_ms(), app.policy))
            }
            _ => {
                app.login_throttle.failed(&body.username, address, now_ms());
                Err(ServerError::unauthorized("auth_failed", "wrong user name or password"))
            }
        }
    })
    .await
    .map(|tokens| Json(tokens).into_response())
}

async fn refresh(State(app): State<App>, headers: HeaderMap, JsonBody(body): JsonBody<RefreshRequest>) -> Result<Json<api::TokenResponse>> {
    let device = device_id(&headers)?;
    blocking(move || app.db.write(|tx| auth::refresh(tx, &body.refresh_token, &device, now_ms(), app.policy))?).await.map(Json)
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Result<StatusCode> {
    as_caller(&app, &headers, |app, caller| app.db.write(|tx| auth::logout(tx, &caller.session_id))).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(app): State<App>, headers: HeaderMap) -> Result<Json<api::UserInfo>> {
    as_caller(&app, &headers, |_, caller| Ok(caller.info())).await.map(Json)
}

#[derive(Deserialize)]
struct PushBody {
    operations: Vec<Json_>,
}

async fn push_handler(State(app): State<App>, headers: HeaderMap, JsonBody(body): JsonBody<PushBody>) -> Result<Json<api::PushResponse>> {
    as_caller(&app, &headers, move |app, caller| push::push(&app.db, &caller, &body.operations, now_ms())).await.map(Json)
}

#[derive(Deserialize)]
struct PullParams {
    #[serde(default)]
    since: i64,
    limit: Option<u32>,
    /// Spans of cursors the device has from push echoes: `after-until,…`.
    #[serde(default)]
    skip: String,
}

async fn pull_handler(State(app): State<App>, headers: HeaderMap, query: std::result::Result<Query<PullParams>, axum::extract::rejection::QueryRejection>) -> Result<Json<api::PullResponse>> {
    let Query(params) = query.map_err(|_| ServerError::bad_request("invalid_query", "since and limit must be integers"))?;
    let limit = params.limit.unwrap_or(500).clamp(1, api::MAX_PULL_LIMIT);
    let skip = api::SkipSpan::parse_query(&params.skip)
        .ok_or_else(|| ServerError::bad_request("invalid_query", format!("skip must be at most {} spans after-until, after < until", api::MAX_PULL_SKIPS)))?;
    as_caller(&app, &headers, move |app, caller| app.db.read(|tx| pull::pull(tx, &caller, params.since, limit, &skip, now_ms()))).await.map(Json)
}

async fn create_blob(State(app): State<App>, headers: HeaderMap, JsonBody(body): JsonBody<CreateBlobRequest>) -> Result<(StatusCode, Json<BlobStatus>)> {
    let status = as_caller(&app, &headers, move |app, caller| app.blobs.create(&app.db, &caller, &body.sha256, body.size, body.preview_of.as_deref(), now_ms())).await?;
    Ok((if status.complete { StatusCode::OK } else { StatusCode::CREATED }, Json(status)))
}

async fn blob_status(State(app): State<App>, headers: HeaderMap, Segment(sha256): Segment) -> Result<Json<BlobStatus>> {
    as_caller(&app, &headers, move |app, caller| app.blobs.status(&app.db, &caller, &sha256)).await.map(Json)
}

#[derive(Deserialize)]
struct ChunkParams {
    offset: u64,
    /// Announces the blob with its first chunk (see `BlobStore::append_announcing`).
    size: Option<u64>,
}

pub const CHUNK_SHA256_HEADER: &str = "x-gridwork-chunk-sha256";

async fn append_chunk(
    State(app): State<App>,
    headers: HeaderMap,
    Segment(sha256): Segment,
    query: std::result::Result<Query<ChunkParams>, axum::extract::rejection::QueryRejection>,
    body: std::result::Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<BlobStatus>> {
    let Query(params) = query.map_err(|_| ServerError::bad_request("invalid_query", "offset (and size, if given) must be non-negative integers"))?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type != "application/octet-stream" {
        return Err(ServerError::new(415, "unsupported_media_type", "send chunks as application/octet-stream"));
    }
    let chunk_sha = headers
        .get(CHUNK_SHA256_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| ServerError::bad_request("chunk_checksum_missing", format!("send the {CHUNK_SHA256_HEADER} header")))?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServerError::new(413, "body_too_large", format!("chunks are at most {} bytes", api::MAX_BLOB_CHUNK_BYTES))
        } else {
            ServerError::bad_request("invalid_request", "the chunk body could not be read")
        }
    })?;
    as_caller(&app, &headers, move |app, caller| app.blobs.append_announcing(&app.db, &caller, &sha256, params.size, params.offset, &body, &chunk_sha, now_ms()))
        .await
        .map(Json)
}

#[derive(Deserialize)]
struct DownloadParams {
    rendition: Option<String>,
}

async fn download_blob(
    State(app): State<App>,
    headers: HeaderMap,
    Segment(sha256): Segment,
    query: std::result::Result<Query<DownloadParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let Query(params) = query.map_err(|_| ServerError::bad_request("invalid_query", "rendition must be original, thumb, 1280 or 2048"))?;
    let rendition = renditions::parse(params.rendition.as_deref())?;
    let (bytes, content_type) = as_caller(&app, &headers, move |app, caller| {
        let original = match app.blobs.download(&app.db, &caller, &sha256) {
            Ok(bytes) => bytes,
            // The original is still on its way: a rendition can come from
            // the preview the device sent ahead.
            Err(e) if e.code == "blob_incomplete" && rendition != PhotoRendition::Original => app.blobs.download_preview(&app.db, &caller, &sha256)?,
            Err(e) => return Err(e),
        };
        match rendition.long_edge() {
            // Checked once the caller is known to see the photo: to others
            // the answer stays "not found".
            None => {
                app.db.read(|tx| crate::blobs::check_original_allowed(tx, &caller, &sha256))?;
                Ok((original, "application/octet-stream"))
            }
            Some(edge) => Ok((renditions::render(&original, edge)?, "image/jpeg")),
        }
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

#[derive(Deserialize)]
struct ListParams {
    state: Option<String>,
    grid: Option<String>,
    limit: Option<u32>,
}

async fn list_incidents(State(app): State<App>, headers: HeaderMap, query: std::result::Result<Query<ListParams>, axum::extract::rejection::QueryRejection>) -> Result<Json<Vec<api::IncidentView>>> {
    let Query(params) = query.map_err(|_| ServerError::bad_request("invalid_query", "bad query parameters"))?;
    let limit = params.limit.unwrap_or(200).clamp(1, 1000);
    as_caller(&app, &headers, move |app, caller| app.db.read(|tx| cases::list_for(tx, &caller, params.state.as_deref(), params.grid.as_deref(), limit))).await.map(Json)
}

async fn get_stats(
    State(app): State<App>,
    headers: HeaderMap,
    query: std::result::Result<Query<gridwork_protocol::stats::StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<gridwork_protocol::stats::Stats>> {
    let Query(mut query) = query.map_err(|_| ServerError::bad_request("invalid_query", "give from_ms, to_ms and grid_code or user"))?;
    // Figures up to now: a deadline still ahead is not overdue yet.
    query.to_ms = query.to_ms.min(now_ms() + 1); // the end is exclusive: this millisecond counts
    as_caller(&app, &headers, move |app, caller| app.db.read(|tx| cases::stats(tx, &caller, &query))).await.map(Json)
}

fn parse_id(id: &str) -> Result<String> {
    uuid::Uuid::parse_str(id).map(|u| u.to_string()).map_err(|_| ServerError::bad_request("invalid_id", "incident ids are UUIDs"))
}

async fn get_incident(State(app): State<App>, headers: HeaderMap, Segment(id): Segment) -> Result<Json<api::IncidentView>> {
    let id = parse_id(&id)?;
    as_caller(&app, &headers, move |app, caller| app.db.read(|tx| cases::load_view_for(tx, &caller, &id))?.ok_or_else(|| ServerError::not_found("incident"))).await.map(Json)
}

async fn get_timeline(State(app): State<App>, headers: HeaderMap, Segment(id): Segment) -> Result<Json<Vec<api::TimelineEntry>>> {
    let id = parse_id(&id)?;
    as_caller(&app, &headers, move |app, caller| app.db.read(|tx| cases::timeline(tx, &caller, &id))).await.map(Json)
}

pub fn rejection_error(rejection: Rejection) -> ServerError {
    let status = match rejection.code {
        "forbidden" => 403,
        "not_found" => 404,
        "invalid_transition" => 409,
        _ => 400,
    };
    ServerError::new(status, rejection.code, rejection.message)
}

async fn transition(State(app): State<App>, headers: HeaderMap, Segment(id): Segment, JsonBody(body): JsonBody<TransitionRequest>) -> Result<Json<api::IncidentView>> {
    let id = parse_id(&id)?;
    as_caller(&app, &headers, move |app, caller| {
        app.db.write(|tx| match cases::transition(tx, &caller, &id, &body, now_ms())? {
            Ok(_) => cases::view_after_step(tx, &id),
            Err(rejection) => Err(rejection_error(rejection)),
        })
    })
    .await
    .map(Json)
}

#[derive(Deserialize)]
struct NewUser {
    username: String,
    password: String,
    role: String,
    #[serde(default)]
    grids: Vec<String>,
}

async fn admin_add_user(State(app): State<App>, headers: HeaderMap, JsonBody(body): JsonBody<NewUser>) -> Result<(StatusCode, Json<api::UserInfo>)> {
    let user = as_caller(&app, &headers, move |app, caller| {
        require_role(&caller, &[Role::Admin])?;
        let role = Role::parse(&body.role).ok_or_else(|| ServerError::bad_request("invalid_role", "unknown role"))?;
        admin::validate_password(&body.password)?;
        let hash = auth::hash_password(&body.password)?;
        app.db.write(|tx| admin::add_user(tx, &body.username, &hash, role, &body.grids, now_ms()))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn admin_import_grids(State(app): State<App>, headers: HeaderMap, JsonBody(body): JsonBody<Json_>) -> Result<Json<Json_>> {
    as_caller(&app, &headers, move |app, caller| {
        require_role(&caller, &[Role::Admin])?;
        let count = app.db.write(|tx| reference::import_grids(tx, &body, now_ms()))?;
        Ok(Json(json!({"imported": count})))
    })
    .await
}

async fn admin_import_categories(State(app): State<App>, headers: HeaderMap, JsonBody(body): JsonBody<Json_>) -> Result<Json<Json_>> {
    as_caller(&app, &headers, move |app, caller| {
        require_role(&caller, &[Role::Admin])?;
        let count = app.db.write(|tx| reference::import_categories(tx, &body, now_ms()))?;
        Ok(Json(json!({"imported": count})))
    })
    .await
}
