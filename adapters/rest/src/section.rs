//! Sections and the identity feed, compiled from their configuration: the
//! request to make for a local ID and the JSONPaths that read its answer.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use serde_json_path::JsonPath;
use tessera_adapter_core::{BuildError, FetchError};

use crate::config::{FeedConfig, Method, SectionConfig, json_path};
use crate::paging::Paging;

/// Everything but RFC 3986's unreserved characters is percent-encoded in a
/// local ID's path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A section, compiled.
#[derive(Debug)]
pub(crate) struct Section {
    pub(crate) method: reqwest::Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Value>,
    pub(crate) records: JsonPath,
    pub(crate) fields: Option<Vec<(String, JsonPath)>>,
    pub(crate) record_id: Option<JsonPath>,
    pub(crate) update_time: Option<JsonPath>,
    pub(crate) pagination: Option<Paging>,
}

/// The identity feed, compiled: a listing request and the demographics' paths.
#[derive(Debug)]
pub(crate) struct Feed {
    pub(crate) listing: Section,
    pub(crate) fields: BTreeMap<String, JsonPath>,
    pub(crate) since_param: Option<String>,
}

impl Section {
    /// The section called `name`, compiled.
    pub(crate) fn compile(name: &str, s: &SectionConfig) -> Result<Self, BuildError> {
        let at = |field: &str| format!("sections.{name}.{field}");
        let path = |expr: &Option<String>, field: &str| {
            expr.as_deref()
                .map(|e| json_path(e, &at(field)))
                .transpose()
        };
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
            .map(|p| Paging::compile(p, &at("pagination")))
            .transpose()?;
        Ok(Self {
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
            record_id: path(&s.record_id, "record_id")?,
            update_time: path(&s.update_time, "update_time")?,
            pagination,
        })
    }

    /// The first page's URL for a local ID: `{local_id}` in the path becomes
    /// one percent-encoded segment, and in a query value the ID itself (the
    /// URL's query serializer encodes it).
    pub(crate) fn first_url(&self, base: &Url, local_id: &str) -> Result<Url, FetchError> {
        let path = self.path.replace("{local_id}", &path_segment(local_id));
        let mut url = base.join(&path).map_err(|_| FetchError::Malformed {
            message: "the section's path does not make a URL".to_owned(),
        })?;
        if !self.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in &self.query {
                pairs.append_pair(key, &value.replace("{local_id}", local_id));
            }
        }
        Ok(url)
    }

    /// The request body for a local ID: every string `"{local_id}"` replaced.
    pub(crate) fn body(&self, local_id: &str) -> Option<Value> {
        self.body.as_ref().map(|body| substitute(body, local_id))
    }
}

impl Feed {
    /// The identity feed, compiled.
    pub(crate) fn compile(f: &FeedConfig) -> Result<Self, BuildError> {
        Ok(Self {
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
                    .map(|p| Paging::compile(p, "identity_feed.pagination"))
                    .transpose()?,
            },
            fields: f
                .fields
                .iter()
                .map(|(k, e)| Ok((k.clone(), json_path(e, "identity_feed.fields")?)))
                .collect::<Result<_, BuildError>>()?,
            since_param: f.updated_since_param.clone(),
        })
    }
}

/// A local ID as one path segment: it can never change the path, the query or
/// the host.
pub(crate) fn path_segment(local_id: &str) -> String {
    utf8_percent_encode(local_id, SEGMENT).to_string()
}

/// Configured headers, checked.
pub(crate) fn header_map(
    headers: &BTreeMap<String, String>,
    field: &str,
) -> Result<HeaderMap, BuildError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_id_is_one_path_segment() {
        assert_eq!(path_segment("a/../b?c=d#e f"), "a%2F..%2Fb%3Fc%3Dd%23e%20f");
    }

    #[test]
    fn a_body_template_takes_the_local_id_only_where_asked() {
        let body = serde_json::json!({"q": {"id": "{local_id}", "ids": ["{local_id}", 1]},
            "note": "id {local_id}"});
        assert_eq!(
            substitute(&body, "C-7"),
            serde_json::json!({"q": {"id": "C-7", "ids": ["C-7", 1]}, "note": "id {local_id}"})
        );
    }
}
