//! The databases, PostgreSQL, MySQL/MariaDB and SQLite, and how each stops a
//! statement whose caller went away or whose deadline passed: PostgreSQL by
//! `statement_timeout` (set from the deadline) and `pg_cancel_backend` when the
//! call is dropped; MariaDB by `max_statement_time` (MySQL by
//! `max_execution_time`) and `KILL QUERY` when the call is dropped; SQLite by a
//! progress handler that interrupts the statement.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{
    Column, ConnectOptions, Connection, MySqlPool, PgPool, Postgres, Row, SqlitePool, TypeInfo,
    ValueRef,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{Dialect, bare};

mod mysql;

pub(crate) use mysql::placeholders;
use mysql::{MyRunning, mysql_row};

/// How many SQLite virtual-machine instructions run between checks for a
/// cancelled call or a passed deadline.
const SQLITE_CHECK_EVERY: i32 = 1000;
/// How much sooner than the deadline PostgreSQL's and MySQL's statement
/// timeouts fire.
const STATEMENT_TIMEOUT_MARGIN: Duration = Duration::from_millis(10);
/// How long a caller waits for a free connection at most (the deadline is
/// usually shorter).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection pool to one database. Its `Debug` names the database kind
/// only: the connect options hold the password.
#[derive(Clone)]
pub(crate) enum Db {
    Postgres {
        pool: PgPool,
        /// For the separate connection that cancels a running statement.
        options: Box<PgConnectOptions>,
    },
    Mysql {
        pool: MySqlPool,
        /// For the separate connection that kills a running statement.
        options: Box<MySqlConnectOptions>,
    },
    Sqlite {
        pool: SqlitePool,
        /// SQLite virtual-machine progress: grows while any statement runs.
        steps: Arc<AtomicU64>,
    },
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Self::Postgres { .. } => "postgres",
            Self::Mysql { .. } => "mysql",
            Self::Sqlite { .. } => "sqlite",
        };
        f.debug_struct("Db")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

/// The rows of one query, as JSON objects keyed by column name.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub(crate) rows: Vec<Map<String, Value>>,
    /// Rows whose values could not be read (text that is not UTF-8, a blob).
    pub(crate) malformed: u32,
}

