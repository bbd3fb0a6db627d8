//! The adapter trait and its health check.

use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use tessera_types::Demographics;

use crate::{Description, FetchError, FetchRequest, FetchResult};

/// A silo, as Tessera reaches it.
///
/// `fetch` must stop by the request's deadline (returning
/// [`FetchError::DeadlineExceeded`] or what arrived), must stop its upstream work
/// when the returned future is dropped, returns one [`FetchResult`] per requested
/// pair (a pair's own failure goes in it; `Err` means no pair could be served),
/// skips and counts malformed upstream records instead of failing, and never puts
/// patient data in an error.
#[async_trait]
pub trait Adapter: Send + Sync + 'static {
    /// What the adapter serves.
    fn describe(&self) -> &Description;

    /// Fetches records for every (local ID, section) pair of the request.
    async fn fetch(&self, request: FetchRequest) -> Result<Vec<FetchResult>, FetchError>;

    /// Streams the silo's records' demographics (those changed at or after
    /// `updated_since`, when the adapter is incremental), for loading the
    /// resolver. The default has no feed.
    fn identity_feed(&self, updated_since: Option<SystemTime>) -> BoxFeed<'_> {
        let _ = updated_since;
        Box::pin(futures_util::stream::once(async {
            Err(FetchError::FeedUnsupported)
        }))
    }
}

/// An identity feed: the silo's records, one at a time.
pub type BoxFeed<'a> = BoxStream<'a, Result<FeedRecord, FetchError>>;

/// One record of an identity feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedRecord {
    /// The record's local ID in the silo.
    pub local_id: String,
    /// Its demographics.
    pub demographics: Demographics,
    /// When the silo last changed it, if known.
    pub update_time: Option<SystemTime>,
}

/// Whether an adapter can reach its silo.
#[async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    /// Probes the silo cheaply.
    async fn check(&self) -> Health;
}

/// An adapter's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The state.
    pub state: HealthState,
    /// A short explanation without patient data.
    pub message: String,
}

impl Health {
    /// Serving, with no message.
    pub fn serving() -> Self {
        Self {
            state: HealthState::Serving,
            message: String::new(),
        }
    }

    /// Not serving, for a reason.
    pub fn not_serving(message: impl Into<String>) -> Self {
        Self {
            state: HealthState::NotServing,
            message: message.into(),
        }
    }
}

/// The state of an adapter's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Serving normally.
    Serving,
    /// Serving, but slowly or partly.
    Degraded,
    /// Cannot serve.
    NotServing,
}
