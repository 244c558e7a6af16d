//! The incident category table (大类/小类) as it is imported.

use serde::Deserialize;

/// `{"version": N, "categories": [{"code", "parent"?, "name_zh", "name_en"?}]}`.
/// Text fields are checked by the importer (`crate::text::clean` with the
/// category limits of [`crate::limits`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct CategoryTable {
    /// Devices replace their table only with a newer version.
    #[serde(default)]
    pub version: i64,
    pub categories: Vec<CategoryEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct CategoryEntry {
    pub code: String,
    /// The 大类 of a 小类.
    #[serde(default)]
    pub parent: Option<String>,
    pub name_zh: String,
    /// The Chinese name stands in when absent.
    #[serde(default)]
    pub name_en: Option<String>,
}

/// Why an import is not a category table; the reason names no value.
pub const NOT_A_CATEGORY_TABLE: &str = "expected {version, categories: [{code, parent?, name_zh, name_en?}]} with text fields";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_reads() {
        let table: CategoryTable = serde_json::from_str(crate::DEFAULT_CATEGORY_TABLE).unwrap();
        assert!(table.version > 0);
        assert!(table.categories.iter().any(|c| c.parent.is_none()));
        for bad in [r#"{}"#, r#"[]"#, r#"{"categories": [{"name_zh": "无代码"}]}"#, r#"{"categories": [{"code": 1, "name_zh": "x"}]}"#] {
            assert!(serde_json::from_str::<CategoryTable>(bad).is_err(), "{bad}");
        }
    }
}
