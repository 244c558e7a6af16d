//! Closed sets of stable names (case states, actions, roles, operation
//! kinds, grid tiers and levels). Each enum derives its names once, with
//! serde for the wire and strum for SQL and text; both use snake_case, and
//! a test per enum checks that they agree.

use std::str::FromStr;

pub use strum::IntoEnumIterator;

/// A value with a stable snake_case name, as stored in SQL and sent on the
/// wire. An unknown name parses to `None`; each caller decides what that
/// means (a newer peer's value, or a broken row).
pub trait Named: Copy + Into<&'static str> + FromStr {
    fn as_str(self) -> &'static str {
        self.into()
    }

    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

#[cfg(test)]
pub(crate) fn assert_names_match_serde<T>()
where
    T: Named + IntoEnumIterator + serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    for value in T::iter() {
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(json, format!("\"{}\"", value.as_str()));
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), value);
        assert_eq!(T::parse(value.as_str()), Some(value));
    }
    assert_eq!(T::parse("drop_table"), None);
}
