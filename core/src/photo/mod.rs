//! The photo evidence pipeline.
//!
//! `ingest` takes a file path from the camera or gallery and, before any row
//! is written: checks size and magic bytes, reads the file once into memory,
//! reads the header's pixel size and refuses decompression bombs before
//! decoding, hashes the bytes (SHA-256), reads EXIF, makes an oriented
//! thumbnail by scaled decoding, computes a perceptual hash, and writes the
//! store's own copy of the original and the thumbnail durably under their
//! hash. The caller
//! then commits the database row; a crash in between leaves only orphan
//! files, which the sweeper removes.

pub mod decode;
pub mod exif;
pub mod format;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gridwork_protocol::api::PhotoRendition;
use gridwork_protocol::limits;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::files::{write_durably, write_durably_via};
pub use exif::ExifFacts;
pub use format::PhotoFormat;

pub const THUMBNAIL_LONG_EDGE: u32 = 320;
/// A thumbnail fetched from the server is at most this big.
const MAX_THUMBNAIL_BYTES: usize = 512 * 1024;
const THUMBNAIL_QUALITY: u8 = 80;
const RENDITION_QUALITY: u8 = 85;

/// Limits checked before decoding. The defaults take a 50 MP phone photo
/// (8160x6120) and refuse anything that could exhaust a phone's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhotoLimits {
    pub max_bytes: u64,
    pub max_pixels: u64,
    pub max_side: u32,
}

impl Default for PhotoLimits {
    fn default() -> Self {
        PhotoLimits { max_bytes: limits::PHOTO_MAX_BYTES, max_pixels: limits::PHOTO_MAX_PIXELS, max_side: limits::PHOTO_MAX_SIDE }
    }
}

/// What the upload should carry, chosen by the network policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendition {
    Original,
    LongEdge2048,
    LongEdge1280,
}

impl Rendition {
    pub fn long_edge(self) -> Option<u32> {
        match self {
            Rendition::Original => None,
            Rendition::LongEdge2048 => Some(2048),
            Rendition::LongEdge1280 => Some(1280),
        }
    }
}

/// A photo that is durable on disk and ready for its row to be committed.
#[derive(Debug)]
pub struct IngestedPhoto {
    pub sha256: String,
    pub byte_size: u64,
    pub format: PhotoFormat,
    pub width: u32,
    pub height: u32,
    pub exif: ExifFacts,
    pub dhash: u64,
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
    /// Files this ingest created (not those that already existed), removed
    /// again by [`PhotoStore::abandon`] if the row cannot be committed.
    created_files: Vec<PathBuf>,
    /// Keeps the sweeper away from these files until the row is committed.
    pub guard: IngestGuard,
}

/// The photo folder of one account.
#[derive(Clone, Debug)]
pub struct PhotoStore {
    root: PathBuf,
    /// When this store was opened: a durable write's temp file older than
    /// this is a leftover of an earlier process, never a write under way.
    opened_at: std::time::SystemTime,
    /// Hashes being ingested or rendered, with how many operations hold
    /// each (the same bytes may be attached twice at once).
    in_progress: InProgress,
}

type InProgress = Arc<Mutex<HashMap<String, usize>>>;

fn lock(in_progress: &InProgress) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
    in_progress.lock().unwrap_or_else(|e| e.into_inner())
}

/// Protects a just-written photo from the sweeper until dropped.
#[derive(Debug)]
pub struct IngestGuard {
    sha256: String,
    in_progress: InProgress,
}

impl Drop for IngestGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.in_progress);
        if let Some(count) = map.get_mut(&self.sha256) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.sha256);
            }
        }
    }
}

impl PhotoStore {
    pub fn open(root: &Path) -> Result<PhotoStore> {
        for dir in ["originals", "thumbs", "renditions", "fetched", "tmp"] {
            fs::create_dir_all(root.join(dir))?;
        }
        Ok(PhotoStore { root: root.to_owned(), opened_at: std::time::SystemTime::now(), in_progress: Arc::default() })
    }

    pub fn original_path(&self, sha256: &str, format: PhotoFormat) -> PathBuf {
        self.root.join("originals").join(format!("{sha256}.{}", format.extension()))
    }

    pub fn thumbnail_path(&self, sha256: &str) -> PathBuf {
        self.root.join("thumbs").join(format!("{sha256}.jpg"))
    }

    pub fn rendition_path(&self, sha256: &str, long_edge: u32) -> PathBuf {
        self.root.join("renditions").join(format!("{sha256}-{long_edge}.jpg"))
    }

