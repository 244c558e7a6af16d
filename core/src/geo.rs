//! Geometry on the device: the shared WGS84 types of `gridwork_protocol::geo`
//! with their refusals turned into this crate's errors.

pub use gridwork_protocol::geo::{Boundary, BoundingBox, GeoPoint};

use crate::error::{Error, Result};

pub fn validate_point(point: GeoPoint) -> Result<GeoPoint> {
    if point.is_valid() { Ok(point) } else { Err(Error::InvalidLocation) }
}

/// Read and check a GeoJSON Polygon or MultiPolygon geometry object.
pub fn boundary(geometry: &serde_json::Value) -> Result<Boundary> {
    Boundary::from_json(geometry).map_err(|refusal| Error::InvalidGeoJson(refusal.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refusals_carry_stable_codes() {
        let bad = json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [500, 1]]]});
        assert_eq!(boundary(&bad).unwrap_err().code(), "invalid_geojson");
        assert_eq!(validate_point(GeoPoint { lat: 91.0, lon: 0.0, accuracy_m: None }).unwrap_err().code(), "invalid_location");
        assert!(validate_point(GeoPoint { lat: 31.23, lon: 121.47, accuracy_m: Some(5.0) }).is_ok());
    }
}
