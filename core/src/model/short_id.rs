//! Short ids for people: the shortest prefix of an id that names one
//! incident (or one queued operation) on this device, and the ids a typed
//! prefix could mean. UUIDv7 ids start with their creation time, so ids made
//! in the same second share their first 8-10 digits; the shortest unique
//! prefix is found against the neighbours in id order, not fixed.

use rusqlite::{Connection, OptionalExtension};
use uuid::Uuid;

use crate::error::{Error, Result};

/// Which ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Incident,
    Operation,
}

impl IdKind {
    /// Table and column: constants, never input.
    fn source(self) -> (&'static str, &'static str) {
        match self {
            IdKind::Incident => ("incidents", "id"),
            IdKind::Operation => ("outbox", "op_id"),
        }
    }
}

/// The ids of this kind that start with `prefix` (hex digits and dashes,
/// any case), at most `limit`, in id order.
pub fn with_prefix(conn: &Connection, kind: IdKind, prefix: &str, limit: u32) -> Result<Vec<Uuid>> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(Error::InvalidId);
    }
    let (table, column) = kind.source();
    // A range on the primary key (or its unique index) rather than LIKE:
    // ids are lowercase text, so every id with the prefix sorts in
    // [prefix, prefix + 'g').
    let sql = format!("SELECT {column} FROM {table} WHERE {column} >= ?1 AND {column} < ?2 ORDER BY {column} LIMIT ?3");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params![prefix, format!("{prefix}g"), limit], |r| r.get::<_, String>(0))?;
    let mut ids = Vec::new();
    for row in rows {
        if let Ok(id) = Uuid::parse_str(&row?) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The shortest prefix of `id`, at least `min` characters, that no other id
/// of this kind on the device shares.
pub fn shortest(conn: &Connection, kind: IdKind, id: Uuid, min: usize) -> Result<String> {
    let (table, column) = kind.source();
    let text = id.to_string();
    let neighbour = |sql: &str| -> Result<Option<String>> { Ok(conn.query_row(sql, [&text], |r| r.get(0)).optional()?) };
    let before = neighbour(&format!("SELECT {column} FROM {table} WHERE {column} < ?1 ORDER BY {column} DESC LIMIT 1"))?;
    let after = neighbour(&format!("SELECT {column} FROM {table} WHERE {column} > ?1 ORDER BY {column} LIMIT 1"))?;
    let shared = |other: &Option<String>| other.as_deref().map_or(0, |o| text.bytes().zip(o.bytes()).take_while(|(a, b)| a == b).count());
    let length = (shared(&before).max(shared(&after)) + 1).max(min).min(text.len());
    Ok(text[..length].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_prefix_is_unique_against_the_neighbours() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE incidents (id TEXT PRIMARY KEY)").unwrap();
        // Made in the same millisecond: UUIDv7s sharing their first 12 digits.
        let ids = ["0190a1b2-c3d4-7aaa-8000-000000000001", "0190a1b2-c3d4-7abb-8000-000000000002", "0190a1b2-c3d5-7ccc-8000-000000000003"];
        for id in ids {
            conn.execute("INSERT INTO incidents VALUES (?1)", [id]).unwrap();
        }
        let short = |i: usize, min| shortest(&conn, IdKind::Incident, Uuid::parse_str(ids[i]).unwrap(), min).unwrap();
        assert_eq!(short(0, 8), "0190a1b2-c3d4-7aa", "one past what it shares with its neighbour");
        assert_eq!(short(1, 8), "0190a1b2-c3d4-7ab");
        assert_eq!(short(2, 8), "0190a1b2-c3d5");
        assert_eq!(short(2, 20), "0190a1b2-c3d5-7ccc-8", "never under the minimum");
        let found = |p: &str| with_prefix(&conn, IdKind::Incident, p, 5).unwrap().len();
        assert_eq!((found("0190A1B2"), found("0190a1b2-c3d4-7a"), found("0190a1b2-c3d4-7aa"), found("0190a1b2-c3d6")), (3, 2, 1, 0));
        assert!(matches!(with_prefix(&conn, IdKind::Incident, "01' OR 1=1 --", 5), Err(Error::InvalidId)));
    }
}
