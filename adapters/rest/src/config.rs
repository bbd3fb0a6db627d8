//! The `rest` kind's configuration and its checks without I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json_path::JsonPath;
use tessera_adapter_core::{BuildError, valid_section_name};
/// A secret, read when the adapter is built: `env:NAME`, `file:PATH` (relative
/// to the config's directory) or the older `{env: NAME}` and `{file: PATH}`.
pub use tessera_types::Secret;

/// Configuration of a `rest` adapter: one JSON-over-HTTP API, a request per
/// section.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// The source system whose local IDs the API serves (`crm`, `marketing`).
    pub system: String,
    /// The API's base URL (`https://crm.example.org/api/v2/`); section paths are
    /// relative to it.
    pub base_url: String,
    /// Headers sent with every request (not secrets: use `auth`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How the adapter authenticates; unset sends no credentials.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// How long to wait for a connection (`2s`); a fetch's deadline bounds it too.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub connect_timeout: Duration,
    /// The most pages one section fetch follows.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// The most records a section returns for one local ID; further records are
    /// dropped and the truncation is logged.
    #[serde(default = "default_max_records")]
    pub max_records: u32,
    /// A path (relative to `base_url`) the health check GETs; a 2xx is healthy.
    /// Unset, the health check only checks that the base URL answers.
    #[serde(default)]
    pub health_path: Option<String>,
    /// A request header that tells the API how many milliseconds are left
    /// before the deadline (`X-Request-Timeout-Ms`), for APIs that honour one;
    /// sent a little early so that the answer is back in time.
    #[serde(default)]
    pub deadline_header: Option<String>,
    /// The sections, by name (lowercase letters, digits and `_`).
    pub sections: BTreeMap<String, SectionConfig>,
    /// A paged listing of the API's people, streamed to load the resolver.
    #[serde(default)]
    pub identity_feed: Option<FeedConfig>,
}

/// The identity feed: a paged listing of people and where their demographics are.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// The listing's path, relative to `base_url` (`contacts`).
    pub path: String,
    /// Query parameters.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// JSONPath selecting the people in a page (`$.items[*]`).
    pub records: String,
    /// Demographic field to JSONPath within a person: `local_id` (required),
    /// `given_names`, `family_name`, `name_suffix`, `previous_family_names`,
    /// `birth_date`, `sex`, `phones`, `emails`, `address_lines`, `city`, `state`,
    /// `postal_code`, `country`, `national_id`, `update_time`. Multi-valued fields
    /// take every value the path selects (`$.emails[*]`).
    pub fields: BTreeMap<String, String>,
    /// The query parameter that takes `updated_since` (RFC 3339), when the API
    /// filters by it; unset, the feed is not incremental.
    #[serde(default)]
    pub updated_since_param: Option<String>,
    /// How the listing pages; unset, one request.
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

/// The demographic fields a feed can map.
pub(crate) const FEED_FIELDS: &[&str] = &[
    "local_id",
    "given_names",
    "family_name",
    "name_suffix",
    "previous_family_names",
    "birth_date",
    "sex",
    "phones",
    "emails",
    "address_lines",
    "city",
    "state",
    "postal_code",
    "country",
    "national_id",
    "update_time",
];

/// How the adapter authenticates to the API.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum AuthConfig {
    /// `Authorization: Bearer TOKEN`.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// An API key in a header of the API's choosing.
    ApiKey {
        /// The header (`X-API-Key`).
        header: String,
        /// The key.
        key: Secret,
    },
    /// OAuth 2.0 client credentials: a token from `token_url`, cached until
    /// shortly before it expires.
    Oauth2ClientCredentials {
        /// The token endpoint.
        token_url: String,
        /// The client ID.
        client_id: String,
        /// The client secret.
        client_secret: Secret,
        /// The scopes to ask for, space-separated.
        #[serde(default)]
        scope: Option<String>,
    },
}

/// The HTTP methods a section may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET (the default).
    #[default]
    Get,
    /// POST, with `body`.
    Post,
}

/// One section: a request and how its response becomes records.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SectionConfig {
    /// One line on what the section holds.
    #[serde(default)]
    pub description: String,
    /// The HTTP method.
    #[serde(default)]
    pub method: Method,
    /// The path, relative to `base_url`, where `{local_id}` stands for the local
    /// ID, percent-encoded as one path segment (`patients/{local_id}/consents`).
    pub path: String,
    /// Query parameters; `{local_id}` in a value stands for the local ID.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Headers for this section's requests.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// For POST: the JSON body, where a string `"{local_id}"` stands for the local ID.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// JSONPath (RFC 9535) selecting the records in a response (`$.data[*]`).
    pub records: String,
    /// Record field name to JSONPath within the record (`$.consent.status`).
    /// Unset, each record is kept whole.
    #[serde(default)]
    pub fields: Option<BTreeMap<String, String>>,
    /// JSONPath within the record to its own ID (`$.id`).
    #[serde(default)]
    pub record_id: Option<String>,
    /// JSONPath within the record to when it last changed (RFC 3339 or Unix seconds).
    #[serde(default)]
    pub update_time: Option<String>,
    /// How the API pages; unset, one request.
    #[serde(default)]
    pub pagination: Option<Pagination>,
    /// How long the section's records may be cached (`5m`).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub suggested_ttl: Option<Duration>,
}

