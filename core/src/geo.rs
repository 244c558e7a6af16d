//! Geometry: GeoJSON grid boundaries and point-in-polygon, so a location
//! given at capture finds its grid without a network.

use serde_json::Value;

use crate::error::{Error, Result};
pub use gridwork_protocol::GeoPoint;

/// A ring of (lon, lat) vertices, first and last may or may not repeat.
type Ring = Vec<(f64, f64)>;

/// A (Multi)Polygon: each polygon is an outer ring followed by holes.
#[derive(Clone, Debug, PartialEq)]
pub struct Boundary {
    polygons: Vec<Vec<Ring>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoundingBox {
    pub min_lon: f64,
    pub min_lat: f64,
    pub max_lon: f64,
    pub max_lat: f64,
}

impl BoundingBox {
    pub fn contains(&self, point: GeoPoint) -> bool {
        point.lon >= self.min_lon
            && point.lon <= self.max_lon
            && point.lat >= self.min_lat
            && point.lat <= self.max_lat
    }
}

pub fn validate_point(point: GeoPoint) -> Result<GeoPoint> {
    let ok = point.lat.is_finite()
        && point.lon.is_finite()
        && (-90.0..=90.0).contains(&point.lat)
        && (-180.0..=180.0).contains(&point.lon)
        && point.accuracy_m.is_none_or(|a| a.is_finite() && a >= 0.0);
    if ok { Ok(point) } else { Err(Error::InvalidLocation) }
}

impl Boundary {
    /// Parse a GeoJSON geometry object of type Polygon or MultiPolygon
    /// (coordinates in WGS84 longitude, latitude).
    pub fn from_geojson(geometry: &Value) -> Result<Boundary> {
        let bad = |why: &str| Error::InvalidGeoJson(why.to_owned());
        let kind = geometry.get("type").and_then(Value::as_str).ok_or_else(|| bad("geometry has no type"))?;
        let coordinates = geometry.get("coordinates").ok_or_else(|| bad("geometry has no coordinates"))?;
        let polygons = match kind {
            "Polygon" => vec![parse_polygon(coordinates)?],
            "MultiPolygon" => coordinates
                .as_array()
                .ok_or_else(|| bad("MultiPolygon coordinates are not an array"))?
                .iter()
                .map(parse_polygon)
                .collect::<Result<_>>()?,
            _ => return Err(bad("geometry must be a Polygon or MultiPolygon")),
        };
        if polygons.is_empty() {
            return Err(bad("empty MultiPolygon"));
        }
        Ok(Boundary { polygons })
    }

    pub fn bounding_box(&self) -> BoundingBox {
        let mut bbox = BoundingBox {
            min_lon: f64::INFINITY,
            min_lat: f64::INFINITY,
            max_lon: f64::NEG_INFINITY,
            max_lat: f64::NEG_INFINITY,
        };
        for &(lon, lat) in self.polygons.iter().filter_map(|rings| rings.first()).flatten() {
            bbox.min_lon = bbox.min_lon.min(lon);
            bbox.min_lat = bbox.min_lat.min(lat);
            bbox.max_lon = bbox.max_lon.max(lon);
            bbox.max_lat = bbox.max_lat.max(lat);
        }
        bbox
    }

    /// Inside an outer ring and outside all of that polygon's holes. Points
    /// exactly on an edge may fall either way; grids share edges, and the
    /// caller picks deterministically among several matches.
    pub fn contains(&self, point: GeoPoint) -> bool {
        self.polygons.iter().any(|rings| {
            let (outer, holes) = rings.split_first().expect("parse_polygon guarantees an outer ring");
            ring_contains(outer, point) && !holes.iter().any(|hole| ring_contains(hole, point))
        })
    }
}

fn parse_polygon(value: &Value) -> Result<Vec<Ring>> {
    let bad = |why: &str| Error::InvalidGeoJson(why.to_owned());
    let rings = value.as_array().ok_or_else(|| bad("polygon is not an array of rings"))?;
    if rings.is_empty() {
        return Err(bad("polygon has no rings"));
    }
    rings
        .iter()
        .map(|ring| {
            let positions = ring.as_array().ok_or_else(|| bad("ring is not an array"))?;
            let ring: Ring = positions
                .iter()
                .map(|position| {
                    let pair = position.as_array().filter(|p| p.len() >= 2).ok_or_else(|| bad("position is not [lon, lat]"))?;
                    let lon = pair[0].as_f64().ok_or_else(|| bad("longitude is not a number"))?;
                    let lat = pair[1].as_f64().ok_or_else(|| bad("latitude is not a number"))?;
                    validate_point(GeoPoint { lat, lon, accuracy_m: None }).map_err(|_| bad("position out of WGS84 range"))?;
                    Ok((lon, lat))
                })
                .collect::<Result<_>>()?;
            if ring.len() < 3 {
                return Err(bad("ring has fewer than 3 positions"));
            }
            Ok(ring)
        })
        .collect()
}

/// Even-odd ray casting. Grids are a few hundred metres across, so planar
/// geometry on degrees is accurate enough.
fn ring_contains(ring: &Ring, point: GeoPoint) -> bool {
    let (x, y) = (point.lon, point.lat);
    let mut inside = false;
    let mut j = ring.len() - 1;
    for i in 0..ring.len() {
        let (xi, yi) = ring[i];
        let (xj, yj) = ring[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(lon: f64, lat: f64) -> GeoPoint {
        GeoPoint { lat, lon, accuracy_m: None }
    }

    #[test]
    fn polygon_with_hole() {
        let b = Boundary::from_geojson(&json!({
            "type": "Polygon",
            "coordinates": [
                [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0], [0.0, 0.0]],
                [[4.0, 4.0], [6.0, 4.0], [6.0, 6.0], [4.0, 6.0], [4.0, 4.0]]
            ]
        }))
        .unwrap();
        assert!(b.contains(p(1.0, 1.0)));
        assert!(!b.contains(p(5.0, 5.0)), "inside the hole");
        assert!(!b.contains(p(11.0, 5.0)));
        assert_eq!(b.bounding_box(), BoundingBox { min_lon: 0.0, min_lat: 0.0, max_lon: 10.0, max_lat: 10.0 });
    }

    #[test]
    fn multipolygon_and_concave() {
        let b = Boundary::from_geojson(&json!({
            "type": "MultiPolygon",
            "coordinates": [
                [[[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [2.0, 1.0], [0.0, 4.0]]],
                [[[20.0, 20.0], [21.0, 20.0], [21.0, 21.0]]]
            ]
        }))
        .unwrap();
        assert!(b.contains(p(2.0, 0.5)));
        assert!(!b.contains(p(2.0, 3.0)), "in the notch of the concave polygon");
        assert!(b.contains(p(20.9, 20.5)));
    }

    #[test]
    fn refuses_bad_geometry() {
        for bad in [
            json!({"type": "Point", "coordinates": [1, 2]}),
            json!({"type": "Polygon", "coordinates": []}),
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}),
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [500, 1]]]}),
            json!({"type": "Polygon"}),
        ] {
            assert_eq!(Boundary::from_geojson(&bad).unwrap_err().code(), "invalid_geojson", "{bad}");
        }
    }

    #[test]
    fn validates_points() {
        assert!(validate_point(p(121.47, 31.23)).is_ok());
        assert!(validate_point(p(f64::NAN, 0.0)).is_err());
        assert!(validate_point(p(0.0, 91.0)).is_err());
    }
}
