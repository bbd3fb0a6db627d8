//! Pagination: which URL comes after a page, by cursor, RFC 8288 `Link`
//! header or page number.

use reqwest::Url;
use reqwest::header::HeaderMap;
use serde_json::Value;
use serde_json_path::JsonPath;
use tessera_adapter_core::BuildError;

use crate::config::{Pagination, json_path};

/// Pagination, compiled.
#[derive(Debug)]
pub(crate) enum Paging {
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

impl Paging {
    /// Pagination, compiled; `at` names the config field in errors.
    pub(crate) fn compile(p: &Pagination, at: &str) -> Result<Self, BuildError> {
        Ok(match p {
            Pagination::Cursor { cursor, param } => Self::Cursor {
                cursor: json_path(cursor, &format!("{at}.cursor"))?,
                param: param.clone(),
            },
            Pagination::LinkHeader => Self::LinkHeader,
            Pagination::PageNumber {
                param,
                first,
                size_param,
                page_size,
            } => Self::PageNumber {
                param: param.clone(),
                first: *first,
                size_param: size_param.clone(),
                page_size: *page_size,
            },
        })
    }
}

/// Points `url` at the first page (numbered pagination sets its page and size
/// parameters) and returns the first page's number (0 when pages are not
/// numbered).
pub(crate) fn first_page(paging: Option<&Paging>, url: &mut Url) -> u32 {
    let Some(Paging::PageNumber {
        param,
        first,
        size_param,
        page_size,
    }) = paging
    else {
        return 0;
    };
    set_param(url, param, &first.to_string());
    if let Some(size) = size_param {
        set_param(url, size, &page_size.to_string());
    }
    *first
}

/// The next page's URL, if the pagination says there is one: `json` is the
/// page at `url`, `link` its `Link` header's next target, `count` the records
/// it held.
pub(crate) fn next_page(
    paging: Option<&Paging>,
    json: &Value,
    link: Option<Url>,
    url: &Url,
    count: usize,
    page_number: &mut u32,
) -> Option<Url> {
    match paging {
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

/// Sets (replaces) one query parameter.
pub(crate) fn set_param(url: &mut Url, key: &str, value: &str) {
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

/// The `rel="next"` target of the `Link` headers, resolved against `base`
/// (RFC 8288 Appendix B, by `http-link`). A header value that does not parse
/// names no next page.
pub(crate) fn next_link(headers: &HeaderMap, base: &Url) -> Option<Url> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| http_link::parse_link_header(value, base).ok())
        .flatten()
        .find(|link| link.rel == "next")
        .map(|link| link.target)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

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
    fn a_link_header_without_next_or_that_does_not_parse_ends_paging() {
        let base = Url::parse("https://api.example.org/c").expect("url");
        for value in ["<https://api.example.org/c?page=1>; rel=prev", "no link"] {
            let mut headers = HeaderMap::new();
            headers.insert(reqwest::header::LINK, HeaderValue::from_static(value));
            assert_eq!(next_link(&headers, &base), None, "{value}");
        }
    }

    #[test]
    fn numbered_pages_start_at_the_first_with_their_size() {
        let paging = Paging::PageNumber {
            param: "page".to_owned(),
            first: 1,
            size_param: Some("per_page".to_owned()),
            page_size: 2,
        };
        let mut url = Url::parse("https://api.example.org/c?page=9&q=x").expect("url");
        let mut number = first_page(Some(&paging), &mut url);
        assert_eq!(url.query(), Some("q=x&page=1&per_page=2"));
        let next = next_page(Some(&paging), &Value::Null, None, &url, 2, &mut number);
        assert_eq!(
            next.as_ref().and_then(Url::query),
            Some("q=x&per_page=2&page=2")
        );
        let last = next_page(Some(&paging), &Value::Null, None, &url, 1, &mut number);
        assert_eq!(last, None);
    }
}
