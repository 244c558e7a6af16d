//! The photo evidence pipeline on real JPEG, PNG and WebP files: EXIF (GPS,
//! capture time, every orientation), oriented thumbnails, perceptual hashes,
//! upload renditions and the sweeper.

use gridwork_core::{DraftFields, Gridwork, Rendition};
use gridwork_tests::*;
use image::{GenericImageView, RgbImage};

fn draft(gw: &Gridwork) -> gridwork_core::Uuid {
    gw.create_draft(DraftFields { category_code: Some("0601".into()), description: "d".into(), ..Default::default() }).unwrap().id
}

/// Top-left quadrant red, the rest blue: shows where orientation moved it.
fn marked(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        if x < width / 2 && y < height / 2 { image::Rgb([230, 20, 20]) } else { image::Rgb([20, 20, 230]) }
    })
}

fn red_corner(thumb: &image::DynamicImage) -> &'static str {
    let (w, h) = thumb.dimensions();
    let is_red = |x: u32, y: u32| {
        let p = thumb.get_pixel(x, y);
        p[0] > 150 && p[2] < 100
    };
    match (is_red(w / 4, h / 4), is_red(3 * w / 4, h / 4), is_red(w / 4, 3 * h / 4), is_red(3 * w / 4, 3 * h / 4)) {
        (true, false, false, false) => "top-left",
        (false, true, false, false) => "top-right",
        (false, false, true, false) => "bottom-left",
        (false, false, false, true) => "bottom-right",
        other => panic!("no single red corner: {other:?}"),
    }
}

#[test]
fn every_exif_orientation_gives_an_upright_thumbnail() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let expected = [
        (1, "top-left", (320, 160)),
        (2, "top-right", (320, 160)),
        (3, "bottom-right", (320, 160)),
        (4, "bottom-left", (320, 160)),
        (5, "top-left", (160, 320)),
        (6, "top-right", (160, 320)),
        (7, "bottom-right", (160, 320)),
        (8, "bottom-left", (160, 320)),
    ];
    for (orientation, corner, size) in expected {
        let spec = ExifSpec { orientation: Some(orientation), ..Default::default() };
        let bytes = jpeg_bytes(&marked(1600, 800), 90, Some(&spec));
        let id = draft(&gw);
        let photo = gw.attach_photo(id, &write_file(files.path(), &format!("o{orientation}.jpg"), &bytes)).unwrap();
        assert_eq!(photo.orientation, orientation as u8);
        assert_eq!((photo.width, photo.height), (1600, 800), "stored size is the file's");
        assert_eq!((photo.thumbnail_width, photo.thumbnail_height), size, "orientation {orientation}");
        let thumb = image::open(&photo.thumbnail_path).unwrap();
        assert_eq!(thumb.dimensions(), size);
        assert_eq!(red_corner(&thumb), corner, "orientation {orientation}");
    }
}

#[test]
fn exif_capture_time_and_gps_land_in_columns() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let id = draft(&gw);
    let with_offset = ExifSpec {
        taken_at: Some("2026:11:22 08:30:00".into()),
        offset: Some("+08:00".into()),
        gps: Some((31.230416, 121.473701)),
        ..Default::default()
    };
    let a = gw.attach_photo(id, &write_file(files.path(), "a.jpg", &jpeg_bytes(&scene(640, 480, 7), 85, Some(&with_offset)))).unwrap();
    assert_eq!(a.taken_at_ms, Some(1_795_336_200_000 - 8 * 3_600_000));
    let location = a.exif_location.expect("gps");
    assert!((location.lat - 31.230416).abs() < 1e-5 && (location.lon - 121.473701).abs() < 1e-5, "{location:?}");

    // Southern/western hemisphere and no offset (device default +08:00).
    let south_west = ExifSpec { taken_at: Some("2026:01:02 03:04:05".into()), gps: Some((-33.8688, -70.6693)), ..Default::default() };
    let b = gw.attach_photo(id, &write_file(files.path(), "b.jpg", &jpeg_bytes(&scene(640, 480, 8), 85, Some(&south_west)))).unwrap();
    let location = b.exif_location.unwrap();
    assert!(location.lat < -33.86 && location.lon < -70.66);
    assert_eq!(b.taken_at_ms, Some((1_767_323_045 - 8 * 3_600) * 1000));

    // No EXIF at all is fine.
    let c = gw.attach_photo(id, &write_file(files.path(), "c.jpg", &jpeg_bytes(&scene(640, 480, 9), 85, None))).unwrap();
    assert_eq!((c.taken_at_ms, c.exif_location, c.orientation), (None, None, 1));
}

