//! Page sizes and signed page tokens for the List RPCs.
//!
//! A token is issued by [`PageTokens`] (HMAC-SHA256, key rotation, expiry) over the last
//! scanned item's id, and bound to the caller's principal and to the query: the RPC name
//! and the request fields that select the items —
//!
//! - ListLinks: `parent` and `filter`;
//! - ListReviewItems: `filter`;
//! - ListLinkEvents: `parent`.
//!
//! `page_size` is not bound, so a caller may change it between pages (AIP-158), and
//! `page_token` of course is not. A token that was altered, signed with a key no longer
//! accepted, issued to another caller or for another query, or past its expiry is
//! INVALID_ARGUMENT with a field violation on `page_token`.

use rand::TryRng as _;
use tessera_auth::access::unix_now;
use tessera_auth::page_token::{PageKey, PageTokenError, PageTokens};
use tonic::Status;

use super::convert::invalid;
use crate::store::Page;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1000;
const FIELD: &str = "page_token";

/// Page tokens signed with a random key made at start-up, for tests and development:
/// tokens do not survive a restart or cross replicas. The key comes from the operating
/// system's random source (or, should that fail, from the standard library's per-process
/// random hash keys, which come from the same source).
pub fn random_page_tokens() -> PageTokens {
    let mut key = vec![0u8; 32];
    if rand::rngs::SysRng.try_fill_bytes(&mut key).is_err() {
        use std::hash::{BuildHasher as _, RandomState};
        key = (0..4u64)
            .flat_map(|i| RandomState::new().hash_one(i).to_be_bytes())
            .collect();
    }
    PageTokens::new(PageKey::new("random", key), None)
}

/// The bytes a token is bound to: the RPC, then each selecting field, length-prefixed so
/// that no two different queries encode alike.
pub(super) fn query(rpc: &str, fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in std::iter::once(rpc).chain(fields.iter().copied()) {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The page to read: its size from `page_size`, its start from a verified token.
pub(super) fn page(
    tokens: &PageTokens,
    principal: &str,
    query: &[u8],
    size: i32,
    token: &str,
) -> Result<Page, Status> {
    let limit = match size {
        s if s < 0 => return Err(invalid("page_size", "must not be negative")),
        0 => DEFAULT_PAGE,
        s => u32::try_from(s).unwrap_or(MAX_PAGE).min(MAX_PAGE),
    };
    if token.is_empty() {
        return Ok(Page { after: None, limit });
    }
    let cursor = tokens
        .verify(token, principal, query, unix_now())
        .map_err(|e| {
            invalid(
                FIELD,
                match e {
                    PageTokenError::Invalid => {
                        "is not a token this service issued to this caller for this query"
                    }
                    PageTokenError::UnknownKey => "was signed with a key no longer accepted",
                    PageTokenError::Expired => "has expired",
                },
            )
        })?;
    let after = <[u8; 8]>::try_from(cursor.as_slice())
        .map(u64::from_be_bytes)
        .map_err(|_| invalid(FIELD, "is not a token this service issued"))?;
    Ok(Page {
        after: Some(after),
        limit,
    })
}

/// The token of the next page: after `last`, the last item scanned (not the last one
/// returned, since filtering may drop items), when the page was full.
pub(super) fn next_token(
    tokens: &PageTokens,
    principal: &str,
    query: &[u8],
    last: Option<u64>,
    full: bool,
) -> String {
    match last {
        Some(last) if full => tokens.issue(principal, query, &last.to_be_bytes(), unix_now()),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_caller_and_query() {
        let tokens = random_page_tokens();
        let q = query("links", &["masters/-", ""]);
        let token = next_token(&tokens, "alice", &q, Some(42), true);
        let p = page(&tokens, "alice", &q, 10, &token).unwrap();
        assert_eq!((p.after, p.limit), (Some(42), 10));
        let other = query("links", &["masters/7", ""]);
        for (who, q) in [("alice", &other), ("mallory", &q)] {
            let err = page(&tokens, who, q, 10, &token).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument);
        }
        assert_eq!(
            page(&tokens, "alice", &q, 10, "garbage!")
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        assert_eq!(next_token(&tokens, "alice", &q, Some(42), false), "");
        assert_eq!(
            page(&tokens, "alice", &q, 5000, "").unwrap().limit,
            MAX_PAGE
        );
    }

    #[test]
    fn query_fields_cannot_be_shifted_into_each_other() {
        assert_ne!(query("links", &["ab", "c"]), query("links", &["a", "bc"]));
    }
}