/// How an API pages its results.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum Pagination {
    /// The response carries a cursor, sent back as a query parameter; no cursor
    /// (or null, or empty) ends it.
    Cursor {
        /// JSONPath to the next cursor in a response (`$.next_cursor`).
        cursor: String,
        /// The query parameter it is sent as (`cursor`).
        param: String,
    },
    /// RFC 8288 `Link` headers: the `rel="next"` link is the next page.
    LinkHeader,
    /// Numbered pages; a page with fewer records than `page_size` is the last.
    PageNumber {
        /// The query parameter of the page number (`page`).
        param: String,
        /// The first page's number.
        #[serde(default = "default_first_page")]
        first: u32,
        /// The query parameter of the page size, if the API takes one.
        #[serde(default)]
        size_param: Option<String>,
        /// Records per page.
        page_size: u32,
    },
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_max_pages() -> u32 {
    20
}

fn default_max_records() -> u32 {
    1000
}

fn default_first_page() -> u32 {
    1
}

/// A parsed JSONPath, or a config error at `path`.
pub(crate) fn json_path(expr: &str, path: &str) -> Result<JsonPath, BuildError> {
    JsonPath::parse(expr).map_err(|e| BuildError::config(path, format!("not a JSONPath: {e}")))
}

impl RestConfig {
    /// Checks what can be checked without I/O.
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        if self.system.is_empty() {
            return Err(BuildError::config("system", "must not be empty"));
        }
        let base = reqwest::Url::parse(&self.base_url)
            .map_err(|_| BuildError::config("base_url", "is not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(BuildError::config(
                "base_url",
                "must be http:// or https://",
            ));
        }
        if self.max_pages == 0 {
            return Err(BuildError::config("max_pages", "must be at least 1"));
        }
        if self.max_records == 0 {
            return Err(BuildError::config("max_records", "must be at least 1"));
        }
        if let Some(AuthConfig::Oauth2ClientCredentials { token_url, .. }) = &self.auth {
            reqwest::Url::parse(token_url)
                .map_err(|_| BuildError::config("auth.token_url", "is not a URL"))?;
        }
        if self.sections.is_empty() {
            return Err(BuildError::config(
                "sections",
                "must name at least one section",
            ));
        }
        if let Some(feed) = &self.identity_feed {
            json_path(&feed.records, "identity_feed.records")?;
            if !feed.fields.contains_key("local_id") {
                return Err(BuildError::config(
                    "identity_feed.fields",
                    "must map local_id",
                ));
            }
            for (field, expr) in &feed.fields {
                if !FEED_FIELDS.contains(&field.as_str()) {
                    return Err(BuildError::config(
                        "identity_feed.fields",
                        format!(
                            "{field:?} is not a demographic field; known: {}",
                            FEED_FIELDS.join(", ")
                        ),
                    ));
                }
                json_path(expr, &format!("identity_feed.fields.{field}"))?;
            }
            if let Some(Pagination::Cursor { cursor, .. }) = &feed.pagination {
                json_path(cursor, "identity_feed.pagination.cursor")?;
            }
        }
        for (name, s) in &self.sections {
            let at = |field: &str| format!("sections.{name}.{field}");
            if !valid_section_name(name) {
                return Err(BuildError::config(
                    "sections",
                    format!("{name:?} is not a section name ([a-z][a-z0-9_]*)"),
                ));
            }
            if !s.path.contains("{local_id}")
                && !s.query.values().any(|v| v.contains("{local_id}"))
                && !s
                    .body
                    .as_ref()
                    .is_some_and(|b| b.to_string().contains("{local_id}"))
            {
                return Err(BuildError::config(
                    at("path"),
                    "must use {local_id} in the path, a query parameter or the body",
                ));
            }
            if s.body.is_some() && s.method != Method::Post {
                return Err(BuildError::config(at("body"), "needs method POST"));
            }
            json_path(&s.records, &at("records"))?;
            for (field, expr) in s.fields.iter().flatten() {
                json_path(expr, &at(&format!("fields.{field}")))?;
            }
            if let Some(expr) = &s.record_id {
                json_path(expr, &at("record_id"))?;
            }
            if let Some(expr) = &s.update_time {
                json_path(expr, &at("update_time"))?;
            }
            match &s.pagination {
                Some(Pagination::Cursor { cursor, .. }) => {
                    json_path(cursor, &at("pagination.cursor"))?;
                }
                Some(Pagination::PageNumber { page_size: 0, .. }) => {
                    return Err(BuildError::config(
                        at("pagination.page_size"),
                        "must be at least 1",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
