//! Reference data every device pulls: the category table and the grids
//! (street → community → grid, with management levels and boundaries).

use gridwork_protocol::api::CategoryView;
use gridwork_protocol::category::{CategoryTable, NOT_A_CATEGORY_TABLE};
use gridwork_protocol::geo::{Boundary, Geometry};
use gridwork_protocol::grid::{GridImport, NOT_A_GRID_COLLECTION};
use gridwork_protocol::limits::{CATEGORY_CODE_MAX_CHARS, CATEGORY_NAME_MAX_CHARS, GRID_PROPERTY_MAX_CHARS};
use gridwork_protocol::{GeoPoint, GridTier, GridView, ManagementLevel, Named};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::db::Tx;
use crate::error::{Result, ServerError};
use crate::{changes, params, scope, text};

pub fn load(tx: &mut dyn Tx, kind: &str, id: &str) -> Result<Option<Json>> {
    let view = match kind {
        "category" => tx
            .query_opt("SELECT code, parent_code, name_zh, name_en, sort_order, active FROM categories WHERE code = $1", params![id])?
            .map(|r| {
                let view = CategoryView { code: r.text(0), parent_code: r.opt_text(1), name_zh: r.text(2), name_en: r.text(3), sort_order: r.int(4), active: r.int(5) != 0 };
                serde_json::to_value(view)
            }),
        "grid" => tx.query_opt("SELECT code, tier, name, parent_code, level, boundary FROM grids WHERE code = $1", params![id])?.map(|r| {
            let view = GridView {
                code: r.text(0),
                tier: GridTier::parse(&r.text(1)).unwrap_or(GridTier::Grid),
                name: r.text(2),
                parent_code: r.opt_text(3),
                level: r.opt_text(4).as_deref().and_then(ManagementLevel::parse),
                boundary: r.opt_text(5).and_then(|b| serde_json::from_str::<Geometry>(&b).ok()),
            };
            serde_json::to_value(view)
        }),
        _ => None,
    };
    view.transpose().map_err(|_| ServerError::internal("reference view does not serialize"))
}

fn public() -> Vec<String> {
    vec![scope::PUBLIC.to_owned()]
}

