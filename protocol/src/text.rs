//! Validation of text people type: field workers on phones in a hurry, and
//! hostile or broken clients. The same rule holds on the device and on the
//! server; each converts [`TextError`] into its own error in one place.

/// Why a text field was refused. The field's name is the caller's to add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextError {
    /// Longer than the limit, in characters.
    TooLong { length: usize, max: usize },
    /// A NUL or control character other than a line break or a tab.
    ControlCharacter,
}

impl TextError {
    /// Stable machine code, the same on device and server.
    pub fn code(self) -> &'static str {
        match self {
            TextError::TooLong { .. } => "text_too_long",
            TextError::ControlCharacter => "text_control_character",
        }
    }
}

/// Check one text field: no NUL or control characters except line breaks
/// and tabs, at most `max_chars` characters. Returns the text trimmed of
/// surrounding whitespace.
pub fn clean(text: &str, max_chars: usize) -> Result<String, TextError> {
    // A cheap bound first, so a megabyte of text is refused without walking
    // every character.
    if text.len() > max_chars * 4 {
        return Err(TextError::TooLong { length: text.chars().count(), max: max_chars });
    }
    let length = text.chars().count();
    if length > max_chars {
        return Err(TextError::TooLong { length, max: max_chars });
    }
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(TextError::ControlCharacter);
    }
    Ok(text.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_chinese_and_line_breaks() {
        assert_eq!(clean("  楼道堆物\n占用消防通道 ", 100).unwrap(), "楼道堆物\n占用消防通道");
    }

    #[test]
    fn refuses_nul_controls_and_long_text() {
        assert_eq!(clean("a\0b", 100), Err(TextError::ControlCharacter));
        assert_eq!(clean("a\u{1b}[31m", 100), Err(TextError::ControlCharacter));
        assert_eq!(clean(&"好".repeat(101), 100), Err(TextError::TooLong { length: 101, max: 100 }));
        assert!(clean(&"好".repeat(100), 100).is_ok());
        assert_eq!(TextError::ControlCharacter.code(), "text_control_character");
    }
}
