//! Recognising a photo's format from its first bytes, and reading its pixel
//! size from the header alone, before anything is decoded.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhotoFormat {
    Jpeg,
    Png,
    WebP,
}

impl PhotoFormat {
    pub fn mime_type(self) -> &'static str {
        match self {
            PhotoFormat::Jpeg => "image/jpeg",
            PhotoFormat::Png => "image/png",
            PhotoFormat::WebP => "image/webp",
        }
    }
    pub fn extension(self) -> &'static str {
        match self {
            PhotoFormat::Jpeg => "jpg",
            PhotoFormat::Png => "png",
            PhotoFormat::WebP => "webp",
        }
    }
    pub fn from_mime_type(mime: &str) -> Option<Self> {
        [PhotoFormat::Jpeg, PhotoFormat::Png, PhotoFormat::WebP].into_iter().find(|f| f.mime_type() == mime)
    }
}

/// Identify the format by magic bytes; file names and claimed types lie.
pub fn sniff(head: &[u8]) -> Result<PhotoFormat> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(PhotoFormat::Jpeg);
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(PhotoFormat::Png);
    }
    if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return Ok(PhotoFormat::WebP);
    }
    // ISO-BMFF: size, "ftyp", then a brand. HEIC/HEIF/AVIF all live here.
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        let brand = &head[8..12];
        if [&b"heic"[..], b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"].contains(&brand) {
            return Err(Error::PhotoHeicUnsupported);
        }
    }
    Err(Error::PhotoUnsupportedFormat)
}

/// Walk a JPEG's marker segments: returns its pixel size from the frame
/// header and checks that the file ends its image (EOI). A file cut off
/// mid-transfer or mid-write has no EOI and is refused, even though a
/// lenient decoder would paint the missing part grey. Bytes after EOI
/// (some phones append motion-photo data) are allowed.
pub fn jpeg_structure(bytes: &[u8]) -> Result<(u32, u32)> {
    let corrupt = |why: &str| Error::PhotoCorrupt(why.to_owned());
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(corrupt("missing JPEG start marker"));
    }
    let mut size: Option<(u32, u32)> = None;
    let mut i = 2;
    loop {
        if i >= bytes.len() {
            return Err(corrupt("JPEG ends before its end marker (truncated)"));
        }
        if bytes[i] != 0xFF {
            return Err(corrupt("expected a JPEG marker"));
        }
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else {
            return Err(corrupt("JPEG ends inside a marker (truncated)"));
        };
        i += 1;
        match marker {
            0xD9 => break,
            0x01 | 0xD0..=0xD7 => continue,
            0xD8 => return Err(corrupt("unexpected second JPEG start marker")),
            _ => {}
        }
        if i + 2 > bytes.len() {
            return Err(corrupt("JPEG segment header truncated"));
        }
        let length = u16::from_be_bytes([bytes[i], bytes[i + 1]]) as usize;
        if length < 2 || i + length > bytes.len() {
            return Err(corrupt("JPEG segment truncated"));
        }
        let segment = &bytes[i + 2..i + length];
        let is_frame_header = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_frame_header {
            if segment.len() < 5 {
                return Err(corrupt("JPEG frame header too short"));
            }
            let height = u16::from_be_bytes([segment[1], segment[2]]) as u32;
            let width = u16::from_be_bytes([segment[3], segment[4]]) as u32;
            if width == 0 || height == 0 {
                return Err(corrupt("JPEG frame has zero size"));
            }
            size = Some((width, height));
        }
        i += length;
        if marker == 0xDA {
            if size.is_none() {
                return Err(corrupt("JPEG scan before frame header"));
            }
            // Entropy-coded data runs to the next marker that is neither a
            // stuffed byte (FF 00) nor a restart marker.
            loop {
                let Some(offset) = bytes[i..].iter().position(|&b| b == 0xFF) else {
                    return Err(corrupt("JPEG scan data truncated"));
                };
                let at = i + offset;
                match bytes.get(at + 1) {
                    None => return Err(corrupt("JPEG scan data truncated")),
                    Some(0x00) | Some(0xD0..=0xD7) | Some(0xFF) => i = at + 1,
                    Some(_) => {
                        i = at;
                        break;
                    }
                }
            }
        }
    }
    size.ok_or_else(|| corrupt("JPEG has no frame header"))
}

/// PNG and WebP sizes from their headers.
pub fn header_size(format: PhotoFormat, bytes: &[u8]) -> Result<(u32, u32)> {
    if format == PhotoFormat::Jpeg {
        return jpeg_structure(bytes);
    }
    let image_format = match format {
        PhotoFormat::Png => image::ImageFormat::Png,
        _ => image::ImageFormat::WebP,
    };
    let reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), image_format);
    reader.into_dimensions().map_err(|e| Error::PhotoCorrupt(format!("unreadable image header ({})", error_kind(&e))))
}

/// A short description of an image error without echoing file content.
pub fn error_kind(error: &image::ImageError) -> &'static str {
    match error {
        image::ImageError::Decoding(_) => "decoding failed",
        image::ImageError::Limits(_) => "limits exceeded",
        image::ImageError::Unsupported(_) => "unsupported feature",
        image::ImageError::IoError(_) => "unexpected end of data",
        image::ImageError::Encoding(_) => "encoding failed",
        image::ImageError::Parameter(_) => "bad parameter",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_formats_and_refuses_heic() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap(), PhotoFormat::Jpeg);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").unwrap(), PhotoFormat::Png);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").unwrap(), PhotoFormat::WebP);
        assert_eq!(sniff(b"\0\0\0\x18ftypheic\0\0\0\0").unwrap_err().code(), "photo_heic_unsupported");
        assert_eq!(sniff(b"\0\0\0\x18ftypmif1\0\0\0\0").unwrap_err().code(), "photo_heic_unsupported");
        assert_eq!(sniff(b"GIF89a").unwrap_err().code(), "photo_unsupported_format");
        assert_eq!(sniff(b"").unwrap_err().code(), "photo_unsupported_format");
    }

    #[test]
    fn jpeg_walk_requires_frame_and_end() {
        // SOI, SOF0 8x4, SOS with two bytes of data and a stuffed FF00, EOI.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 8, 0x00, 0x04, 0x00, 0x08, 1, 1, 0x11, 0];
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 63, 0, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD9]);
        assert_eq!(jpeg_structure(&jpeg).unwrap(), (8, 4));
        let mut trailing = jpeg.clone();
        trailing.extend_from_slice(b"motion photo data");
        assert_eq!(jpeg_structure(&trailing).unwrap(), (8, 4));
        for cut in 2..jpeg.len() {
            assert_eq!(jpeg_structure(&jpeg[..cut]).unwrap_err().code(), "photo_corrupt", "cut at {cut}");
        }
    }
}
