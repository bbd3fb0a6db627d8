//! The `rest` kind and its adapter.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::future::join_all;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use serde_json_path::JsonPath;
use tessera_adapter_core::trace;
use tessera_adapter_core::{
    Adapter, AdapterKind, BoxFeed, BuildContext, BuildError, BuiltAdapter, Capabilities,
    Description, FeedRecord, FetchError, FetchRequest, FetchResult, Health, HealthCheck, Record,
    SectionDescriptor,
};
use tessera_types::{Address, Demographics, Sex};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{AuthConfig, Method, Pagination, RestConfig, Secret, json_path};

/// Everything but RFC 3986's unreserved characters is percent-encoded in a
/// local ID's path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// How much sooner than the deadline the API is told it passes.
const DEADLINE_MARGIN: Duration = Duration::from_millis(20);
/// How long one page of the identity feed may take.
const FEED_PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the health check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// An OAuth token is renewed this long before it expires.
const TOKEN_EARLY: Duration = Duration::from_secs(30);

/// The `rest` adapter kind.
#[derive(Debug, Default)]
pub struct RestKind;

#[async_trait]
impl AdapterKind for RestKind {
    type Config = RestConfig;

    fn kind(&self) -> &'static str {
        "rest"
    }

    fn validate(&self, config: &RestConfig) -> Result<(), BuildError> {
        config.check()
    }

    async fn build(
        &self,
        context: &BuildContext,
        config: RestConfig,
    ) -> Result<BuiltAdapter, BuildError> {
        let adapter = Arc::new(RestAdapter::new(config, &context.base_dir)?);
        Ok(BuiltAdapter {
            health: adapter.clone(),
            adapter,
        })
    }
}

/// How the adapter authenticates.
enum Auth {
    /// A fixed header (bearer token or API key).
    Header(HeaderName, HeaderValue),
    /// OAuth 2.0 client credentials.
    OAuth {
        token_url: Url,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        /// The token and when it expires.
        cached: Mutex<Option<(String, Instant)>>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header(name, _) => write!(f, "Header({name}: <secret>)"),
            Self::OAuth { client_id, .. } => write!(f, "OAuth({client_id}, <secret>)"),
        }
    }
}

/// A section, compiled.
#[derive(Debug)]
struct Section {
    method: reqwest::Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Option<Value>,
    records: JsonPath,
    fields: Option<Vec<(String, JsonPath)>>,
    record_id: Option<JsonPath>,
    update_time: Option<JsonPath>,
    pagination: Option<Paging>,
}

/// Pagination, compiled.
#[derive(Debug)]
enum Paging {
    Cursor {
        cursor: JsonPath,
        param: String,
    },
    LinkHeader,
    PageNumber {
        param: String,
        first: u32,
        size_param: Option<String>,
        page_size: u32,
    },
}

/// The identity feed, compiled: a listing request and the demographics' paths.
#[derive(Debug)]
struct Feed {
    listing: Section,
    fields: BTreeMap<String, JsonPath>,
    since_param: Option<String>,
}

/// An adapter over one HTTP API.
#[derive(Debug)]
pub struct RestAdapter {
    description: Description,
    client: reqwest::Client,
    base: Url,
    headers: HeaderMap,
    auth: Option<Auth>,
    sections: BTreeMap<String, Section>,
    max_pages: u32,
    max_records: usize,
    health_url: Url,
    health_strict: bool,
    deadline_header: Option<HeaderName>,
    feed: Option<Feed>,
}

fn read_secret(secret: &Secret, base_dir: &Path, field: &str) -> Result<String, BuildError> {
    let value = secret
        .resolve_in(base_dir)
        .map_err(|e| BuildError::config(field, e.to_string()))?;
    Ok(value.expose().to_owned())
}

fn header_map(headers: &BTreeMap<String, String>, field: &str) -> Result<HeaderMap, BuildError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| BuildError::config(field, format!("{name:?} is not a header name")))?;
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| BuildError::config(field, format!("{name}: not a header value")))?;
        map.insert(name, value);
    }
    Ok(map)
}

