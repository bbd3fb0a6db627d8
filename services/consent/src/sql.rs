//! The `sql` consent source: rules in a table, one row per rule, keyed by one of the
//! person's source records.
//!
//! ```sql
//! CREATE TABLE tessera_consent (
//!     system   TEXT NOT NULL,  -- identifier system of the record (`crm`)
//!     local_id TEXT NOT NULL,  -- the record's local ID in that system
//!     purpose  TEXT NOT NULL,  -- HL7 v3 purpose-of-use code, or `*` for every purpose
//!     section  TEXT NOT NULL,  -- `*`, `SOURCE.*` or `SOURCE.SECTION`
//!     decision TEXT NOT NULL   -- `deny` or `permit`
//! );
//! ```
//!
//! Each view asks once per linked record, all at once, for the rows of its purpose and `*`.
//! A row that is not a valid rule fails the question (and so withholds every gated section).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{ConnectOptions, PgPool, SqlitePool};

use crate::config::{SqlConsentConfig, invalid};
use crate::rules::{Decision, Decisions, Rule, SectionPattern};
use crate::{ConsentError, ConsentSource, RecordKey};

/// How long a question waits for a free connection at most (the consent budget is shorter).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A row: purpose, section, decision.
type Row = (String, String, String);

/// Consent rules in a PostgreSQL or SQLite table.
#[derive(Debug, Clone)]
pub struct SqlConsent {
    db: Db,
    query: String,
}

#[derive(Debug, Clone)]
enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl SqlConsent {
    /// A lazily connecting source for `config`; a relative SQLite path is resolved against
    /// `config_dir`. Errors never echo the URL.
    pub fn open(config: &SqlConsentConfig, config_dir: &Path) -> Result<Self, ConsentError> {
        config.check_table()?;
        let url = config
            .url
            .resolve_in(config_dir)
            .map_err(|e| invalid("source.url", e.to_string()))?;
        let url = url.expose();
        let pool_size = config.max_connections.max(1);
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|_| invalid("source.url", "the PostgreSQL URL does not parse"))?
                .application_name("tessera-consent")
                .options([("default_transaction_read_only", "on")])
                .disable_statement_logging();
            Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(pool_size)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options),
            )
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(invalid("source.url", "the SQLite URL names no file"));
            }
            let path = config_dir.join(path);
            let options = SqliteConnectOptions::new()
                .filename(path)
                .read_only(true)
                .busy_timeout(Duration::from_secs(1))
                .disable_statement_logging();
            Db::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(pool_size)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options),
            )
        } else {
            return Err(invalid(
                "source.url",
                "must be a postgres:// or sqlite:// URL",
            ));
        };
        let query = format!(
            "SELECT purpose, section, decision FROM {} \
             WHERE system = $1 AND local_id = $2 AND (purpose = $3 OR purpose = '*')",
            config.table
        );
        Ok(Self { db, query })
    }

    async fn rows(&self, record: &RecordKey, purpose: &str) -> Result<Vec<Row>, ConsentError> {
        let (system, local_id) = (record.system.as_str(), record.local_id.as_str());
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as::<_, Row>(&self.query)
                    .bind(system)
                    .bind(local_id)
                    .bind(purpose)
                    .fetch_all(pool)
                    .await
            }
            Db::Sqlite(pool) => {
                sqlx::query_as::<_, Row>(&self.query)
                    .bind(system)
                    .bind(local_id)
                    .bind(purpose)
                    .fetch_all(pool)
                    .await
            }
        }
        .map_err(ConsentError::Database)
    }
}

fn rule((purpose, section, decision): Row) -> Result<Rule, ConsentError> {
    let purpose = purpose.trim();
    if purpose.is_empty() {
        return Err(ConsentError::InvalidRow("purpose is empty"));
    }
    Ok(Rule {
        purpose: (purpose != "*").then(|| purpose.to_owned()),
        sections: SectionPattern::parse(&section).ok_or(ConsentError::InvalidRow(
            "section is not `*`, `SOURCE.*` or `SOURCE.SECTION`",
        ))?,
        decision: Decision::parse(&decision)
            .ok_or(ConsentError::InvalidRow("decision is not deny or permit"))?,
    })
}

#[async_trait]
impl ConsentSource for SqlConsent {
    async fn decisions(
        &self,
        records: &[RecordKey],
        purpose: &str,
    ) -> Result<Decisions, ConsentError> {
        let rows = try_join_all(records.iter().map(|r| self.rows(r, purpose))).await?;
        let rules = rows
            .into_iter()
            .flatten()
            .map(rule)
            .collect::<Result<_, _>>()?;
        Ok(Decisions { rules })
    }
}
