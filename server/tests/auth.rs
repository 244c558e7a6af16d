//! Authentication over real HTTP: login, refresh with rotation, logout,
//! expiry, forged and foreign tokens, the device header, and that no
//! password or token ever comes back in an error body.

mod common;

use std::time::Duration;

use common::*;
use gridwork_protocol::api::{self, Role, TokenResponse};
use gridwork_server::auth::TokenPolicy;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

/// A bare HTTP client: every header is set by hand in these tests.
struct Raw {
    base: String,
    client: Client,
}

impl Raw {
    fn new(server: &TestServer) -> Raw {
        Raw { base: server.base.clone(), client: Client::new() }
    }

    fn login(&self, device: &str, username: &str, password: &str) -> Response {
        self.client
            .post(format!("{}/v1/auth/login", self.base))
            .header(api::DEVICE_ID_HEADER, device)
            .json(&json!({"username": username, "password": password}))
            .send()
            .unwrap()
    }

    fn login_ok(&self, device: &str, username: &str, context: &str) -> TokenResponse {
        let response = self.login(device, username, PASSWORD);
        assert_eq!(response.status(), 200, "{context}: login of {username} failed");
        response.json().unwrap()
    }

    fn refresh(&self, device: &str, refresh_token: &str) -> Response {
        self.client
            .post(format!("{}/v1/auth/refresh", self.base))
            .header(api::DEVICE_ID_HEADER, device)
            .json(&json!({"refresh_token": refresh_token}))
            .send()
            .unwrap()
    }

    fn authed(&self, builder: RequestBuilder, device: &str, token: &str) -> Response {
        builder.header(api::DEVICE_ID_HEADER, device).bearer_auth(token).send().unwrap()
    }

    fn me(&self, device: &str, token: &str) -> Response {
        self.authed(self.client.get(format!("{}/v1/me", self.base)), device, token)
    }

    fn logout(&self, device: &str, token: &str) -> Response {
        self.authed(self.client.post(format!("{}/v1/auth/logout", self.base)), device, token)
    }
}

/// Assert an error reply: status, JSON `{code, message}` with the expected
/// code, and none of `secrets` anywhere in the body. Returns the body.
#[track_caller]
fn expect_error(response: Response, status: u16, code: &str, secrets: &[&str], context: &str) -> Value {
    assert_eq!(response.status(), status, "{context}: status");
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(content_type.starts_with("application/json"), "{context}: error content type {content_type:?}");
    let text = response.text().unwrap();
    for secret in secrets {
        assert!(!secret.is_empty() && !text.contains(secret), "{context}: error body leaks a secret: {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{context}: error body is not JSON ({e}): {text}"));
    assert_eq!(body["code"], code, "{context}: code in {text}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{context}: message in {text}");
    body
}

#[test]
fn login_returns_tokens_and_identifies_the_user() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let raw = Raw::new(&server);
        let before = gridwork_server::http::now_ms();
        let response = raw.login("phone-1", "worker1", PASSWORD);
        assert_eq!(response.status(), 200, "{name}");
        let tokens: TokenResponse = response.json().unwrap();
        let after = gridwork_server::http::now_ms();

        assert!(!tokens.access_token.is_empty() && !tokens.refresh_token.is_empty(), "{name}");
        assert_ne!(tokens.access_token, tokens.refresh_token, "{name}: access and refresh tokens differ");
        assert!(!tokens.access_token.contains(PASSWORD) && !tokens.refresh_token.contains(PASSWORD), "{name}");
        assert!((before..=after).contains(&tokens.server_time_ms), "{name}: server_time_ms {} not in [{before}, {after}]", tokens.server_time_ms);
        let default = TokenPolicy::default();
        assert_eq!(tokens.access_expires_at_ms, tokens.server_time_ms + default.access_ttl_ms, "{name}");
        assert_eq!(tokens.refresh_expires_at_ms, tokens.server_time_ms + default.refresh_ttl_ms, "{name}");
        assert!(tokens.refresh_expires_at_ms > tokens.access_expires_at_ms, "{name}");
        assert_eq!(tokens.user.username, "worker1", "{name}");
        assert_eq!(tokens.user.role, Role::GridWorker, "{name}");
        assert_eq!(tokens.user.grids, vec!["G-001".to_owned()], "{name}");

        let me = raw.me("phone-1", &tokens.access_token);
        assert_eq!(me.status(), 200, "{name}");
        let me: api::UserInfo = me.json().unwrap();
        assert_eq!(me, tokens.user, "{name}: /v1/me is the user the login named");

        // Two logins are two sessions with different tokens.
        let again = raw.login_ok("phone-2", "worker1", name);
        assert_ne!(again.access_token, tokens.access_token, "{name}");
        assert_eq!(again.user.id, tokens.user.id, "{name}");

        // Every role logs in and is told its role and grids.
        for (username, role, grids) in [
            ("admin", Role::Admin, vec![]),
            ("dispatcher", Role::Dispatcher, vec![]),
            ("supervisor1", Role::Supervisor, vec!["G-001"]),
            ("worker2", Role::GridWorker, vec!["G-002"]),
            ("volunteer1", Role::Volunteer, vec!["G-001"]),
        ] {
            let tokens = raw.login_ok("phone-3", username, name);
            assert_eq!(tokens.user.role, role, "{name}: {username}");
            assert_eq!(tokens.user.grids, grids, "{name}: {username}");
            let me: api::UserInfo = raw.me("phone-3", &tokens.access_token).json().unwrap();
            assert_eq!(me.username, username, "{name}");
        }
    }
}