#[test]
fn an_impossible_exif_date_is_no_capture_time() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let id = draft(&gw);
    // 31 February: ignored, the photo itself is still accepted.
    let impossible = ExifSpec { taken_at: Some("2024:02:31 10:00:00".into()), offset: Some("+08:00".into()), ..Default::default() };
    let a = gw.attach_photo(id, &write_file(files.path(), "a.jpg", &jpeg_bytes(&scene(640, 480, 10), 85, Some(&impossible)))).unwrap();
    assert_eq!(a.taken_at_ms, None);
    // A leap day is a real date; with its own offset and without (device default +08:00).
    let leap_day = ExifSpec { taken_at: Some("2024:02:29 10:00:00".into()), offset: Some("-05:00".into()), ..Default::default() };
    let b = gw.attach_photo(id, &write_file(files.path(), "b.jpg", &jpeg_bytes(&scene(640, 480, 11), 85, Some(&leap_day)))).unwrap();
    assert_eq!(b.taken_at_ms, Some((1_709_200_800 + 5 * 3_600) * 1000));
    let no_offset = ExifSpec { taken_at: Some("2024:02:29 10:00:00".into()), ..Default::default() };
    let c = gw.attach_photo(id, &write_file(files.path(), "c.jpg", &jpeg_bytes(&scene(640, 480, 12), 85, Some(&no_offset)))).unwrap();
    assert_eq!(c.taken_at_ms, Some((1_709_200_800 - 8 * 3_600) * 1000));
}

#[test]
fn png_and_webp_are_accepted_with_thumbnails() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let id = draft(&gw);
    for (name, bytes, mime) in [
        ("s.png", png_bytes(&scene(1000, 500, 11)), "image/png"),
        ("s.webp", webp_bytes(&scene(500, 1000, 12)), "image/webp"),
    ] {
        let photo = gw.attach_photo(id, &write_file(files.path(), name, &bytes)).unwrap();
        assert_eq!(photo.mime_type, mime);
        assert_eq!(photo.sha256, sha256_hex(&bytes));
        assert_eq!(photo.thumbnail_width.max(photo.thumbnail_height), 320);
        assert_eq!(image::open(&photo.thumbnail_path).unwrap().dimensions(), (photo.thumbnail_width, photo.thumbnail_height));
        assert_eq!(std::fs::read(&photo.original_path).unwrap(), bytes);
    }
}

#[test]
fn large_jpeg_thumbnail_by_scaled_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let bytes = twelve_megapixel_jpeg(1);
    let photo = gw.attach_photo(draft(&gw), &write_file(files.path(), "big.jpg", &bytes)).unwrap();
    assert_eq!((photo.width, photo.height), (4000, 3000));
    assert_eq!((photo.thumbnail_width, photo.thumbnail_height), (320, 240));
    assert!(photo.exif_location.is_some() && photo.taken_at_ms.is_some());
}

#[test]
fn perceptual_hash_finds_the_same_scene_again() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let id = draft(&gw);
    let original = gw.attach_photo(id, &write_file(files.path(), "a.jpg", &jpeg_bytes(&scene(1200, 900, 21), 92, None))).unwrap();
    // Same scene, smaller and more compressed: a re-used picture.
    let resized = image::imageops::resize(&scene(1200, 900, 21), 600, 450, image::imageops::FilterType::Triangle);
    let reused = gw.attach_photo(id, &write_file(files.path(), "b.jpg", &jpeg_bytes(&resized, 60, None))).unwrap();
    let different = gw.attach_photo(id, &write_file(files.path(), "c.png", &png_bytes(&marked(1200, 900)))).unwrap();
    assert_ne!(original.sha256, reused.sha256);
    let similar = gw.similar_photos(original.id, 8).unwrap();
    assert_eq!(similar.iter().map(|(p, _)| p.id).collect::<Vec<_>>(), [reused.id]);
    assert!((original.dhash ^ different.dhash).count_ones() > 8);
}

#[test]
fn upload_renditions_follow_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let spec = ExifSpec { orientation: Some(6), ..Default::default() };
    let bytes = jpeg_bytes(&scene(3000, 2000, 31), 90, Some(&spec));
    let photo = gw.attach_photo(draft(&gw), &write_file(files.path(), "r.jpg", &bytes)).unwrap();

    let original = gw.photo_upload_file(photo.id, Rendition::Original).unwrap();
    assert_eq!(std::fs::read(&original).unwrap(), bytes);
    for (rendition, long_edge) in [(Rendition::LongEdge2048, 2048), (Rendition::LongEdge1280, 1280)] {
        let path = gw.photo_upload_file(photo.id, rendition).unwrap();
        let image = image::open(&path).unwrap();
        // Orientation 6 applied: the 3000x2000 landscape file becomes portrait.
        assert_eq!(image.dimensions(), (long_edge * 2 / 3 + (long_edge * 2 % 3 > 1) as u32, long_edge), "{rendition:?}");
        assert!(std::fs::metadata(&path).unwrap().len() < bytes.len() as u64);
        assert_eq!(gw.photo_upload_file(photo.id, rendition).unwrap(), path, "cached");
    }
    // Renditions of a referenced photo survive the sweeper.
    assert_eq!(gw.sweep_orphan_files().unwrap(), 0);
}

