//! Geometry on the device: the shared WGS84 types of `gridwork_protocol::geo`
//! with their refusals turned into this crate's errors.

pub use gridwork_protocol::geo::{Boundary, BoundingBox, GeoPoint, Geometry};

use gridwork_protocol::geo::NOT_A_POLYGON;

use crate::error::{Error, Result};

pub fn validate_point(point: GeoPoint) -> Result<GeoPoint> {
    if point.is_valid() { Ok(point) } else { Err(Error::InvalidLocation) }
}

/// Check a GeoJSON Polygon or MultiPolygon: rings and WGS84 positions.
pub fn boundary(geometry: &Geometry) -> Result<Boundary> {
    Boundary::new(geometry).map_err(|refusal| Error::InvalidGeoJson(refusal.to_string()))
}

/// Read and check a boundary stored as GeoJSON text.
pub fn boundary_from_text(text: &str) -> Result<Boundary> {
    let geometry: Geometry = serde_json::from_str(text).map_err(|_| Error::InvalidGeoJson(NOT_A_POLYGON.to_string()))?;
    boundary(&geometry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refusals_carry_stable_codes() {
        let bad = json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [500, 1]]]});
        assert_eq!(boundary_from_text(&bad.to_string()).unwrap_err().code(), "invalid_geojson");
        assert_eq!(boundary_from_text("{\"type\": \"Point\"}").unwrap_err().code(), "invalid_geojson");
        assert_eq!(validate_point(GeoPoint { lat: 91.0, lon: 0.0, accuracy_m: None }).unwrap_err().code(), "invalid_location");
        assert!(validate_point(GeoPoint { lat: 31.23, lon: 121.47, accuracy_m: Some(5.0) }).is_ok());
    }
}