    /// Run the whole pipeline on a source file. Nothing is left behind on
    /// error except files the sweeper will remove.
    pub fn ingest(&self, source: &Path, limits: PhotoLimits, default_utc_offset_minutes: i32) -> Result<IngestedPhoto> {
        let metadata = fs::metadata(source).map_err(|_| Error::PhotoFileNotFound)?;
        if !metadata.is_file() {
            return Err(Error::PhotoFileNotFound);
        }
        if metadata.len() == 0 {
            return Err(Error::PhotoEmpty);
        }
        if metadata.len() > limits.max_bytes {
            return Err(Error::PhotoTooLarge { actual: metadata.len(), limit: limits.max_bytes });
        }
        let mut file = File::open(source).map_err(|_| Error::PhotoFileNotFound)?;
        let mut head = [0u8; 32];
        let head_len = read_up_to(&mut file, &mut head)?;
        let format = format::sniff(&head[..head_len])?;

        // The source is read once, into memory, for hashing and decoding;
        // the store keeps its own copy (the gallery file may vanish), written
        // through a temp file here that the sweeper removes if left behind.
        let tmp_path = self.root.join("tmp").join(format!("{}.part", uuid::Uuid::now_v7()));
        let result = self.copy_and_process(&mut file, &head[..head_len], &tmp_path, format, limits, default_utc_offset_minutes);
        if result.is_err() {
            let _ = fs::remove_file(&tmp_path);
        }
        result
    }

