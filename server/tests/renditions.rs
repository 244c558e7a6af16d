//! Photo renditions over HTTP: the command center and metered devices get a
//! smaller, upright JPEG; only callers who may see the case get anything.

mod common;

use common::*;
use std::io::Cursor;
use gridwork_protocol::api::{self, Role};

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image).write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg).unwrap();
    out
}

#[test]
fn renditions_are_smaller_upright_jpegs_for_callers_in_scope() {
    for backend in backends() {
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let photo = jpeg(3000, 2000);
        let (id, op) = report("0602", Some("G-001"), &[&photo]);
        assert_eq!(worker.push_ok(&[op])[0]["status"], "applied");
        let sha = sha256_hex(&photo);
        let created = worker.post("/v1/blobs", &serde_json::json!({"sha256": sha, "size": photo.len()}));
        assert_eq!(created.status(), 201);
        for (i, chunk) in photo.chunks(1 << 20).enumerate() {
            assert_eq!(worker.put_chunk(&sha, (i << 20) as u64, chunk).status(), 200);
        }
        let dispatcher = server.device("dispatcher");
        for (rendition, long_edge) in [("thumb", 320), ("1280", 1280), ("2048", 2048)] {
            let response = dispatcher.get(&format!("/v1/blobs/{sha}?rendition={rendition}"));
            assert_eq!(response.status(), 200, "{}", backend.name());
            assert_eq!(response.headers()["content-type"], "image/jpeg");
            let bytes = response.bytes().unwrap();
            let image = image::load_from_memory(&bytes).unwrap();
            assert_eq!(image.width().max(image.height()), long_edge, "{rendition}");
            assert!((image.width() as i64 * 2 - image.height() as i64 * 3).abs() <= 3, "aspect kept: {}x{}", image.width(), image.height());
        }
        let original = dispatcher.get(&format!("/v1/blobs/{sha}"));
        assert_eq!(sha256_hex(&original.bytes().unwrap()), sha);
        let bad = dispatcher.get(&format!("/v1/blobs/{sha}?rendition=99"));
        assert_eq!(bad.status(), 400);
        let outsider = server.device("worker2");
        assert_eq!(outsider.get(&format!("/v1/blobs/{sha}?rendition=thumb")).status(), 404);
        let _ = id;
    }
}

/// A JPEG carrying an EXIF block with a GPS pointer (enough to tell a
/// re-encoded rendition, which has none, from the original).
fn jpeg_with_exif(width: u32, height: u32) -> Vec<u8> {
    let plain = jpeg(width, height);
    // TIFF, little-endian: IFD0 with one entry, GPSInfo (0x8825, LONG) -> an empty GPS IFD.
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend_from_slice(&[1, 0, 0x25, 0x88, 4, 0, 1, 0, 0, 0, 26, 0, 0, 0, 0, 0, 0, 0]);
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&plain[2..]);
    out
}

#[test]
fn a_district_can_keep_originals_and_their_gps_from_a_role() {
    for backend in backends() {
        let server = TestServer::with_cast(&backend);
        let worker = server.device("worker1");
        let photo = jpeg_with_exif(2400, 1600);
        let (_, op) = report("0602", Some("G-001"), &[&photo]);
        assert_eq!(worker.push_ok(&[op])[0]["status"], "applied");
        let sha = sha256_hex(&photo);
        assert_eq!(worker.post("/v1/blobs", &serde_json::json!({"sha256": sha, "size": photo.len()})).status(), 201);
        assert_eq!(worker.put_chunk(&sha, 0, &photo).status(), 200);
        let supervisor = server.device("supervisor1");
        assert_eq!(sha256_hex(&supervisor.get(&format!("/v1/blobs/{sha}")).bytes().unwrap()), sha, "no policy: the original");

        server
            .db
            .write(|tx| gridwork_server::blobs::set_originals_withheld_from(tx, &[Role::Supervisor, Role::GridWorker]))
            .unwrap();
        let refused = supervisor.get(&format!("/v1/blobs/{sha}"));
        assert_eq!(refused.status(), 403, "{}", backend.name());
        assert_eq!(refused.json::<serde_json::Value>().unwrap()["code"], api::ORIGINAL_WITHHELD);
        // Announcing the same photo in a report of one's own and proving its
        // first byte (easily guessed: 0xFF) gains nothing.
        let (_, own) = report("0602", Some("G-001"), &[&photo]);
        assert_eq!(supervisor.push_ok(&[own])[0]["status"], "applied", "{}", backend.name());
        supervisor.post("/v1/blobs", &serde_json::json!({"sha256": sha, "size": photo.len()}));
        let _ = supervisor.put_chunk(&sha, 0, &photo[..1]);
        assert_eq!(supervisor.get(&format!("/v1/blobs/{sha}")).status(), 403, "{}: a partial proof is no proof", backend.name());
        let rendition = supervisor.get(&format!("/v1/blobs/{sha}?rendition=2048")).bytes().unwrap();
        assert!(photo.windows(6).any(|w| w == b"Exif\0\0") && !rendition.windows(6).any(|w| w == b"Exif\0\0"), "the rendition carries no EXIF");
        // The uploader's role is withheld too, but they showed the server these bytes.
        assert_eq!(sha256_hex(&worker.get(&format!("/v1/blobs/{sha}")).bytes().unwrap()), sha);
        // Out of scope stays "not found", whatever the policy.
        assert_eq!(server.device("worker2").get(&format!("/v1/blobs/{sha}")).status(), 404);
        // The dispatcher's role is not withheld.
        assert_eq!(sha256_hex(&server.device("dispatcher").get(&format!("/v1/blobs/{sha}")).bytes().unwrap()), sha);

        server.db.write(|tx| gridwork_server::blobs::set_originals_withheld_from(tx, &[])).unwrap();
        assert_eq!(supervisor.get(&format!("/v1/blobs/{sha}")).status(), 200, "cleared");
    }
}
