//! Bad input, table by table: each case gets its stable error code and
//! leaves nothing written — no incident, photo row, outbox operation or
//! stray file, and database files untouched.

use std::path::{Path, PathBuf};

use gridwork_core::{DraftFields, GeoPoint, Gridwork, GridworkConfig, IncidentFilter, Named, PhotoLimits};
use gridwork_tests::*;

/// Everything a failed action could have written.
#[derive(Debug, PartialEq)]
struct Footprint {
    incidents: Vec<(gridwork_core::Uuid, String, String, u32)>,
    outbox: usize,
    audit: usize,
    files: Vec<PathBuf>,
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { stack.push(path) } else { out.push(path) }
        }
    }
    out.sort();
    out
}

fn footprint(gw: &Gridwork, photos_dir: &Path) -> Footprint {
    let incidents = gw
        .list_incidents(IncidentFilter { statuses: gridwork_core::IncidentStatus::all(), ..Default::default() })
        .unwrap()
        .into_iter()
        .map(|i| (i.id, i.status.as_str().to_owned(), i.description, i.photo_count))
        .collect();
    let audit = gw.with_connection(|c| Ok(c.query_row("SELECT count(*) FROM audit", [], |r| r.get::<_, i64>(0))? as usize)).unwrap();
    Footprint { incidents, outbox: gw.outbox_items().unwrap().len(), audit, files: files_under(photos_dir) }
}

#[test]
fn bad_photos_are_refused_with_stable_codes_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let draft = gw.create_draft(DraftFields { category_code: Some("0101".into()), description: "d".into(), ..Default::default() }).unwrap();
    let photos_dir = gw.database_path().parent().unwrap().join("photos");

    let good_jpeg = jpeg_bytes(&scene(640, 480, 1), 85, None);
    let good_png = png_bytes(&scene(64, 64, 2));

    // A JPEG frame header claiming 30000x30000 with almost no data.
    let mut jpeg_bomb = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 8];
    jpeg_bomb.extend_from_slice(&30000u16.to_be_bytes());
    jpeg_bomb.extend_from_slice(&30000u16.to_be_bytes());
    jpeg_bomb.extend_from_slice(&[3, 1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1]);
    jpeg_bomb.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x0C, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0, 0x00, 0xFF, 0xD9]);
    // A PNG whose IHDR claims 30000x30000 (a 2.7 GB decode).
    let png_bomb = png_header_bomb(30000, 30000);
    let mut heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
    heic.extend_from_slice(&[0u8; 200]);

    let cases: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        ("truncated JPEG", Some(good_jpeg[..good_jpeg.len() / 2].to_vec()), "photo_corrupt"),
        ("JPEG without its last byte", Some(good_jpeg[..good_jpeg.len() - 1].to_vec()), "photo_corrupt"),
        ("truncated PNG", Some(good_png[..good_png.len() / 2].to_vec()), "photo_corrupt"),
        ("wrong magic bytes", Some(b"<html>not a photo</html>".to_vec()), "photo_unsupported_format"),
        ("GIF", Some(b"GIF89a\x01\0\x01\0\0\0\0;".to_vec()), "photo_unsupported_format"),
        ("0-byte file", Some(Vec::new()), "photo_empty"),
        ("30000x30000 JPEG header bomb", Some(jpeg_bomb), "photo_too_many_pixels"),
        ("30000x30000 PNG header bomb", Some(png_bomb), "photo_too_many_pixels"),
        ("HEIC", Some(heic), "photo_heic_unsupported"),
        ("path that does not exist", None, "photo_file_not_found"),
    ];
    let before = footprint(&gw, &photos_dir);
    for (name, bytes, code) in cases {
        let path = match bytes {
            Some(bytes) => write_file(inputs.path(), "input", &bytes),
            None => inputs.path().join("no-such-file.jpg"),
        };
        let error = gw.attach_photo(draft.id, &path).expect_err(name);
        assert_eq!(error.code(), code, "{name}: {error}");
        assert_eq!(footprint(&gw, &photos_dir), before, "{name} wrote something");
    }
    // A directory is not a photo either.
    assert_eq!(gw.attach_photo(draft.id, inputs.path()).unwrap_err().code(), "photo_file_not_found");
    // The draft is still good for a real photo afterwards.
    gw.attach_photo(draft.id, &write_file(inputs.path(), "ok.jpg", &good_jpeg)).unwrap();
}

