//! The `sql` kind's configuration and its checks without I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use tessera_adapter_core::{BuildError, valid_section_name};
use tessera_types::Secret;

/// Configuration of an `sql` adapter: one database, and a parameterised query per
/// section. There is no templating: the local ID is always bound as the query's
/// only parameter, never written into the SQL.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// The source system whose local IDs the database holds (`billing`, `crm`).
    pub system: String,
    /// The database URL: `postgres://user@host:5432/db`,
    /// `mysql://user@host:3306/db` (or `mariadb://...`; a Unix socket with
    /// `?socket=/path/mysqld.sock`), or `sqlite://path/to/file.db` (a relative
    /// SQLite path is resolved against the config file's directory). TLS is
    /// asked for in the URL: `?sslmode=verify-full&sslrootcert=/path/ca.pem`
    /// (PostgreSQL), `?ssl-mode=VERIFY_IDENTITY&ssl-ca=/path/ca.pem` (MySQL,
    /// MariaDB). A secret: when the URL carries a password, write
    /// `env:NAME` (an environment variable holding the URL) or `file:PATH` (a
    /// file holding it; a relative path is resolved against the config file's
    /// directory). The URL never appears in logs, errors or `Debug` output.
    #[serde(default)]
    pub url: Option<Secret>,
    /// The name of an environment variable holding the database URL, read when the
    /// adapter is built (the same as `url: env:NAME`).
    #[serde(default)]
    pub url_env: Option<String>,
    /// The most connections in the adapter's pool.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// The most rows a section returns for one local ID; further rows are dropped
    /// and the truncation is logged. A section may set its own.
    #[serde(default = "default_row_limit")]
    pub row_limit: u32,
    /// The query the health check runs.
    #[serde(default = "default_health_query")]
    pub health_query: String,
    /// The sections, by name (lowercase letters, digits and `_`).
    pub sections: BTreeMap<String, SectionConfig>,
    /// A query that returns the silo's demographics, for loading the resolver.
    #[serde(default)]
    pub identity_feed: Option<FeedConfig>,
}

/// One section: a query and how its columns become a record's JSON fields.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SectionConfig {
    /// One line on what the section holds.
    #[serde(default)]
    pub description: String,
    /// The query. Its only parameter is the local ID, as `$1` (PostgreSQL, SQLite)
    /// or `?` (MySQL/MariaDB, SQLite); in MySQL and MariaDB every `?` is bound to
    /// the local ID. PostgreSQL binds it as text, so cast it where the column is
    /// not (`WHERE account_id = $1::int`).
    pub query: String,
    /// Record field name to column name. Unset, every column becomes a field of
    /// the same name.
    #[serde(default)]
    pub fields: Option<BTreeMap<String, String>>,
    /// The column holding the record's own ID in the silo.
    #[serde(default)]
    pub record_id: Option<String>,
    /// The column holding when the silo last changed the record: RFC 3339 or
    /// `YYYY-MM-DD HH:MM:SS` (UTC) text, a timestamp, or Unix seconds.
    #[serde(default)]
    pub update_time: Option<String>,
    /// Columns that hold JSON as text, nested into the record as JSON. A row whose
    /// JSON does not parse is skipped and counted as malformed.
    #[serde(default)]
    pub json_columns: Vec<String>,
    /// The most rows for one local ID, overriding the adapter's `row_limit`.
    #[serde(default)]
    pub row_limit: Option<u32>,
    /// How long the section's records may be cached (`5m`); unset leaves it to
    /// Tessera's config.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub suggested_ttl: Option<Duration>,
}

/// The identity feed: a query whose columns are named after the demographics.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// The query. Columns (alias them with `AS`): `local_id` (required),
    /// `given_names`, `family_name`, `name_suffix`, `previous_family_names`,
    /// `birth_date`, `sex`, `phones`, `emails`, `address_lines`, `city`, `state`,
    /// `postal_code`, `country`, `national_id`, `update_time`; multi-valued ones
    /// may be JSON arrays or plain text. With `incremental`, its only parameter
    /// (`$1`; every `?` in MySQL/MariaDB) is the `updated_since` time as RFC 3339
    /// text (`YYYY-MM-DD HH:MM:SS.ffffff` in UTC for MySQL/MariaDB, which compares
    /// with DATETIME columns), or NULL for all records.
    pub query: String,
    /// The query takes `updated_since` as its parameter.
    #[serde(default)]
    pub incremental: bool,
}

