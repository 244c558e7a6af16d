//! The server's logs are structured (one JSON object per line) and carry no
//! passwords, tokens or report contents.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

#[test]
fn logs_are_json_lines_without_secrets_or_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_gridwork-server");
    let data = dir.path().join("data");
    let password = "s3cret-password-xyz";
    let status = Command::new(bin)
        .args(["--data"])
        .arg(&data)
        .args(["user", "add", "--username", "wang.wei", "--password", password, "--role", "grid_worker", "--grid", "G-001"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = Command::new(bin)
        .arg("--data")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GRIDWORK_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let address = line.trim().rsplit("http://").next().unwrap().to_owned();
    let client = reqwest::blocking::Client::new();
    let login = client
        .post(format!("http://{address}/v1/auth/login"))
        .header("x-gridwork-device", "phone-1")
        .json(&serde_json::json!({"username": "wang.wei", "password": password}))
        .send()
        .unwrap();
    let tokens: serde_json::Value = login.json().unwrap();
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    let (_, mut op) = report("0602", None, &[]);
    op.payload["description"] = serde_json::json!("张三家门口堆放杂物 13800138000");
    let pushed = client
        .post(format!("http://{address}/v1/push"))
        .header("x-gridwork-device", "phone-1")
        .bearer_auth(&token)
        .json(&serde_json::json!({"operations": [op]}))
        .send()
        .unwrap();
    assert_eq!(pushed.status(), 200);
    let bad = client.post(format!("http://{address}/v1/auth/login")).header("x-gridwork-device", "phone-1").json(&serde_json::json!({"username": "wang.wei", "password": "wrong-password-123"})).send().unwrap();
    assert_eq!(bad.status(), 401);
    child.kill().unwrap();
    let _ = child.wait();
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut logs).unwrap();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "expected request logs, got: {logs}");
    for line in &lines {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(parsed.get("level").is_some() && parsed.get("timestamp").is_some(), "{line}");
    }
    assert!(logs.contains("/v1/push"), "requests are logged by route");
    for secret in [password, "wrong-password-123", &token, "张三", "13800138000", tokens["refresh_token"].as_str().unwrap()] {
        assert!(!logs.contains(secret), "log leaks a secret or personal data");
    }
}
