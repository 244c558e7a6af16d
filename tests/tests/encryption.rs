//! The store's encryption: SQLCipher on our Rust crypto provider
//! (sqlcipher-crypto) reads and writes the same files as SQLCipher on
//! OpenSSL did, and keeps content off the disk in the clear.
//!
//! The fixtures were written by SQLCipher 4.19 on OpenSSL (the build before
//! the Rust provider): 200 rows, one file keyed with a raw 32-byte key as the
//! device store is, one with a passphrase (PBKDF2-HMAC-SHA512, 256,000
//! iterations).

use std::path::{Path, PathBuf};

use gridwork_tests::{jpeg_bytes, scene, write_file};
use rusqlite::Connection;

const RAW_KEY: &str = "\"x'000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'\"";
const PASSPHRASE: &str = "'网格 passphrase'";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sqlcipher-openssl").join(name)
}

/// A writable copy of a fixture (SQLCipher may write a WAL or change nothing;
/// the committed file stays as OpenSSL wrote it).
fn copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::copy(fixture(name), &path).unwrap();
    (dir, path)
}

fn open(path: &Path, key: &str) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!("PRAGMA key = {key};")).unwrap();
    conn
}

fn rows(conn: &Connection) -> rusqlite::Result<(i64, String)> {
    conn.query_row("SELECT count(*), (SELECT body FROM t WHERE id = 42) FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
}

#[test]
fn the_provider_is_ours_without_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(&dir.path().join("new.db"), RAW_KEY);
    let provider: String = conn.query_row("PRAGMA cipher_provider", [], |r| r.get(0)).unwrap();
    assert_eq!(provider, "gridwork");
    let version: String = conn.query_row("PRAGMA cipher_version", [], |r| r.get(0)).unwrap();
    assert!(version.starts_with("4.19"), "{version}");
}

#[test]
fn stores_written_with_openssl_open_read_and_take_writes() {
    for (name, key) in [("raw-key.db", RAW_KEY), ("passphrase.db", PASSPHRASE)] {
        let (_dir, path) = copy_of(name);
        let conn = open(&path, key);
        let (count, body) = rows(&conn).unwrap();
        assert_eq!(count, 200, "{name}");
        assert!(body.starts_with("41: 楼道堆放杂物，消防通道堵塞 xxx"), "{name}: {body}");
        // Every page decrypts and authenticates.
        let check: String = conn.query_row("PRAGMA cipher_integrity_check", [], |r| r.get(0)).unwrap_or_default();
        assert_eq!(check, "", "{name}: cipher_integrity_check found {check}");
        let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(integrity, "ok", "{name}");
        // Written now, read back after a reopen.
        conn.execute("INSERT INTO t(body) VALUES ('written by the rust provider')", []).unwrap();
        drop(conn);
        let conn = open(&path, key);
        let (count, _) = rows(&conn).unwrap();
        assert_eq!(count, 201, "{name}");
    }
}

#[test]
fn a_wrong_key_is_refused_and_changes_nothing() {
    let (_dir, path) = copy_of("raw-key.db");
    let before = std::fs::read(&path).unwrap();
    let wrong = "\"x'ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'\"";
    // SQLCipher checks the key at `PRAGMA key` or at the first read.
    let conn = Connection::open(&path).unwrap();
    let error = conn.execute_batch(&format!("PRAGMA key = {wrong};")).and_then(|()| rows(&conn).map(drop)).unwrap_err();
    assert_eq!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::NotADatabase), "{error}");
    drop(conn);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_flipped_bit_on_disk_is_caught() {
    let (_dir, path) = copy_of("raw-key.db");
    let mut bytes = std::fs::read(&path).unwrap();
    // A byte in the middle of page 5 (each page carries its own HMAC).
    bytes[4 * 4096 + 2000] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let conn = Connection::open(&path).unwrap();
    let error = conn.execute_batch(&format!("PRAGMA key = {RAW_KEY};")).and_then(|()| rows(&conn).map(drop)).unwrap_err();
    assert!(
        matches!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)),
        "{error}"
    );
}

#[test]
fn content_never_reaches_the_disk_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("marker.db");
    let marker = "MARKER-独居老人-7f3a9c";
    {
        let conn = open(&path, RAW_KEY);
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t(body TEXT);").unwrap();
        for _ in 0..50 {
            conn.execute("INSERT INTO t VALUES (?1)", [marker]).unwrap();
        }
        // Left open with the WAL in place, then checked with both on disk.
        let needle = marker.as_bytes();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "marker found in the clear");
        }
    }
    let conn = open(&path, RAW_KEY);
    let n: i64 = conn.query_row("SELECT count(*) FROM t WHERE body = ?1", [marker], |r| r.get(0)).unwrap();
    assert_eq!(n, 50);
}