fn default_max_connections() -> u32 {
    4
}

fn default_row_limit() -> u32 {
    1000
}

fn default_health_query() -> String {
    "SELECT 1".to_owned()
}

/// The databases the kind speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    /// MySQL and MariaDB (one wire protocol and dialect; tested on MariaDB).
    Mysql,
    Sqlite,
}

impl Dialect {
    /// The dialect of a URL, or why it is not one.
    pub(crate) fn of(url: &str) -> Result<Self, String> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "sqlite" => Ok(Self::Sqlite),
            "mysql" | "mariadb" => Ok(Self::Mysql),
            _ => Err("must start with postgres://, mysql://, mariadb:// or sqlite://".to_owned()),
        }
    }
}

impl SqlConfig {
    /// Checks what can be checked without I/O.
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        if self.system.is_empty() {
            return Err(BuildError::config("system", "must not be empty"));
        }
        match (&self.url, &self.url_env) {
            (Some(url), None) => {
                // Never echo the URL: it may carry a password. A reference is
                // checked once it is resolved.
                if !url.is_reference() {
                    Dialect::of(url.expose()).map_err(|e| BuildError::config("url", e))?;
                }
            }
            (None, Some(var)) if !var.is_empty() => {}
            (None, Some(_)) => return Err(BuildError::config("url_env", "must not be empty")),
            (None, None) => {
                return Err(BuildError::config(".", "set one of `url` and `url_env`"));
            }
            (Some(_), Some(_)) => {
                return Err(BuildError::config(
                    ".",
                    "set only one of `url` and `url_env`",
                ));
            }
        }
        if self.max_connections == 0 {
            return Err(BuildError::config("max_connections", "must be at least 1"));
        }
        if self.row_limit == 0 {
            return Err(BuildError::config("row_limit", "must be at least 1"));
        }
        if self.health_query.trim().is_empty() {
            return Err(BuildError::config("health_query", "must not be empty"));
        }
        if self.sections.is_empty() {
            return Err(BuildError::config(
                "sections",
                "must name at least one section",
            ));
        }
        for (name, section) in &self.sections {
            let path = |field: &str| format!("sections.{name}.{field}");
            if !valid_section_name(name) {
                return Err(BuildError::config(
                    "sections",
                    format!("{name:?} is not a section name ([a-z][a-z0-9_]*)"),
                ));
            }
            check_query(&section.query, true).map_err(|e| BuildError::config(path("query"), e))?;
            if section.row_limit == Some(0) {
                return Err(BuildError::config(path("row_limit"), "must be at least 1"));
            }
            if let Some(fields) = &section.fields {
                if fields.is_empty() {
                    return Err(BuildError::config(
                        path("fields"),
                        "must map at least one field",
                    ));
                }
                if let Some((field, _)) = fields.iter().find(|(_, c)| c.is_empty()) {
                    return Err(BuildError::config(
                        path(&format!("fields.{field}")),
                        "must name a column",
                    ));
                }
            }
            let mut seen = BTreeSet::new();
            if let Some(column) = section.json_columns.iter().find(|c| !seen.insert(*c)) {
                return Err(BuildError::config(
                    path("json_columns"),
                    format!("{column:?} is listed twice"),
                ));
            }
        }
        if let Some(feed) = &self.identity_feed {
            check_query(&feed.query, feed.incremental)
                .map_err(|e| BuildError::config("identity_feed.query", e))?;
        }
        Ok(())
    }
}

