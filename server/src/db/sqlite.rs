//! SQLite: one writer connection (BEGIN IMMEDIATE) and a small pool of
//! readers, WAL, synchronous=FULL: an operation the server acknowledged
//! survives a power cut, because the device then stops resending it.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{Dialect, Row, Tx, Value, to_sqlite_placeholders};
use crate::error::{Result, ServerError};

#[derive(Clone)]
pub struct SqliteDatabase {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<(Mutex<Vec<Connection>>, Condvar)>,
}

const READERS: usize = 4;

fn open_connection(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(map_error)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(map_error)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(map_error)?;
    Ok(conn)
}

impl SqliteDatabase {
    pub fn open(path: &Path) -> Result<SqliteDatabase> {
        let writer = open_connection(path)?;
        let readers = (0..READERS).map(|_| open_connection(path)).collect::<Result<Vec<_>>>()?;
        Ok(SqliteDatabase { writer: Arc::new(Mutex::new(writer)), readers: Arc::new((Mutex::new(readers), Condvar::new())) })
    }

    pub(super) fn write<T>(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut conn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_error)?;
        let mut wrapper = SqliteTx { tx: &tx };
        let value = f(&mut wrapper)?;
        tx.commit().map_err(map_error)?;
        Ok(value)
    }

    pub(super) fn read<T>(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let (pool, available) = &*self.readers;
        let mut conn = {
            let mut guard = pool.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(conn) = guard.pop() {
                    break conn;
                }
                guard = available.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(map_error)?;
            let mut wrapper = SqliteTx { tx: &tx };
            let value = f(&mut wrapper)?;
            tx.finish().map_err(map_error)?;
            Ok(value)
        })();
        pool.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        available.notify_one();
        result
    }
}

struct SqliteTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

fn bind(params: &[Value]) -> Vec<SqlValue> {
    params
        .iter()
        .map(|v| match v {
            Value::Null => SqlValue::Null,
            Value::Int(i) => SqlValue::Integer(*i),
            Value::Real(r) => SqlValue::Real(*r),
            Value::Text(t) => SqlValue::Text(t.clone()),
            Value::Bytes(b) => SqlValue::Blob(b.clone()),
        })
        .collect()
}

impl Tx for SqliteTx<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let sql = to_sqlite_placeholders(sql);
        let mut stmt = self.tx.prepare_cached(&sql).map_err(map_error)?;
        Ok(stmt.execute(rusqlite::params_from_iter(bind(params))).map_err(map_error)? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let sql = to_sqlite_placeholders(sql);
        let mut stmt = self.tx.prepare_cached(&sql).map_err(map_error)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(bind(params))).map_err(map_error)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(map_error)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(map_error)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Real(v),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute_batch(&mut self, sql: &str) -> Result<()> {
        self.tx.execute_batch(sql).map_err(map_error)
    }
}

fn map_error(error: rusqlite::Error) -> ServerError {
    use rusqlite::ffi::ErrorCode;
    match error.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => ServerError::conflict(),
        Some(ErrorCode::DiskFull) => ServerError::new(507, "storage_full", "the server's storage is full"),
        _ => ServerError::storage(error.to_string()),
    }
}
