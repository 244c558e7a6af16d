//! Validation of user-entered text. Field workers type on phones in a hurry;
//! hostile or broken input (NUL bytes, control characters, megabytes of text,
//! invalid UTF-8 from a shell) is refused with a stable code before anything
//! is written.

use gridwork_protocol::text::TextError;

use crate::error::{Error, Result};

/// Decode bytes from a caller that may hand over anything (a CLI argument, a
/// shell's buffer) into text, refusing invalid UTF-8.
pub fn text_from_bytes(field: &'static str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| Error::TextInvalidUtf8 { field })
}

/// Check one text field by the rule the server applies too
/// ([`gridwork_protocol::text::clean`]): no NUL or control characters except
/// line breaks and tabs, at most `max_chars` characters. Returns the text
/// trimmed of surrounding whitespace.
pub fn validate(field: &'static str, text: &str, max_chars: usize) -> Result<String> {
    gridwork_protocol::text::clean(text, max_chars).map_err(|error| match error {
        TextError::TooLong { length, max } => Error::TextTooLong { field, length, max },
        TextError::ControlCharacter => Error::TextControlCharacter { field },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_chinese_and_line_breaks() {
        assert_eq!(validate("d", "  楼道堆物\n占用消防通道 ", 100).unwrap(), "楼道堆物\n占用消防通道");
    }

    #[test]
    fn refuses_nul_controls_and_long_text() {
        assert_eq!(validate("d", "a\0b", 100).unwrap_err().code(), "text_control_character");
        assert_eq!(validate("d", "a\u{1b}[31m", 100).unwrap_err().code(), "text_control_character");
        assert_eq!(validate("d", &"好".repeat(101), 100).unwrap_err().code(), "text_too_long");
        assert!(validate("d", &"好".repeat(100), 100).is_ok());
    }

    #[test]
    fn refuses_invalid_utf8() {
        let err = text_from_bytes("description", vec![0x66, 0xff, 0xfe]).unwrap_err();
        assert_eq!(err.code(), "text_invalid_utf8");
    }
}
