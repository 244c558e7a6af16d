//! Grids: street (街道) → community (社区) → grid (网格), each grid with one of
//! the four management levels and an optional boundary.

use serde::{Deserialize, Serialize};
use strum::{EnumIter, EnumString, IntoStaticStr};

use crate::geo::Geometry;
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

/// A grid as devices pull it (entity kind `grid`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridView {
    pub code: String,
    pub tier: GridTier,
    pub name: String,
    pub parent_code: Option<String>,
    pub level: Option<ManagementLevel>,
    pub boundary: Option<Geometry>,
}

/// A GeoJSON FeatureCollection of grids, as the admin imports it. Each
/// feature's properties carry `code` (required), `name`, `level`, and the
/// parent codes `community` and `street`; its geometry is the boundary.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub enum GridImport {
    FeatureCollection { features: Vec<GridFeature> },
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct GridFeature {
    #[serde(default)]
    pub properties: Option<GridProperties>,
    #[serde(default)]
    pub geometry: Option<Geometry>,
}

/// Text properties are checked by the importer (`crate::text::clean` with
/// [`crate::limits::GRID_PROPERTY_MAX_CHARS`]).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct GridProperties {
    pub code: Option<String>,
    pub name: Option<String>,
    pub level: Option<ManagementLevel>,
    pub community: Option<String>,
    pub street: Option<String>,
}

impl GridImport {
    pub fn features(&self) -> &[GridFeature] {
        match self {
            GridImport::FeatureCollection { features } => features,
        }
    }
}

/// Why an import is not a FeatureCollection of grids; the reason names no value.
pub const NOT_A_GRID_COLLECTION: &str = "expected a FeatureCollection of grid features with text properties and Polygon or MultiPolygon geometries";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{IntoEnumIterator, assert_names_match_serde};

    #[test]
    fn reads_a_feature_collection() {
        let import: GridImport = serde_json::from_value(serde_json::json!({
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "properties": {"code": "G-1", "level": "routine", "extra": 3},
                 "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}},
                {"type": "Feature", "properties": null, "geometry": null}
            ]
        }))
        .unwrap();
        let features = import.features();
        assert_eq!(features[0].properties.as_ref().unwrap().level, Some(ManagementLevel::Routine));
        assert!(features[0].geometry.is_some());
        assert_eq!(features[1], GridFeature { properties: None, geometry: None });
        for bad in [
            serde_json::json!({"type": "Feature"}),
            serde_json::json!({"type": "FeatureCollection", "features": 1}),
            serde_json::json!({"type": "FeatureCollection", "features": [{"properties": {"code": 1}}]}),
            serde_json::json!({"type": "FeatureCollection", "features": [{"properties": {"level": "sometimes"}}]}),
            serde_json::json!({"type": "FeatureCollection", "features": [{"geometry": {"type": "Point", "coordinates": [1, 2]}}]}),
        ] {
            assert!(serde_json::from_value::<GridImport>(bad.clone()).is_err(), "{bad}");
        }
    }

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
