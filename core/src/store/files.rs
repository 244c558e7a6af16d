//! Durable file writes: temp name, fsync, rename, fsync the directory. A
//! file the database points at must exist after a crash or power loss. The
//! one place the core writes a file it must not lose.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::Result;

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Write `bytes` to `path` through a hidden temp file beside it.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("durable writes target a file inside a directory");
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        hex::encode(rand::random::<[u8; 6]>())
    ));
    write_durably_via(&tmp, path, bytes)
}

/// Write `bytes` to `path` through the temp file `tmp` (on the same file
/// system), which is removed again on failure.
pub fn write_durably_via(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("durable writes target a file inside a directory");
    let result = (|| {
        let mut file = File::create(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}
