//! What every device command works with: the device folder, the account,
//! the output mode; and the argument decoding they share.

use std::ffi::OsString;
use std::path::PathBuf;

use gridwork_core::model::short_id::IdKind;
use gridwork_core::{Gridwork, Uuid};
use serde_json::Value;

use crate::device::Device;
use crate::error::{AMBIGUOUS_ID, CliError, CliResult};
use crate::output;

/// Decode an argument that may be any bytes into text, refusing invalid
/// UTF-8 with the core's `text_invalid_utf8`.
pub fn text(field: &'static str, value: OsString) -> CliResult<String> {
    use std::os::unix::ffi::OsStringExt;
    Ok(gridwork_core::text::text_from_bytes(field, value.into_vec())?)
}

pub struct Ctx {
    pub device: Device,
    pub account: String,
    pub json: bool,
}

impl Ctx {
    pub fn open(&self) -> CliResult<Gridwork> {
        self.device.open(&self.account)
    }

    /// JSON for scripts, or lines for people.
    pub fn emit(&self, value: Value, human: impl FnOnce() -> String) {
        if self.json { output::print_json(&value) } else { output::print(&human()) }
    }
}

/// The files a command was given, checked before any work starts, so a
/// typo is "no such file: PATH" and not a half-made report.
pub fn check_photo_files<'a>(paths: impl IntoIterator<Item = &'a PathBuf>) -> CliResult<()> {
    for path in paths {
        let problem = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => format!("{} is a folder, not a photo", path.display()),
            Ok(_) => match std::fs::File::open(path) {
                Ok(_) => continue,
                Err(e) => crate::output::file_problem(path, &e),
            },
            Err(e) => crate::output::file_problem(path, &e),
        };
        return Err(CliError::from(gridwork_core::Error::PhotoFileNotFound).with_message(problem));
    }
    Ok(())
}


/// An incident or operation id as typed: the whole id, or a unique prefix
/// of at least 4 characters (as `gridwork outbox`, `incidents` and `tasks`
/// print them).
pub fn resolve_id(gw: &Gridwork, kind: IdKind, field: &'static str, value: OsString) -> CliResult<Uuid> {
    let typed = text(field, value)?;
    let typed = typed.trim();
    if let Ok(id) = Uuid::parse_str(typed) {
        return Ok(id);
    }
    let what = match kind {
        IdKind::Incident => "incident",
        IdKind::Operation => "operation",
    };
    if typed.chars().count() < 4 {
        return Err(CliError::from(gridwork_core::Error::InvalidId).with_message(format!("give at least 4 characters of the {what}'s id")));
    }
    let ids = gw.ids_with_prefix(kind, typed, 2)?;
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => Err(CliError::from(gridwork_core::Error::NotFound { what }).with_message(format!("no {what} on this device has an id starting with {}", output::printable(typed, true)))),
        _ => Err(CliError::new(AMBIGUOUS_ID, format!("several {what}s have ids starting with {}: give more characters", output::printable(typed, true)))),
    }
}

/// The short id people see: the shortest unique prefix, at least 8 characters.
pub fn short(gw: &Gridwork, kind: IdKind, id: Uuid) -> String {
    gw.short_id(kind, id, 8).unwrap_or_else(|_| id.to_string())
}

