//! Patient consent for the patient view: which sections a person has opted out of (or into),
//! per purpose of use, asked once per view before anything is fetched.
//!
//! A [`ConsentSource`] answers with the person's [`Decisions`] for one purpose, given the
//! person's linked source records; [`sql`] reads them from a table and [`fhir`] from a FHIR R4
//! `Consent` search. [`ConsentConfig`] is the serde form the gateway embeds as `consent:`;
//! [`build`] makes its source and [`Consent`] is the gate the aggregator asks: it knows which
//! sections are consent-gated, bounds the question by a share of the view's deadline, and
//! fails closed: when the source errs or does not answer in time, every gated section is
//! withheld ([`Withheld::Unavailable`]).

pub mod config;
pub mod fhir;
mod rules;
pub mod sql;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

pub use config::{ConsentConfig, ConsentSourceConfig, FhirConsentConfig, SqlConsentConfig};
pub use rules::{Decision, Decisions, Rule, SectionPattern};

/// One of the person's source records: the key consent rules are stored under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    /// The identifier system (`ehr`, `crm`).
    pub system: String,
    /// The record's local ID in it.
    pub local_id: String,
}

/// Where a person's consent decisions come from.
#[async_trait]
pub trait ConsentSource: Send + Sync + 'static {
    /// The person's decisions for `purpose` (an HL7 v3 purpose-of-use code such as `HMARKT`),
    /// given every source record linked to the person. Rules for other purposes may be
    /// included; [`Decisions::decide`] ignores them.
    async fn decisions(
        &self,
        records: &[RecordKey],
        purpose: &str,
    ) -> Result<Decisions, ConsentError>;
}

/// Errors of this crate; messages carry no patient data and no connection strings.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// A configuration field is wrong.
    #[error("invalid consent config: {field} {problem}")]
    InvalidConfig {
        /// The field's path (`source.url`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The consent database could not be queried.
    #[error("consent database query failed")]
    Database(#[source] sqlx::Error),
    /// The consent database returned a row that is not a valid rule.
    #[error("consent row is invalid: {0}")]
    InvalidRow(&'static str),
    /// The FHIR server could not be reached or answered with an error.
    #[error("fhir consent search failed: {0}")]
    Fhir(String),
    /// The FHIR server's answer is not a Bundle of Consent resources.
    #[error("fhir consent bundle is invalid: {0}")]
    InvalidBundle(&'static str),
}

/// Why a section was withheld for consent; [`Withheld::code`] is what the view says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Withheld {
    /// The person opted out (or did not opt in where the default is deny).
    OptOut,
    /// The consent source failed or did not answer in time (fail closed).
    Unavailable,
}

impl Withheld {
    /// The reason code: `CONSENT_OPT_OUT` or `CONSENT_UNAVAILABLE`.
    pub fn code(self) -> &'static str {
        match self {
            Self::OptOut => "CONSENT_OPT_OUT",
            Self::Unavailable => "CONSENT_UNAVAILABLE",
        }
    }
}

/// The consent gate: a [`ConsentSource`] with which sections it gates, the decision when the
/// person has none, and how much of a view's deadline it may take.
#[derive(Clone)]
pub struct Consent {
    source: Arc<dyn ConsentSource>,
    gated: Vec<SectionPattern>,
    default: Decision,
    timeout: Duration,
    deadline_share: f64,
}

impl std::fmt::Debug for Consent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consent")
            .field("gated", &self.gated)
            .field("default", &self.default)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Consent {
    /// The gate of `config` over `source` (built by [`build`], or a fake). No I/O.
    pub fn new(
        config: &ConsentConfig,
        source: Arc<dyn ConsentSource>,
    ) -> Result<Self, ConsentError> {
        let gated = config.gated_patterns()?;
        config.check_timing()?;
        Ok(Self {
            source,
            gated,
            default: config.default,
            timeout: config.timeout,
            deadline_share: config.deadline_share,
        })
    }

    /// Whether `section` of `source` needs the person's consent.
    pub fn gates(&self, source: &str, section: &str) -> bool {
        self.gated.iter().any(|p| p.matches(source, section))
    }

    /// How long consent may take for a view due at `deadline`: the configured share of
    /// what is left, at most the configured timeout.
    pub fn budget(&self, deadline: Instant) -> Duration {
        deadline
            .saturating_duration_since(Instant::now())
            .mul_f64(self.deadline_share)
            .min(self.timeout)
    }

    /// Asks the source once for the person's decisions for `purpose` and says, for each
    /// of `pairs` (source, section), whether it is withheld. Ungated pairs are never
    /// withheld; when the source fails or overruns [`Consent::budget`], every gated pair is
    /// withheld as [`Withheld::Unavailable`]. The source is not asked when no pair is gated.
    pub async fn check(
        &self,
        records: &[RecordKey],
        purpose: &str,
        pairs: &[(&str, &str)],
        deadline: Instant,
    ) -> Vec<Option<Withheld>> {
        let gated: Vec<bool> = pairs.iter().map(|(s, x)| self.gates(s, x)).collect();
        if !gated.contains(&true) {
            return vec![None; pairs.len()];
        }
        let asked = tokio::time::timeout(
            self.budget(deadline),
            self.source.decisions(records, purpose),
        )
        .await;
        let decisions = match asked {
            Ok(Ok(decisions)) => Some(decisions),
            Ok(Err(error)) => {
                tracing::warn!(target: "tessera::consent", error = %error, "consent source failed");
                None
            }
            Err(_) => {
                tracing::warn!(target: "tessera::consent", "consent source timed out");
                None
            }
        };
        pairs
            .iter()
            .zip(gated)
            .map(|((source, section), gated)| {
                if !gated {
                    return None;
                }
                let Some(decisions) = &decisions else {
                    return Some(Withheld::Unavailable);
                };
                match decisions
                    .decide(purpose, source, section)
                    .unwrap_or(self.default)
                {
                    Decision::Permit => None,
                    Decision::Deny => Some(Withheld::OptOut),
                }
            })
            .collect()
    }
}

/// Builds the consent source `config` names; relative SQLite paths and `file:` secrets are
/// resolved against `config_dir`. Connects lazily: no I/O here.
pub fn build(
    config: &ConsentConfig,
    config_dir: &Path,
) -> Result<Arc<dyn ConsentSource>, ConsentError> {
    Ok(match &config.source {
        ConsentSourceConfig::Sql(sql) => Arc::new(sql::SqlConsent::open(sql, config_dir)?),
        ConsentSourceConfig::Fhir(fhir) => Arc::new(fhir::FhirConsent::open(fhir, config_dir)?),
    })
}

#[cfg(test)]
mod tests;
