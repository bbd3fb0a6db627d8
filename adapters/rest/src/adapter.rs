//! The `rest` kind and its adapter: building one from its configuration, and
//! the [`Adapter`] trait over the client, pagination and mapping modules.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::future::join_all;
use reqwest::Url;
use tessera_adapter_core::{
    Adapter, AdapterKind, BoxFeed, BuildContext, BuildError, BuiltAdapter, Capabilities,
    Description, FetchError, FetchRequest, FetchResult, Health, HealthCheck, Record,
    SectionDescriptor,
};
use tokio::time::Instant;

use crate::client::Client;
use crate::config::RestConfig;
use crate::mapping::{feed_record, record};
use crate::paging::{first_page, next_page, set_param};
use crate::section::{Feed, Section};

/// How long one page of the identity feed may take.
const FEED_PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the health check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

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

/// An adapter over one HTTP API.
#[derive(Debug)]
pub struct RestAdapter {
    description: Description,
    client: Client,
    sections: BTreeMap<String, Section>,
    max_pages: u32,
    max_records: usize,
    health_url: Url,
    health_strict: bool,
    feed: Option<Feed>,
}

impl RestAdapter {
    /// An adapter from its configuration; secret files are resolved against
    /// `base_dir`. No I/O but reading secrets.
    pub fn new(config: RestConfig, base_dir: &Path) -> Result<Self, BuildError> {
        config.check()?;
        let client = Client::new(&config, base_dir)?;
        let sections = config
            .sections
            .iter()
            .map(|(name, s)| Ok((name.clone(), Section::compile(name, s)?)))
            .collect::<Result<_, BuildError>>()?;
        let feed = config
            .identity_feed
            .as_ref()
            .map(Feed::compile)
            .transpose()?;
        let health_url = match &config.health_path {
            Some(path) => client
                .base()
                .join(path)
                .map_err(|_| BuildError::config("health_path", "is not a relative URL"))?,
            None => client.base().clone(),
        };
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
                // One request per local ID: the aggregator sends them one by one.
                batch_fetch: false,
                max_batch_size: 0,
                identity_feed: config.identity_feed.is_some(),
                incremental_identity_feed: config
                    .identity_feed
                    .as_ref()
                    .is_some_and(|f| f.updated_since_param.is_some()),
            },
            version: concat!("rest/", env!("CARGO_PKG_VERSION")).to_owned(),
        };
        Ok(Self {
            description,
            client,
            sections,
            max_pages: config.max_pages,
            max_records: config.max_records as usize,
            health_url,
            health_strict: config.health_path.is_some(),
            feed,
        })
    }

    /// One section's records for one local ID, page by page up to the limits,
    /// and how many malformed ones were skipped.
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
        let system = &self.description.system;
        let mut url = section.first_url(self.client.base(), local_id)?;
        let mut page_number = first_page(section.pagination.as_ref(), &mut url);
        let (mut records, mut skipped) = (Vec::new(), 0u32);
        for pages in 1..=self.max_pages {
            let (json, link) = self
                .client
                .page(section, url.clone(), local_id, deadline)
                .await?;
            let items = section.records.query(&json).all();
            let count = items.len();
            for item in items {
                match record(section, item) {
                    Ok(r) => records.push(r),
                    Err(problem) => {
                        skipped += 1;
                        tracing::warn!(%system, section = name, problem, "skipped a malformed record");
                    }
                }
            }
            if records.len() >= self.max_records {
                if records.len() > self.max_records || link.is_some() || pages < self.max_pages {
                    tracing::warn!(%system, section = name, limit = self.max_records, "record limit reached; further records dropped");
                }
                records.truncate(self.max_records);
                break;
            }
            let paging = section.pagination.as_ref();
            match next_page(paging, &json, link, &url, count, &mut page_number) {
                Some(next) if pages < self.max_pages => url = next,
                Some(_) => {
                    tracing::warn!(%system, section = name, max_pages = self.max_pages, "page limit reached; further pages not fetched");
                    break;
                }
                None => break,
            }
        }
        Ok((records, skipped))
    }

    /// One (local ID, section) pair's result, under the deadline.
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
        let mut url = match feed.listing.first_url(self.client.base(), "") {
            Ok(url) => url,
            Err(e) => return Box::pin(futures_util::stream::once(async { Err(e) })),
        };
        if let (Some(param), Some(since)) = (&feed.since_param, updated_since)
            && let Ok(since) = jiff::Timestamp::try_from(since)
        {
            set_param(&mut url, param, &since.to_string());
        }
        let page_number = first_page(feed.listing.pagination.as_ref(), &mut url);
        let system = &self.description.system;
        let pages = futures_util::stream::unfold(
            (Some(url), 0u32, page_number),
            move |(url, pages, mut page_number)| async move {
                let url = url?;
                if pages >= self.max_pages {
                    tracing::warn!(%system, max_pages = self.max_pages, "identity feed page limit reached");
                    return None;
                }
                let deadline = Instant::now() + FEED_PAGE_TIMEOUT;
                let (json, link) = match self
                    .client
                    .page(&feed.listing, url.clone(), "", deadline)
                    .await
                {
                    Err(e) => return Some((vec![Err(e)], (None, pages + 1, page_number))),
                    Ok(page) => page,
                };
                let items = feed.listing.records.query(&json).all();
                let count = items.len();
                let records: Vec<_> = items
                    .into_iter()
                    .filter_map(|item| match feed_record(&feed.fields, item) {
                        Ok(record) => Some(Ok(record)),
                        Err(problem) => {
                            tracing::warn!(%system, problem, "skipped a malformed feed record");
                            None
                        }
                    })
                    .collect();
                let paging = feed.listing.pagination.as_ref();
                let next = next_page(paging, &json, link, &url, count, &mut page_number);
                Some((records, (next, pages + 1, page_number)))
            },
        );
        Box::pin(pages.flat_map(futures_util::stream::iter))
    }
}

#[async_trait]
impl HealthCheck for RestAdapter {
    async fn check(&self) -> Health {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        let probe = self
            .client
            .probe(&self.health_url, self.health_strict, HEALTH_TIMEOUT);
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
    fn the_adapter_asks_for_one_local_id_per_call() {
        let config: RestConfig = serde_json::from_value(serde_json::json!({
            "system": "crm",
            "base_url": "http://127.0.0.1:9/api/",
            "sections": {"cases": {"path": "cases/{local_id}", "records": "$.items[*]"}},
        }))
        .expect("config");
        let adapter = RestAdapter::new(config, Path::new(".")).expect("adapter");
        let capabilities = adapter.describe().capabilities;
        assert!(!capabilities.batch_fetch);
        assert!(!capabilities.identity_feed);
    }
}
