//! The `fhir` consent source: FHIR R4 `Consent` resources, searched per patient.
//!
//! For each of the person's records in the configured system, one search:
//! `GET {base}/Consent?patient=Patient/{id}&status=active&_count=1000`. Each active
//! Consent's `provision` (and its nested provisions, each inheriting what it leaves out) is
//! a rule: `type` (`deny` or `permit`; a top-level provision without one denies),
//! `purpose` codings (HL7 v3 codes; none: every purpose), and the sections it covers from
//! `class` and `code` codings in the section coding system (`*`, `SOURCE.*`,
//! `SOURCE.SECTION`; none: every section). A provision whose `class`/`code` name only
//! things outside that system covers every section when it denies and is ignored when it
//! permits (so an unknown code never opens a section). A Bundle with a `next` page is
//! refused (fail closed) rather than half read.

use std::path::Path;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use serde_json::Value;
use tessera_types::Secret;

use crate::config::{FhirConsentConfig, invalid};
use crate::rules::{Decision, Decisions, Rule, SectionPattern};
use crate::{ConsentError, ConsentSource, RecordKey};

/// Consent rules from a FHIR R4 server's `Consent` resources.
#[derive(Debug, Clone)]
pub struct FhirConsent {
    client: reqwest::Client,
    search: url::Url,
    system: String,
    section_system: String,
    token: Option<Secret>,
}

impl FhirConsent {
    /// A source for `config`; `file:` token references are resolved against `config_dir`.
    /// A token over `http://` is refused except on loopback.
    pub fn open(config: &FhirConsentConfig, config_dir: &Path) -> Result<Self, ConsentError> {
        let base = config.base()?;
        let token = match &config.bearer_token {
            None => None,
            Some(t) => Some(
                t.resolve_in(config_dir)
                    .map_err(|e| invalid("source.bearer_token", e.to_string()))?,
            ),
        };
        let loopback = match base.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if token.is_some() && base.scheme() == "http" && !loopback {
            return Err(invalid(
                "source.base_url",
                "must be https when a bearer token is set (except on loopback)",
            ));
        }
        let search = base
            .join("Consent")
            .map_err(|_| invalid("source.base_url", "is not a base URL"))?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| invalid("source", "the HTTP client could not be built"))?;
        Ok(Self {
            client,
            search,
            system: config.system.clone(),
            section_system: config.section_system.clone(),
            token,
        })
    }

    async fn search(&self, patient: &str) -> Result<Vec<Rule>, ConsentError> {
        let mut url = self.search.clone();
        url.query_pairs_mut()
            .append_pair("patient", &format!("Patient/{patient}"))
            .append_pair("status", "active")
            .append_pair("_count", "1000");
        let mut request = self
            .client
            .get(url)
            .header("accept", "application/fhir+json");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        // reqwest's errors carry the URL, which carries a patient ID: never pass them on.
        let response = request
            .send()
            .await
            .map_err(|_| ConsentError::Fhir("request failed".to_owned()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ConsentError::Fhir(format!("HTTP {}", status.as_u16())));
        }
        let bundle: Value = response
            .json()
            .await
            .map_err(|_| ConsentError::InvalidBundle("not JSON"))?;
        parse_bundle(&bundle, &self.section_system)
    }
}

#[async_trait]
impl ConsentSource for FhirConsent {
    async fn decisions(
        &self,
        records: &[RecordKey],
        _purpose: &str,
    ) -> Result<Decisions, ConsentError> {
        let patients = records
            .iter()
            .filter(|r| r.system == self.system)
            .map(|r| self.search(&r.local_id));
        let rules = try_join_all(patients)
            .await?
            .into_iter()
            .flatten()
            .collect();
        Ok(Decisions { rules })
    }
}

/// The rules of the active Consents in a search Bundle.
pub fn parse_bundle(bundle: &Value, section_system: &str) -> Result<Vec<Rule>, ConsentError> {
    if bundle["resourceType"] != "Bundle" {
        return Err(ConsentError::InvalidBundle("not a Bundle"));
    }
    let has_next = bundle["link"]
        .as_array()
        .is_some_and(|links| links.iter().any(|l| l["relation"] == "next"));
    if has_next {
        return Err(ConsentError::InvalidBundle("more than one page"));
    }
    let mut rules = Vec::new();
    let entries = bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for entry in entries {
        let consent = &entry["resource"];
        if consent["resourceType"] != "Consent" || consent["status"] != "active" {
            continue;
        }
        let top = Scope {
            decision: Decision::Deny,
            purposes: vec![None],
            sections: vec![SectionPattern::Any],
        };
        if consent["provision"].is_object() {
            provision(&consent["provision"], &top, section_system, &mut rules)?;
        }
    }
    Ok(rules)
}

/// What a provision inherits from its parent.
struct Scope {
    decision: Decision,
    purposes: Vec<Option<String>>,
    sections: Vec<SectionPattern>,
}

fn provision(
    p: &Value,
    parent: &Scope,
    section_system: &str,
    rules: &mut Vec<Rule>,
) -> Result<(), ConsentError> {
    let decision = match p["type"].as_str() {
        None => parent.decision,
        Some(t) => Decision::parse(t).ok_or(ConsentError::InvalidBundle(
            "provision.type is not deny or permit",
        ))?,
    };
    let purposes: Vec<Option<String>> = codings(&p["purpose"])
        .filter_map(|c| c["code"].as_str())
        .map(|c| Some(c.to_owned()))
        .collect();
    let purposes = if purposes.is_empty() {
        parent.purposes.clone()
    } else {
        purposes
    };
    let named: Vec<&Value> = codings(&p["class"])
        .chain(
            p["code"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|cc| codings(&cc["coding"])),
        )
        .collect();
    let ours: Vec<SectionPattern> = named
        .iter()
        .filter(|c| c["system"] == section_system)
        .filter_map(|c| c["code"].as_str().and_then(SectionPattern::parse))
        .collect();
    let sections = match (named.is_empty(), ours.is_empty(), decision) {
        (true, _, _) => parent.sections.clone(),
        (false, false, _) => ours,
        // Only codes we do not know: deny everything, permit nothing.
        (false, true, Decision::Deny) => vec![SectionPattern::Any],
        (false, true, Decision::Permit) => Vec::new(),
    };
    for purpose in &purposes {
        for section in &sections {
            rules.push(Rule {
                purpose: purpose.clone(),
                sections: section.clone(),
                decision,
            });
        }
    }
    let scope = Scope {
        decision,
        purposes,
        sections: if sections.is_empty() {
            parent.sections.clone()
        } else {
            sections
        },
    };
    for nested in p["provision"].as_array().into_iter().flatten() {
        provision(nested, &scope, section_system, rules)?;
    }
    Ok(())
}

/// The Codings of a JSON array (or nothing).
fn codings(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}
