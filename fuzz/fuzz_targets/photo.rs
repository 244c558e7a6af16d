//! The photo pipeline on hostile bytes: sniffing, the header walk, EXIF,
//! each decoder under the pixel limit, the thumbnail and its perceptual
//! hash. Any input ends in a typed error or a bounded image, never a panic
//! or an allocation past the limits.
#![no_main]

use gridwork_core::photo::{decode, exif, format};
use libfuzzer_sys::fuzz_target;

/// Small, so a decompression bomb is refused rather than decoded slowly.
const MAX_PIXELS: u64 = 4_000_000;

fuzz_target!(|bytes: &[u8]| {
    let _ = exif::read(bytes, 480);
    let Ok(format) = format::sniff(&bytes[..bytes.len().min(32)]) else { return };
    let Ok((width, height)) = format::header_size(format, bytes) else { return };
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return;
    }
    if let Ok(image) = decode::decode_at_least(format, bytes, 320, MAX_PIXELS) {
        let thumb = decode::fit_and_orient(image, 320, exif::read(bytes, 480).orientation);
        assert!(thumb.width().max(thumb.height()) <= 320);
        let _ = decode::dhash(&thumb);
    }
});
