//! Photo renditions over HTTP: the command center and metered devices get a
//! smaller, upright JPEG; only callers who may see the case get anything.

mod common;

use common::*;
use std::io::Cursor;

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
