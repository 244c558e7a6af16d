//! PostgreSQL: a pool of synchronous clients used from tokio's blocking
//! pool. The server keeps no state of its own besides this database (blobs
//! live in it too), so several instances can run behind a load balancer.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};

use super::{Dialect, Row, Tx, Value};
use crate::error::{Result, ServerError};

#[derive(Clone)]
pub struct PostgresDatabase {
    url: Arc<String>,
    pool: Arc<(Mutex<PoolState>, Condvar)>,
    max: usize,
}

struct PoolState {
    idle: Vec<PooledClient>,
    open: usize,
}

/// A connection and its prepared statements: preparing once per connection
/// saves a round trip on every later query.
struct PooledClient {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl PostgresDatabase {
    pub fn connect(url: &str, max_connections: usize) -> Result<PostgresDatabase> {
        let db = PostgresDatabase {
            url: Arc::new(url.to_owned()),
            pool: Arc::new((Mutex::new(PoolState { idle: Vec::new(), open: 0 }), Condvar::new())),
            max: max_connections.max(1),
        };
        // Fail at start, not at the first request, when the URL is wrong.
        let client = db.new_client()?;
        {
            let mut state = db.pool.0.lock().unwrap_or_else(|e| e.into_inner());
            state.idle.push(PooledClient { client, statements: HashMap::new() });
            state.open = 1;
        }
        Ok(db)
    }

    fn new_client(&self) -> Result<Client> {
        Client::connect(&self.url, NoTls).map_err(|e| ServerError::storage(format!("cannot connect to PostgreSQL: {}", e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string()))))
    }

    fn checkout(&self) -> Result<PooledClient> {
        let (state, available) = &*self.pool;
        let mut guard = state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(client) = guard.idle.pop() {
                if client.client.is_closed() {
                    guard.open -= 1;
                    continue;
                }
                return Ok(client);
            }
            if guard.open < self.max {
                guard.open += 1;
                drop(guard);
                return self
                    .new_client()
                    .map(|client| PooledClient { client, statements: HashMap::new() })
                    .inspect_err(|_| {
                        state.lock().unwrap_or_else(|e| e.into_inner()).open -= 1;
                    });
            }
            guard = available.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn checkin(&self, client: PooledClient) {
        let (state, available) = &*self.pool;
        let mut guard = state.lock().unwrap_or_else(|e| e.into_inner());
        if client.client.is_closed() {
            guard.open -= 1;
        } else {
            guard.idle.push(client);
        }
        available.notify_one();
    }

    pub(super) fn transaction<T>(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut pooled = self.checkout()?;
        let result = (|| {
            let PooledClient { client, statements } = &mut pooled;
            let tx = client.transaction().map_err(map_error)?;
            let mut wrapper = PgTx { tx, statements };
            let value = f(&mut wrapper)?;
            wrapper.tx.commit().map_err(map_error)?;
            Ok(value)
        })();
        self.checkin(pooled);
        result
    }
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