impl Db {
    /// A lazily connecting pool for `url`; a relative SQLite path is resolved
    /// against `base_dir`. Errors never echo the URL.
    pub(crate) fn open(url: &str, max_connections: u32, base_dir: &Path) -> Result<Self, String> {
        match Dialect::of(url)? {
            Dialect::Postgres => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(|_| "the PostgreSQL URL does not parse".to_owned())?
                    .application_name("tessera-adapter-sql")
                    // The adapter only reads; a misconfigured query cannot write.
                    .options([("default_transaction_read_only", "on")]);
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options.clone());
                Ok(Self::Postgres {
                    pool,
                    options: Box::new(options),
                })
            }
            Dialect::Mysql => {
                // sqlx reads `mariadb://` as it reads `mysql://`.
                let options = MySqlConnectOptions::from_str(url)
                    .map_err(|_| "the MySQL/MariaDB URL does not parse".to_owned())?
                    .disable_statement_logging();
                let pool = MySqlPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    // The adapter only reads; a misconfigured query cannot write.
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("SET SESSION TRANSACTION READ ONLY")
                                .execute(conn)
                                .await
                                .map(drop)
                        })
                    })
                    .connect_lazy_with(options.clone());
                Ok(Self::Mysql {
                    pool,
                    options: Box::new(options),
                })
            }
            Dialect::Sqlite => {
                let rest = url.strip_prefix("sqlite:").unwrap_or(url);
                let rest = rest.strip_prefix("//").unwrap_or(rest);
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err("the SQLite URL names no file".to_owned());
                }
                let path = Path::new(path);
                let path = if path.is_absolute() {
                    path.to_owned()
                } else {
                    base_dir.join(path)
                };
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .busy_timeout(Duration::from_secs(5))
                    .disable_statement_logging();
                let pool = SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options);
                Ok(Self::Sqlite {
                    pool,
                    steps: Arc::default(),
                })
            }
        }
    }

    /// Its dialect.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Self::Postgres { .. } => Dialect::Postgres,
            Self::Mysql { .. } => Dialect::Mysql,
            Self::Sqlite { .. } => Dialect::Sqlite,
        }
    }

    /// `query` wrapped so each row comes back as a JSON object (PostgreSQL's
    /// `row_to_json`, which renders every type) and at most `limit` rows come
    /// back. The query is configuration; no value is ever written into SQL.
    ///
    /// MySQL and MariaDB ignore an `ORDER BY` inside a derived table, so their
    /// query runs as written and [`Db::rows`] limits its rows with the session's
    /// `sql_select_limit` instead.
    pub(crate) fn wrap(&self, query: &str, limit: Option<u64>) -> String {
        let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        match self {
            Self::Postgres { .. } => {
                format!(
                    "SELECT row_to_json(q)::text FROM ({}) AS q{limit}",
                    bare(query)
                )
            }
            Self::Mysql { .. } => bare(query).to_owned(),
            Self::Sqlite { .. } => format!("SELECT * FROM ({}) AS q{limit}", bare(query)),
        }
    }

    /// SQLite's progress counter, which grows while a statement runs.
    pub(crate) fn sqlite_steps(&self) -> Option<u64> {
        match self {
            Self::Sqlite { steps, .. } => Some(steps.load(Ordering::Relaxed)),
            Self::Postgres { .. } | Self::Mysql { .. } => None,
        }
    }

    /// Runs a wrapped query with `param` bound as its only parameter (to every
    /// `?` in MySQL), stopping the statement on the server at `deadline`, or
    /// when the returned future is dropped. `limit` is the wrapped query's row
    /// limit, which MySQL applies as `sql_select_limit`.
    pub(crate) async fn rows(
        &self,
        sql: &str,
        param: &str,
        limit: u64,
        deadline: Option<Instant>,
    ) -> Result<Rows, sqlx::Error> {
        match self {
            Self::Postgres { pool, options } => {
                let mut running = PgRunning::start(pool, options, deadline).await?;
                let texts = sqlx::query_scalar::<_, String>(sql)
                    .bind(param)
                    .fetch_all(running.conn())
                    .await;
                running.finished();
                let mut rows = Rows::default();
                for text in texts? {
                    match serde_json::from_str(&text) {
                        Ok(Value::Object(map)) => rows.rows.push(map),
                        _ => rows.malformed += 1,
                    }
                }
                Ok(rows)
            }
            Self::Mysql { pool, options } => {
                let mut running = MyRunning::start(pool, options, deadline, Some(limit)).await?;
                let mut query = sqlx::query(sql);
                for _ in 0..placeholders(sql) {
                    query = query.bind(param);
                }
                let fetched = query.fetch_all(running.conn()).await;
                running.finished();
                let mut rows = Rows::default();
                for row in &fetched? {
                    match mysql_row(row) {
                        Some(map) => rows.rows.push(map),
                        None => rows.malformed += 1,
                    }
                }
                Ok(rows)
            }
            Self::Sqlite { pool, steps } => {
                let mut conn = pool.acquire().await?;
                let _stop = SqliteStop::install(&mut conn, steps, deadline).await?;
                let fetched = sqlx::query(sql).bind(param).fetch_all(&mut *conn).await?;
                let mut rows = Rows::default();
                for row in &fetched {
                    match sqlite_row(row) {
                        Some(map) => rows.rows.push(map),
                        None => rows.malformed += 1,
                    }
                }
                Ok(rows)
            }
        }
    }

    /// Runs the health query within `timeout`.
    pub(crate) async fn ping(&self, sql: &str, timeout: Duration) -> Result<(), sqlx::Error> {
        let deadline = Instant::now() + timeout;
        tokio::time::timeout_at(deadline, self.ping_until(sql, deadline))
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    async fn ping_until(&self, sql: &str, deadline: Instant) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres { pool, options } => {
                let mut running = PgRunning::start(pool, options, Some(deadline)).await?;
                let result = sqlx::query(sql).execute(running.conn()).await;
                running.finished();
                result.map(drop)
            }
            Self::Mysql { pool, options } => {
                let mut running = MyRunning::start(pool, options, Some(deadline), None).await?;
                let result = sqlx::query(sql).execute(running.conn()).await;
                running.finished();
                result.map(drop)
            }
            Self::Sqlite { pool, steps } => {
                let mut conn = pool.acquire().await?;
                let _stop = SqliteStop::install(&mut conn, steps, Some(deadline)).await?;
                sqlx::query(sql).execute(&mut *conn).await.map(drop)
            }
        }
    }

    /// Streams a wrapped query's rows from a task of its own, which stops
    /// when the receiver is dropped. `param`, when set, is bound (as text or
    /// NULL; to every `?` in MySQL).
    pub(crate) fn stream(
        &self,
        sql: String,
        param: Option<Option<String>>,
    ) -> mpsc::Receiver<Result<Option<Map<String, Value>>, sqlx::Error>> {
        let (tx, rx) = mpsc::channel(64);
        let db = self.clone();
        tokio::spawn(async move {
            let result = db.stream_into(&sql, param, &tx).await;
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }

    async fn stream_into(
        &self,
        sql: &str,
        param: Option<Option<String>>,
        tx: &mpsc::Sender<Result<Option<Map<String, Value>>, sqlx::Error>>,
    ) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres { pool, options } => {
                let mut running = PgRunning::start(pool, options, None).await?;
                let mut query = sqlx::query_scalar::<_, String>(sql);
                if let Some(param) = param {
                    query = query.bind(param);
                }
                let mut texts = query.fetch(running.conn());
                while let Some(text) = texts.try_next().await? {
                    let row = match serde_json::from_str(&text) {
                        Ok(Value::Object(map)) => Some(map),
                        _ => None,
                    };
                    if tx.send(Ok(row)).await.is_err() {
                        // Dropped with the statement still running: cancelled.
                        return Ok(());
                    }
                }
                drop(texts);
                running.finished();
                Ok(())
            }
            Self::Mysql { pool, options } => {
                let mut running = MyRunning::start(pool, options, None, None).await?;
                let mut query = sqlx::query(sql);
                if let Some(param) = param {
                    for _ in 0..placeholders(sql) {
                        query = query.bind(param.clone());
                    }
                }
                let mut rows = query.fetch(running.conn());
                while let Some(row) = rows.try_next().await? {
                    if tx.send(Ok(mysql_row(&row))).await.is_err() {
                        // Dropped with the statement still running: killed.
                        return Ok(());
                    }
                }
                drop(rows);
                running.finished();
                Ok(())
            }
            Self::Sqlite { pool, steps } => {
                let mut conn = pool.acquire().await?;
                let _stop = SqliteStop::install(&mut conn, steps, None).await?;
                let mut query = sqlx::query(sql);
                if let Some(param) = param {
                    query = query.bind(param);
                }
                let mut rows = query.fetch(&mut *conn);
                while let Some(row) = rows.try_next().await? {
                    if tx.send(Ok(sqlite_row(&row))).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            }
        }
    }
}

