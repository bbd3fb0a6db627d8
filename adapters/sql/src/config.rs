//! The `sql` kind's configuration and its checks without I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use tessera_adapter_core::{BuildError, valid_section_name};

/// Configuration of an `sql` adapter: one database, and a parameterised query per
/// section. There is no templating: the local ID is always bound as the query's
/// only parameter, never written into the SQL.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// The source system whose local IDs the database holds (`billing`, `crm`).
    pub system: String,
    /// The database URL: `postgres://user@host:5432/db` or `sqlite://path/to/file.db`
    /// (a relative SQLite path is resolved against the config file's directory).
    /// Use `url_env` instead when the URL carries a password.
    #[serde(default)]
    pub url: Option<String>,
    /// The name of an environment variable holding the database URL, read when the
    /// adapter is built.
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
    /// or `?` (SQLite); PostgreSQL binds it as text, so cast it where the column is
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
    /// (`$1`) is the `updated_since` time as RFC 3339 text, or NULL for all records.
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
    Sqlite,
}

impl Dialect {
    /// The dialect of a URL, or why it is not one.
    pub(crate) fn of(url: &str) -> Result<Self, String> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "sqlite" => Ok(Self::Sqlite),
            "mysql" | "mariadb" => Err("MySQL and MariaDB are not supported by this build yet; \
                 use postgres:// or sqlite://"
                .to_owned()),
            _ => Err("must start with postgres:// or sqlite://".to_owned()),
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
                // Never echo the URL: it may carry a password.
                Dialect::of(url).map_err(|e| BuildError::config("url", e))?;
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
/// parameter (the bound value), and without, none.
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
        return Err("must use the local ID as its parameter ($1, or ? in SQLite)".to_owned());
    }
    if !parameter && has {
        return Err("takes no parameter unless `incremental` is set".to_owned());
    }
    if trimmed.contains("$2") {
        return Err("takes one parameter ($1) only".to_owned());
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
    fn a_mysql_url_is_refused_without_echoing_it() {
        let mut c = config("SELECT 1 WHERE $1 = 'a'");
        c.url = Some("mysql://root:hunter2@db/billing".to_owned());
        let err = c.check().unwrap_err().to_string();
        assert!(err.starts_with("url: MySQL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