fn sensitive(value: &str, field: &str) -> Result<HeaderValue, BuildError> {
    let mut value = HeaderValue::try_from(value)
        .map_err(|_| BuildError::config(field, "the secret is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

impl RestAdapter {
    /// An adapter from its configuration; secret files are resolved against
    /// `base_dir`. No I/O but reading secrets.
    pub fn new(config: RestConfig, base_dir: &Path) -> Result<Self, BuildError> {
        config.check()?;
        let base = Url::parse(&config.base_url)
            .map_err(|_| BuildError::config("base_url", "is not a URL"))?;
        let auth = match &config.auth {
            None => None,
            Some(AuthConfig::Bearer { token }) => {
                let token = read_secret(token, base_dir, "auth.token")?;
                Some(Auth::Header(
                    reqwest::header::AUTHORIZATION,
                    sensitive(&format!("Bearer {token}"), "auth.token")?,
                ))
            }
            Some(AuthConfig::ApiKey { header, key }) => {
                let name = HeaderName::try_from(header.as_str())
                    .map_err(|_| BuildError::config("auth.header", "is not a header name"))?;
                let key = read_secret(key, base_dir, "auth.key")?;
                Some(Auth::Header(name, sensitive(&key, "auth.key")?))
            }
            Some(AuthConfig::Oauth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            }) => Some(Auth::OAuth {
                token_url: Url::parse(token_url)
                    .map_err(|_| BuildError::config("auth.token_url", "is not a URL"))?,
                client_id: client_id.clone(),
                client_secret: read_secret(client_secret, base_dir, "auth.client_secret")?,
                scope: scope.clone(),
                cached: Mutex::new(None),
            }),
        };
        let mut sections = BTreeMap::new();
        for (name, s) in &config.sections {
            let at = |field: &str| format!("sections.{name}.{field}");
            let fields = match &s.fields {
                None => None,
                Some(fields) => Some(
                    fields
                        .iter()
                        .map(|(f, e)| Ok((f.clone(), json_path(e, &at("fields"))?)))
                        .collect::<Result<Vec<_>, BuildError>>()?,
                ),
            };
            let pagination = s
                .pagination
                .as_ref()
                .map(|p| paging(p, &at("pagination")))
                .transpose()?;
            let section = Section {
                method: match s.method {
                    Method::Get => reqwest::Method::GET,
                    Method::Post => reqwest::Method::POST,
                },
                path: s.path.clone(),
                query: s
                    .query
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                headers: header_map(&s.headers, &at("headers"))?,
                body: s.body.clone(),
                records: json_path(&s.records, &at("records"))?,
                fields,
                record_id: s
                    .record_id
                    .as_deref()
                    .map(|e| json_path(e, &at("record_id")))
                    .transpose()?,
                update_time: s
                    .update_time
                    .as_deref()
                    .map(|e| json_path(e, &at("update_time")))
                    .transpose()?,
                pagination,
            };
            sections.insert(name.clone(), section);
        }
        let feed = match &config.identity_feed {
            None => None,
            Some(f) => Some(Feed {
                listing: Section {
                    method: reqwest::Method::GET,
                    path: f.path.clone(),
                    query: f
                        .query
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    headers: HeaderMap::new(),
                    body: None,
                    records: json_path(&f.records, "identity_feed.records")?,
                    fields: None,
                    record_id: None,
                    update_time: None,
                    pagination: f
                        .pagination
                        .as_ref()
                        .map(|p| paging(p, "identity_feed.pagination"))
                        .transpose()?,
                },
                fields: f
                    .fields
                    .iter()
                    .map(|(k, e)| Ok((k.clone(), json_path(e, "identity_feed.fields")?)))
                    .collect::<Result<_, BuildError>>()?,
                since_param: f.updated_since_param.clone(),
            }),
        };
        let health_url = match &config.health_path {
            Some(path) => base
                .join(path)
                .map_err(|_| BuildError::config("health_path", "is not a relative URL"))?,
            None => base.clone(),
        };
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            // A redirect could carry credentials elsewhere; the API's own links
            // are followed by pagination, same origin only.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tessera-adapter-rest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| BuildError::Setup("cannot create the HTTP client".to_owned()))?;
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
                identity_feed: config.identity_feed.is_some(),
                incremental_identity_feed: config
                    .identity_feed
                    .as_ref()
                    .is_some_and(|f| f.updated_since_param.is_some()),
                ..Capabilities::default()
            },
            version: concat!("rest/", env!("CARGO_PKG_VERSION")).to_owned(),
        };
        Ok(Self {
            description,
            client,
            base,
            headers: header_map(&config.headers, "headers")?,
            auth,
            sections,
            max_pages: config.max_pages,
            max_records: config.max_records as usize,
            health_url,
            health_strict: config.health_path.is_some(),
            deadline_header: config
                .deadline_header
                .as_deref()
                .map(HeaderName::try_from)
                .transpose()
                .map_err(|_| BuildError::config("deadline_header", "is not a header name"))?,
            feed,
        })
    }

    /// The first page's URL for a local ID.
    fn first_url(&self, section: &Section, local_id: &str) -> Result<Url, FetchError> {
        let segment = utf8_percent_encode(local_id, SEGMENT).to_string();
        let path = section.path.replace("{local_id}", &segment);
        let mut url = self.base.join(&path).map_err(|_| FetchError::Malformed {
            message: "the section's path does not make a URL".to_owned(),
        })?;
        if !section.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in &section.query {
                pairs.append_pair(key, &value.replace("{local_id}", local_id));
            }
        }
        Ok(url)
    }

    /// Adds the credentials to a request.
    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<reqwest::RequestBuilder, FetchError> {
        match &self.auth {
            None => Ok(request),
            Some(Auth::Header(name, value)) => Ok(request.header(name.clone(), value.clone())),
            Some(Auth::OAuth { .. }) => {
                let token = self.token(deadline).await?;
                Ok(request.header(
                    reqwest::header::AUTHORIZATION,
                    sensitive(&format!("Bearer {token}"), "token").map_err(|_| {
                        FetchError::Denied {
                            message: "the token endpoint issued an unusable token".to_owned(),
                        }
                    })?,
                ))
            }
        }
    }

    /// The OAuth token, from the cache or the token endpoint.
    async fn token(&self, deadline: Instant) -> Result<String, FetchError> {
        let Some(Auth::OAuth {
            token_url,
            client_id,
            client_secret,
            scope,
            cached,
        }) = &self.auth
        else {
            return Err(FetchError::unavailable("no OAuth configured"));
        };
        // Held across the request: concurrent fetches share one renewal.
        let mut cached = cached.lock().await;
        if let Some((token, expires)) = &*cached
            && Instant::now() + TOKEN_EARLY < *expires
        {
            return Ok(token.clone());
        }
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope.as_str()));
        }
        let response = self
            .client
            .post(token_url.clone())
            .timeout(remaining(deadline)?)
            .form(&form)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(match status.as_u16() {
                400 | 401 | 403 => FetchError::Denied {
                    message: format!("HTTP {} from the token endpoint", status.as_u16()),
                },
                _ => status_error(status, response.headers(), "the token endpoint"),
            });
        }
        let body: Value = response.json().await.map_err(|e| {
            if e.is_timeout() {
                FetchError::DeadlineExceeded
            } else {
                FetchError::Malformed {
                    message: "the token endpoint's answer is not JSON".to_owned(),
                }
            }
        })?;
        let token = body["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| FetchError::Malformed {
                message: "the token endpoint's answer has no access_token".to_owned(),
            })?
            .to_owned();
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(3600));
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// Forgets the OAuth token (the API refused it).
    async fn forget_token(&self) {
        if let Some(Auth::OAuth { cached, .. }) = &self.auth {
            *cached.lock().await = None;
        }
    }

    /// One page: its JSON and the `Link` header's next URL.
    async fn page(
        &self,
        section: &Section,
        url: Url,
        local_id: &str,
        deadline: Instant,
    ) -> Result<(Value, Option<Url>), FetchError> {
        let mut request = self
            .client
            .request(section.method.clone(), url.clone())
            .timeout(remaining(deadline)?)
            .headers(self.headers.clone())
            .headers(section.headers.clone());
        if let Some(body) = &section.body {
            request = request.json(&substitute(body, local_id));
        }
        if let Some(header) = &self.deadline_header {
            let left = remaining(deadline)?;
            let left = left.saturating_sub(DEADLINE_MARGIN.min(left / 5));
            request = request.header(header.clone(), left.as_millis().max(1).to_string());
        }
        // The client span's URL is the path with the local ID's segment
        // replaced; no query (cursors and parameters may name the patient).
        let segment = utf8_percent_encode(local_id, SEGMENT).to_string();
        let template = trace::redact_path(&url, |s| s != segment);
        let span = trace::http_client_span(section.method.as_str(), &url, &template);
        if let Some(headers) = trace::headers(&span) {
            request = request.header("traceparent", headers.traceparent);
            if let Some(state) = headers.tracestate {
                request = request.header("tracestate", state);
            }
        }
        let request = self.authorize(request, deadline).await?;
        let response = request.send().instrument(span.clone()).await.map_err(|e| {
            trace::record_error(&span, "transport");
            transport_error(&e)
        })?;
        let status = response.status();
        trace::record_http_status(&span, status.as_u16());
        if !status.is_success() {
            if status == StatusCode::UNAUTHORIZED {
                self.forget_token().await;
            }
            return Err(status_error(status, response.headers(), "upstream"));
        }
        let next = next_link(response.headers(), &url).filter(|next| {
            let same = next.origin() == self.base.origin();
            if !same {
                tracing::warn!(system = %self.description.system, "a next link leaves the API's origin; not followed");
            }
            same
        });
        let bytes = response.bytes().await.map_err(|e| transport_error(&e))?;
        let json = serde_json::from_slice(&bytes).map_err(|_| FetchError::Malformed {
            message: "the response body is not JSON".to_owned(),
        })?;
        Ok((json, next))
    }

    async fn section(
        &self,
        name: &str,
        section: &Section,
        local_id: &str,
        deadline: Instant,
    ) -> Result<(Vec<Record>, u32), FetchError> {
        // `.` and `..` cannot be a path segment (URLs resolve them away, encoded
        // or not): no record can have them as its ID.
        if section.path.contains("{local_id}") && matches!(local_id, "" | "." | "..") {
            return Err(FetchError::NotFound);
        }
        let mut url = self.first_url(section, local_id)?;
        if let Some(Paging::PageNumber {
            param,
            first,
            size_param,
            page_size,
        }) = &section.pagination
        {
            set_param(&mut url, param, &first.to_string());
            if let Some(size) = size_param {
                set_param(&mut url, size, &page_size.to_string());
            }
        }
        let (mut records, mut skipped) = (Vec::new(), 0u32);
        let mut page_number = match &section.pagination {
            Some(Paging::PageNumber { first, .. }) => *first,
            _ => 0,
        };
        for pages in 1..=self.max_pages {
            let (json, link) = self.page(section, url.clone(), local_id, deadline).await?;
            let items = section.records.query(&json).all();
            let count = items.len();
            for item in items {
                match record(section, item) {
                    Ok(r) => records.push(r),
                    Err(problem) => {
                        skipped += 1;
                        tracing::warn!(system = %self.description.system, section = name, problem, "skipped a malformed record");
                    }
                }
            }
            if records.len() >= self.max_records {
                if records.len() > self.max_records || link.is_some() || pages < self.max_pages {
                    tracing::warn!(system = %self.description.system, section = name, limit = self.max_records, "record limit reached; further records dropped");
                }
                records.truncate(self.max_records);
                break;
            }
            let next = next_page(section, &json, link, &url, count, &mut page_number);
            match next {
                Some(next) if pages < self.max_pages => url = next,
                Some(_) => {
                    tracing::warn!(system = %self.description.system, section = name, max_pages = self.max_pages, "page limit reached; further pages not fetched");
                    break;
                }
                None => break,
            }
        }
        Ok((records, skipped))
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
}

