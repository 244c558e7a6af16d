//! Downsized renditions of photos for the command center's screens and for
//! devices on metered links: a JPEG whose long edge is at most 320, 1280 or
//! 2048 pixels, EXIF orientation applied. Decoded under limits, since the
//! bytes come from phones.

use std::io::Cursor;

use image::{ImageReader, Limits};

use crate::error::{Result, ServerError};

use gridwork_protocol::api::PhotoRendition;

/// The rendition a download asks for.
pub fn parse(text: Option<&str>) -> Result<PhotoRendition> {
    PhotoRendition::from_query(text).ok_or_else(|| ServerError::bad_request("invalid_rendition", "rendition is original, thumb, 1280 or 2048"))
}

const MAX_PIXELS: u64 = gridwork_protocol::limits::PHOTO_MAX_PIXELS;

pub fn render(bytes: &[u8], long_edge: u32) -> Result<Vec<u8>> {
    let undecodable = || ServerError::new(422, "photo_undecodable", "the photo cannot be decoded into a rendition");
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|_| undecodable())?;
    let (width, height) = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|_| undecodable())?.into_dimensions().map_err(|_| undecodable())?;
    if width as u64 * height as u64 > MAX_PIXELS {
        return Err(ServerError::new(422, "photo_too_many_pixels", "the photo is too large to render"));
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4 + (64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|_| undecodable())?;
    let orientation = image::ImageDecoder::orientation(&mut decoder).ok();
    let mut image = image::DynamicImage::from_decoder(decoder).map_err(|_| undecodable())?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    let image = if image.width().max(image.height()) > long_edge { image.thumbnail(long_edge, long_edge) } else { image };
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&image.to_rgb8()).map_err(|_| undecodable())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_smaller_jpeg_and_refuses_garbage() {
        let image = image::RgbImage::from_fn(1000, 500, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(image).write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let jpeg = render(&png, 320).unwrap();
        let decoded = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (320, 160));
        assert_eq!(render(b"not an image", 320).unwrap_err().code, "photo_undecodable");
        assert_eq!(parse(Some("1280")).unwrap(), PhotoRendition::LongEdge1280);
        assert_eq!(parse(Some("99")).unwrap_err().code, "invalid_rendition");
    }
}
