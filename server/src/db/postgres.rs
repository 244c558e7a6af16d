//! PostgreSQL: an r2d2 pool of synchronous clients used from tokio's
//! blocking pool. The server keeps no state of its own besides this database
//! (blobs live in it too), so several instances can run behind a load
//! balancer.

use std::collections::HashMap;
use std::time::Duration;

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config, IsolationLevel, NoTls, Statement};

use super::{Dialect, Row, Tx, Value};
use crate::error::{Result, ServerError};

#[derive(Clone)]
pub struct PostgresDatabase {
    pool: r2d2::Pool<Connections>,
}

/// A connection and its prepared statements: preparing once per connection
/// saves a round trip on every later query.
struct PooledClient {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// Opens the pool's connections.
struct Connections {
    config: Config,
}

impl r2d2::ManageConnection for Connections {
    type Connection = PooledClient;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<PooledClient, postgres::Error> {
        Ok(PooledClient { client: self.config.connect(NoTls)?, statements: HashMap::new() })
    }

    fn is_valid(&self, connection: &mut PooledClient) -> std::result::Result<(), postgres::Error> {
        connection.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, connection: &mut PooledClient) -> bool {
        connection.client.is_closed()
    }
}

impl PostgresDatabase {
    pub fn connect(url: &str, max_connections: usize) -> Result<PostgresDatabase> {
        let config: Config = url.parse().map_err(|e| connect_error(&e))?;
        let connections = Connections { config };
        // Fail at start, not at the first request, when the URL is wrong
        // (the pool itself would keep retrying until its timeout).
        drop(r2d2::ManageConnection::connect(&connections).map_err(|e| connect_error(&e))?);
        let pool = r2d2::Pool::builder()
            .max_size(u32::try_from(max_connections.max(1)).unwrap_or(u32::MAX))
            // Connections open as requests need them, and stay open.
            .min_idle(Some(0))
            .idle_timeout(None)
            .max_lifetime(None)
            // A closed connection is dropped when it is returned
            // (`has_broken`); checking every checkout would cost a round
            // trip per transaction.
            .test_on_check_out(false)
            .connection_timeout(CHECKOUT_TIMEOUT)
            .build_unchecked(connections);
        Ok(PostgresDatabase { pool })
    }

    pub(super) fn write<T>(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        self.transaction(Access::Write, f)
    }

    pub(super) fn read<T>(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        self.transaction(Access::Read, f)
    }

    fn transaction<T>(&self, access: Access, f: &mut dyn FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut pooled = self.pool.get().map_err(|e| ServerError::storage(format!("cannot connect to PostgreSQL: {e}")))?;
        let PooledClient { client, statements } = &mut *pooled;
        let tx = match access {
            Access::Write => client.transaction(),
            // PostgreSQL's default (read committed) takes a new snapshot per
            // statement: a pull would read the change log, then find a case
            // already moved by a later commit whose change it did not read.
            // Repeatable read keeps one snapshot for the whole read, as a
            // SQLite read transaction does.
            Access::Read => client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start(),
        }
        .map_err(map_error)?;
        let mut wrapper = PgTx { tx, statements };
        let value = f(&mut wrapper)?;
        wrapper.tx.commit().map_err(map_error)?;
        Ok(value)
    }
}

#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

/// How long a transaction waits for a free connection before the request
/// fails as storage-unavailable.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

fn connect_error(e: &postgres::Error) -> ServerError {
    ServerError::storage(format!("cannot connect to PostgreSQL: {}", e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string())))
}

struct PgTx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut HashMap<String, Statement>,
}

impl PgTx<'_> {
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.tx.prepare(sql).map_err(map_error)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT2 => (*v as i16).to_sql(ty, out),
                Type::INT4 => (*v as i32).to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Real(v) => match *ty {
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(v) => v.to_sql(ty, out),
            Value::Bytes(v) => v.to_sql(ty, out),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

impl Tx for PgTx<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let statement = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        self.tx.execute(&statement, &refs).map_err(map_error)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = self.tx.query(&statement, &refs).map_err(map_error)?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        let ty = row.columns()[i].type_().clone();
                        let value = match ty {
                            Type::INT8 => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
                            Type::INT4 => row.try_get::<_, Option<i32>>(i).map(|v| v.map(|v| Value::Int(v as i64))),
                            Type::INT2 => row.try_get::<_, Option<i16>>(i).map(|v| v.map(|v| Value::Int(v as i64))),
                            Type::BOOL => row.try_get::<_, Option<bool>>(i).map(|v| v.map(|v| Value::Int(v as i64))),
                            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map(|v| v.map(Value::Real)),
                            Type::FLOAT4 => row.try_get::<_, Option<f32>>(i).map(|v| v.map(|v| Value::Real(v as f64))),
                            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map(|v| v.map(Value::Bytes)),
                            Type::VOID => Ok(None),
                            _ => row.try_get::<_, Option<String>>(i).map(|v| v.map(Value::Text)),
                        };
                        value.map(|v| v.unwrap_or(Value::Null)).map_err(map_error)
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Row)
            })
            .collect()
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute_batch(&mut self, sql: &str) -> Result<()> {
        self.tx.batch_execute(sql).map_err(map_error)
    }
}

fn map_error(error: postgres::Error) -> ServerError {
    use postgres::error::SqlState;
    match error.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION || *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED => {
            ServerError::conflict()
        }
        Some(code) if *code == SqlState::DISK_FULL => ServerError::new(507, "storage_full", "the server's storage is full"),
        _ => ServerError::storage(error.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| error.to_string())),
    }
}
