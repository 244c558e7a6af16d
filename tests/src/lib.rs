//! Shared fixtures for Gridwork's cross-crate tests and benchmarks: real
//! JPEG, PNG and WebP files generated on the spot (with EXIF where asked),
//! and helpers to open a device store.

pub mod proxy;
pub mod server;
pub mod sim;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use exif::experimental::Writer;
use exif::{Field, In, Rational, Tag, Value};
use gridwork_core::{Gridwork, GridworkConfig};
use image::{ImageEncoder, RgbImage};

/// A fixed test key (32 bytes). Real keys come from the platform keystore.
pub const TEST_KEY: [u8; 32] = *b"gridwork-test-key-0123456789abcd";

pub fn config(data_dir: &Path, account: &str) -> GridworkConfig {
    GridworkConfig::new(data_dir, account, TEST_KEY.to_vec())
}

pub fn open(data_dir: &Path, account: &str) -> Gridwork {
    Gridwork::open(config(data_dir, account)).expect("open test store")
}

/// EXIF facts to embed in a generated photo.
#[derive(Clone, Debug, Default)]
pub struct ExifSpec {
    pub orientation: Option<u16>,
    /// "YYYY:MM:DD HH:MM:SS"
    pub taken_at: Option<String>,
    pub offset: Option<String>,
    /// (lat, lon) in degrees; negative for S / W.
    pub gps: Option<(f64, f64)>,
}

/// A photo-like test image: smooth gradients with some structure, so JPEG
/// sizes and perceptual hashes behave like a real scene. `seed` varies it.
pub fn scene(width: u32, height: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let fx = x as f32 / width as f32;
        let fy = y as f32 / height as f32;
        let s = seed as f32 * 0.37;
        let r = ((fx * 3.0 + s).sin() * 0.5 + 0.5) * 255.0;
        let g = ((fy * 5.0 + fx * 2.0 + s * 1.3).cos() * 0.5 + 0.5) * 255.0;
        // Fine texture so the file is not trivially compressible.
        let noise = ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ seed) >> 13) & 0x1f;
        let b = (fx * fy * 200.0) + noise as f32;
        image::Rgb([r as u8, g as u8, b.min(255.0) as u8])
    })
}

pub fn jpeg_bytes(image: &RgbImage, quality: u8, exif: Option<&ExifSpec>) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(image)
        .expect("encode jpeg");
    match exif {
        Some(spec) => insert_exif_app1(&out, &exif_tiff(spec)),
        None => out,
    }
}

pub fn png_bytes(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(image.as_raw(), image.width(), image.height(), image::ExtendedColorType::Rgb8)
        .expect("encode png");
    out
}

pub fn webp_bytes(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .write_image(image.as_raw(), image.width(), image.height(), image::ExtendedColorType::Rgb8)
        .expect("encode webp");
    out
}

fn to_rationals(degrees: f64) -> Vec<Rational> {
    let degrees = degrees.abs();
    let whole = degrees.floor();
    let minutes = ((degrees - whole) * 60.0).floor();
    let seconds_x1000 = ((degrees - whole - minutes / 60.0) * 3_600_000.0).round();
    vec![
        Rational { num: whole as u32, denom: 1 },
        Rational { num: minutes as u32, denom: 1 },
        Rational { num: seconds_x1000 as u32, denom: 1000 },
    ]
}

