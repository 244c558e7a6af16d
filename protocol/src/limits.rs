//! Limits of the domain that the server enforces and devices respect, so a
//! report a device accepts is never refused by the server for its size.
//! Limits of the HTTP transport itself are in [`crate::api`].

/// An incident's description, and a note on a workflow step, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 4_000;
pub const ADDRESS_MAX_CHARS: usize = 500;
/// A department a case is dispatched to, in characters.
pub const DEPARTMENT_MAX_CHARS: usize = 200;
pub const CATEGORY_CODE_MAX_CHARS: usize = 32;
pub const CATEGORY_NAME_MAX_CHARS: usize = 100;
/// Each text property of an imported grid (code, name, parent codes).
pub const GRID_PROPERTY_MAX_CHARS: usize = 200;

/// Photos with one report, or with one workflow step (after-photos).
pub const MAX_PHOTOS_PER_STEP: usize = 20;

/// A photo file: checked on the device before it is decoded, and by the
/// server when the upload is announced.
pub const PHOTO_MAX_BYTES: u64 = 64 << 20;
/// The largest JSON reply a device reads from a server (a pull page is well
/// under a megabyte); more is refused before it fills the phone's memory.
pub const REPLY_MAX_BYTES: u64 = 32 << 20;
/// The largest rendition (a JPEG of at most 2048 px) a device accepts from
/// a server; a reply beyond it is refused as malformed.
pub const RENDITION_MAX_BYTES: u64 = 8 << 20;
/// Pixels of a photo (a 50 MP phone photo passes), against decompression bombs.
pub const PHOTO_MAX_PIXELS: u64 = 64_000_000;
/// The longer side of a photo, in pixels.
pub const PHOTO_MAX_SIDE: u32 = 16_384;
/// The photo formats accepted as evidence.
pub const PHOTO_MIME_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];
