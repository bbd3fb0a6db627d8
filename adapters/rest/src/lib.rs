//! The `rest` adapter kind: a JSON-over-HTTP silo (a CRM's or a marketing
//! platform's API) reached by configuration, not code.
//!
//! Each section is a request: a method, a path template in which `{local_id}`
//! becomes one percent-encoded path segment (so a local ID can never change the
//! path, the query or the host), query parameters, headers and, for POST, a JSON
//! body. Auth is a bearer token, an API key header, or OAuth 2.0 client
//! credentials (the token cached until shortly before it expires); secrets come
//! from environment variables or files. Responses are paged by cursor, `Link`
//! header (same origin only) or page number, and mapped to records with JSONPath
//! (RFC 9535, `serde_json_path`): which values are records, and optionally their
//! fields, record ID and update time.
//!
//! An optional identity feed pages through a listing of people, mapping their
//! demographics with JSONPath, incrementally when the API filters by update time.
//!
//! A request runs under the fetch's deadline. 404 is not found; 401 and 403
//! denied; 429 rate limited with its `Retry-After`; 5xx unavailable (with
//! `Retry-After` when sent); a body that is not JSON malformed; a record whose ID
//! or time cannot be read is skipped and counted. Errors name the HTTP status,
//! never the URL (which holds the local ID) or the body. One call fetches one
//! local ID per request: the adapter does not claim `batch_fetch`.
//!
//! The parts: `config` (the serde types and their checks), `section` (a
//! section compiled: its request and JSONPaths), `client` (auth, one page per
//! request, status to error), `paging` (cursor, `Link` header, page number),
//! `mapping` (JSON to records and demographics) and `adapter` (the kind and the
//! `Adapter` trait over them).
//!
//! ```yaml
//! kind: rest
//! config:
//!   system: marketing
//!   base_url: https://marketing.example.org/api/v1/
//!   auth: {type: bearer, token: {env: MARKETING_API_TOKEN}}
//!   sections:
//!     consents:
//!       path: contacts/{local_id}/consents
//!       records: $.items[*]
//!       record_id: $.id
//!       update_time: $.recorded_at
//!       pagination: {type: cursor, cursor: $.next_cursor, param: cursor}
//! ```

mod adapter;
mod client;
mod config;
mod mapping;
mod paging;
mod section;

pub use adapter::{RestAdapter, RestKind};
pub use config::{AuthConfig, Method, Pagination, RestConfig, Secret, SectionConfig};