/// Pagination, compiled.
fn paging(p: &Pagination, at: &str) -> Result<Paging, BuildError> {
    Ok(match p {
        Pagination::Cursor { cursor, param } => Paging::Cursor {
            cursor: json_path(cursor, &format!("{at}.cursor"))?,
            param: param.clone(),
        },
        Pagination::LinkHeader => Paging::LinkHeader,
        Pagination::PageNumber {
            param,
            first,
            size_param,
            page_size,
        } => Paging::PageNumber {
            param: param.clone(),
            first: *first,
            size_param: size_param.clone(),
            page_size: *page_size,
        },
    })
}

/// The next page's URL, if the pagination says there is one.
fn next_page(
    section: &Section,
    json: &Value,
    link: Option<Url>,
    url: &Url,
    count: usize,
    page_number: &mut u32,
) -> Option<Url> {
    match &section.pagination {
        None => None,
        Some(Paging::LinkHeader) => link,
        Some(Paging::Cursor { cursor, param }) => {
            let cursor = match cursor.query(json).at_most_one().ok().flatten() {
                Some(Value::String(c)) if !c.is_empty() => c.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return None,
            };
            let mut next = url.clone();
            set_param(&mut next, param, &cursor);
            Some(next)
        }
        Some(Paging::PageNumber {
            param, page_size, ..
        }) => (count >= *page_size as usize).then(|| {
            *page_number += 1;
            let mut next = url.clone();
            set_param(&mut next, param, &page_number.to_string());
            next
        }),
    }
}

