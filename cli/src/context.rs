//! What every device command works with: the device folder, the account,
//! the output mode; and the argument decoding they share.

use std::ffi::OsString;

use gridwork_core::{Gridwork, Uuid};
use serde_json::Value;

use crate::device::Device;
use crate::error::CliResult;
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

pub fn parse_id(field: &'static str, value: OsString) -> CliResult<Uuid> {
    let text = text(field, value)?;
    Uuid::parse_str(text.trim()).map_err(|_| gridwork_core::Error::InvalidId.into())
}
