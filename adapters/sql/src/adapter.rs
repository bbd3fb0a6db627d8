//! The `sql` kind and its adapter.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::future::join_all;
use tessera_adapter_core::{
    Adapter, AdapterKind, BoxFeed, BuildContext, BuildError, BuiltAdapter, Capabilities,
    Description, FetchError, FetchRequest, FetchResult, Health, HealthCheck, Record,
    SectionDescriptor, trace,
};
use tessera_types::Secret;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{Dialect, SqlConfig, check_dialect};
use crate::db::Db;
use crate::record::{RowProblem, Shape, feed_record};

/// How long the health check's query may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The `sql` adapter kind.
#[derive(Debug, Default)]
pub struct SqlKind;

#[async_trait]
impl AdapterKind for SqlKind {
    type Config = SqlConfig;

    fn kind(&self) -> &'static str {
        "sql"
    }

    fn validate(&self, config: &SqlConfig) -> Result<(), BuildError> {
        config.check()
    }

    async fn build(
        &self,
        context: &BuildContext,
        config: SqlConfig,
    ) -> Result<BuiltAdapter, BuildError> {
        let adapter = Arc::new(SqlAdapter::open(config, &context.base_dir)?);
        Ok(BuiltAdapter {
            health: adapter.clone(),
            adapter,
        })
    }
}

/// One section, ready to run.
#[derive(Debug)]
struct Section {
    /// The wrapped query (one more row than the limit, to notice truncation).
    sql: String,
    limit: usize,
    shape: Shape,
}

/// An adapter over one database.
#[derive(Debug)]
pub struct SqlAdapter {
    description: Description,
    db: Db,
    sections: BTreeMap<String, Section>,
    health_query: String,
    /// The wrapped feed query and whether it takes `updated_since`.
    feed: Option<(String, bool)>,
    /// OpenTelemetry's `db.system.name` for the statement spans.
    db_system: &'static str,
}

impl SqlAdapter {
    /// An adapter from its configuration; relative SQLite paths are resolved
    /// against `base_dir`. Connects lazily: no I/O until the first call.
    pub fn open(config: SqlConfig, base_dir: &std::path::Path) -> Result<Self, BuildError> {
        config.check()?;
        let (url, field) = database_url(&config, base_dir)?;
        let url = url.expose();
        let dialect = Dialect::of(url).map_err(|e| BuildError::config(field, e))?;
        for (name, section) in &config.sections {
            check_dialect(dialect, &section.query, true)
                .map_err(|e| BuildError::config(format!("sections.{name}.query"), e))?;
        }
        if let Some(feed) = &config.identity_feed {
            check_dialect(dialect, &feed.query, feed.incremental)
                .map_err(|e| BuildError::config("identity_feed.query", e))?;
        }
        let db = Db::open(url, config.max_connections, base_dir)
            .map_err(|e| BuildError::config(field, e))?;
        let sections = config
            .sections
            .iter()
            .map(|(name, s)| {
                let limit = s.row_limit.unwrap_or(config.row_limit) as usize;
                let section = Section {
                    sql: db.wrap(&s.query, Some(limit as u64 + 1)),
                    limit,
                    shape: Shape {
                        fields: s.fields.clone(),
                        record_id: s.record_id.clone(),
                        update_time: s.update_time.clone(),
                        json_columns: s.json_columns.clone(),
                    },
                };
                (name.clone(), section)
            })
            .collect();
        let description = Description {
            system: config.system.clone(),
            sections: config
                .sections
                .iter()
                .map(|(name, s)| SectionDescriptor {
                    suggested_ttl: s.suggested_ttl,
                    ..SectionDescriptor::json(name, &s.description)
                })
                .collect(),
            capabilities: Capabilities {
                batch_fetch: false,
                max_batch_size: 0,
                identity_feed: config.identity_feed.is_some(),
                incremental_identity_feed: config
                    .identity_feed
                    .as_ref()
                    .is_some_and(|f| f.incremental),
            },
            version: concat!("sql/", env!("CARGO_PKG_VERSION")).to_owned(),
        };
        let feed = config
            .identity_feed
            .as_ref()
            .map(|f| (db.wrap(&f.query, None), f.incremental));
        Ok(Self {
            description,
            db,
            sections,
            health_query: config.health_query,
            feed,
            db_system: db_system(url, dialect),
        })
    }