#[test]
fn wrong_password_and_unknown_user_are_the_same_failure() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let raw = Raw::new(&server);
        let wrong = "hunter2-wrong-password";
        let wrong_password = expect_error(raw.login("phone-1", "worker1", wrong), 401, "auth_failed", &[wrong, PASSWORD], &format!("{name}: wrong password"));
        let unknown_user = expect_error(raw.login("phone-1", "nobody-here", wrong), 401, "auth_failed", &[wrong, PASSWORD, "nobody-here"], &format!("{name}: unknown user"));
        assert_eq!(wrong_password, unknown_user, "{name}: the two failures must not be told apart");
        // The right password for another user, an empty password, a case-changed name.
        for (username, password) in [("worker2", "x"), ("worker1", ""), ("Worker1", PASSWORD), ("", PASSWORD)] {
            let body = expect_error(raw.login("phone-1", username, password), 401, "auth_failed", &[wrong], &format!("{name}: {username:?}"));
            assert_eq!(body, wrong_password, "{name}: {username:?}");
        }
        // Over-long credentials are refused the same way, without echo.
        let long_password = format!("pw-{}", "p".repeat(2000));
        let body = expect_error(raw.login("phone-1", "worker1", &long_password), 401, "auth_failed", &[&long_password[..40]], &format!("{name}: long password"));
        assert_eq!(body, wrong_password, "{name}");
        let long_user = "u".repeat(300);
        let body = expect_error(raw.login("phone-1", &long_user, PASSWORD), 401, "auth_failed", &[&long_user[..40], PASSWORD], &format!("{name}: long user"));
        assert_eq!(body, wrong_password, "{name}");
        // The failures did not start a session: the right password still works.
        raw.login_ok("phone-1", "worker1", name);
    }
}

