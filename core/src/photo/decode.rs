//! Decoding to small sizes: thumbnails, renditions and the perceptual hash.
//!
//! JPEG (almost every phone photo) is decoded with DCT scaling: a 12 MP
//! photo asked for a 320 px thumbnail is decoded at 1/8 size, so neither the
//! time nor the memory of a full decode is spent. PNG and WebP have no such
//! shortcut and are decoded fully, under the configured pixel limits.

use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, ImageReader, Limits, RgbImage};

use super::format::{PhotoFormat, error_kind};
use crate::error::{Error, Result};

/// Decode at least `long_edge` pixels on the long side (or the full size if
/// smaller), without EXIF orientation applied.
pub fn decode_at_least(format: PhotoFormat, bytes: &[u8], long_edge: u32, max_pixels: u64) -> Result<DynamicImage> {
    match format {
        PhotoFormat::Jpeg => decode_jpeg_scaled(bytes, long_edge),
        PhotoFormat::Png | PhotoFormat::WebP => {
            let image_format = if format == PhotoFormat::Png { image::ImageFormat::Png } else { image::ImageFormat::WebP };
            let mut reader = ImageReader::with_format(std::io::Cursor::new(bytes), image_format);
            let mut limits = Limits::default();
            // RGBA8 of the largest allowed image, plus headroom for the decoder.
            limits.max_alloc = Some(max_pixels.saturating_mul(4).saturating_add(64 << 20));
            reader.limits(limits);
            reader.decode().map_err(|e| Error::PhotoCorrupt(error_kind(&e).to_owned()))
        }
    }
}

fn decode_jpeg_scaled(bytes: &[u8], long_edge: u32) -> Result<DynamicImage> {
    let corrupt = |e: jpeg_decoder::Error| {
        Error::PhotoCorrupt(match e {
            jpeg_decoder::Error::Unsupported(_) => "unsupported JPEG feature".to_owned(),
            _ => "JPEG decoding failed".to_owned(),
        })
    };
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().map_err(corrupt)?;
    let info = decoder.info().ok_or_else(|| Error::PhotoCorrupt("JPEG has no frame header".into()))?;
    let (width, height) = (info.width as u32, info.height as u32);
    let long = width.max(height).max(1);
    let scale = |side: u32| ((side as u64 * long_edge as u64).div_ceil(long as u64)).clamp(1, u16::MAX as u64) as u16;
    let (out_w, out_h) = decoder.scale(scale(width), scale(height)).map_err(corrupt)?;
    let pixels = decoder.decode().map_err(corrupt)?;
    let (w, h) = (out_w as u32, out_h as u32);
    let info = decoder.info().expect("decoded image has info");
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => RgbImage::from_raw(w, h, pixels),
        jpeg_decoder::PixelFormat::L8 => GrayImage::from_raw(w, h, pixels).map(|g| DynamicImage::ImageLuma8(g).to_rgb8()),
        jpeg_decoder::PixelFormat::L16 => {
            let high_bytes = pixels.chunks_exact(2).map(|p| p[0]).collect();
            GrayImage::from_raw(w, h, high_bytes).map(|g| DynamicImage::ImageLuma8(g).to_rgb8())
        }
        jpeg_decoder::PixelFormat::CMYK32 => {
            let rgb = pixels
                .chunks_exact(4)
                .flat_map(|p| {
                    let k = 255 - p[3] as u32;
                    [p[0], p[1], p[2]].map(|c| ((255 - c as u32) * k / 255) as u8)
                })
                .collect();
            RgbImage::from_raw(w, h, rgb)
        }
    };
    rgb.map(DynamicImage::ImageRgb8).ok_or_else(|| Error::PhotoCorrupt("JPEG decoded to a wrong size".into()))
}

/// Resize so the long edge is at most `long_edge`, then apply orientation.
pub fn fit_and_orient(image: DynamicImage, long_edge: u32, orientation: u8) -> DynamicImage {
    let (w, h) = (image.width(), image.height());
    let mut image = if w.max(h) > long_edge {
        let (tw, th) = fit(w, h, long_edge);
        // Triangle is plenty for a thumbnail; the input is already near size.
        DynamicImage::ImageRgb8(image::imageops::resize(&image.to_rgb8(), tw, th, FilterType::Triangle))
    } else {
        DynamicImage::ImageRgb8(image.to_rgb8())
    };
    if let Some(orientation) = Orientation::from_exif(orientation) {
        image.apply_orientation(orientation);
    }
    image
}

/// The size that fits `long_edge`, keeping the aspect ratio.
pub fn fit(width: u32, height: u32, long_edge: u32) -> (u32, u32) {
    let long = width.max(height) as u64;
    let scale = |side: u32| ((side as u64 * long_edge as u64 + long / 2) / long).max(1) as u32;
    (scale(width), scale(height))
}

/// Baseline JPEG, no chroma subsampling (4:4:4), the standard tables scaled
/// by `quality` as libjpeg does: what image's own encoder wrote before, from
/// a small crate, so the phone library carries no second JPEG decoder.
pub fn encode_jpeg(image: &DynamicImage, quality: u8) -> Result<Vec<u8>> {
    let rgb = image.to_rgb8();
    let failed = || Error::PhotoCorrupt("encoding failed".to_owned());
    // JPEG sides are 16-bit; thumbnails and renditions are far below that.
    let (width, height) = (u16::try_from(rgb.width()).map_err(|_| failed())?, u16::try_from(rgb.height()).map_err(|_| failed())?);
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_1_1);
    encoder.set_optimized_huffman_tables(true);
    encoder
        .encode(rgb.as_raw(), width, height, jpeg_encoder::ColorType::Rgb)
        .map_err(|_| failed())?;
    Ok(out)
}

/// 64-bit difference hash: grey 9x8, one bit per horizontal neighbour pair.
/// Near-identical photos (re-compressed, resized) differ in a few bits.
pub fn dhash(image: &DynamicImage) -> u64 {
    let small = image::imageops::resize(&image.to_luma8(), 9, 8, FilterType::Triangle);
    let mut hash = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            let left = small.get_pixel(x, y)[0];
            let right = small.get_pixel(x + 1, y)[0];
            hash = (hash << 1) | u64::from(left > right);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_aspect() {
        assert_eq!(fit(4000, 3000, 320), (320, 240));
        assert_eq!(fit(3000, 4000, 320), (240, 320));
        assert_eq!(fit(10000, 10, 320), (320, 1));
    }

    #[test]
    fn dhash_is_stable_under_resizing_and_differs_for_other_images() {
        let gradient = RgbImage::from_fn(400, 300, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8]));
        let a = DynamicImage::ImageRgb8(gradient);
        let b = a.resize_exact(200, 150, FilterType::Triangle);
        let c = DynamicImage::ImageRgb8(RgbImage::from_fn(400, 300, |x, _| image::Rgb([255 - (x % 256) as u8; 3])));
        assert!((dhash(&a) ^ dhash(&b)).count_ones() <= 6);
        assert!((dhash(&a) ^ dhash(&c)).count_ones() > 12);
    }
}