/// How a statement left running is stopped on the server, from a connection
/// of its own.
pub(super) trait Cancel: Send + 'static {
    /// Stops the statement.
    fn cancel(self) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;
}

/// A pooled connection running a statement. Dropped before
/// [`Running::finished`], it stops the statement on the server with its
/// [`Cancel`], and the connection is closed rather than pooled.
pub(super) struct Running<DB: sqlx::Database, C: Cancel> {
    conn: Option<PoolConnection<DB>>,
    cancel: Option<C>,
}

impl<DB: sqlx::Database, C: Cancel> Running<DB, C> {
    /// `conn`, running a statement that `cancel` stops.
    pub(super) fn new(conn: PoolConnection<DB>, cancel: C) -> Self {
        Self {
            conn: Some(conn),
            cancel: Some(cancel),
        }
    }

    #[allow(clippy::expect_used)]
    pub(super) fn conn(&mut self) -> &mut DB::Connection {
        self.conn.as_mut().expect("taken only on drop")
    }

    /// The statement is over (its rows or its error arrived): nothing to stop.
    pub(super) fn finished(&mut self) {
        self.cancel = None;
    }
}

impl<DB: sqlx::Database, C: Cancel> Drop for Running<DB, C> {
    fn drop(&mut self) {
        let (Some(cancel), Some(conn)) = (self.cancel.take(), self.conn.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Out of the pool, so no one else's statement can be the one stopped.
        let conn = conn.detach();
        runtime.spawn(async move {
            if let Err(e) = cancel.cancel().await {
                tracing::warn!(error = %e.as_database_error().and_then(|d| d.code()).unwrap_or_default(),
                    "cannot stop a dropped statement; its time limit will end it");
            }
            drop(conn);
        });
    }
}

/// A PostgreSQL connection running a statement, cancelled with
/// `pg_cancel_backend`.
type PgRunning = Running<Postgres, PgCancel>;

/// Cancels a PostgreSQL backend's statement.
struct PgCancel {
    pid: i32,
    options: PgConnectOptions,
}

impl Cancel for PgCancel {
    async fn cancel(self) -> Result<(), sqlx::Error> {
        let mut canceller = self.options.connect().await?;
        sqlx::query("SELECT pg_cancel_backend($1)")
            .bind(self.pid)
            .execute(&mut canceller)
            .await?;
        canceller.close().await
    }
}

impl PgRunning {
    /// Takes a connection and sets its statement timeout from `deadline` (none
    /// without one).
    async fn start(
        pool: &PgPool,
        options: &PgConnectOptions,
        deadline: Option<Instant>,
    ) -> Result<Self, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        let timeout = deadline.map_or_else(
            || "0".to_owned(),
            |d| {
                // A little before the deadline, so that the server ends the
                // statement and answers before the caller gives up.
                let left = d.saturating_duration_since(Instant::now());
                let left = left.saturating_sub(STATEMENT_TIMEOUT_MARGIN);
                format!("{}ms", left.as_millis().max(1))
            },
        );
        let (pid, _): (i32, String) =
            sqlx::query_as("SELECT pg_backend_pid(), set_config('statement_timeout', $1, false)")
                .bind(timeout)
                .fetch_one(&mut *conn)
                .await?;
        let options = options.clone();
        Ok(Self::new(conn, PgCancel { pid, options }))
    }
}