/// The time left before `deadline`, or the deadline error.
fn remaining(deadline: Instant) -> Result<Duration, FetchError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(FetchError::DeadlineExceeded)
    } else {
        Ok(left)
    }
}

/// Sets (replaces) one query parameter.
fn set_param(url: &mut Url, key: &str, value: &str) {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != key)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut pairs = url.query_pairs_mut();
    pairs.clear();
    for (k, v) in &kept {
        pairs.append_pair(k, v);
    }
    pairs.append_pair(key, value);
}

/// A body with every string `"{local_id}"` replaced by the local ID.
fn substitute(body: &Value, local_id: &str) -> Value {
    match body {
        Value::String(s) if s == "{local_id}" => Value::String(local_id.to_owned()),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| substitute(v, local_id)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute(v, local_id)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The `rel="next"` target of the `Link` headers, resolved against `base`.
fn next_link(headers: &HeaderMap, base: &Url) -> Option<Url> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let Some(target) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
                continue;
            };
            let next = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=").is_some_and(|rel| {
                    rel.trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
                })
            });
            if next {
                return base.join(target).ok();
            }
        }
    }
    None
}

/// A `Retry-After` header: seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

/// A non-2xx answer as a fetch error, named by its status only.
fn status_error(status: StatusCode, headers: &HeaderMap, from: &str) -> FetchError {
    let code = status.as_u16();
    match code {
        404 => FetchError::NotFound,
        401 | 403 => FetchError::Denied {
            message: format!("HTTP {code} from {from}"),
        },
        429 => FetchError::RateLimited {
            retry_after: retry_after(headers),
        },
        _ => FetchError::Unavailable {
            message: format!("HTTP {code} from {from}"),
            retry_after: retry_after(headers),
        },
    }
}