/// A query must be one statement; with `parameter`, it must use exactly one
/// parameter (the bound value), and without, none. (Which placeholder the
/// database takes is checked once the URL, and so the dialect, is known:
/// [`check_dialect`].)
fn check_query(query: &str, parameter: bool) -> Result<(), String> {
    let trimmed = query.trim().trim_end_matches(';').trim_end();
    if trimmed.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if trimmed.contains(';') {
        return Err("must be a single statement".to_owned());
    }
    let has = trimmed.contains("$1") || trimmed.contains('?');
    if parameter && !has {
        return Err(
            "must use the local ID as its parameter ($1, or ? in MySQL, MariaDB and SQLite)"
                .to_owned(),
        );
    }
    if !parameter && has {
        return Err("takes no parameter unless `incremental` is set".to_owned());
    }
    if trimmed.contains("$2") {
        return Err("takes one parameter ($1) only".to_owned());
    }
    Ok(())
}

/// What the dialect needs of a query. MySQL and MariaDB take `?` as the
/// placeholder (each bound to the same value), never `$1`; and since their query
/// runs as written rather than wrapped in a subquery, it must be a SELECT (or
/// WITH ... SELECT), in addition to the session being read-only.
pub(crate) fn check_dialect(dialect: Dialect, query: &str, parameter: bool) -> Result<(), String> {
    if dialect != Dialect::Mysql {
        return Ok(());
    }
    let first = query
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    if !first.eq_ignore_ascii_case("select") && !first.eq_ignore_ascii_case("with") {
        return Err("must be a SELECT (or WITH ... SELECT) query".to_owned());
    }
    if query.contains("$1") {
        return Err("MySQL and MariaDB take the parameter as `?`, not `$1`".to_owned());
    }
    if parameter && crate::db::placeholders(query) == 0 {
        return Err("must use the local ID as its parameter (`?`)".to_owned());
    }
    Ok(())
}

/// The query without trailing semicolons and whitespace, to wrap in a subquery.
pub(crate) fn bare(query: &str) -> &str {
    query.trim().trim_end_matches(';').trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(query: &str) -> SqlConfig {
        serde_json::from_value(serde_json::json!({
            "system": "billing",
            "url": "postgres://tessera@db/billing",
            "sections": {"invoices": {"query": query}},
        }))
        .expect("parses")
    }

    #[test]
    fn a_query_must_bind_the_local_id() {
        assert!(
            config("SELECT * FROM invoices WHERE patient_ref = $1")
                .check()
                .is_ok()
        );
        let err = config("SELECT * FROM invoices").check().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("sections.invoices.query: must use"),
            "{err}"
        );
        let err = config("SELECT 1 WHERE $1 = $2").check().unwrap_err();
        assert!(err.to_string().contains("one parameter"), "{err}");
        let err = config("SELECT 1 WHERE $1 = 'a'; DROP TABLE x")
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("single statement"), "{err}");
    }

    #[test]
    fn mysql_and_mariadb_urls_are_accepted_and_an_unknown_scheme_is_refused_without_echoing_it() {
        let mut c = config("SELECT 1 FROM invoices WHERE patient_ref = ?");
        for url in [
            "mysql://root:hunter2@db/billing",
            "mariadb://db/billing?socket=/run/m.sock",
        ] {
            c.url = Some(Secret::new(url));
            assert!(c.check().is_ok(), "{url}");
        }
        c.url = Some(Secret::new("oracle://root:hunter2@db/billing"));
        let err = c.check().unwrap_err().to_string();
        assert_eq!(
            err,
            "url: must start with postgres://, mysql://, mariadb:// or sqlite://"
        );
    }

    #[test]
    fn mysql_queries_take_question_marks() {
        let check = |q: &str, p: bool| check_dialect(Dialect::Mysql, q, p);
        assert!(check("SELECT * FROM t WHERE a = ? OR b = ?", true).is_ok());
        assert!(check("SELECT * FROM t WHERE a = $1", true).is_err());
        assert!(check("SELECT * FROM t WHERE a = '?'", true).is_err());
        assert!(check("SELECT * FROM t", false).is_ok());
        assert!(check("DELETE FROM t WHERE a = ?", true).is_err());
        assert!(check(" (select a FROM t WHERE a = ?)", true).is_ok());
        assert!(check_dialect(Dialect::Postgres, "SELECT $1", true).is_ok());
    }
}
