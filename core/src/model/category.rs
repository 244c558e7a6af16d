//! Incident categories: a versioned code table of 大类 (top level) and 小类.

use gridwork_protocol::category::CategoryTable;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    pub code: String,
    /// `None` for a 大类; the 大类's code for a 小类.
    pub parent_code: Option<String>,
    pub name_zh: String,
    pub name_en: String,
}

const DEFAULT_TABLE: &str = gridwork_protocol::DEFAULT_CATEGORY_TABLE;
const VERSION_KEY: &str = "category_table_version";

pub fn seed_default_table(tx: &Transaction) -> Result<()> {
    let table: CategoryTable = serde_json::from_str(DEFAULT_TABLE).expect("embedded category table is valid JSON");
    let categories = table
        .categories
        .into_iter()
        .map(|e| Category { code: e.code, parent_code: e.parent, name_en: e.name_en.unwrap_or_else(|| e.name_zh.clone()), name_zh: e.name_zh })
        .collect::<Vec<_>>();
    replace_table(tx, table.version, &categories)?;
    Ok(())
}

/// Replace the table if `version` is newer than the stored one. Codes that
/// disappear are marked inactive, never deleted: old incidents keep pointing
/// at them. Returns whether anything changed.
pub fn replace_table(tx: &Transaction, version: i64, categories: &[Category]) -> Result<bool> {
    if version <= table_version(tx)? {
        return Ok(false);
    }
    tx.execute("UPDATE categories SET active = 0", [])?;
    // Parents first so the foreign key holds whatever order the table came in.
    let (parents, children): (Vec<_>, Vec<_>) = categories.iter().enumerate().partition(|(_, c)| c.parent_code.is_none());
    for (sort, category) in parents.into_iter().chain(children) {
        upsert(tx, category, sort as i64, true)?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
        params![VERSION_KEY, version.to_string()],
    )?;
    Ok(true)
}

/// The one write of a category row.
pub fn upsert(conn: &Connection, category: &Category, sort_order: i64, active: bool) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO categories (code, parent_code, name_zh, name_en, sort_order, active)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (code) DO UPDATE SET parent_code = ?2, name_zh = ?3, name_en = ?4, sort_order = ?5, active = ?6",
    )?
    .execute(params![category.code, category.parent_code, category.name_zh, category.name_en, sort_order, active])?;
    Ok(())
}

/// A parent named by a pulled category before the parent itself arrives:
/// a placeholder named by its code, so the foreign key holds.
pub fn ensure_parent(conn: &Connection, code: &str) -> Result<()> {
    conn.execute("INSERT INTO categories (code, name_zh, name_en, sort_order) VALUES (?1, ?1, ?1, 0) ON CONFLICT DO NOTHING", [code])?;
    Ok(())
}

pub fn table_version(conn: &Connection) -> Result<i64> {
    let text: Option<String> =
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [VERSION_KEY], |r| r.get(0)).optional()?;
    Ok(text.and_then(|t| t.parse().ok()).unwrap_or(0))
}

pub fn list_active(conn: &Connection) -> Result<Vec<Category>> {
    let mut stmt = conn.prepare(
        "SELECT code, parent_code, name_zh, name_en FROM categories WHERE active = 1 ORDER BY sort_order",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Category { code: r.get(0)?, parent_code: r.get(1)?, name_zh: r.get(2)?, name_en: r.get(3)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// An incident may name any active category, 大类 or 小类.
pub fn require_active(conn: &Connection, code: &str) -> Result<()> {
    let found: Option<i64> =
        conn.query_row("SELECT 1 FROM categories WHERE code = ?1 AND active = 1", [code], |r| r.get(0)).optional()?;
    found.map(|_| ()).ok_or(Error::UnknownCategory)
}
