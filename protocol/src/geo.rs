//! WGS84 geometry shared by devices and server: points, grid boundaries
//! (GeoJSON Polygon and MultiPolygon), bounding boxes and point-in-polygon,
//! so a location given at capture finds its grid without a network.

use serde::{Deserialize, Serialize};

/// WGS84 position.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
}

impl GeoPoint {
    /// A finite WGS84 coordinate, and a finite non-negative accuracy if any.
    pub fn is_valid(&self) -> bool {
        in_wgs84_range(self.lon, self.lat) && self.accuracy_m.is_none_or(|a| a.is_finite() && a >= 0.0)
    }
}

fn in_wgs84_range(lon: f64, lat: f64) -> bool {
    lat.is_finite() && lon.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)
}

/// A grid boundary as GeoJSON writes it (coordinates as `[lon, lat, ...]`),
/// before its rings and positions are checked by [`Boundary::new`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Geometry {
    Polygon { coordinates: Vec<Vec<Vec<f64>>> },
    MultiPolygon { coordinates: Vec<Vec<Vec<Vec<f64>>>> },
}

/// Why a geometry was refused; the reason names no coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeometryError(pub &'static str);

impl std::fmt::Display for GeometryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for GeometryError {}

/// A ring of (lon, lat) vertices; first and last may or may not repeat.
type Ring = Vec<(f64, f64)>;

/// A checked (Multi)Polygon: each polygon is an outer ring followed by
/// holes, every ring has 3 or more positions, every position is WGS84.
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
        point.lon >= self.min_lon && point.lon <= self.max_lon && point.lat >= self.min_lat && point.lat <= self.max_lat
    }
}

impl Boundary {
    pub fn new(geometry: &Geometry) -> Result<Boundary, GeometryError> {
        let polygons = match geometry {
            Geometry::Polygon { coordinates } => vec![polygon(coordinates)?],
            Geometry::MultiPolygon { coordinates } => coordinates.iter().map(|p| polygon(p)).collect::<Result<_, _>>()?,
        };
        if polygons.is_empty() {
            return Err(GeometryError("empty MultiPolygon"));
        }
        Ok(Boundary { polygons })
    }

    /// Read and check a GeoJSON geometry object.
    pub fn from_json(value: &serde_json::Value) -> Result<Boundary, GeometryError> {
        Boundary::new(&Geometry::deserialize(value).map_err(|_| NOT_A_POLYGON)?)
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
            let (outer, holes) = rings.split_first().expect("Boundary::new guarantees an outer ring");
            ring_contains(outer, point) && !holes.iter().any(|hole| ring_contains(hole, point))
        })
    }
}

/// The refusal for anything serde cannot read as a [`Geometry`].
pub const NOT_A_POLYGON: GeometryError = GeometryError("geometry must be a Polygon or MultiPolygon of [lon, lat] positions");

fn polygon(rings: &[Vec<Vec<f64>>]) -> Result<Vec<Ring>, GeometryError> {
    if rings.is_empty() {
        return Err(GeometryError("polygon has no rings"));
    }
    rings
        .iter()
        .map(|positions| {
            if positions.len() < 3 {
                return Err(GeometryError("ring has fewer than 3 positions"));
            }
            positions
                .iter()
                .map(|position| match position[..] {
                    [lon, lat, ..] if in_wgs84_range(lon, lat) => Ok((lon, lat)),
                    [_, _, ..] => Err(GeometryError("position out of WGS84 range")),
                    _ => Err(GeometryError("position is not [lon, lat]")),
                })
                .collect()
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
        let b = Boundary::from_json(&json!({
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
        let b = Boundary::from_json(&json!({
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
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1]]]}),
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], ["a", 1]]]}),
            json!({"type": "MultiPolygon", "coordinates": []}),
            json!({"type": "Polygon"}),
            json!({"coordinates": []}),
        ] {
            assert!(Boundary::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validates_points() {
        assert!(p(121.47, 31.23).is_valid());
        assert!(!p(f64::NAN, 0.0).is_valid());
        assert!(!p(0.0, 91.0).is_valid());
        assert!(!GeoPoint { lat: 1.0, lon: 1.0, accuracy_m: Some(-1.0) }.is_valid());
    }
}