/// Import a category table (`gridwork_protocol::category::CategoryTable`).
/// Codes missing from the new table become inactive.
pub fn import_categories(tx: &mut dyn Tx, table: &Json, now_ms: i64) -> Result<usize> {
    let bad = |why: &str| ServerError::bad_request("invalid_category_table", why.to_owned());
    let table = CategoryTable::deserialize(table).map_err(|_| bad(NOT_A_CATEGORY_TABLE))?;
    let mut seen = Vec::new();
    for (sort, entry) in table.categories.into_iter().enumerate() {
        let code = text::clean("code", &entry.code, CATEGORY_CODE_MAX_CHARS)?;
        if code.is_empty() {
            return Err(bad("category without code"));
        }
        let parent = entry.parent.map(|p| text::clean("parent", &p, CATEGORY_CODE_MAX_CHARS)).transpose()?;
        let name_zh = text::clean("name_zh", &entry.name_zh, CATEGORY_NAME_MAX_CHARS)?;
        let name_en = match entry.name_en {
            Some(name) => text::clean("name_en", &name, CATEGORY_NAME_MAX_CHARS)?,
            None => name_zh.clone(),
        };
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

/// 时限 of a category: hours to handle a dispatched (or reworked) case, and
/// optionally hours to sign for it once dispatched and to verify it once
/// handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeLimits {
    pub handle_hours: i64,
    pub sign_hours: Option<i64>,
    pub verify_hours: Option<i64>,
}

const HOUR_MS: i64 = 3_600_000;

impl TimeLimits {
    pub fn handle_by(&self, now_ms: i64) -> i64 {
        now_ms + self.handle_hours * HOUR_MS
    }
    pub fn sign_by(&self, now_ms: i64) -> Option<i64> {
        self.sign_hours.map(|h| now_ms + h * HOUR_MS)
    }
    pub fn verify_by(&self, now_ms: i64) -> Option<i64> {
        self.verify_hours.map(|h| now_ms + h * HOUR_MS)
    }
}

/// Set a category's time limits (all three at once: a limit not given is
/// removed).
pub fn set_deadline(tx: &mut dyn Tx, category_code: &str, limits: &TimeLimits) -> Result<()> {
    if tx.query_opt("SELECT 1 FROM categories WHERE code = $1", params![category_code])?.is_none() {
        return Err(ServerError::bad_request("unknown_category", "the category is not in the table"));
    }
    let hours = [Some(limits.handle_hours), limits.sign_hours, limits.verify_hours];
    if hours.iter().flatten().any(|h| !(1..=24 * 365).contains(h)) {
        return Err(ServerError::bad_request("invalid_deadline", "a deadline is 1 hour to a year"));
    }
    tx.execute(
        "INSERT INTO category_deadlines (category_code, handle_hours, sign_hours, verify_hours) VALUES ($1, $2, $3, $4)
         ON CONFLICT (category_code) DO UPDATE SET handle_hours = $2, sign_hours = $3, verify_hours = $4",
        params![category_code, limits.handle_hours, limits.sign_hours, limits.verify_hours],
    )?;
    Ok(())
}

/// The time limits of a category: its own, else its 大类's.
pub fn time_limits(tx: &mut dyn Tx, category_code: &str) -> Result<Option<TimeLimits>> {
    Ok(tx
        .query_opt(
            "SELECT d.handle_hours, d.sign_hours, d.verify_hours FROM category_deadlines d
             WHERE d.category_code = $1 OR d.category_code = (SELECT parent_code FROM categories WHERE code = $1)
             ORDER BY CASE WHEN d.category_code = $1 THEN 0 ELSE 1 END LIMIT 1",
            params![category_code],
        )?
        .map(|r| TimeLimits { handle_hours: r.int(0), sign_hours: r.opt_int(1), verify_hours: r.opt_int(2) }))
}

pub fn grid_exists(tx: &mut dyn Tx, code: &str) -> Result<bool> {
    Ok(tx.query_opt("SELECT 1 FROM grids WHERE code = $1 AND tier = 'grid'", params![code])?.is_some())
}

/// Where a point falls among the grids.
#[derive(Debug, PartialEq, Eq)]
pub enum Located {
    In(String),
    /// Grids have boundaries, and none contains the point.
    Outside,
    /// No grid has a boundary: the point tells nothing.
    NoBoundaries,
}

/// The grid whose boundary contains `point`; several (shared edges) resolve
/// to the lowest code, as on the device. Reads every boundary: a district
/// has hundreds of grids, parsed in well under a millisecond each.
pub fn locate_grid(tx: &mut dyn Tx, point: GeoPoint) -> Result<Located> {
    let rows = tx.query("SELECT code, boundary FROM grids WHERE tier = 'grid' AND boundary IS NOT NULL ORDER BY code", &[])?;
    if rows.is_empty() {
        return Ok(Located::NoBoundaries);
    }
    for row in rows {
        let geometry: Option<Geometry> = serde_json::from_str(&row.text(1)).ok();
        if geometry.and_then(|g| Boundary::new(&g).ok()).is_some_and(|b| b.contains(point)) {
            return Ok(Located::In(row.text(0)));
        }
    }
    Ok(Located::Outside)
}

/// Import a GeoJSON FeatureCollection of grids; parents (`community`,
/// `street`) are created when absent. All or nothing.
pub fn import_grids(tx: &mut dyn Tx, collection: &Json, now_ms: i64) -> Result<usize> {
    let bad = |why: &str| ServerError::bad_request("invalid_geojson", why.to_owned());
    let import = GridImport::deserialize(collection).map_err(|_| bad(NOT_A_GRID_COLLECTION))?;
    for feature in import.features() {
        let props = feature.properties.clone().unwrap_or_default();
        let clean = |name: &str, value: Option<String>| value.map(|v| text::clean(name, &v, GRID_PROPERTY_MAX_CHARS)).transpose();
        let code = clean("code", props.code)?.filter(|c| !c.is_empty()).ok_or_else(|| bad("feature without code"))?;
        let street = clean("street", props.street)?;
        let community = clean("community", props.community)?;
        if let Some(street) = &street {
            ensure_parent(tx, street, GridTier::Street, None, now_ms)?;
        }
        if let Some(community) = &community {
            ensure_parent(tx, community, GridTier::Community, street.as_deref(), now_ms)?;
        }
        if let Some(geometry) = &feature.geometry {
            Boundary::new(geometry).map_err(|refusal| bad(refusal.0))?;
        }
        let boundary = feature.geometry.as_ref().map(|g| serde_json::to_string(g).expect("geometry serializes"));
        let name = clean("name", props.name)?.unwrap_or_else(|| code.clone());
        tx.execute(
            "INSERT INTO grids (code, tier, name, parent_code, level, boundary) VALUES ($1, 'grid', $2, $3, $4, $5)
             ON CONFLICT (code) DO UPDATE SET tier = 'grid', name = $2, parent_code = $3, level = $4, boundary = $5",
            params![code.clone(), name, community.or(street), props.level.map(ManagementLevel::as_str), boundary],
        )?;
        changes::record(tx, "grid", &code, &public(), &[], now_ms)?;
    }
    Ok(import.features().len())
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

/// A grid as an administrator lists it (without its boundary).
#[derive(Clone, Debug, serde::Serialize)]
pub struct GridRow {
    pub code: String,
    pub tier: String,
    pub name: String,
    pub parent_code: Option<String>,
    pub level: Option<String>,
    pub has_boundary: bool,
}

pub fn list_grids(tx: &mut dyn Tx) -> Result<Vec<GridRow>> {
    let rows = tx.query("SELECT code, tier, name, parent_code, level, CASE WHEN boundary IS NULL THEN 0 ELSE 1 END FROM grids ORDER BY code", &[])?;
    Ok(rows
        .into_iter()
        .map(|r| GridRow { code: r.text(0), tier: r.text(1), name: r.text(2), parent_code: r.opt_text(3), level: r.opt_text(4), has_boundary: r.int(5) != 0 })
        .collect())
}

/// A category as an administrator lists it, with its time limits.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CategoryRow {
    pub code: String,
    pub parent_code: Option<String>,
    pub name_zh: String,
    pub name_en: String,
    pub active: bool,
    pub handle_hours: Option<i64>,
    pub sign_hours: Option<i64>,
    pub verify_hours: Option<i64>,
}

pub fn list_categories(tx: &mut dyn Tx) -> Result<Vec<CategoryRow>> {
    let rows = tx.query(
        "SELECT c.code, c.parent_code, c.name_zh, c.name_en, c.active, d.handle_hours, d.sign_hours, d.verify_hours
         FROM categories AS c LEFT JOIN category_deadlines AS d ON d.category_code = c.code
         ORDER BY c.sort_order, c.code",
        &[],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| CategoryRow {
            code: r.text(0),
            parent_code: r.opt_text(1),
            name_zh: r.text(2),
            name_en: r.text(3),
            active: r.int(4) != 0,
            handle_hours: r.opt_int(5),
            sign_hours: r.opt_int(6),
            verify_hours: r.opt_int(7),
        })
        .collect())
}