/// A TIFF-structured EXIF block.
pub fn exif_tiff(spec: &ExifSpec) -> Vec<u8> {
    let mut fields = Vec::new();
    if let Some(o) = spec.orientation {
        fields.push(Field { tag: Tag::Orientation, ifd_num: In::PRIMARY, value: Value::Short(vec![o]) });
    }
    if let Some(t) = &spec.taken_at {
        fields.push(Field { tag: Tag::DateTimeOriginal, ifd_num: In::PRIMARY, value: Value::Ascii(vec![t.clone().into_bytes()]) });
    }
    if let Some(o) = &spec.offset {
        fields.push(Field { tag: Tag::OffsetTimeOriginal, ifd_num: In::PRIMARY, value: Value::Ascii(vec![o.clone().into_bytes()]) });
    }
    if let Some((lat, lon)) = spec.gps {
        let lat_ref = if lat < 0.0 { "S" } else { "N" };
        let lon_ref = if lon < 0.0 { "W" } else { "E" };
        fields.push(Field { tag: Tag::GPSLatitudeRef, ifd_num: In::PRIMARY, value: Value::Ascii(vec![lat_ref.into()]) });
        fields.push(Field { tag: Tag::GPSLatitude, ifd_num: In::PRIMARY, value: Value::Rational(to_rationals(lat)) });
        fields.push(Field { tag: Tag::GPSLongitudeRef, ifd_num: In::PRIMARY, value: Value::Ascii(vec![lon_ref.into()]) });
        fields.push(Field { tag: Tag::GPSLongitude, ifd_num: In::PRIMARY, value: Value::Rational(to_rationals(lon)) });
    }
    let mut writer = Writer::new();
    for field in &fields {
        writer.push_field(field);
    }
    let mut tiff = Cursor::new(Vec::new());
    writer.write(&mut tiff, false).expect("write exif");
    tiff.into_inner()
}

/// Insert an APP1 "Exif" segment right after a JPEG's SOI marker.
pub fn insert_exif_app1(jpeg: &[u8], tiff: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let length = (2 + 6 + tiff.len()) as u16;
    let mut out = Vec::with_capacity(jpeg.len() + tiff.len() + 10);
    out.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE1]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(tiff);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Write bytes to `dir/name` and return the path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write fixture");
    path
}

/// A 12 MP (4000x3000) phone-like JPEG with EXIF, as a camera would write.
pub fn twelve_megapixel_jpeg(seed: u32) -> Vec<u8> {
    let spec = ExifSpec {
        orientation: Some(1),
        taken_at: Some("2026:11:22 09:30:00".into()),
        offset: Some("+08:00".into()),
        gps: Some((31.2304, 121.4737)),
    };
    jpeg_bytes(&scene(4000, 3000, seed), 90, Some(&spec))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A GeoJSON FeatureCollection with two adjacent square grids around
/// (121.47, 31.23): G-001 west, G-002 east, in one community and street.
pub fn two_grids_geojson() -> String {
    serde_json::json!({
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature",
             "properties": {"code": "G-001", "name": "南京东路第一网格", "level": "key_attention", "community": "C-01", "street": "S-01"},
             "geometry": {"type": "Polygon", "coordinates": [[[121.46, 31.22], [121.47, 31.22], [121.47, 31.24], [121.46, 31.24], [121.46, 31.22]]]}},
            {"type": "Feature",
             "properties": {"code": "G-002", "name": "南京东路第二网格", "level": "routine", "community": "C-01", "street": "S-01"},
             "geometry": {"type": "Polygon", "coordinates": [[[121.47, 31.22], [121.48, 31.22], [121.48, 31.24], [121.47, 31.24], [121.47, 31.22]]]}}
        ]
    })
    .to_string()
}

/// Process memory high-water mark in KiB (Linux), for benchmarks.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// CRC-32 (IEEE), as PNG chunks use.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A small valid PNG whose IHDR (with a correct CRC) claims `width` x
/// `height`: a decompression bomb as an attacker would craft it.
pub fn png_header_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut png = png_bytes(&scene(16, 16, 0));
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// Append a COM (comment) segment; decoders skip them.
pub fn com_segment(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// A copy of `jpeg` made unique by `tag` and larger by `padding` bytes of
/// COM segments: a distinct photo (by SHA-256) without encoding again.
pub fn jpeg_variant(jpeg: &[u8], tag: &str, padding: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(jpeg.len() + padding + 1024);
    out.extend_from_slice(&jpeg[..2]);
    com_segment(&mut out, tag.as_bytes());
    let mut left = padding;
    let mut segment = 0u32;
    while left > 0 {
        let take = left.min(60_000);
        let data: Vec<u8> = (0..take as u32).map(|i| (i.wrapping_mul(2_654_435_761) ^ segment.wrapping_mul(40_503)).to_le_bytes()[1]).collect();
        com_segment(&mut out, &data);
        left -= take;
        segment += 1;
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}
