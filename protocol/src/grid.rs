//! Grids: street (街道) → community (社区) → grid (网格), each grid with one of
//! the four management levels and an optional boundary.

use serde::{Deserialize, Serialize};
use strum::{EnumIter, EnumString, IntoStaticStr};

use crate::names::Named;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumString, EnumIter)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum GridTier {
    Street,
    Community,
    Grid,
}

impl Named for GridTier {}

/// 日常管理型 / 一般防范型 / 重点关注型 / 综合整治型.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumString, EnumIter)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ManagementLevel {
    Routine,
    GeneralPrevention,
    KeyAttention,
    ComprehensiveRemediation,
}

impl Named for ManagementLevel {}

impl ManagementLevel {
    pub fn name_zh(self) -> &'static str {
        match self {
            ManagementLevel::Routine => "日常管理型",
            ManagementLevel::GeneralPrevention => "一般防范型",
            ManagementLevel::KeyAttention => "重点关注型",
            ManagementLevel::ComprehensiveRemediation => "综合整治型",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{IntoEnumIterator, assert_names_match_serde};

    #[test]
    fn names_are_stable() {
        assert_names_match_serde::<GridTier>();
        assert_names_match_serde::<ManagementLevel>();
        assert_eq!(GridTier::iter().map(GridTier::as_str).collect::<Vec<_>>(), ["street", "community", "grid"]);
        assert_eq!(
            ManagementLevel::iter().map(ManagementLevel::as_str).collect::<Vec<_>>(),
            ["routine", "general_prevention", "key_attention", "comprehensive_remediation"]
        );
    }
}