/// A transport error, without its URL (which holds the local ID).
fn transport_error(e: &reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::DeadlineExceeded
    } else if e.is_connect() {
        FetchError::unavailable("cannot connect to upstream")
    } else if e.is_decode() || e.is_body() {
        FetchError::unavailable("the upstream response broke off")
    } else {
        FetchError::unavailable("the HTTP request to upstream failed")
    }
}

/// A record from one selected value, or why it is malformed (a field, never a
/// value).
fn record(section: &Section, item: &Value) -> Result<Record, &'static str> {
    let first = |path: &JsonPath| path.query(item).first().cloned();
    let record_id = match section.record_id.as_ref().and_then(first) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err("the record ID is not text or a number"),
    };
    let update_time = match section.update_time.as_ref().and_then(first) {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_time(&value).ok_or("the update time does not parse")?),
    };
    let json = match &section.fields {
        None => item.clone(),
        Some(fields) => Value::Object(
            fields
                .iter()
                .map(|(field, path)| (field.clone(), first(path).unwrap_or(Value::Null)))
                .collect(),
        ),
    };
    Ok(Record {
        record_id,
        json: json.to_string().into(),
        update_time,
    })
}

fn parse_time(value: &Value) -> Option<SystemTime> {
    match value {
        Value::String(s) => {
            let ts = s.parse::<jiff::Timestamp>().ok()?;
            SystemTime::try_from(ts).ok()
        }
        Value::Number(n) => {
            let secs = n.as_f64().filter(|s| (0.0..1e11).contains(s))?;
            Some(UNIX_EPOCH + Duration::from_secs_f64(secs))
        }
        _ => None,
    }
}

#[async_trait]
impl Adapter for RestAdapter {
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
        let Some(feed) = &self.feed else {
            return Box::pin(futures_util::stream::once(async {
                Err(FetchError::FeedUnsupported)
            }));
        };
        let mut url = match self.first_url(&feed.listing, "") {
            Ok(url) => url,
            Err(e) => return Box::pin(futures_util::stream::once(async { Err(e) })),
        };
        if let (Some(param), Some(since)) = (&feed.since_param, updated_since)
            && let Ok(since) = jiff::Timestamp::try_from(since)
        {
            set_param(&mut url, param, &since.to_string());
        }
        let mut page_number = 0;
        if let Some(Paging::PageNumber {
            param,
            first,
            size_param,
            page_size,
        }) = &feed.listing.pagination
        {
            page_number = *first;
            set_param(&mut url, param, &first.to_string());
            if let Some(size) = size_param {
                set_param(&mut url, size, &page_size.to_string());
            }
        }
        let pages = futures_util::stream::unfold(
            (Some(url), 0u32, page_number),
            move |(url, pages, mut page_number)| async move {
                let url = url?;
                if pages >= self.max_pages {
                    tracing::warn!(system = %self.description.system, max_pages = self.max_pages, "identity feed page limit reached");
                    return None;
                }
                let deadline = Instant::now() + FEED_PAGE_TIMEOUT;
                match self.page(&feed.listing, url.clone(), "", deadline).await {
                    Err(e) => Some((vec![Err(e)], (None, pages + 1, page_number))),
                    Ok((json, link)) => {
                        let items = feed.listing.records.query(&json).all();
                        let count = items.len();
                        let records: Vec<_> = items
                            .into_iter()
                            .filter_map(|item| match feed_record(&feed.fields, item) {
                                Ok(record) => Some(Ok(record)),
                                Err(problem) => {
                                    tracing::warn!(system = %self.description.system, problem, "skipped a malformed feed record");
                                    None
                                }
                            })
                            .collect();
                        let next =
                            next_page(&feed.listing, &json, link, &url, count, &mut page_number);
                        Some((records, (next, pages + 1, page_number)))
                    }
                }
            },
        );
        Box::pin(pages.flat_map(futures_util::stream::iter))
    }
}