/// 归档留痕: the audit trail is hash-chained. Someone with the key who
/// edits an entry in the database file (the append-only triggers dropped
/// first) is found out: the check names the edited entry. The trail of an
/// untouched store, including work adopted from the before-sign-in store,
/// holds.
#[test]
fn an_audit_entry_edited_in_the_database_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let (seq, path) = {
        let gw = gridwork_tests::open(dir.path(), "worker1");
        for n in 0..3 {
            let draft = gw.create_draft(gridwork_core::DraftFields { description: format!("楼道堆物 {n}"), ..Default::default() }).unwrap();
            gw.attach_photo(draft.id, &write_file(photos.path(), &format!("{n}.jpg"), &jpeg_bytes(&scene(64, 48, n), 80, None))).unwrap();
        }
        // Work from before sign-in joins this store's chain.
        let local = gridwork_tests::open(dir.path(), "local");
        local.create_draft(gridwork_core::DraftFields { description: "登录前".into(), ..Default::default() }).unwrap();
        gw.adopt_unsent_from(&local).unwrap();
        let check = gw.verify_audit_trail().unwrap();
        assert!(check.intact(), "{check:?}");
        assert_eq!(check.unsealed, 0);
        assert!(check.entries >= 8, "{check:?}");
        assert_eq!(local.verify_audit_trail().unwrap().broken_at, None);
        (check.entries as i64 / 2, gw.database_path().to_owned())
    };

    // Edited with the key, outside the app.
    let conn = open(&path, &format!("\"x'{}'\"", hex::encode(gridwork_tests::TEST_KEY)));
    conn.execute_batch("DROP TRIGGER audit_no_update;").unwrap();
    conn.execute("UPDATE audit SET actor = 'someone_else' WHERE seq = ?1", [seq]).unwrap();
    drop(conn);
    let gw = gridwork_tests::open(dir.path(), "worker1");
    let check = gw.verify_audit_trail().unwrap();
    assert_eq!(check.broken_at, Some(seq), "{check:?}");
}

/// At rest: a report written and synced through the app, with a marker in
/// its text, address and a step's note, leaves the marker in no file of
/// the device's data folder (database, WAL, journals, key check, photo
/// folders); only the photo the user supplied is a plain file, and it
/// carries no text. Checked with the store open and after it closed.
#[test]
fn a_report_leaves_no_readable_trace_in_the_device_folder() {
    use gridwork_core::{DraftFields, GeoPoint, Trigger};
    use gridwork_tests::server::{LocalServer, PASSWORD, default_policy};
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let dir = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let marker = "MARKER-独居老人-王秀英-9c41";
    let scan = |when: &str| {
        let needle = marker.as_bytes();
        let mut files = 0;
        let mut stack = vec![dir.path().to_owned()];
        while let Some(path) = stack.pop() {
            for entry in std::fs::read_dir(&path).unwrap() {
                let entry = entry.unwrap().path();
                if entry.is_dir() {
                    stack.push(entry);
                } else {
                    files += 1;
                    let bytes = std::fs::read(&entry).unwrap();
                    assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{when}: the marker is readable in {}", entry.display());
                }
            }
        }
        assert!(files >= 4, "{when}: the folder was scanned ({files} files)");
    };
    {
        let gw = gridwork_tests::open(dir.path(), "worker1");
        gw.login(&server.url(), "worker1", PASSWORD, false).unwrap();
        let draft = gw
            .create_draft(DraftFields {
                category_code: Some("0602".into()),
                description: format!("{marker} 独居，行动不便"),
                address: Some(format!("{marker} 3号楼2单元")),
                location: Some(GeoPoint { lat: 31.23, lon: 121.465, accuracy_m: Some(5.0) }),
            })
            .unwrap();
        gw.attach_photo(draft.id, &write_file(photos.path(), "p.jpg", &jpeg_bytes(&scene(320, 240, 9), 80, None))).unwrap();
        gw.submit(draft.id).unwrap();
        let report = gw.sync_now(Trigger::OperationQueued, std::time::Duration::from_secs(60)).unwrap();
        assert!(report.completed && report.pushed == 1, "{report:?}");
        scan("open");
    }
    scan("closed");
}
