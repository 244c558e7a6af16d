//! Text from clients, checked by the rule devices apply too
//! ([`gridwork_protocol::text::clean`]); its refusal becomes a 400 here.

use gridwork_protocol::text::TextError;

use crate::error::{Result, ServerError};

pub fn clean(field: &str, text: &str, max_chars: usize) -> Result<String> {
    gridwork_protocol::text::clean(text, max_chars).map_err(|error| {
        let message = match error {
            TextError::TooLong { max, .. } => format!("`{field}` is longer than {max} characters"),
            TextError::ControlCharacter => format!("`{field}` contains a control character"),
        };
        ServerError::bad_request(error.code(), message)
    })
}
