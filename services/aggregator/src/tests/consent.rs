//! Consent asked before fetching, under paused time: a consent source that
//! hangs withholds the gated sections within its budget and the others are
//! served.

use tessera_consent::{Consent, ConsentConfig, ConsentError, ConsentSource, Decisions, RecordKey};

use super::*;

/// A consent source that never answers (fault injection).
struct Hang;

#[async_trait]
impl ConsentSource for Hang {
    async fn decisions(&self, _: &[RecordKey], _: &str) -> Result<Decisions, ConsentError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_consent_source_withholds_gated_sections_and_the_rest_is_served() {
    let (sources, stats): (Vec<_>, Vec<_>) = [
        FakeConfig::new("ehr", &["encounters"], 10 * MS),
        FakeConfig::new("marketing", &["consents"], 10 * MS),
    ]
    .into_iter()
    .map(fake)
    .unzip();
    let config: ConsentConfig = serde_yaml_ng::from_str(
        "source: { kind: sql, url: 'sqlite://consent.db' }\ngated: ['marketing.*']\ntimeout: 300ms\n",
    )
    .expect("valid config");
    let consent = Consent::new(&config, Arc::new(Hang)).expect("valid gate");
    let agg = aggregator(sources, table(FOUR)).with_consent(consent);
    let start = Instant::now();
    let view = agg
        .view(request(&agg, Duration::from_secs(1)))
        .await
        .expect("a partial view");

    assert_eq!(
        start.elapsed(),
        310 * MS,
        "consent's 300 ms timeout, then the 10 ms fetch"
    );
    let withheld = view
        .statuses
        .iter()
        .find(|s| s.source == "marketing")
        .expect("a status for marketing");
    assert_eq!(withheld.state, SourceState::Withheld);
    assert_eq!(withheld.message, "CONSENT_UNAVAILABLE");
    assert!(!view.sections.contains_key("consents"));
    assert_eq!(state_of(&view, "ehr"), SourceState::Ok);
    assert_eq!(view.sections["encounters"].len(), 2);
    assert!(view.unreachable.is_empty(), "withheld is not unreachable");
    assert_eq!(stats[1].calls(), 0, "a withheld section is never fetched");

    let tight = agg
        .view(request(&agg, 100 * MS))
        .await
        .expect("a partial view");
    assert_eq!(state_of(&tight, "marketing"), SourceState::Withheld);
    assert_eq!(
        state_of(&tight, "ehr"),
        SourceState::Ok,
        "consent took only its share of a short deadline"
    );
}
