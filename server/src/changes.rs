//! The change log behind incremental pull: which entity changed, in what
//! order, and which audience keys see it (or saw it and lose it). Sequence
//! numbers are commit order: SQLite has one writer, and on PostgreSQL
//! appends take a transaction-scoped advisory lock held to commit.
//!
//! The bottom layer: it knows entity kinds and ids only, never what an
//! entity looks like. Assembling a page of views is `pull`'s job.

use gridwork_protocol::api::SkipSpan;

use crate::db::{Tx, Value};
use crate::error::Result;
use crate::params;

/// Record that an entity changed: `now_visible` keys see the new state,
/// keys only in `was_visible` get a removal.
pub fn record(tx: &mut dyn Tx, kind: &str, id: &str, now_visible: &[String], was_visible: &[String], now_ms: i64) -> Result<i64> {
    tx.lock_change_log()?;
    let seq = tx.query_one("INSERT INTO changes (entity_kind, entity_id, at_ms) VALUES ($1, $2, $3) RETURNING seq", params![kind, id, now_ms])?.int(0);
    let mut written: Vec<&String> = Vec::new();
    for key in now_visible {
        // A key listed twice would collide on the (audience, seq) key.
        if written.contains(&key) {
            continue;
        }
        written.push(key);
        tx.execute("INSERT INTO change_audience (audience, seq, removal) VALUES ($1, $2, 0)", params![key, seq])?;
    }
    for key in was_visible.iter().filter(|k| !now_visible.contains(k)) {
        if written.contains(&key) {
            continue;
        }
        written.push(key);
        tx.execute("INSERT INTO change_audience (audience, seq, removal) VALUES ($1, $2, 1)", params![key, seq])?;
    }
    Ok(seq)
}

/// One change as an audience sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub entity_kind: String,
    pub entity_id: String,
    /// Every one of the audience's keys for this change was a removal.
    pub removal: bool,
}

/// The newest sequence number in the log (0 when empty).
pub fn newest(tx: &mut dyn Tx) -> Result<i64> {
    Ok(tx.query_one("SELECT COALESCE(MAX(seq), 0) FROM changes", &[])?.int(0))
}

/// Up to `limit` changes after `since` seen by any of `keys`, in sequence
/// order, and whether more follow. A page costs O(keys × page) at any
/// cursor: each key's changes are read from the (audience, seq) index in
/// order and stop at the page size, the union of those few is merged and
/// cut, and only then joined to the log (grouping the whole tail after the
/// cursor made an initial pull quadratic). A change among the first
/// `limit` of the union is within the first `limit` of every key that sees
/// it, so each key's verdict on it (seen or removed) is in the union.
///
/// Changes within `skip` are left out, as if they were not in the log (the
/// caller has them already, from a push's echo).
///
/// `until` bounds the read (a push's echo reads only its own changes).
pub fn read(tx: &mut dyn Tx, keys: &[String], since: i64, until: Option<i64>, limit: u32, skip: &[SkipSpan]) -> Result<(Vec<Entry>, bool)> {
    let bounds = Bounds { since, until: until.unwrap_or(i64::MAX), skip };
    if keys.len() <= KEYS_PER_QUERY {
        let mut entries = read_keys(tx, keys, &bounds, limit)?;
        let has_more = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        return Ok((entries, has_more));
    }
    // A caller with hundreds of grids (a street's supervisor) has more keys
    // than one compound SELECT may have terms (SQLite: 500). Each group of
    // keys gives its own first `limit + 1`; every key's verdict on a change
    // within the merged first `limit` is among them, for the same reason as
    // within one query.
    let mut merged: std::collections::BTreeMap<i64, Entry> = std::collections::BTreeMap::new();
    for group in keys.chunks(KEYS_PER_QUERY) {
        for entry in read_keys(tx, group, &bounds, limit)? {
            match merged.get_mut(&entry.seq) {
                Some(seen) => seen.removal &= entry.removal,
                None => {
                    merged.insert(entry.seq, entry);
                }
            }
        }
    }
    let has_more = merged.len() > limit as usize;
    Ok((merged.into_values().take(limit as usize).collect(), has_more))
}

/// The most audience keys read in one query: below SQLite's limit of 500
/// terms in a compound SELECT, and far below either engine's parameter limit.
const KEYS_PER_QUERY: usize = 200;

/// [`read`] for at most [`KEYS_PER_QUERY`] keys, in one query: up to
/// `limit + 1` entries (one past the page tells that more follow).
/// Which part of the log a read covers: after `since`, up to `until`,
/// leaving out the `skip` spans.
struct Bounds<'a> {
    since: i64,
    until: i64,
    skip: &'a [SkipSpan],
}

fn read_keys(tx: &mut dyn Tx, keys: &[String], bounds: &Bounds, limit: u32) -> Result<Vec<Entry>> {
    // Parameters: $1 since, $2 the limit, $3 until, then the keys, then
    // the skipped spans' bounds.
    let skipped: String = (0..bounds.skip.len()).map(|j| format!(" AND NOT (seq > ${} AND seq <= ${})", keys.len() + 4 + 2 * j, keys.len() + 5 + 2 * j)).collect();
    let per_key: Vec<String> = (0..keys.len())
        .map(|i| {
            format!(
                "SELECT * FROM (SELECT seq, removal FROM change_audience WHERE audience = ${} AND seq > $1 AND seq <= $3{skipped} ORDER BY seq LIMIT $2) AS k{i}",
                i + 4
            )
        })
        .collect();
    let sql = format!(
        "SELECT c.seq, c.entity_kind, c.entity_id, page.removal
         FROM (SELECT seq, MIN(removal) AS removal FROM ({}) AS seen GROUP BY seq ORDER BY seq LIMIT $2) AS page
         JOIN changes c ON c.seq = page.seq
         ORDER BY c.seq",
        per_key.join(" UNION ALL ")
    );
    let mut args: Vec<Value> = vec![bounds.since.into(), (limit as i64 + 1).into(), bounds.until.into()];
    args.extend(keys.iter().map(Value::from));
    for span in bounds.skip {
        args.push(span.after.into());
        args.push(span.until.into());
    }
    let rows = tx.query(&sql, &args)?;
    Ok(rows.iter().map(|r| Entry { seq: r.int(0), entity_kind: r.text(1), entity_id: r.text(2), removal: r.int(3) != 0 }).collect())
}
