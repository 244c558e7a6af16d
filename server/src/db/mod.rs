//! One storage interface over SQLite (the embedded default) and PostgreSQL
//! (at scale). Domain code is written once, as synchronous functions over a
//! [`Tx`]; SQL is written in PostgreSQL's `$1` style and rewritten for
//! SQLite. HTTP handlers run it on tokio's blocking pool.

mod postgres;
mod sqlite;

use crate::error::{Result, ServerError};

pub use self::postgres::PostgresDatabase;
pub use self::sqlite::SqliteDatabase;

/// A value bound to or read from SQL.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(v as i64)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

/// Build a parameter list: `params![a, b, c]`.
#[macro_export]
macro_rules! params {
    ($($value:expr),* $(,)?) => { &[$($crate::db::Value::from($value)),*][..] };
}

#[derive(Clone, Debug)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn value(&self, index: usize) -> &Value {
        self.0.get(index).unwrap_or(&Value::Null)
    }
    pub fn int(&self, index: usize) -> i64 {
        self.opt_int(index).unwrap_or(0)
    }
    pub fn opt_int(&self, index: usize) -> Option<i64> {
        match self.value(index) {
            Value::Int(v) => Some(*v),
            Value::Real(v) => Some(*v as i64),
            _ => None,
        }
    }
    pub fn opt_real(&self, index: usize) -> Option<f64> {
        match self.value(index) {
            Value::Real(v) => Some(*v),
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }
    pub fn text(&self, index: usize) -> String {
        self.opt_text(index).unwrap_or_default()
    }
    pub fn opt_text(&self, index: usize) -> Option<String> {
        match self.value(index) {
            Value::Text(v) => Some(v.clone()),
            _ => None,
        }
    }
    pub fn bytes(&self, index: usize) -> Vec<u8> {
        match self.value(index) {
            Value::Bytes(v) => v.clone(),
            Value::Text(v) => v.clone().into_bytes(),
            _ => Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A transaction. Everything domain code does to storage goes through it.
pub trait Tx {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    fn dialect(&self) -> Dialect;
    /// Run several `;`-separated statements without parameters (the schema).
    fn execute_batch(&mut self, sql: &str) -> Result<()>;

    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
    fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row> {
        self.query_opt(sql, params)?.ok_or_else(|| ServerError::internal("query returned no row"))
    }
    /// Serialize appends to the change log so its sequence is commit order
    /// (PostgreSQL only; SQLite has one writer anyway). Held to commit.
    fn lock_change_log(&mut self) -> Result<()> {
        if self.dialect() == Dialect::Postgres {
            self.query("SELECT pg_advisory_xact_lock(72634101)", &[])?;
        }
        Ok(())
    }
}

/// Whether an error is a unique-key conflict (two writers racing).
pub fn is_conflict(error: &ServerError) -> bool {
    error.code == "storage_conflict"
}

#[derive(Clone)]
pub enum Database {
    Sqlite(SqliteDatabase),
    Postgres(PostgresDatabase),
}

impl Database {
    pub fn dialect(&self) -> Dialect {
        match self {
            Database::Sqlite(_) => Dialect::Sqlite,
            Database::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Run `f` in a write transaction; commit on Ok, roll back on Err.
    /// A unique-key conflict (a concurrent writer won) retries `f` once the
    /// winner committed, so callers see the winner's effect.
    pub fn write<T>(&self, mut f: impl FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut attempts = 0;
        loop {
            let result = match self {
                Database::Sqlite(db) => db.write(&mut f),
                Database::Postgres(db) => db.write(&mut f),
            };
            match result {
                Err(e) if is_conflict(&e) && attempts < 5 => attempts += 1,
                other => return other,
            }
        }
    }

    /// Run `f` in a read-only snapshot.
    pub fn read<T>(&self, mut f: impl FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        match self {
            Database::Sqlite(db) => db.read(&mut f),
            Database::Postgres(db) => db.read(&mut f),
        }
    }

    /// Create what is missing of the schema and refuse a database written
    /// by a newer server.
    pub fn migrate(&self) -> Result<()> {
        self.write(|tx| {
            let schema = match tx.dialect() {
                Dialect::Sqlite => SQLITE_SCHEMA,
                Dialect::Postgres => POSTGRES_SCHEMA,
            };
            tx.execute_batch(schema)?;
            let found = tx.query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])?.map(|r| r.text(0));
            match found.as_deref() {
                None => {
                    tx.execute("INSERT INTO meta (key, value) VALUES ('schema_version', $1)", params![SCHEMA_VERSION.to_string()])?;
                }
                Some(v) if v.parse::<i64>().unwrap_or(i64::MAX) > SCHEMA_VERSION => {
                    return Err(ServerError::new(500, "database_from_future", "the database was written by a newer server"));
                }
                Some(version) => {
                    let version: i64 = version.parse::<i64>().unwrap_or(SCHEMA_VERSION).max(1);
                    for step in version..SCHEMA_VERSION {
                        tx.execute_batch(UPGRADES[(step - 1) as usize])?;
                    }
                    if version < SCHEMA_VERSION {
                        tx.execute("UPDATE meta SET value = $1 WHERE key = 'schema_version'", params![SCHEMA_VERSION.to_string()])?;
                    }
                }
            }
            Ok(())
        })
    }
}

const SCHEMA_VERSION: i64 = 6;
/// Entry `i` upgrades an existing database from version `i + 1` to `i + 2`
/// (the schema files create new tables whole, not new columns).
const UPGRADES: &[&str] = &[
    // 2: refresh token reuse detection counts replays.
    "ALTER TABLE tokens ADD COLUMN replays BIGINT NOT NULL DEFAULT 0",
    // 3: a closed case's rating; the rejected report a case resubmits; who
    // announced each photo (only they upload it).
    "ALTER TABLE incidents ADD COLUMN rating BIGINT; ALTER TABLE incidents ADD COLUMN resubmission_of TEXT;
     ALTER TABLE incident_photos ADD COLUMN added_by TEXT",
    // 4: time limits to sign for a dispatched case and to verify a handled one.
    "ALTER TABLE incidents ADD COLUMN step_deadline_ms BIGINT; ALTER TABLE category_deadlines ADD COLUMN sign_hours BIGINT;
     ALTER TABLE category_deadlines ADD COLUMN verify_hours BIGINT",
    // 5: possession of blobs (the table is new in the schema file); photos
    // that arrived before are taken as shown by their announcers.
    "INSERT INTO blob_possession (sha256, user_id, covered)
         SELECT DISTINCT p.sha256, p.added_by, b.size FROM incident_photos p JOIN blobs b ON b.sha256 = p.sha256
         WHERE p.added_by IS NOT NULL AND b.complete = 1
     ON CONFLICT (sha256, user_id) DO NOTHING;
     INSERT INTO blob_possession (sha256, user_id, covered)
         SELECT DISTINCT v.preview_sha256, p.added_by, b.size FROM blob_previews v
         JOIN incident_photos p ON p.sha256 = v.original_sha256 JOIN blobs b ON b.sha256 = v.preview_sha256
         WHERE p.added_by IS NOT NULL AND b.complete = 1
     ON CONFLICT (sha256, user_id) DO NOTHING",
    // 6: each case's timeline is hash-chained; older entries stay unchained
    // at the start of their case's chain.
    "ALTER TABLE timeline ADD COLUMN prev_hash TEXT; ALTER TABLE timeline ADD COLUMN hash TEXT",
];
/// One schema file per dialect, each in its own types and run by the
/// driver as a batch.
const SQLITE_SCHEMA: &str = include_str!("schema/sqlite.sql");
const POSTGRES_SCHEMA: &str = include_str!("schema/postgres.sql");

/// `$1` → `?1` for SQLite (whose `$1` is a named parameter numbered by
/// first appearance, not by its digits).
pub fn to_sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_string = !in_string;
        }
        if c == '$' && !in_string && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_strings() {
        assert_eq!(to_sqlite_placeholders("SELECT $2, '$1', $10"), "SELECT ?2, '$1', ?10");
    }

    /// The two schema files declare the same tables, columns and indexes;
    /// only the types that have different names differ.
    #[test]
    fn dialect_schemas_differ_only_in_type_names() {
        let statements = |schema: &str| schema.lines().filter(|line| !line.starts_with("--")).collect::<Vec<_>>().join("\n");
        let postgres_in_sqlite_types = statements(POSTGRES_SCHEMA)
            .replace("BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT")
            .replace("DOUBLE PRECISION", "REAL")
            .replace("BYTEA", "BLOB");
        assert_eq!(postgres_in_sqlite_types, statements(SQLITE_SCHEMA));
    }

    /// A database of the previous version gains what this one added, its
    /// rows kept (SQLite here; the PostgreSQL statements are the same).
    #[test]
    fn a_version_3_database_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::Sqlite(SqliteDatabase::open(&dir.path().join("server.db")).unwrap());
        db.migrate().unwrap();
        db.write(|tx| {
            tx.execute_batch(
                "ALTER TABLE incidents DROP COLUMN step_deadline_ms; ALTER TABLE category_deadlines DROP COLUMN sign_hours;
                 ALTER TABLE category_deadlines DROP COLUMN verify_hours; DROP TABLE blob_possession;
                 ALTER TABLE timeline DROP COLUMN prev_hash; ALTER TABLE timeline DROP COLUMN hash; UPDATE meta SET value = '3' WHERE key = 'schema_version';
                 INSERT INTO category_deadlines (category_code, handle_hours) VALUES ('06', 72);
                 INSERT INTO blobs (sha256, size, received, complete, created_at_ms) VALUES ('aa', 10, 10, 1, 0), ('bb', 10, 3, 0, 0);
                 INSERT INTO incident_photos (photo_id, incident_id, sha256, byte_size, mime_type, role, position, added_by)
                 VALUES ('p1', 'c1', 'aa', 10, 'image/jpeg', 'evidence', 0, 'u1'), ('p2', 'c1', 'bb', 10, 'image/jpeg', 'evidence', 1, 'u1')",
            )
        })
        .unwrap();
        db.migrate().unwrap();
        let (version, kept, sign) = db
            .read(|tx| {
                let version = tx.query_one("SELECT value FROM meta WHERE key = 'schema_version'", &[])?.text(0);
                let row = tx.query_one("SELECT handle_hours, sign_hours FROM category_deadlines WHERE category_code = '06'", &[])?;
                tx.query_opt("SELECT step_deadline_ms FROM incidents", &[])?;
                Ok((version, row.int(0), row.opt_int(1)))
            })
            .unwrap();
        assert_eq!((version.as_str(), kept, sign), ("6", 72, None));
        // Photos that had arrived count as shown by their announcers; others do not.
        let shown = db.read(|tx| Ok(tx.query("SELECT sha256, user_id, covered FROM blob_possession", &[])?.iter().map(|r| (r.text(0), r.text(1), r.int(2))).collect::<Vec<_>>())).unwrap();
        assert_eq!(shown, vec![("aa".to_owned(), "u1".to_owned(), 10)]);
    }
}