#[test]
fn refresh_rotates_the_token_pair() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let raw = Raw::new(&server);
        let first = raw.login_ok("phone-1", "supervisor1", name);

        let response = raw.refresh("phone-1", &first.refresh_token);
        assert_eq!(response.status(), 200, "{name}");
        let second: TokenResponse = response.json().unwrap();
        assert_ne!(second.access_token, first.access_token, "{name}: a new access token");
        assert_ne!(second.refresh_token, first.refresh_token, "{name}: a new refresh token");
        assert_eq!(second.user, first.user, "{name}");
        assert!(second.access_expires_at_ms >= first.access_expires_at_ms, "{name}");

        let me = raw.me("phone-1", &second.access_token);
        assert_eq!(me.status(), 200, "{name}: the new access token works");
        assert_eq!(me.json::<api::UserInfo>().unwrap().username, "supervisor1", "{name}");

        // A reply to a refresh can be lost: the same device may replay the
        // just-spent token within the grace period and get another pair...
        let secrets = [first.refresh_token.as_str(), second.refresh_token.as_str(), first.access_token.as_str()];
        let replayed = raw.refresh("phone-1", &first.refresh_token);
        assert_eq!(replayed.status(), 200, "{name}: replay within the grace period");
        let third: TokenResponse = replayed.json().unwrap();
        assert_ne!(third.refresh_token, second.refresh_token, "{name}");
        // ...once: a second replay, or one from another device, is theft and
        // ends the whole session (every pair it minted).
        expect_error(raw.refresh("phone-9", &first.refresh_token), 401, "auth_revoked", &secrets, &format!("{name}: replay elsewhere"));
        expect_error(raw.me("phone-1", &third.access_token), 401, "auth_revoked", &secrets, &format!("{name}: the replay's pair died with the session"));
        expect_error(raw.refresh("phone-1", &third.refresh_token), 401, "auth_revoked", &secrets, &format!("{name}: the replay's refresh token too"));
        expect_error(raw.refresh("phone-1", &first.refresh_token), 401, "auth_revoked", &secrets, &format!("{name}: old refresh token after the revocation"));

        // An access token is not a refresh token, and the other way round.
        let fresh = raw.login_ok("phone-3", "supervisor1", name);
        expect_error(raw.refresh("phone-3", &fresh.access_token), 401, "auth_invalid", &[&fresh.access_token], &format!("{name}: access as refresh"));
        expect_error(raw.me("phone-3", &fresh.refresh_token), 401, "auth_invalid", &[&fresh.refresh_token], &format!("{name}: refresh as access"));
        // A refresh token from another device, which does not spend it.
        expect_error(raw.refresh("phone-2", &fresh.refresh_token), 401, "auth_device_mismatch", &[&fresh.refresh_token], &format!("{name}: refresh elsewhere"));
        assert_eq!(raw.refresh("phone-3", &fresh.refresh_token).status(), 200, "{name}: the refresh token still works on its own device");
        // A made-up refresh token.
        expect_error(raw.refresh("phone-1", "gwr_made_up"), 401, "auth_invalid", &["gwr_made_up"], &format!("{name}: forged refresh"));
    }
}

#[test]
fn logout_revokes_the_session() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let raw = Raw::new(&server);
        let tokens = raw.login_ok("phone-1", "worker1", name);
        let other = raw.login_ok("phone-2", "worker1", name);

        let response = raw.logout("phone-1", &tokens.access_token);
        assert_eq!(response.status(), 204, "{name}");
        let secrets = [tokens.access_token.as_str(), tokens.refresh_token.as_str()];
        expect_error(raw.me("phone-1", &tokens.access_token), 401, "auth_revoked", &secrets, &format!("{name}: access after logout"));
        expect_error(raw.refresh("phone-1", &tokens.refresh_token), 401, "auth_revoked", &secrets, &format!("{name}: refresh after logout"));
        expect_error(raw.logout("phone-1", &tokens.access_token), 401, "auth_revoked", &secrets, &format!("{name}: second logout"));
        // Other sessions of the same user are not touched.
        assert_eq!(raw.me("phone-2", &other.access_token).status(), 200, "{name}: the other device's session lives on");
        // Logging in again on the same device starts a fresh session.
        let fresh = raw.login_ok("phone-1", "worker1", name);
        assert_eq!(raw.me("phone-1", &fresh.access_token).status(), 200, "{name}");
    }
}

#[test]
fn an_expired_access_token_is_refused_and_refresh_recovers() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::start_with(&backend, TokenPolicy { access_ttl_ms: 1000, refresh_ttl_ms: 60_000 });
        server.add_user("worker1", Role::GridWorker, &["G-001"]);
        let raw = Raw::new(&server);
        let tokens = raw.login_ok("phone-1", "worker1", name);
        assert_eq!(tokens.access_expires_at_ms, tokens.server_time_ms + 1000, "{name}");
        assert_eq!(tokens.refresh_expires_at_ms, tokens.server_time_ms + 60_000, "{name}");
        assert_eq!(raw.me("phone-1", &tokens.access_token).status(), 200, "{name}: fresh token works");

        std::thread::sleep(Duration::from_millis(1200));
        let secrets = [tokens.access_token.as_str(), tokens.refresh_token.as_str()];
        expect_error(raw.me("phone-1", &tokens.access_token), 401, "auth_expired", &secrets, &format!("{name}: expired access"));

        let response = raw.refresh("phone-1", &tokens.refresh_token);
        assert_eq!(response.status(), 200, "{name}: refresh after access expiry");
        let renewed: TokenResponse = response.json().unwrap();
        assert!(renewed.access_expires_at_ms > tokens.access_expires_at_ms, "{name}");
        assert_eq!(raw.me("phone-1", &renewed.access_token).status(), 200, "{name}: renewed token works");
        // The expired token stays expired.
        expect_error(raw.me("phone-1", &tokens.access_token), 401, "auth_expired", &secrets, &format!("{name}: still expired"));
    }
}