    fn copy_and_process(
        &self,
        source: &mut File,
        head: &[u8],
        tmp_path: &Path,
        format: PhotoFormat,
        limits: PhotoLimits,
        default_utc_offset_minutes: i32,
    ) -> Result<IngestedPhoto> {
        let mut bytes = head.to_vec();
        source.read_to_end(&mut bytes).map_err(|_| Error::PhotoFileNotFound)?;
        if bytes.len() as u64 > limits.max_bytes {
            // The file grew between stat and read.
            return Err(Error::PhotoTooLarge { actual: bytes.len() as u64, limit: limits.max_bytes });
        }
        let (width, height) = format::header_size(format, &bytes)?;
        if width > limits.max_side || height > limits.max_side || width as u64 * height as u64 > limits.max_pixels {
            return Err(Error::PhotoTooManyPixels { width, height });
        }
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let guard = self.guard(&sha256);
        let mut created_files = Vec::new();
        let result = self.process(&bytes, &sha256, tmp_path, format, default_utc_offset_minutes, limits, &mut created_files);
        match result {
            Ok((exif, dhash, (thumbnail_width, thumbnail_height))) => Ok(IngestedPhoto {
                sha256,
                byte_size: bytes.len() as u64,
                format,
                width,
                height,
                exif,
                dhash,
                thumbnail_width,
                thumbnail_height,
                created_files,
                guard,
            }),
            Err(error) => {
                self.remove_if_sole_holder(&guard, &created_files);
                Err(error)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn process(
        &self,
        bytes: &[u8],
        sha256: &str,
        tmp_path: &Path,
        format: PhotoFormat,
        default_utc_offset_minutes: i32,
        limits: PhotoLimits,
        created_files: &mut Vec<PathBuf>,
    ) -> Result<(ExifFacts, u64, (u32, u32))> {

        let exif = exif::read(bytes, default_utc_offset_minutes);
        let decoded = decode::decode_at_least(format, bytes, THUMBNAIL_LONG_EDGE, limits.max_pixels)?;
        let thumbnail = decode::fit_and_orient(decoded, THUMBNAIL_LONG_EDGE, exif.orientation);
        let dhash = decode::dhash(&thumbnail);
        let thumbnail_bytes = decode::encode_jpeg(&thumbnail, THUMBNAIL_QUALITY)?;

        let original_path = self.original_path(sha256, format);
        if !original_path.exists() {
            write_durably_via(tmp_path, &original_path, bytes)?;
            created_files.push(original_path);
        }
        let thumbnail_path = self.thumbnail_path(sha256);
        if !thumbnail_path.exists() {
            write_durably(&thumbnail_path, &thumbnail_bytes)?;
            created_files.push(thumbnail_path);
        }
        Ok((exif, dhash, (thumbnail.width(), thumbnail.height())))
    }

    fn guard(&self, sha256: &str) -> IngestGuard {
        *lock(&self.in_progress).entry(sha256.to_owned()).or_insert(0) += 1;
        IngestGuard { sha256: sha256.to_owned(), in_progress: self.in_progress.clone() }
    }

    /// Remove files an ingest created, unless another ingest of the same
    /// bytes is under way and will reference them.
    fn remove_if_sole_holder(&self, guard: &IngestGuard, files: &[PathBuf]) {
        let map = lock(&self.in_progress);
        if map.get(&guard.sha256) == Some(&1) {
            for file in files {
                let _ = fs::remove_file(file);
            }
        }
    }

    /// The row for an ingested photo could not be committed (full disk, the
    /// draft was submitted meanwhile): remove the files this ingest created
    /// unless a row already references them, so a failed attach leaves
    /// nothing behind.
    pub fn abandon(&self, photo: IngestedPhoto, referenced: bool) {
        if !referenced {
            self.remove_if_sole_holder(&photo.guard, &photo.created_files);
        }
    }

    /// The file to upload under `rendition`: the original, or a JPEG whose
    /// long edge is at most the rendition's, orientation applied, made once
    /// and cached. Made on demand (by sync) rather than at capture, so the
    /// capture a worker waits for stays fast.
    pub fn rendition(
        &self,
        sha256: &str,
        format: PhotoFormat,
        orientation: u8,
        rendition: Rendition,
        limits: PhotoLimits,
    ) -> Result<PathBuf> {
        let original = self.original_path(sha256, format);
        let Some(long_edge) = rendition.long_edge() else {
            return Ok(original);
        };
        let path = self.rendition_path(sha256, long_edge);
        if path.exists() {
            return Ok(path);
        }
        let guard = self.guard(sha256);
        let bytes = fs::read(&original).map_err(|_| Error::NotFound { what: "photo file" })?;
        let (width, height) = format::header_size(format, &bytes)?;
        if width.max(height) <= long_edge && format == PhotoFormat::Jpeg && orientation == 1 {
            // Already small enough: sending the original costs nothing more.
            return Ok(original);
        }
        let decoded = decode::decode_at_least(format, &bytes, long_edge, limits.max_pixels)?;
        drop(bytes);
        let image = decode::fit_and_orient(decoded, long_edge, orientation);
        write_durably(&path, &decode::encode_jpeg(&image, RENDITION_QUALITY)?)?;
        drop(guard);
        Ok(path)
    }

    /// Keep a thumbnail of another device's photo (a JPEG of at most the
    /// thumbnail edge, as the server renders it): checked, written durably,
    /// then `commit` records it, all while the sweeper leaves the hash alone.
    pub fn keep_thumbnail(&self, sha256: &str, bytes: &[u8], commit: impl FnOnce() -> Result<()>) -> Result<()> {
        check_thumbnail(bytes)?;
        let guard = self.guard(sha256);
        let path = self.thumbnail_path(sha256);
        if !path.exists() {
            write_durably(&path, bytes)?;
        }
        commit()?;
        drop(guard);
        Ok(())
    }

    /// Where a photo fetched to be looked at is kept (`file_name` as
    /// [`PhotoStore::keep_fetched`] chose it).
    pub fn fetched_path(&self, file_name: &str) -> PathBuf {
        self.root.join("fetched").join(file_name)
    }

    /// Keep another device's photo a person asked to see, as the server sent
    /// it: the original only if its bytes hash to `sha256` and are a photo
    /// format, a rendition only if it is a JPEG within its edge. Written
    /// durably, then `commit(file_name)` records it, all while the sweeper
    /// leaves the hash alone. Returns the file name.
    pub fn keep_fetched(&self, sha256: &str, rendition: PhotoRendition, bytes: &[u8], commit: impl FnOnce(&str) -> Result<()>) -> Result<String> {
        let extension = match rendition.long_edge() {
            None => {
                if hex::encode(Sha256::digest(bytes)) != sha256 {
                    return Err(Error::PhotoCorrupt("the server sent other bytes than the photo's".into()));
                }
                format::sniff(bytes)?.extension()
            }
            Some(edge) => {
                let (width, height) = format::header_size(PhotoFormat::Jpeg, bytes)?;
                if width.max(height) > edge {
                    return Err(Error::PhotoCorrupt("the rendition is larger than asked".into()));
                }
                PhotoFormat::Jpeg.extension()
            }
        };
        let file_name = format!("{sha256}-{}.{extension}", rendition.as_query());
        let guard = self.guard(sha256);
        write_durably(&self.fetched_path(&file_name), bytes)?;
        commit(&file_name)?;
        drop(guard);
        Ok(file_name)
    }

    /// Remove fetched files the cache let go of (their rows are gone).
    pub fn remove_fetched(&self, file_names: &[String]) {
        for name in file_names {
            // Best effort: a file left behind is an orphan the sweeper removes.
            let _ = fs::remove_file(self.fetched_path(name));
        }
    }

    /// Copy a photo's original and thumbnail from another account's folder
    /// (work moving between accounts, see `adopt`), durably, unless this
    /// folder has them. The guard keeps the sweeper away until the rows
    /// referencing them commit. Renditions are not copied: they are made
    /// again on demand.
    pub fn import_from(&self, source: &PhotoStore, sha256: &str, format: PhotoFormat) -> Result<IngestGuard> {
        let guard = self.guard(sha256);
        for (from, to) in [
            (source.original_path(sha256, format), self.original_path(sha256, format)),
            (source.thumbnail_path(sha256), self.thumbnail_path(sha256)),
        ] {
            if !to.exists() {
                let bytes = fs::read(&from).map_err(|_| Error::NotFound { what: "photo file" })?;
                write_durably(&to, &bytes)?;
            }
        }
        Ok(guard)
    }

    /// Remove the temp files of ingests a killed process left in `tmp`; at
    /// open only, before any ingest can run. Returns how many went.
    pub fn remove_leftover_temp_files(&self) -> Result<u64> {
        let mut removed = 0;
        for entry in fs::read_dir(self.root.join("tmp"))? {
            fs::remove_file(entry?.path())?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Every file of the photo folders a sweep may remove. Listing
    /// thousands of files is the slow part of a sweep, so it needs no lock:
    /// [`PhotoStore::remove_orphans`] decides, file by file.
    pub fn sweep_candidates(&self) -> Result<Vec<SweepCandidate>> {
        let mut candidates = Vec::new();
        for dir in ["originals", "thumbs", "renditions", "fetched"] {
            for entry in fs::read_dir(self.root.join(dir))? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                // A durable write's temp file is ".<final name>.tmp-…".
                let temp = name.starts_with('.');
                let sha256 = name.trim_start_matches('.').get(..64).unwrap_or("").to_owned();
                candidates.push(SweepCandidate { path: entry.path(), sha256, temp });
            }
        }
        Ok(candidates)
    }

    /// Remove the candidates whose hash no row references. The caller
    /// holds the store's connection, so no row is committed meanwhile and
    /// `referenced` stays true; an ingest or a fetch under way guards its
    /// hash before writing and is checked live; a file written after the
    /// listing is not a candidate. A temp file goes when it is older than
    /// this store's open (a leftover of a killed process), and only then.
    /// Returns how many files went.
    pub fn remove_orphans(&self, candidates: Vec<SweepCandidate>, referenced: &HashSet<String>) -> Result<u64> {
        let mut removed = 0;
        for candidate in candidates {
            // Held until the file is gone: an ingest of the same bytes takes
            // its guard through this lock and then looks whether the file
            // exists, so it either keeps the sweep away or sees the file
            // removed and writes it again.
            let in_progress = lock(&self.in_progress);
            if candidate.temp {
                // A durable write's temp file older than the open is a
                // leftover whatever it names. File times come from a coarse
                // clock (a few ms behind), so only a clearly older one.
                let modified = fs::metadata(&candidate.path).and_then(|m| m.modified());
                if !modified.is_ok_and(|at| at + TEMP_FILE_MARGIN < self.opened_at) {
                    continue;
                }
            } else if referenced.contains(&candidate.sha256) || in_progress.contains_key(&candidate.sha256) {
                continue;
            }
            match fs::remove_file(&candidate.path) {
                Ok(()) => removed += 1,
                // Gone meanwhile (an abandoned ingest cleaned up after itself).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(removed)
    }

    /// [`PhotoStore::sweep_candidates`] then [`PhotoStore::remove_orphans`],
    /// for a caller that holds the connection throughout.
    pub fn sweep(&self, referenced: &HashSet<String>) -> Result<u64> {
        let candidates = self.sweep_candidates()?;
        self.remove_orphans(candidates, referenced)
    }
}

/// How much older than the store's open a durable write's temp file must
/// be for the sweep to take it for a leftover.
const TEMP_FILE_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

/// A file a sweep may remove (see [`PhotoStore::sweep_candidates`]).
#[derive(Debug)]
pub struct SweepCandidate {
    path: PathBuf,
    /// The hash its name starts with.
    sha256: String,
    /// A durable write's temp file.
    temp: bool,
}

/// Whether bytes from a server are a thumbnail a phone can keep and show: a
/// JPEG of at most the thumbnail edge, and small.
pub fn check_thumbnail(bytes: &[u8]) -> Result<()> {
    let (width, height) = format::header_size(PhotoFormat::Jpeg, bytes)?;
    if width.max(height) > THUMBNAIL_LONG_EDGE || bytes.len() > MAX_THUMBNAIL_BYTES {
        return Err(Error::PhotoCorrupt("not a thumbnail".into()));
    }
    Ok(())
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Error::PhotoFileNotFound),
        }
    }
    Ok(filled)
}
