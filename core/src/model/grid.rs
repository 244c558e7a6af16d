//! Grids: street (街道) → community (社区) → grid (网格), each grid with one of
//! the four management levels and an optional GeoJSON boundary.

use gridwork_protocol::grid::{GridImport, NOT_A_GRID_COLLECTION};
use gridwork_protocol::limits::GRID_PROPERTY_MAX_CHARS;
use gridwork_protocol::{GridView, Named};
use rusqlite::{Connection, Transaction, params};

use crate::error::{Error, Result};
use crate::geo::{self, GeoPoint};
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

impl Grid {
    /// The grid as the server sent it. A boundary this build cannot check is
    /// left out rather than refusing the grid.
    pub fn from_view(view: GridView) -> Grid {
        let boundary = view.boundary.filter(|g| geo::boundary(g).is_ok());
        Grid {
            code: view.code,
            tier: view.tier,
            name: view.name,
            parent_code: view.parent_code,
            management_level: view.level,
            boundary_geojson: boundary.map(|g| serde_json::to_string(&g).expect("geometry serializes")),
        }
    }
}

/// The one write of a grid row, with the bounding box of its boundary.
pub fn upsert(conn: &Connection, grid: &Grid) -> Result<()> {
    let bbox = grid.boundary_geojson.as_deref().map(geo::boundary_from_text).transpose()?.map(|b| b.bounding_box());
    conn.execute(
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
    let import: GridImport = serde_json::from_str(text).map_err(|_| bad(NOT_A_GRID_COLLECTION))?;
    for feature in import.features() {
        let props = feature.properties.clone().unwrap_or_default();
        let clean = |value: Option<String>| value.map(|v| crate::text::validate("grid property", &v, GRID_PROPERTY_MAX_CHARS)).transpose();
        let code = clean(props.code)?.filter(|c| !c.is_empty()).ok_or_else(|| bad("feature without code"))?;
        let street = clean(props.street)?;
        let community = clean(props.community)?;
        if let Some(street) = &street {
            ensure_parent(tx, street, GridTier::Street, None)?;
        }
        if let Some(community) = &community {
            ensure_parent(tx, community, GridTier::Community, street.as_deref())?;
        }
        if let Some(geometry) = &feature.geometry {
            geo::boundary(geometry)?;
        }
        upsert(
            tx,
            &Grid {
                name: clean(props.name)?.unwrap_or_else(|| code.clone()),
                code,
                tier: GridTier::Grid,
                parent_code: community.or(street),
                management_level: props.level,
                boundary_geojson: feature.geometry.as_ref().map(|g| serde_json::to_string(g).expect("geometry serializes")),
            },
        )?;
    }
    Ok(import.features().len())
}

/// A parent (street or community) named by a grid, created when absent.
pub fn ensure_parent(conn: &Connection, code: &str, tier: GridTier, parent: Option<&str>) -> Result<()> {
    conn.execute(
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
        if geo::boundary_from_text(&geojson).is_ok_and(|b| b.contains(point)) {
            return Ok(Some(code));
        }
    }
    Ok(None)
}