/// A feed entry from one person, or why it is malformed (a field, never a value).
fn feed_record(
    fields: &BTreeMap<String, JsonPath>,
    item: &Value,
) -> Result<FeedRecord, &'static str> {
    let all = |name: &str| -> Vec<String> {
        fields
            .get(name)
            .map(|p| {
                p.query(item)
                    .all()
                    .into_iter()
                    .flat_map(|v| match v {
                        Value::Array(items) => items.iter().filter_map(text).collect(),
                        other => text(other).into_iter().collect::<Vec<String>>(),
                    })
                    .filter(|s: &String| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let one = |name: &str| all(name).into_iter().next().unwrap_or_default();
    let local_id = one("local_id");
    if local_id.is_empty() {
        return Err("a person has no local ID");
    }
    let mut given_names = all("given_names");
    if given_names.len() == 1 {
        given_names = given_names[0]
            .split_whitespace()
            .map(str::to_owned)
            .collect();
    }
    let update_time = match fields
        .get("update_time")
        .and_then(|p| p.query(item).first().cloned())
    {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_time(&v).ok_or("the update time does not parse")?),
    };
    let (lines, city, state, postal_code, country) = (
        all("address_lines"),
        one("city"),
        one("state"),
        one("postal_code"),
        one("country"),
    );
    let addresses = if lines.is_empty()
        && city.is_empty()
        && state.is_empty()
        && postal_code.is_empty()
        && country.is_empty()
    {
        Vec::new()
    } else {
        vec![Address {
            lines,
            city,
            state,
            postal_code,
            country,
        }]
    };
    let sex = Sex::from_code(&one("sex")).unwrap_or_default();
    Ok(FeedRecord {
        local_id,
        demographics: Demographics {
            given_names,
            family_name: one("family_name"),
            name_suffix: one("name_suffix"),
            previous_family_names: all("previous_family_names"),
            birth_date: one("birth_date"),
            sex,
            addresses,
            phones: all("phones"),
            emails: all("emails"),
            national_id: one("national_id"),
        },
        update_time,
    })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[async_trait]
impl HealthCheck for RestAdapter {
    async fn check(&self) -> Health {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        let probe = async {
            let request = self
                .client
                .get(self.health_url.clone())
                .timeout(HEALTH_TIMEOUT)
                .headers(self.headers.clone());
            let request = self.authorize(request, deadline).await?;
            let response = request.send().await.map_err(|e| transport_error(&e))?;
            let status = response.status();
            if self.health_strict && !status.is_success() {
                return Err(status_error(status, response.headers(), "upstream"));
            }
            Ok(())
        };
        match tokio::time::timeout_at(deadline, probe).await {
            Ok(Ok(())) => Health::serving(),
            Ok(Err(e)) => Health::not_serving(e.to_string()),
            Err(_) => Health::not_serving("upstream did not answer in time"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_name_the_next_page() {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                "<https://api.example.org/c?page=1>; rel=\"prev\", </c?page=3>; rel=\"next last\"",
            ),
        );
        let base = Url::parse("https://api.example.org/c?page=2").expect("url");
        assert_eq!(
            next_link(&headers, &base).map(String::from),
            Some("https://api.example.org/c?page=3".to_owned())
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }

    #[test]
    fn a_local_id_is_one_path_segment() {
        let encoded = utf8_percent_encode("a/../b?c=d#e f", SEGMENT).to_string();
        assert_eq!(encoded, "a%2F..%2Fb%3Fc%3Dd%23e%20f");
    }
}
