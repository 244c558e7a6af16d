//! Photos of other devices fetched when a person asks to see them: a cache
//! bounded by size, the least recently used let go first. Their files live
//! in the photo store (`photos/fetched/`); these rows keep them from the
//! sweeper and say which to let go.

use gridwork_protocol::api::PhotoRendition;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

/// Fetched photos kept on a device, in bytes, before the least recently
/// used are let go (a 2048 px rendition is about 1 MB; an original up to
/// the photo limit).
pub const CACHE_MAX_BYTES: u64 = 256 << 20;

/// The file of a fetched photo, marked as used now.
pub fn lookup(conn: &Connection, sha256: &str, rendition: PhotoRendition, now_ms: i64) -> Result<Option<String>> {
    let name: Option<String> = conn
        .prepare_cached("UPDATE fetched_photos SET used_ms = ?3 WHERE sha256 = ?1 AND rendition = ?2 RETURNING file_name")?
        .query_row(params![sha256, rendition.as_query(), now_ms], |r| r.get(0))
        .optional()?;
    Ok(name)
}

/// Forget a fetched photo whose file is gone.
pub fn forget(conn: &Connection, sha256: &str, rendition: PhotoRendition) -> Result<()> {
    conn.execute("DELETE FROM fetched_photos WHERE sha256 = ?1 AND rendition = ?2", params![sha256, rendition.as_query()])?;
    Ok(())
}

/// Record a fetched photo, then let the least recently used others go
/// while the cache is over `max_bytes`. Returns the file names let go, for
/// the caller to remove once this commits.
pub fn record(conn: &Connection, sha256: &str, rendition: PhotoRendition, file_name: &str, byte_size: u64, now_ms: i64, max_bytes: u64) -> Result<Vec<String>> {
    conn.execute(
        "INSERT INTO fetched_photos (sha256, rendition, file_name, byte_size, used_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (sha256, rendition) DO UPDATE SET file_name = ?3, byte_size = ?4, used_ms = ?5",
        params![sha256, rendition.as_query(), file_name, byte_size as i64, now_ms],
    )?;
    let mut total: i64 = conn.query_row("SELECT COALESCE(SUM(byte_size), 0) FROM fetched_photos", [], |r| r.get(0))?;
    let mut let_go = Vec::new();
    let mut oldest = conn.prepare_cached(
        "SELECT sha256, rendition, file_name, byte_size FROM fetched_photos WHERE NOT (sha256 = ?1 AND rendition = ?2) ORDER BY used_ms, sha256",
    )?;
    let mut rows = oldest.query(params![sha256, rendition.as_query()])?;
    let mut gone = Vec::new();
    while total as u64 > max_bytes {
        let Some(row) = rows.next()? else { break };
        gone.push((row.get::<_, String>(0)?, row.get::<_, String>(1)?));
        let_go.push(row.get::<_, String>(2)?);
        total -= row.get::<_, i64>(3)?;
    }
    drop(rows);
    for (sha, rendition) in gone {
        conn.execute("DELETE FROM fetched_photos WHERE sha256 = ?1 AND rendition = ?2", params![sha, rendition])?;
    }
    Ok(let_go)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut conn).unwrap();
        conn
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_new_one_stays() {
        let conn = store();
        let sha = |n: u8| format!("{n:064}");
        assert!(record(&conn, &sha(1), PhotoRendition::Thumb, "a", 40, 1, 100).unwrap().is_empty());
        assert!(record(&conn, &sha(2), PhotoRendition::Thumb, "b", 40, 2, 100).unwrap().is_empty());
        // The first is looked at again: the second is now the oldest.
        assert_eq!(lookup(&conn, &sha(1), PhotoRendition::Thumb, 3).unwrap().as_deref(), Some("a"));
        assert_eq!(lookup(&conn, &sha(1), PhotoRendition::Original, 3).unwrap(), None);
        assert_eq!(record(&conn, &sha(3), PhotoRendition::Original, "c", 40, 4, 100).unwrap(), vec!["b".to_owned()]);
        assert_eq!(lookup(&conn, &sha(2), PhotoRendition::Thumb, 5).unwrap(), None);
        // One bigger than the whole cache is kept alone.
        assert_eq!(record(&conn, &sha(4), PhotoRendition::Original, "d", 500, 6, 100).unwrap(), vec!["a".to_owned(), "c".to_owned()]);
        assert_eq!(lookup(&conn, &sha(4), PhotoRendition::Original, 7).unwrap().as_deref(), Some("d"));
        forget(&conn, &sha(4), PhotoRendition::Original).unwrap();
        assert_eq!(lookup(&conn, &sha(4), PhotoRendition::Original, 8).unwrap(), None);
    }
}