    /// SQLite's virtual-machine progress counter, which grows while any of the
    /// adapter's statements runs (`None` for PostgreSQL and MySQL): how tests see
    /// that a statement stopped.
    pub fn sqlite_progress(&self) -> Option<u64> {
        self.db.sqlite_steps()
    }

    async fn pair(&self, local_id: &str, name: &str, deadline: Instant) -> FetchResult {
        let mut result = FetchResult {
            local_id: local_id.to_owned(),
            section: name.to_owned(),
            records: Ok(Vec::new()),
            skipped_malformed: 0,
        };
        let Some(section) = self.sections.get(name) else {
            result.records = Err(FetchError::UnknownSection {
                section: name.to_owned(),
            });
            return result;
        };
        let work = self.section(name, section, local_id, deadline);
        match tokio::time::timeout_at(deadline, work).await {
            Ok(Ok((records, skipped))) => {
                result.records = Ok(records);
                result.skipped_malformed = skipped;
            }
            Ok(Err(e)) => result.records = Err(e),
            Err(_) => result.records = Err(FetchError::DeadlineExceeded),
        }
        result
    }

    async fn section(
        &self,
        name: &str,
        section: &Section,
        local_id: &str,
        deadline: Instant,
    ) -> Result<(Vec<Record>, u32), FetchError> {
        let span = trace::db_client_span(self.db_system, name);
        let rows = self
            .db
            .rows(
                &section.sql,
                local_id,
                section.limit as u64 + 1,
                Some(deadline),
            )
            .instrument(span.clone())
            .await
            .map_err(|e| {
                let code = e.as_database_error().and_then(|d| d.code());
                trace::record_db_error(&span, code.as_deref(), error_kind(&e));
                db_error(self.db.dialect(), &e, Some(name))
            })?;
        let mut skipped = rows.malformed;
        if rows.rows.len() > section.limit {
            tracing::warn!(
                system = %self.description.system,
                section = name,
                limit = section.limit,
                "row limit reached; further rows dropped"
            );
        }
        let mut records = Vec::with_capacity(rows.rows.len().min(section.limit));
        for row in rows.rows.into_iter().take(section.limit) {
            match section.shape.record(row) {
                Ok(record) => records.push(record),
                Err(RowProblem::Malformed(problem)) => {
                    skipped += 1;
                    tracing::warn!(
                        system = %self.description.system,
                        section = name,
                        %problem,
                        "skipped a malformed row"
                    );
                }
                Err(RowProblem::MissingColumn(column)) => {
                    return Err(FetchError::Malformed {
                        message: format!(
                            "section {name:?}: the query returns no column {column:?}"
                        ),
                    });
                }
            }
        }
        Ok((records, skipped))
    }
}

/// The OpenTelemetry `db.system.name` of a database (by its URL's scheme).
/// The database URL, resolved, and the config field it came from (for errors,
/// which name the field, the variable or the file, never the URL).
fn database_url(
    config: &SqlConfig,
    base_dir: &std::path::Path,
) -> Result<(Secret, &'static str), BuildError> {
    let (secret, field) = match (&config.url, &config.url_env) {
        (Some(url), _) => (url.clone(), "url"),
        (None, Some(var)) => (Secret::new(format!("env:{var}")), "url_env"),
        (None, None) => return Err(BuildError::config(".", "no database URL")),
    };
    let url = secret
        .resolve_in(base_dir)
        .map_err(|e| BuildError::config(field, e.to_string()))?;
    Ok((url, field))
}

fn db_system(url: &str, dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "postgresql",
        Dialect::Mysql if url.starts_with("mariadb:") => "mariadb",
        Dialect::Mysql => "mysql",
        Dialect::Sqlite => "sqlite",
    }
}