#[test]
fn forged_and_tampered_tokens_are_invalid() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let raw = Raw::new(&server);
        let tokens = raw.login_ok("phone-1", "admin", name);

        let random = format!("gwa_{}", uuid::Uuid::now_v7().simple());
        let mut tampered: Vec<char> = tokens.access_token.chars().collect();
        let middle = tampered.len() / 2;
        tampered[middle] = if tampered[middle] == 'A' { 'B' } else { 'A' };
        let tampered: String = tampered.into_iter().collect();
        assert_ne!(tampered, tokens.access_token);
        let truncated = &tokens.access_token[..tokens.access_token.len() - 1];
        let extended = format!("{}A", tokens.access_token);
        for forged in [random.as_str(), tampered.as_str(), truncated, extended.as_str(), "x", "Bearer"] {
            expect_error(raw.me("phone-1", forged), 401, "auth_invalid", &[forged, &tokens.access_token], &format!("{name}: forged {forged:?}"));
            // Forged tokens open nothing else either.
            let push = raw.authed(raw.client.post(format!("{}/v1/push", raw.base)).json(&json!({"operations": []})), "phone-1", forged);
            expect_error(push, 401, "auth_invalid", &[forged], &format!("{name}: forged push"));
        }
        // An over-long token is not looked up at all.
        let long = "a".repeat(300);
        let response = raw.me("phone-1", &long);
        assert_eq!(response.status(), 401, "{name}: over-long token");
        // The genuine token still works after all that.
        assert_eq!(raw.me("phone-1", &tokens.access_token).status(), 200, "{name}");
    }
}

#[test]
fn a_token_is_bound_to_its_device() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let raw = Raw::new(&server);
        let tokens = raw.login_ok("phone-1", "worker1", name);
        for other in ["phone-2", "phone-1x", "PHONE-1"] {
            expect_error(raw.me(other, &tokens.access_token), 401, "auth_device_mismatch", &[&tokens.access_token], &format!("{name}: from {other}"));
        }
        let pull = raw.authed(raw.client.get(format!("{}/v1/pull?since=0", raw.base)), "phone-2", &tokens.access_token);
        expect_error(pull, 401, "auth_device_mismatch", &[&tokens.access_token], &format!("{name}: pull from another device"));
        // The mismatch did not end the session on the right device.
        assert_eq!(raw.me("phone-1", &tokens.access_token).status(), 200, "{name}");
        // The harness device works the same way.
        let device = server.device("worker2");
        assert_eq!(device.get("/v1/me").status(), 200, "{name}");
        let foreign = raw.me("phone-1", &device.token());
        expect_error(foreign, 401, "auth_device_mismatch", &[&device.token()], &format!("{name}: harness token elsewhere"));
    }
}

#[test]
fn missing_authorization_and_device_headers() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let raw = Raw::new(&server);
        let tokens = raw.login_ok("phone-1", "dispatcher", name);
        let me = || raw.client.get(format!("{}/v1/me", raw.base));

        // No Authorization, or one that is not a bearer token.
        let none = me().header(api::DEVICE_ID_HEADER, "phone-1").send().unwrap();
        expect_error(none, 401, "auth_missing", &[], &format!("{name}: no Authorization"));
        for value in ["Basic d29ya2VyMTpwYXNz", "Bearer ", "bearer", tokens.access_token.as_str()] {
            let response = me().header(api::DEVICE_ID_HEADER, "phone-1").header("authorization", value).send().unwrap();
            expect_error(response, 401, "auth_missing", &[&tokens.access_token], &format!("{name}: Authorization {value:?}"));
        }
        let push = raw.client.post(format!("{}/v1/push", raw.base)).header(api::DEVICE_ID_HEADER, "phone-1").json(&json!({"operations": []})).send().unwrap();
        expect_error(push, 401, "auth_missing", &[], &format!("{name}: push without token"));

        // No device header: on an authenticated endpoint, on login, on refresh.
        let response = me().bearer_auth(&tokens.access_token).send().unwrap();
        expect_error(response, 400, "device_id_missing", &[&tokens.access_token], &format!("{name}: me without device"));
        let response = raw.client.post(format!("{}/v1/auth/login", raw.base)).json(&json!({"username": "worker1", "password": PASSWORD})).send().unwrap();
        expect_error(response, 400, "device_id_missing", &[PASSWORD], &format!("{name}: login without device"));
        let response = raw.client.post(format!("{}/v1/auth/refresh", raw.base)).json(&json!({"refresh_token": tokens.refresh_token})).send().unwrap();
        expect_error(response, 400, "device_id_missing", &[&tokens.refresh_token], &format!("{name}: refresh without device"));

        // Device ids outside 1-128 of [A-Za-z0-9-_.:].
        let too_long = "d".repeat(129);
        for bad in ["", "phone 1", "phone/1", "phone;1", "phone\t1", too_long.as_str()] {
            let response = me().header(api::DEVICE_ID_HEADER, bad).bearer_auth(&tokens.access_token).send().unwrap();
            expect_error(response, 400, "device_id_invalid", &[&tokens.access_token], &format!("{name}: device {bad:?}"));
            let response = raw.login(bad, "worker1", PASSWORD);
            expect_error(response, 400, "device_id_invalid", &[PASSWORD], &format!("{name}: login from device {bad:?}"));
        }
        // The limits themselves are fine.
        let longest = "d".repeat(128);
        for good in ["a", "A-z_0.9:x", longest.as_str()] {
            let tokens = raw.login_ok(good, "worker1", &format!("{name}: device {good:?}"));
            assert_eq!(raw.me(good, &tokens.access_token).status(), 200, "{name}: device {good:?}");
        }
        // The device header is checked before the token.
        let response = me().header(api::DEVICE_ID_HEADER, "bad device").send().unwrap();
        expect_error(response, 400, "device_id_invalid", &[], &format!("{name}: bad device, no token"));
    }
}