#[test]
fn byte_and_pixel_limits_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), "w");
    config.photo_limits = PhotoLimits { max_bytes: 10_000, max_pixels: 100_000, max_side: 1000 };
    let gw = Gridwork::open(config).unwrap();
    let draft = gw.create_draft(DraftFields { category_code: Some("0101".into()), ..Default::default() }).unwrap();
    let big = write_file(inputs.path(), "big.jpg", &jpeg_bytes(&scene(800, 600, 3), 95, None));
    assert_eq!(gw.attach_photo(draft.id, &big).unwrap_err().code(), "photo_too_large");
    let wide = write_file(inputs.path(), "wide.png", &png_bytes(&image::RgbImage::new(1001, 2)));
    assert_eq!(gw.attach_photo(draft.id, &wide).unwrap_err().code(), "photo_too_many_pixels");
    let many = write_file(inputs.path(), "many.png", &png_bytes(&image::RgbImage::new(400, 400)));
    assert_eq!(gw.attach_photo(draft.id, &many).unwrap_err().code(), "photo_too_many_pixels");
    assert_eq!(gw.get_incident(draft.id).unwrap().photos.len(), 0);
}

#[test]
fn photo_at_a_non_utf8_path_is_accepted() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let inputs = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let draft = gw.create_draft(DraftFields { category_code: Some("0101".into()), ..Default::default() }).unwrap();
    let path = inputs.path().join(std::ffi::OsStr::from_bytes(b"photo-\xff\xfe.jpg"));
    std::fs::write(&path, jpeg_bytes(&scene(100, 80, 4), 80, None)).unwrap();
    assert_eq!(gw.attach_photo(draft.id, &path).unwrap().width, 100);
}

#[test]
fn bad_text_and_references_are_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let photos_dir = gw.database_path().parent().unwrap().join("photos");
    let existing = gw.create_draft(DraftFields { category_code: Some("0101".into()), description: "原始描述".into(), ..Default::default() }).unwrap();
    let fields = |f: fn(&mut DraftFields)| {
        let mut fields = DraftFields { category_code: Some("0101".into()), description: "ok".into(), ..Default::default() };
        f(&mut fields);
        fields
    };
    let cases: Vec<(&str, DraftFields, &str)> = vec![
        ("NUL in description", fields(|f| f.description = "a\0b".into()), "text_control_character"),
        ("NUL in address", fields(|f| f.address = Some("x\0".into())), "text_control_character"),
        ("NUL in category", fields(|f| f.category_code = Some("01\0".into())), "text_control_character"),
        ("terminal escape", fields(|f| f.description = "\u{1b}[2J".into()), "text_control_character"),
        ("1 MB description", fields(|f| f.description = "x".repeat(1 << 20)), "text_too_long"),
        ("1 MB of CJK", fields(|f| f.description = "隐".repeat(350_000)), "text_too_long"),
        ("long address", fields(|f| f.address = Some("路".repeat(501))), "text_too_long"),
        ("unknown category", fields(|f| f.category_code = Some("9999".into())), "unknown_category"),
        ("SQL in category", fields(|f| f.category_code = Some("01' OR '1'='1".into())), "unknown_category"),
        ("NaN location", fields(|f| f.location = Some(GeoPoint { lat: f64::NAN, lon: 0.0, accuracy_m: None })), "invalid_location"),
        ("latitude 91", fields(|f| f.location = Some(GeoPoint { lat: 91.0, lon: 0.0, accuracy_m: None })), "invalid_location"),
        ("negative accuracy", fields(|f| f.location = Some(GeoPoint { lat: 1.0, lon: 1.0, accuracy_m: Some(-1.0) })), "invalid_location"),
    ];
    let before = footprint(&gw, &photos_dir);
    for (name, fields, code) in cases {
        assert_eq!(gw.create_draft(fields.clone()).expect_err(name).code(), code, "create: {name}");
        assert_eq!(gw.update_draft(existing.id, fields).expect_err(name).code(), code, "update: {name}");
        assert_eq!(footprint(&gw, &photos_dir), before, "{name} wrote something");
    }
    // Invalid UTF-8 from a caller handing over raw bytes (CLI argument, shell buffer).
    let error = gridwork_core::text::text_from_bytes("description", b"\xe9\x9a\x90\xff".to_vec()).unwrap_err();
    assert_eq!(error.code(), "text_invalid_utf8");
    // Unknown ids.
    let unknown = gridwork_core::Uuid::now_v7();
    assert_eq!(gw.submit(unknown).unwrap_err().code(), "not_found");
    assert_eq!(gw.get_incident(unknown).unwrap_err().code(), "not_found");
    assert_eq!(gw.retry_parked(unknown).unwrap_err().code(), "not_found");
    assert_eq!(footprint(&gw, &photos_dir), before);
}

