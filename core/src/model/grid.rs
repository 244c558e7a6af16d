//! Grids: street (街道) → community (社区) → grid (网格), each grid with one of
//! the four management levels and an optional GeoJSON boundary.

use gridwork_protocol::Named;
use gridwork_protocol::limits::GRID_PROPERTY_MAX_CHARS;
use rusqlite::{Connection, Transaction, params};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::geo::{self, Boundary, GeoPoint};
use crate::model::read_name;

pub use gridwork_protocol::{GridTier, ManagementLevel};

#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub code: String,
    pub tier: GridTier,
    pub name: String,
    pub parent_code: Option<String>,
    pub management_level: Option<ManagementLevel>,
    /// GeoJSON Polygon or MultiPolygon geometry, as text.
    pub boundary_geojson: Option<String>,
}

fn upsert(tx: &Transaction, grid: &Grid) -> Result<()> {
    let bbox = match &grid.boundary_geojson {
        Some(text) => {
            let value: Value = serde_json::from_str(text).map_err(|_| Error::InvalidGeoJson("boundary is not JSON".into()))?;
            Some(geo::boundary(&value)?.bounding_box())
        }
        None => None,
    };
    tx.execute(
        "INSERT INTO grids (code, tier, name, parent_code, management_level, boundary_geojson, min_lon, min_lat, max_lon, max_lat)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (code) DO UPDATE SET tier = ?2, name = ?3, parent_code = ?4, management_level = ?5,
             boundary_geojson = ?6, min_lon = ?7, min_lat = ?8, max_lon = ?9, max_lat = ?10",
        params![
            grid.code,
            grid.tier.as_str(),
            grid.name,
            grid.parent_code,
            grid.management_level.map(ManagementLevel::as_str),
            grid.boundary_geojson,
            bbox.map(|b| b.min_lon),
            bbox.map(|b| b.min_lat),
            bbox.map(|b| b.max_lon),
            bbox.map(|b| b.max_lat),
        ],
    )?;
    Ok(())
}

/// Import a GeoJSON FeatureCollection of grids. Each feature's properties
/// carry `code` (required), `name`, `level`, and the parent codes
/// `community` and `street`, which are created when absent. Returns the
/// number of grids imported. All or nothing.
pub fn import_geojson(tx: &Transaction, text: &str) -> Result<usize> {
    let bad = |why: &str| Error::InvalidGeoJson(why.to_owned());
    let collection: Value = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
    if collection.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        return Err(bad("expected a FeatureCollection"));
    }
    let features = collection.get("features").and_then(Value::as_array).ok_or_else(|| bad("no features array"))?;
    for feature in features {
        let props = feature.get("properties").cloned().unwrap_or(Value::Null);
        let text_prop = |name: &str| -> Result<Option<String>> {
            match props.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(crate::text::validate("grid property", s, GRID_PROPERTY_MAX_CHARS)?)),
                Some(_) => Err(bad("grid property is not a string")),
            }
        };
        let code = text_prop("code")?.filter(|c| !c.is_empty()).ok_or_else(|| bad("feature without code"))?;
        let level = match text_prop("level")? {
            Some(l) => Some(ManagementLevel::parse(&l).ok_or_else(|| bad("unknown management level"))?),
            None => None,
        };
        let street = text_prop("street")?;
        let community = text_prop("community")?;
        if let Some(street) = &street {
            ensure_parent(tx, street, GridTier::Street, None)?;
        }
        if let Some(community) = &community {
            ensure_parent(tx, community, GridTier::Community, street.as_deref())?;
        }
        let geometry = feature.get("geometry").filter(|g| !g.is_null());
        if let Some(geometry) = geometry {
            geo::boundary(geometry)?;
        }
        upsert(
            tx,
            &Grid {
                name: text_prop("name")?.unwrap_or_else(|| code.clone()),
                code,
                tier: GridTier::Grid,
                parent_code: community.or(street),
                management_level: level,
                boundary_geojson: geometry.map(Value::to_string),
            },
        )?;
    }
    Ok(features.len())
}

fn ensure_parent(tx: &Transaction, code: &str, tier: GridTier, parent: Option<&str>) -> Result<()> {
    tx.execute(
        "INSERT INTO grids (code, tier, name, parent_code) VALUES (?1, ?2, ?1, ?3) ON CONFLICT (code) DO NOTHING",
        params![code, tier.as_str(), parent],
    )?;
    Ok(())
}

pub fn list(conn: &Connection) -> Result<Vec<Grid>> {
    let mut stmt = conn.prepare(
        "SELECT code, tier, name, parent_code, management_level, boundary_geojson FROM grids ORDER BY tier, code",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Grid {
            code: r.get(0)?,
            tier: read_name(r, 1)?.unwrap_or(GridTier::Grid),
            name: r.get(2)?,
            parent_code: r.get(3)?,
            management_level: read_name(r, 4)?,
            boundary_geojson: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The grid whose boundary contains the point: candidates by bounding box in
/// SQL, then exact point-in-polygon. Several matches (shared edges,
/// overlapping data) resolve to the lowest code, so the answer is stable.
pub fn locate(conn: &Connection, point: GeoPoint) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT code, boundary_geojson FROM grids
         WHERE tier = 'grid' AND boundary_geojson IS NOT NULL
           AND min_lon <= ?1 AND max_lon >= ?1 AND min_lat <= ?2 AND max_lat >= ?2
         ORDER BY code",
    )?;
    let candidates = stmt
        .query_map(params![point.lon, point.lat], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (code, geojson) in candidates {
        let Ok(value) = serde_json::from_str::<Value>(&geojson) else { continue };
        if Boundary::from_json(&value).is_ok_and(|b| b.contains(point)) {
            return Ok(Some(code));
        }
    }
    Ok(None)
}