#[test]
fn a_device_header_with_non_ascii_bytes_is_invalid_not_missing() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let raw = Raw::new(&server);
        let tokens = raw.login_ok("phone-1", "worker1", name);
        // Raw bytes (obs-text) in the header: present, but not a valid id.
        let value = reqwest::header::HeaderValue::from_bytes(b"phone-\xe6\x89\x8b\xe6\x9c\xba").unwrap();
        let response = raw.client.get(format!("{}/v1/me", raw.base)).header(api::DEVICE_ID_HEADER, value).bearer_auth(&tokens.access_token).send().unwrap();
        expect_error(response, 400, "device_id_invalid", &[&tokens.access_token], &format!("{name}: non-ASCII device header"));
    }
}

#[test]
fn error_bodies_never_carry_passwords_or_tokens() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let raw = Raw::new(&server);
        let tokens = raw.login_ok("phone-1", "worker1", name);
        let secrets = [PASSWORD, tokens.access_token.as_str(), tokens.refresh_token.as_str()];
        let url = |path: &str| format!("{}{path}", raw.base);

        let mut failures: Vec<(Response, u16, &str, String)> = vec![
            (raw.login("phone-1", "worker2-typo", PASSWORD), 401, "auth_failed", "login unknown user".into()),
            (raw.login("phone 1", "worker1", PASSWORD), 400, "device_id_invalid", "login bad device".into()),
            (raw.refresh("phone-2", &tokens.refresh_token), 401, "auth_device_mismatch", "refresh elsewhere".into()),
            (raw.me("phone-2", &tokens.access_token), 401, "auth_device_mismatch", "me elsewhere".into()),
            (raw.refresh("phone-1", &tokens.access_token), 401, "auth_invalid", "access as refresh".into()),
            (raw.me("phone-1", &tokens.refresh_token), 401, "auth_invalid", "refresh as access".into()),
        ];
        // Malformed login and refresh bodies that carry the secrets.
        let malformed = [
            (url("/v1/auth/login"), format!(r#"{{"username": "worker1", "password": "{PASSWORD}""#), 400, "invalid_json"),
            (url("/v1/auth/login"), format!(r#"{{"user": "worker1", "password": "{PASSWORD}"}}"#), 400, "invalid_request"),
            (url("/v1/auth/login"), format!(r#"{{"username": ["worker1"], "password": "{PASSWORD}"}}"#), 400, "invalid_request"),
            (url("/v1/auth/refresh"), format!(r#"{{"refresh_token": "{}"#, tokens.refresh_token), 400, "invalid_json"),
            (url("/v1/auth/refresh"), format!(r#"{{"token": "{}"}}"#, tokens.refresh_token), 400, "invalid_request"),
        ];
        for (target, body, status, code) in malformed {
            let response = raw.client.post(&target).header(api::DEVICE_ID_HEADER, "phone-1").header("content-type", "application/json").body(body.clone()).send().unwrap();
            failures.push((response, status, code, format!("POST {target} {body}")));
        }
        let wrong_type = raw.client.post(url("/v1/auth/login")).header(api::DEVICE_ID_HEADER, "phone-1").header("content-type", "text/plain").body(format!("worker1:{PASSWORD}")).send().unwrap();
        failures.push((wrong_type, 415, "unsupported_media_type", "login as text".into()));
        for (response, status, code, context) in failures {
            expect_error(response, status, code, &secrets, &format!("{name}: {context}"));
        }
    }
}

#[test]
fn a_password_sent_as_a_number_is_not_echoed() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let raw = Raw::new(&server);
        // A client that serialises a numeric PIN-style password as a number.
        let response = raw
            .client
            .post(format!("{}/v1/auth/login", raw.base))
            .header(api::DEVICE_ID_HEADER, "phone-1")
            .json(&json!({"username": "worker1", "password": 73914682051_u64}))
            .send()
            .unwrap();
        expect_error(response, 400, "invalid_request", &["73914682051"], &format!("{name}: numeric password"));
        let response = raw
            .client
            .post(format!("{}/v1/auth/refresh", raw.base))
            .header(api::DEVICE_ID_HEADER, "phone-1")
            .json(&json!({"refresh_token": 918273645546372_u64}))
            .send()
            .unwrap();
        expect_error(response, 400, "invalid_request", &["918273645546372"], &format!("{name}: numeric refresh token"));
    }
}

#[test]
fn repeated_failed_sign_ins_are_throttled_without_telling_who_exists() {
    // Throttling lives in the server process, the same on either backend.
    let server = TestServer::with_cast(&Backend::Sqlite);
    let raw = Raw::new(&server);
    // An unknown name and a real one get the same answers: five refusals, then waits.
    for username in ["nobody-here", "worker1"] {
        let statuses: Vec<u16> = (0..30).map(|_| raw.login("phone-1", username, "guess").status().as_u16()).collect();
        assert_eq!(statuses[..5], [401; 5], "{username}: {statuses:?}");
        assert!(statuses[5..].iter().all(|s| *s == 429), "{username}: {statuses:?}");
    }
    // Even the right password waits (the reply must not confirm a guess), told how long.
    let response = raw.login("phone-1", "worker1", PASSWORD);
    let retry_after: u64 = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    expect_error(response, 429, "login_throttled", &[PASSWORD], "throttled");

    // The owner signing in from their own phone (another address) is not kept out.
    let own_phone = Client::builder().local_address(Some("127.0.0.2".parse().unwrap())).build().unwrap();
    let response = own_phone
        .post(format!("{}/v1/auth/login", raw.base))
        .header(api::DEVICE_ID_HEADER, "phone-2")
        .json(&json!({"username": "worker1", "password": PASSWORD}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "from another address");

    // Once the wait is over the right password works, and the count starts over.
    std::thread::sleep(Duration::from_millis(retry_after * 1000 + 100));
    raw.login_ok("phone-1", "worker1", "after the wait");
    assert_eq!(raw.login("phone-1", "worker1", "guess").status(), 401, "a fresh count after a success");
}

/// A burst of concurrent guesses does not all get checked before the first
/// failure counts: beyond the free tries, the rest wait.
#[test]
fn a_burst_of_concurrent_guesses_gets_no_more_than_the_free_tries() {
    let server = TestServer::with_cast(&Backend::Sqlite);
    let raw = Raw::new(&server);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let tries: Vec<_> = (0..30).map(|_| scope.spawn(|| raw.login("phone-1", "worker1", "guess").status().as_u16())).collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(checked <= 5, "{checked} passwords checked: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
}

#[test]
fn a_spent_refresh_token_replayed_twice_or_late_ends_the_session() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let raw = Raw::new(&server);

        // A second replay from the same device: the family is revoked.
        let first = raw.login_ok("phone-1", "worker1", name);
        let second: TokenResponse = raw.refresh("phone-1", &first.refresh_token).json().unwrap();
        let replay: TokenResponse = raw.refresh("phone-1", &first.refresh_token).json().unwrap();
        expect_error(raw.refresh("phone-1", &first.refresh_token), 401, "auth_revoked", &[&first.refresh_token], &format!("{name}: second replay"));
        for (token, what) in [(&second.access_token, "rotated pair"), (&replay.access_token, "replayed pair")] {
            expect_error(raw.me("phone-1", token), 401, "auth_revoked", &[token.as_str()], &format!("{name}: {what} after theft"));
        }
        expect_error(raw.refresh("phone-1", &second.refresh_token), 401, "auth_revoked", &[&second.refresh_token], &format!("{name}: rotated refresh after theft"));
        // A new login works again (the user is not locked out).
        raw.login_ok("phone-1", "worker1", name);

        // A replay after the grace period: theft too.
        let fresh = raw.login_ok("phone-2", "worker2", name);
        let rotated: TokenResponse = raw.refresh("phone-2", &fresh.refresh_token).json().unwrap();
        server.db.write(|tx| {
            tx.execute(
                "UPDATE tokens SET spent_at_ms = spent_at_ms - $1 WHERE spent_at_ms IS NOT NULL",
                gridwork_server::params![gridwork_server::auth::REFRESH_REPLAY_GRACE_MS + 1],
            )
        })
        .unwrap();
        expect_error(raw.refresh("phone-2", &fresh.refresh_token), 401, "auth_revoked", &[&fresh.refresh_token], &format!("{name}: late replay"));
        expect_error(raw.me("phone-2", &rotated.access_token), 401, "auth_revoked", &[&rotated.access_token], &format!("{name}: pair after late replay"));
    }
}

/// A lost or stolen phone, revoked by an administrator: its access token,
/// its refresh token and a fresh login with the right password are all
/// refused with `device_revoked` (naming no one), while the same user on
/// another phone goes on as before.
#[test]
fn a_revoked_device_is_refused_everywhere_while_its_user_works_on() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let raw = Raw::new(&server);
        let lost = Device::new(&server, "phone-lost-7f3a");
        assert_eq!(lost.login("worker1", PASSWORD).status(), 200, "{name}");
        let (_, op) = report("0602", Some("G-001"), &[]);
        assert_eq!(lost.push_ok(&[op])[0]["status"], "applied", "{name}");
        lost.pull_all(0);
        let tokens = lost.tokens.lock().unwrap().clone().unwrap();
        let spare = raw.login_ok("phone-spare", "worker1", name);

        let listed = server.db.read(gridwork_server::admin::list_devices).unwrap();
        let row = listed.iter().find(|d| d.device_id == lost.id).unwrap_or_else(|| panic!("{name}: the phone is listed: {listed:?}"));
        assert_eq!((row.username.as_str(), row.active, row.revoked_at_ms), ("worker1", true, None), "{name}");
        assert_eq!(row.first_sign_in_ms, row.last_sign_in_ms, "{name}: one sign-in");

        // Revoked by a unique prefix of its id.
        let revoked_at = gridwork_server::http::now_ms();
        let row = server.db.write(|tx| gridwork_server::admin::revoke_device(tx, "phone-l", revoked_at)).unwrap();
        assert_eq!((row.device_id.as_str(), row.username.as_str(), row.active, row.revoked_at_ms), (lost.id.as_str(), "worker1", false, Some(revoked_at)), "{name}");

        // No reply names the user or the device: the phone may be a thief's.
        let secrets = [PASSWORD, tokens.access_token.as_str(), tokens.refresh_token.as_str(), "worker1", lost.id.as_str()];
        let context = |what: &str| format!("{name}: {what} from the revoked phone");
        let (_, op) = report("0602", Some("G-001"), &[]);
        expect_error(lost.push(&[op]), 401, api::DEVICE_REVOKED, &secrets, &context("push"));
        expect_error(lost.get("/v1/pull?since=0"), 401, api::DEVICE_REVOKED, &secrets, &context("pull"));
        expect_error(raw.me(&lost.id, &tokens.access_token), 401, api::DEVICE_REVOKED, &secrets, &context("me"));
        expect_error(raw.logout(&lost.id, &tokens.access_token), 401, api::DEVICE_REVOKED, &secrets, &context("logout"));
        expect_error(raw.refresh(&lost.id, &tokens.refresh_token), 401, api::DEVICE_REVOKED, &secrets, &context("refresh"));
        expect_error(raw.login(&lost.id, "worker1", PASSWORD), 401, api::DEVICE_REVOKED, &secrets, &context("login"));
        // Another user signing in on it: the device is revoked, not the user.
        expect_error(raw.login(&lost.id, "worker2", PASSWORD), 401, api::DEVICE_REVOKED, &secrets, &context("another user's login"));
        // Only the right password learns of the revocation.
        expect_error(raw.login(&lost.id, "worker1", "a-wrong-guess"), 401, "auth_failed", &secrets, &context("a wrong password"));
        // The spare phone's token presented by the revoked one: revoked.
        expect_error(raw.me(&lost.id, &spare.access_token), 401, api::DEVICE_REVOKED, &[&spare.access_token], &context("another phone's token"));
        // The revoked phone's token presented by another device: that device
        // is not told to wipe itself, only that the session ended.
        expect_error(raw.me("phone-spare", &tokens.access_token), 401, "auth_revoked", &secrets, &format!("{name}: the revoked phone's token elsewhere"));

        // The same user on another phone works as before, and signs in anew.
        assert_eq!(raw.me("phone-spare", &spare.access_token).status(), 200, "{name}: the spare phone's session lives on");
        let pushed = raw.authed(raw.client.post(format!("{}/v1/push", raw.base)).json(&json!({"operations": [report("0602", Some("G-001"), &[]).1]})), "phone-spare", &spare.access_token);
        assert_eq!(pushed.status(), 200, "{name}: the spare phone pushes");
        assert_eq!(raw.refresh("phone-spare", &spare.refresh_token).status(), 200, "{name}: and refreshes");
        let fresh = raw.login_ok("phone-new", "worker1", name);
        assert_eq!(raw.me("phone-new", &fresh.access_token).status(), 200, "{name}: a new phone signs in");

        // Revoking again is fine and keeps the first time.
        let again = server.db.write(|tx| gridwork_server::admin::revoke_device(tx, &lost.id, revoked_at + 5000)).unwrap();
        assert_eq!(again.revoked_at_ms, Some(revoked_at), "{name}");
        let listed = server.db.read(gridwork_server::admin::list_devices).unwrap();
        let state = |device: &str| listed.iter().find(|d| d.device_id == device).map(|d| (d.active, d.revoked_at_ms));
        assert_eq!(state(&lost.id), Some((false, Some(revoked_at))), "{name}");
        assert_eq!(state("phone-spare"), Some((true, None)), "{name}");
        expect_error(raw.login(&lost.id, "worker1", PASSWORD), 401, api::DEVICE_REVOKED, &secrets, &context("login after the second revocation"));
    }
}

/// A device is named by its full id or a unique prefix of at least four
/// characters among devices that signed in; the full id wins over a prefix.
#[test]
fn a_device_to_revoke_is_named_by_its_id_or_a_unique_prefix() {
    for backend in backends() {
        let name = backend.name();
        let server = TestServer::with_cast(&backend);
        let raw = Raw::new(&server);
        for device in ["tab_1", "tab_10", "tabX2"] {
            raw.login_ok(device, "worker2", name);
        }
        let revoke = |device: &str| server.db.write(|tx| gridwork_server::admin::revoke_device(tx, device, gridwork_server::http::now_ms()));
        let code = |device: &str| revoke(device).map(|row| row.device_id).unwrap_err();
        let unknown = code("laptop-9");
        assert_eq!((unknown.status, unknown.code), (404, "device_not_found"), "{name}");
        assert_eq!(code("tab").code, "device_not_found", "{name}: three characters are too few");
        let ambiguous = code("tab_");
        assert_eq!((ambiguous.status, ambiguous.code), (400, "device_ambiguous"), "{name}");
        // `_` is matched as itself (as a LIKE wildcard it would find tabX2),
        // and case counts.
        assert_eq!(code("tab_2").code, "device_not_found", "{name}");
        assert_eq!(code("TAB_1").code, "device_not_found", "{name}");
        assert_eq!(revoke("tabX").unwrap().device_id, "tabX2", "{name}");
        // "tab_1" is a whole id and also begins "tab_10": the whole id wins.
        assert_eq!(revoke("tab_1").unwrap().device_id, "tab_1", "{name}");
        let revoked: Vec<String> =
            server.db.read(gridwork_server::admin::list_devices).unwrap().into_iter().filter(|d| d.revoked_at_ms.is_some()).map(|d| d.device_id).collect();
        assert_eq!(revoked.len(), 2, "{name}: {revoked:?}");
        assert!(revoked.contains(&"tab_1".to_owned()) && revoked.contains(&"tabX2".to_owned()), "{name}: {revoked:?}");
        assert_eq!(raw.login_ok("tab_10", "worker2", name).user.username, "worker2", "{name}: tab_10 was not revoked");
    }
}