/// Interrupts the SQLite statement of a connection when dropped.
struct SqliteStop(Arc<AtomicBool>);

impl SqliteStop {
    /// Installs a progress handler on `conn` that interrupts its statement once
    /// the returned guard is dropped or `deadline` passes.
    async fn install(
        conn: &mut sqlx::SqliteConnection,
        steps: &Arc<AtomicU64>,
        deadline: Option<Instant>,
    ) -> Result<Self, sqlx::Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, steps) = (stop.clone(), steps.clone());
        let deadline = deadline.map(Instant::into_std);
        let mut handle = conn.lock_handle().await?;
        handle.set_progress_handler(SQLITE_CHECK_EVERY, move || {
            steps.fetch_add(1, Ordering::Relaxed);
            let late = deadline.is_some_and(|d| std::time::Instant::now() >= d);
            !(late || flag.load(Ordering::Relaxed))
        });
        Ok(Self(stop))
    }
}

impl Drop for SqliteStop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A SQLite row as a JSON object, or `None` when a value cannot be read (text
/// that is not UTF-8, a blob).
fn sqlite_row(row: &SqliteRow) -> Option<Map<String, Value>> {
    let mut map = Map::with_capacity(row.columns().len());
    for column in row.columns() {
        let i = column.ordinal();
        let raw = row.try_get_raw(i).ok()?;
        let value = if raw.is_null() {
            Value::Null
        } else {
            let kind = raw.type_info().name().to_owned();
            match kind.as_str() {
                "INTEGER" => Value::from(row.try_get::<i64, _>(i).ok()?),
                "REAL" => serde_json::Number::from_f64(row.try_get::<f64, _>(i).ok()?)
                    .map_or(Value::Null, Value::Number),
                "TEXT" => Value::String(row.try_get::<String, _>(i).ok()?),
                _ => return None,
            }
        };
        map.insert(column.name().to_owned(), value);
    }
    Some(map)
}
