//! Validation of text from clients: no NUL or control characters (line
//! breaks and tabs allowed), a length limit in characters.

use crate::error::{Result, ServerError};

pub fn clean(field: &str, text: &str, max_chars: usize) -> Result<String> {
    if text.len() > max_chars * 4 || text.chars().count() > max_chars {
        return Err(ServerError::bad_request("text_too_long", format!("`{field}` is longer than {max_chars} characters")));
    }
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(ServerError::bad_request("text_control_character", format!("`{field}` contains a control character")));
    }
    Ok(text.trim().to_owned())
}