#[test]
fn sweeper_removes_only_unreferenced_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let kept = gw.attach_photo(draft(&gw), &write_file(files.path(), "k.jpg", &jpeg_bytes(&scene(300, 200, 41), 80, None))).unwrap();
    let photos_dir = kept.original_path.parent().unwrap().parent().unwrap().to_owned();
    let stray = photos_dir.join("originals").join(format!("{}.jpg", "ab".repeat(32)));
    std::fs::write(&stray, b"left by a killed process").unwrap();
    std::fs::write(photos_dir.join("tmp").join("x.part"), b"half written").unwrap();
    // A durable write's temp file left by a killed process, and one that
    // looks like a write under way (newer than the open): only the first goes.
    let left_temp = photos_dir.join("thumbs").join(format!(".{}.jpg.tmp-000000", "cd".repeat(32)));
    std::fs::write(&left_temp, b"half").unwrap();
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&left_temp).unwrap().set_modified(an_hour_ago).unwrap();
    drop(gw);
    let gw = open(dir.path(), "w");
    assert_eq!(gw.open_report().orphan_files_removed, 1, "opening removes the ingest temp file only");
    assert!(stray.exists(), "opening lists no photo folder");
    let writing = photos_dir.join("originals").join(format!(".{}.jpg.tmp-111111", "ef".repeat(32)));
    std::fs::write(&writing, b"being written").unwrap();
    assert_eq!(gw.sweep_orphan_files().unwrap(), 2, "the stray original and the old temp file");
    assert!(!stray.exists() && !left_temp.exists());
    assert!(writing.exists(), "a temp file newer than the open may be a write under way");
    assert!(kept.original_path.exists() && kept.thumbnail_path.exists());
}

/// The sweep runs beside captures: the listing takes no lock, so a photo
/// attached while it runs must never be taken for an orphan.
#[test]
fn sweeping_while_capturing_loses_no_photo() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let gw = std::sync::Arc::new(open(dir.path(), "w"));
    let sources: Vec<_> = (0..12).map(|i| write_file(files.path(), &format!("{i}.jpg"), &jpeg_bytes(&scene(320, 240, 300 + i), 80, None))).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let (gw, stop) = (gw.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sweeps = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                gw.sweep_orphan_files().unwrap();
                sweeps += 1;
            }
            sweeps
        })
    };
    let mut attached = Vec::new();
    for source in &sources {
        let id = draft(&gw);
        attached.push(gw.attach_photo(id, source).unwrap());
        gw.submit(id).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(sweeper.join().unwrap() > 0);
    gw.sweep_orphan_files().unwrap();
    for photo in &attached {
        assert!(photo.original_path.exists() && photo.thumbnail_path.exists(), "a photo attached during a sweep was removed");
        assert_eq!(sha256_hex(&std::fs::read(&photo.original_path).unwrap()), photo.sha256);
    }
}

/// Writes the fuzz seed corpus of the photo pipeline (fuzz/corpus/photo):
/// small JPEGs with and without EXIF (orientation, time, GPS), a PNG and a
/// WebP. Run by hand when the seeds should change:
/// `cargo nextest run -p gridwork-tests --run-ignored only -E 'test(fuzz_seeds)'`.
#[test]
#[ignore = "writes files into the checkout"]
fn write_photo_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/photo");
    std::fs::create_dir_all(&dir).unwrap();
    let exif = ExifSpec { orientation: Some(6), taken_at: Some("2026:11:30 15:05:00".into()), offset: Some("+08:00".into()), gps: Some((31.23, 121.465)) };
    let seeds: [(&str, Vec<u8>); 5] = [
        ("plain.jpg", jpeg_bytes(&scene(40, 30, 1), 60, None)),
        ("exif.jpg", jpeg_bytes(&scene(40, 30, 2), 60, Some(&exif))),
        ("tall.jpg", jpeg_bytes(&scene(8, 64, 3), 50, None)),
        ("scene.png", png_bytes(&scene(24, 16, 4))),
        ("scene.webp", webp_bytes(&scene(24, 16, 5))),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Found in review: a photo attached again while a sweep runs, whose
/// original was left over (unreferenced) from an earlier attach, must
/// keep its file: the sweep decides and removes under the same lock the
/// ingest takes, so the ingest sees the file gone and writes it again.
#[test]
fn re_attaching_a_left_over_photo_while_sweeping_keeps_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let gw = std::sync::Arc::new(open(dir.path(), "w"));
    for round in 0..30 {
        let source = write_file(files.path(), &format!("r{round}.jpg"), &jpeg_bytes(&scene(200, 150, 500 + round), 80, None));
        // Attached and removed: its files stay behind, unreferenced.
        let first = draft(&gw);
        let photo = gw.attach_photo(first, &source).unwrap();
        gw.remove_photo(first, photo.id).unwrap();
        let sweeper = {
            let gw = gw.clone();
            std::thread::spawn(move || gw.sweep_orphan_files().unwrap())
        };
        let again = gw.attach_photo(draft(&gw), &source).unwrap();
        sweeper.join().unwrap();
        assert!(again.original_path.exists() && again.thumbnail_path.exists(), "round {round}: the re-attached photo lost its file");
        assert_eq!(sha256_hex(&std::fs::read(&again.original_path).unwrap()), again.sha256);
    }
}
