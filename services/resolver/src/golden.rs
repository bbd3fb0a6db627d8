//! The golden record: the best value of each demographic field across a master's
//! linked source records, by survivorship (configured source priority, then
//! recency), with the provenance of every field. It is derived on read from the
//! records that are linked now, so merges and unmerges never leave it stale.

use serde::{Deserialize, Serialize};
use tessera_matching::{Demographics, SourceKey};

use crate::store::{Micros, StoredRecord};

/// Why a golden-record field took its value from one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SurvivorshipRule {
    /// The source ranks highest in the configured source priority.
    SourcePriority,
    /// Equal priority; the most recently updated value won.
    MostRecent,
    /// Only one source has a value for this field.
    OnlySource,
}

/// Where one golden-record field came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldProvenance {
    /// The field, as a path in `Demographics`.
    pub field: String,
    /// The source record the value came from.
    pub source: SourceKey,
    /// The rule that chose it.
    pub rule: SurvivorshipRule,
    /// When the source last changed the value, if known.
    pub source_updated_at: Option<Micros>,
}

/// A golden record with per-field provenance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GoldenRecord {
    /// The surviving values.
    pub demographics: Demographics,
    /// Where each non-empty field came from.
    pub provenance: Vec<FieldProvenance>,
}

/// Builds the golden record of `records`. `priority` lists source systems, most
/// trusted first; systems not listed rank after all listed ones.
pub fn build(records: &[StoredRecord], priority: &[String]) -> GoldenRecord {
    let rank = |r: &StoredRecord| {
        priority
            .iter()
            .position(|s| *s == r.key.system)
            .unwrap_or(priority.len())
    };
    let recency = |r: &StoredRecord| r.source_updated_at.unwrap_or(r.updated_at);
    // Most trusted first, then most recent, then oldest record id for stability.
    let mut ordered: Vec<&StoredRecord> = records.iter().collect();
    ordered.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then(recency(b).cmp(&recency(a)))
            .then(a.id.cmp(&b.id))
    });

    let mut golden = GoldenRecord::default();
    let mut pick = |field: &'static str,
                    has: &dyn Fn(&Demographics) -> bool,
                    take: &mut dyn FnMut(&Demographics)| {
        let with: Vec<&&StoredRecord> = ordered.iter().filter(|r| has(&r.demographics)).collect();
        let Some(first) = with.first() else { return };
        take(&first.demographics);
        let rule = match with.get(1) {
            None => SurvivorshipRule::OnlySource,
            Some(second) if rank(first) < rank(second) => SurvivorshipRule::SourcePriority,
            Some(_) => SurvivorshipRule::MostRecent,
        };
        golden.provenance.push(FieldProvenance {
            field: field.to_owned(),
            source: first.key.clone(),
            rule,
            source_updated_at: Some(recency(first)),
        });
    };

    let mut d = Demographics::default();
    pick("given_names", &|x| !x.given_names.is_empty(), &mut |x| {
        d.given_names.clone_from(&x.given_names);
    });
    pick("family_name", &|x| !x.family_name.is_empty(), &mut |x| {
        d.family_name.clone_from(&x.family_name);
    });
    pick("name_suffix", &|x| !x.name_suffix.is_empty(), &mut |x| {
        d.name_suffix.clone_from(&x.name_suffix);
    });
    pick(
        "previous_family_names",
        &|x| !x.previous_family_names.is_empty(),
        &mut |x| d.previous_family_names.clone_from(&x.previous_family_names),
    );
    pick("birth_date", &|x| !x.birth_date.is_empty(), &mut |x| {
        d.birth_date.clone_from(&x.birth_date);
    });
    pick(
        "sex",
        &|x| x.sex != tessera_matching::Sex::Unspecified,
        &mut |x| d.sex = x.sex,
    );
    pick("addresses", &|x| !x.addresses.is_empty(), &mut |x| {
        d.addresses.clone_from(&x.addresses);
    });
    pick("phones", &|x| !x.phones.is_empty(), &mut |x| {
        d.phones.clone_from(&x.phones)
    });
    pick("emails", &|x| !x.emails.is_empty(), &mut |x| {
        d.emails.clone_from(&x.emails)
    });
    pick("national_id", &|x| !x.national_id.is_empty(), &mut |x| {
        d.national_id.clone_from(&x.national_id);
    });
    golden.demographics = d;
    golden
}

#[cfg(test)]
mod tests {
    use tessera_matching::Sex;

    use super::*;

    fn record(id: u64, system: &str, updated: Micros, demo: Demographics) -> StoredRecord {
        StoredRecord {
            id,
            key: SourceKey::new(system, format!("{system}-{id}")),
            demographics: demo,
            source_updated_at: None,
            created_at: updated,
            updated_at: updated,
            link: None,
        }
    }

    #[test]
    fn priority_then_recency_with_provenance() {
        let ehr = record(
            1,
            "ehr",
            100,
            Demographics {
                family_name: "Okafor".to_owned(),
                birth_date: "1970-03-04".to_owned(),
                ..Demographics::default()
            },
        );
        let crm_old = record(
            2,
            "crm",
            200,
            Demographics {
                family_name: "Okafor-Ade".to_owned(),
                phones: vec!["+1 555 0100".to_owned()],
                ..Demographics::default()
            },
        );
        let crm_new = record(
            3,
            "crm",
            300,
            Demographics {
                phones: vec!["+1 555 0199".to_owned()],
                sex: Sex::Female,
                ..Demographics::default()
            },
        );
        let golden = build(&[crm_old, ehr, crm_new], &["ehr".to_owned()]);
        assert_eq!(golden.demographics.family_name, "Okafor");
        assert_eq!(golden.demographics.phones, vec!["+1 555 0199".to_owned()]);
        assert_eq!(golden.demographics.sex, Sex::Female);
        let of = |field: &str| golden.provenance.iter().find(|p| p.field == field).unwrap();
        assert_eq!(of("family_name").rule, SurvivorshipRule::SourcePriority);
        assert_eq!(of("family_name").source.system, "ehr");
        assert_eq!(of("phones").rule, SurvivorshipRule::MostRecent);
        assert_eq!(of("phones").source.local_id, "crm-3");
        assert_eq!(of("birth_date").rule, SurvivorshipRule::OnlySource);
        assert!(golden.provenance.iter().all(|p| p.field != "emails"));
    }

    #[test]
    fn no_records_give_an_empty_golden_record() {
        assert_eq!(build(&[], &[]), GoldenRecord::default());
    }
}
