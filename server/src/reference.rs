//! Reference data every device pulls: the category table and the grids
//! (street → community → grid, with management levels and boundaries).

use gridwork_protocol::geo::Boundary;
use gridwork_protocol::{GridTier, ManagementLevel, Named};
use gridwork_protocol::limits::{CATEGORY_CODE_MAX_CHARS, CATEGORY_NAME_MAX_CHARS, GRID_PROPERTY_MAX_CHARS};
use serde_json::{Value as Json, json};

use crate::db::Tx;
use crate::error::{Result, ServerError};
use crate::{changes, params, scope, text};

pub fn load(tx: &mut dyn Tx, kind: &str, id: &str) -> Result<Option<Json>> {
    match kind {
        "category" => Ok(tx
            .query_opt("SELECT code, parent_code, name_zh, name_en, sort_order, active FROM categories WHERE code = $1", params![id])?
            .map(|r| json!({"code": r.text(0), "parent_code": r.opt_text(1), "name_zh": r.text(2), "name_en": r.text(3), "sort_order": r.int(4), "active": r.int(5) != 0}))),
        "grid" => Ok(tx
            .query_opt("SELECT code, tier, name, parent_code, level, boundary FROM grids WHERE code = $1", params![id])?
            .map(|r| {
                json!({"code": r.text(0), "tier": r.text(1), "name": r.text(2), "parent_code": r.opt_text(3), "level": r.opt_text(4),
                       "boundary": r.opt_text(5).and_then(|b| serde_json::from_str::<Json>(&b).ok())})
            })),
        _ => Ok(None),
    }
}

fn public() -> Vec<String> {
    vec![scope::PUBLIC.to_owned()]
}

/// Import a category table `{"version": N, "categories": [{code, parent?, name_zh, name_en}]}`.
/// Codes missing from the new table become inactive.
pub fn import_categories(tx: &mut dyn Tx, table: &Json, now_ms: i64) -> Result<usize> {
    let bad = |why: &str| ServerError::bad_request("invalid_category_table", why.to_owned());
    let entries = table.get("categories").and_then(Json::as_array).ok_or_else(|| bad("no categories array"))?;
    let mut seen = Vec::new();
    for (sort, entry) in entries.iter().enumerate() {
        let field = |name: &str, max: usize| -> Result<Option<String>> {
            match entry.get(name) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(text::clean(name, s, max)?)),
                Some(_) => Err(bad("category field is not a string")),
            }
        };
        let code = field("code", CATEGORY_CODE_MAX_CHARS)?.filter(|c| !c.is_empty()).ok_or_else(|| bad("category without code"))?;
        let parent = field("parent", CATEGORY_CODE_MAX_CHARS)?;
        let name_zh = field("name_zh", CATEGORY_NAME_MAX_CHARS)?.ok_or_else(|| bad("category without name_zh"))?;
        let name_en = field("name_en", CATEGORY_NAME_MAX_CHARS)?.unwrap_or_else(|| name_zh.clone());
        tx.execute(
            "INSERT INTO categories (code, parent_code, name_zh, name_en, sort_order, active) VALUES ($1, $2, $3, $4, $5, 1)
             ON CONFLICT (code) DO UPDATE SET parent_code = $2, name_zh = $3, name_en = $4, sort_order = $5, active = 1",
            params![code.clone(), parent, name_zh, name_en, sort as i64],
        )?;
        changes::record(tx, "category", &code, &public(), &[], now_ms)?;
        seen.push(code);
    }
    for row in tx.query("SELECT code FROM categories WHERE active = 1", &[])? {
        let code = row.text(0);
        if !seen.contains(&code) {
            tx.execute("UPDATE categories SET active = 0 WHERE code = $1", params![code.clone()])?;
            changes::record(tx, "category", &code, &public(), &[], now_ms)?;
        }
    }
    Ok(seen.len())
}

pub fn category_is_active(tx: &mut dyn Tx, code: &str) -> Result<bool> {
    Ok(tx.query_opt("SELECT 1 FROM categories WHERE code = $1 AND active = 1", params![code])?.is_some())
}

pub fn grid_exists(tx: &mut dyn Tx, code: &str) -> Result<bool> {
    Ok(tx.query_opt("SELECT 1 FROM grids WHERE code = $1 AND tier = 'grid'", params![code])?.is_some())
}

/// Import a GeoJSON FeatureCollection of grids; parents (`community`,
/// `street`) are created when absent. All or nothing.
pub fn import_grids(tx: &mut dyn Tx, collection: &Json, now_ms: i64) -> Result<usize> {
    let bad = |why: &str| ServerError::bad_request("invalid_geojson", why.to_owned());
    if collection.get("type").and_then(Json::as_str) != Some("FeatureCollection") {
        return Err(bad("expected a FeatureCollection"));
    }
    let features = collection.get("features").and_then(Json::as_array).ok_or_else(|| bad("no features array"))?;
    for feature in features {
        let props = feature.get("properties").cloned().unwrap_or(Json::Null);
        let prop = |name: &str| -> Result<Option<String>> {
            match props.get(name) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(text::clean(name, s, GRID_PROPERTY_MAX_CHARS)?)),
                Some(_) => Err(bad("grid property is not a string")),
            }
        };
        let code = prop("code")?.filter(|c| !c.is_empty()).ok_or_else(|| bad("feature without code"))?;
        let level = prop("level")?;
        if level.as_deref().is_some_and(|l| ManagementLevel::parse(l).is_none()) {
            return Err(bad("unknown management level"));
        }
        let street = prop("street")?;
        let community = prop("community")?;
        if let Some(street) = &street {
            ensure_parent(tx, street, GridTier::Street, None, now_ms)?;
        }
        if let Some(community) = &community {
            ensure_parent(tx, community, GridTier::Community, street.as_deref(), now_ms)?;
        }
        let geometry = feature.get("geometry").filter(|g| !g.is_null());
        if let Some(geometry) = geometry {
            validate_geometry(geometry)?;
        }
        tx.execute(
            "INSERT INTO grids (code, tier, name, parent_code, level, boundary) VALUES ($1, 'grid', $2, $3, $4, $5)
             ON CONFLICT (code) DO UPDATE SET tier = 'grid', name = $2, parent_code = $3, level = $4, boundary = $5",
            params![code.clone(), prop("name")?.unwrap_or_else(|| code.clone()), community.or(street), level, geometry.map(Json::to_string)],
        )?;
        changes::record(tx, "grid", &code, &public(), &[], now_ms)?;
    }
    Ok(features.len())
}

fn ensure_parent(tx: &mut dyn Tx, code: &str, tier: GridTier, parent: Option<&str>, now_ms: i64) -> Result<()> {
    let inserted = tx.execute(
        "INSERT INTO grids (code, tier, name, parent_code) VALUES ($1, $2, $1, $3) ON CONFLICT (code) DO NOTHING",
        params![code, tier.as_str(), parent],
    )?;
    if inserted > 0 {
        changes::record(tx, "grid", code, &public(), &[], now_ms)?;
    }
    Ok(())
}

/// Polygon or MultiPolygon with WGS84 [lon, lat] positions, rings of 3+.
fn validate_geometry(geometry: &Json) -> Result<()> {
    Boundary::from_json(geometry).map(|_| ()).map_err(|refusal| ServerError::bad_request("invalid_geojson", refusal.to_string()))
}