#[test]
fn hostile_but_valid_text_is_stored_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    for text in ["'); DROP TABLE incidents; --", "\u{202e}RTL override\u{202c} 🔥🧯", "<script>alert(1)</script>", "%s%n%x{}", "行1\n行2\t制表"] {
        let draft = gw.create_draft(DraftFields { category_code: Some("0101".into()), description: text.into(), ..Default::default() }).unwrap();
        assert_eq!(gw.get_incident(draft.id).unwrap().incident.description, text);
    }
    assert_eq!(gw.list_incidents(IncidentFilter::default()).unwrap().len(), 5);
}

#[test]
fn error_messages_carry_no_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "张三");
    let secret_path = dir.path().join("张三的照片.jpg");
    let error = gw.attach_photo(gridwork_core::Uuid::now_v7(), &secret_path).unwrap_err();
    let error2 = gw.create_draft(DraftFields { description: format!("张三 {}", "x".repeat(5000)), ..Default::default() }).unwrap_err();
    for message in [error.to_string(), error2.to_string()] {
        assert!(!message.contains("张三"), "{message}");
    }
}

// ---- database files ----

fn sha_of(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

fn with_existing_store(dir: &Path) -> PathBuf {
    let gw = open(dir, "w");
    let draft = gw.create_draft(DraftFields { category_code: Some("0101".into()), description: "unsent evidence".into(), ..Default::default() }).unwrap();
    let photo = write_file(dir, "evidence.jpg", &jpeg_bytes(&scene(120, 90, 5), 80, None));
    gw.attach_photo(draft.id, &photo).unwrap();
    gw.submit(draft.id).unwrap();
    gw.database_path().to_owned()
}

#[test]
fn wrong_or_missing_key_is_a_clear_error_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = with_existing_store(dir.path());
    let before = sha_of(&db);
    let mut wrong = config(dir.path(), "w");
    wrong.database_key = vec![7u8; 32];
    assert_eq!(Gridwork::open(wrong.clone()).err().unwrap().code(), "database_wrong_key");
    // Even with the verifier gone, a wrong key is never mistaken for corruption.
    std::fs::remove_file(db.with_extension("keycheck")).unwrap();
    assert_eq!(Gridwork::open(wrong).err().unwrap().code(), "database_wrong_key");
    let mut missing = config(dir.path(), "w");
    missing.database_key = Vec::new();
    assert_eq!(Gridwork::open(missing).err().unwrap().code(), "database_key_missing");
    let mut short = config(dir.path(), "w");
    short.database_key = vec![1u8; 16];
    assert_eq!(Gridwork::open(short).err().unwrap().code(), "database_key_invalid");
    assert_eq!(sha_of(&db), before);
    assert!(!db.parent().unwrap().join("corrupt").exists());
    // The right key still opens it, with the unsent work.
    let gw = open(dir.path(), "w");
    assert_eq!(gw.outbox_summary().unwrap().pending, 2);
}

#[test]
fn database_from_the_future_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = with_existing_store(dir.path());
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(&format!("PRAGMA key = \"x'{}'\"; PRAGMA user_version = 99;", hex_key())).unwrap();
    }
    let before = sha_of(&db);
    let error = Gridwork::open(config(dir.path(), "w")).err().unwrap();
    assert_eq!(error.code(), "database_from_future");
    assert!(error.to_string().contains("99"), "{error}");
    assert_eq!(sha_of(&db), before);
}