/// A database error as a fetch error: the SQLSTATE (or SQLite code) only, since
/// a database's message may quote a value.
fn db_error(dialect: Dialect, e: &sqlx::Error, section: Option<&str>) -> FetchError {
    let code = e
        .as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned());
    // MySQL's own error number, beside the SQLSTATE.
    let mysql_number = e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(sqlx::mysql::MySqlDatabaseError::number);
    match (dialect, code.as_deref()) {
        // query_canceled: the statement timeout (the deadline) or our cancel.
        (Dialect::Postgres, Some("57014")) | (Dialect::Sqlite, Some("9")) => {
            return FetchError::DeadlineExceeded;
        }
        // 70100: interrupted, by MariaDB's max_statement_time (1969) or our KILL
        // QUERY (1317); 3024: MySQL's max_execution_time.
        (Dialect::Mysql, Some("70100")) => return FetchError::DeadlineExceeded,
        (Dialect::Mysql, _) if mysql_number == Some(3024) => {
            return FetchError::DeadlineExceeded;
        }
        _ => {}
    }
    match e {
        sqlx::Error::Database(_) => {
            let code = code.unwrap_or_default();
            tracing::warn!(section, sqlstate = %code, "query failed");
            FetchError::unavailable(format!("database error (code {code})"))
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. } => {
            tracing::warn!(section, "a column could not be decoded");
            FetchError::Malformed {
                message: "a column could not be decoded".to_owned(),
            }
        }
        _ => {
            tracing::warn!(section, kind = error_kind(e), "database unreachable");
            FetchError::unavailable(format!("database unreachable ({})", error_kind(e)))
        }
    }
}

/// A value-free name for an error without a code.
fn error_kind(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Io(_) => "i/o error",
        sqlx::Error::Tls(_) => "tls error",
        sqlx::Error::PoolTimedOut => "no free connection",
        sqlx::Error::PoolClosed => "pool closed",
        sqlx::Error::Protocol(_) => "protocol error",
        sqlx::Error::Configuration(_) => "configuration error",
        sqlx::Error::WorkerCrashed => "worker crashed",
        _ => "error",
    }
}

#[async_trait]
impl Adapter for SqlAdapter {
    fn describe(&self) -> &Description {
        &self.description
    }

    async fn fetch(&self, request: FetchRequest) -> Result<Vec<FetchResult>, FetchError> {
        if Instant::now() >= request.deadline {
            return Err(FetchError::DeadlineExceeded);
        }
        let pairs = request
            .local_ids
            .iter()
            .flat_map(|id| request.sections.iter().map(move |s| (id, s)));
        Ok(join_all(pairs.map(|(id, s)| self.pair(id, s, request.deadline))).await)
    }

    fn identity_feed(&self, updated_since: Option<SystemTime>) -> BoxFeed<'_> {
        let Some((sql, incremental)) = &self.feed else {
            return Box::pin(futures_util::stream::once(async {
                Err(FetchError::FeedUnsupported)
            }));
        };
        let dialect = self.db.dialect();
        let since = updated_since
            .and_then(|t| jiff::Timestamp::try_from(t).ok())
            .map(|t| match dialect {
                // The form MySQL compares with DATETIME (and sorts as text).
                Dialect::Mysql => t.strftime("%Y-%m-%d %H:%M:%S%.6f").to_string(),
                Dialect::Postgres | Dialect::Sqlite => t.to_string(),
            });
        let param = incremental.then_some(since);
        let rows = self.db.stream(sql.clone(), param);
        let system = self.description.system.clone();
        let feed = futures_util::stream::unfold(rows, |mut rows| async move {
            rows.recv().await.map(|item| (item, rows))
        })
        .filter_map(move |item| {
            let out = match item {
                Err(e) => Some(Err(db_error(dialect, &e, None))),
                Ok(Some(row)) => match feed_record(row) {
                    Ok(record) => Some(Ok(record)),
                    Err(problem) => {
                        tracing::warn!(%system, %problem, "skipped a malformed feed row");
                        None
                    }
                },
                Ok(None) => {
                    tracing::warn!(%system, "skipped an unreadable feed row");
                    None
                }
            };
            std::future::ready(out)
        });
        Box::pin(feed)
    }
}

#[async_trait]
impl HealthCheck for SqlAdapter {
    async fn check(&self) -> Health {
        match self.db.ping(&self.health_query, HEALTH_TIMEOUT).await {
            Ok(()) => Health::serving(),
            Err(e) => Health::not_serving(db_error(self.db.dialect(), &e, None).to_string()),
        }
    }
}