fn hex_key() -> String {
    TEST_KEY.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn corrupt_database_is_moved_aside_and_a_fresh_one_opened() {
    let dir = tempfile::tempdir().unwrap();
    let db = with_existing_store(dir.path());
    let mut bytes = std::fs::read(&db).unwrap();
    for (i, b) in bytes.iter_mut().take(4096).enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    std::fs::write(&db, &bytes).unwrap();
    let corrupted_sha = sha256_hex(&bytes);

    let gw = open(dir.path(), "w");
    let report = gw.open_report();
    let moved = report.corrupt_database_moved_to.expect("reported");
    assert!(report.created);
    assert_eq!(sha_of(&moved), corrupted_sha, "kept byte for byte, never deleted");
    // Its photos went with it: the fresh database's sweeper must not take them.
    let quarantined = moved.to_string_lossy().replace(".db", "-photos");
    let originals: Vec<_> = std::fs::read_dir(Path::new(&quarantined).join("originals")).unwrap().collect();
    assert_eq!(originals.len(), 1, "the unsent evidence photo is kept beside its database");
    assert!(gw.list_incidents(IncidentFilter::default()).unwrap().is_empty());
    // The fresh database works.
    gw.create_draft(DraftFields::default()).unwrap();
    drop(gw);
    let gw = open(dir.path(), "w");
    assert_eq!(gw.open_report().corrupt_database_moved_to, None);
    assert_eq!(gw.list_incidents(IncidentFilter::default()).unwrap().len(), 1);
}

#[test]
fn unencrypted_file_in_place_of_the_database_is_not_opened_as_ours() {
    let dir = tempfile::tempdir().unwrap();
    let db = with_existing_store(dir.path());
    std::fs::remove_file(&db).unwrap();
    std::fs::remove_file(db.with_extension("keycheck")).unwrap();
    rusqlite::Connection::open(&db).unwrap().execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
    let before = sha_of(&db);
    assert_eq!(Gridwork::open(config(dir.path(), "w")).err().unwrap().code(), "database_wrong_key");
    assert_eq!(sha_of(&db), before);
}

#[test]
fn config_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let empty_account = GridworkConfig::new(dir.path(), "", TEST_KEY.to_vec());
    assert_eq!(Gridwork::open(empty_account).err().unwrap().code(), "incomplete");
    let nul_account = GridworkConfig::new(dir.path(), "a\0b", TEST_KEY.to_vec());
    assert_eq!(Gridwork::open(nul_account).err().unwrap().code(), "text_control_character");
}

/// A server's photo is kept only if it is what was asked for: an original
/// that hashes to its name, a rendition that is a JPEG within its edge.
/// Anything else is refused and nothing is written or recorded.
#[test]
fn a_lying_server_photo_is_refused_and_nothing_is_kept() {
    use gridwork_core::photo::PhotoStore;
    use gridwork_protocol::api::PhotoRendition;
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let store = PhotoStore::open(dir.path()).unwrap();
    let real = jpeg_bytes(&scene(640, 480, 3), 85, None);
    let sha = hex::encode(Sha256::digest(&real));
    let other = jpeg_bytes(&scene(640, 480, 4), 85, None);
    let committed = std::cell::Cell::new(0);
    let commit = |_: &str| {
        committed.set(committed.get() + 1);
        Ok(())
    };
    let refused = [
        (PhotoRendition::Original, other.clone()),                           // other bytes under this name
        (PhotoRendition::Original, b"<html>captive portal</html>".to_vec()), // not a photo
        (PhotoRendition::Thumb, real.clone()),                               // 640 px is no thumbnail
        (PhotoRendition::LongEdge1280, b"garbage".to_vec()),
    ];
    for (rendition, bytes) in refused {
        let error = store.keep_fetched(&sha, rendition, &bytes, commit).unwrap_err();
        assert!(error.code().starts_with("photo_"), "{rendition:?}: {}", error.code());
    }
    assert_eq!(committed.get(), 0);
    assert_eq!(std::fs::read_dir(dir.path().join("fetched")).unwrap().count(), 0, "nothing written");
    let name = store.keep_fetched(&sha, PhotoRendition::Original, &real, commit).unwrap();
    assert_eq!((committed.get(), std::fs::read(store.fetched_path(&name)).unwrap()), (1, real));
}
