//! The Fellegi-Sunter model: for each field and comparison level, the probability
//! of that level among true matches (m) and among non-matches (u); a level's match
//! weight is log2(m/u) bits. Serialized as versioned JSON; [`Model::builtin`] is a
//! hand-set default that works untrained.

use serde::{Deserialize, Serialize};

use crate::compare::{FIELDS, MISSING, NFIELDS, PLACEHOLDER, f};
use crate::error::MatchError;

/// The model JSON version this engine reads and writes.
pub const MODEL_VERSION: u32 = 1;

/// Smallest m or u probability used, so no weight is infinite.
const MIN_PROBABILITY: f64 = 1e-7;

/// One comparison level of a field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelModel {
    /// Level name (`exact`, `nickname`, `jaro_winkler_0.92`, `disagree`).
    pub name: String,
    /// P(level | the records are the same person).
    pub m: f64,
    /// P(level | the records are different people).
    pub u: f64,
}

/// One compared field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldModel {
    /// Field name (`given_name`, `birth_date`).
    pub name: String,
    /// Levels, best first, exactly as this engine's comparator defines them.
    pub levels: Vec<LevelModel>,
}

/// The serialized form of a [`Model`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelDoc {
    version: u32,
    #[serde(default)]
    description: String,
    prior_match_weight: f64,
    fields: Vec<FieldModel>,
}

/// A Fellegi-Sunter match model (serialize with [`Model::to_json`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ModelDoc", into = "ModelDoc")]
pub struct Model {
    /// What produced the model (`builtin`, `trained on N records`).
    pub description: String,
    /// log2 of the prior odds that two compared records match, in bits.
    pub prior_match_weight: f64,
    /// Per-field m/u probabilities, in the engine's field order.
    pub fields: Vec<FieldModel>,
    /// log2(m/u) per field and level, cached.
    weights: Vec<Vec<f64>>,
}

impl From<Model> for ModelDoc {
    fn from(m: Model) -> Self {
        ModelDoc {
            version: MODEL_VERSION,
            description: m.description,
            prior_match_weight: m.prior_match_weight,
            fields: m.fields,
        }
    }
}

impl TryFrom<ModelDoc> for Model {
    type Error = MatchError;

    fn try_from(doc: ModelDoc) -> Result<Self, MatchError> {
        if doc.version != MODEL_VERSION {
            return Err(MatchError::ModelVersion {
                found: doc.version,
                expected: MODEL_VERSION,
            });
        }
        Model::new(doc.description, doc.prior_match_weight, doc.fields)
    }
}

impl Model {
    /// Builds a model, checking that every field and level this engine compares is
    /// present in order with finite probabilities in (0, 1].
    pub fn new(
        description: String,
        prior_match_weight: f64,
        fields: Vec<FieldModel>,
    ) -> Result<Self, MatchError> {
        if !prior_match_weight.is_finite() {
            return Err(MatchError::ModelField {
                field: "prior_match_weight".into(),
                reason: "must be a finite number",
            });
        }
        if fields.len() != NFIELDS {
            return Err(MatchError::ModelField {
                field: "fields".into(),
                reason: "must list every compared field in order",
            });
        }
        let mut weights = Vec::with_capacity(NFIELDS);
        for (fm, (name, levels)) in fields.iter().zip(FIELDS) {
            let bad = |reason| MatchError::ModelField {
                field: fm.name.clone(),
                reason,
            };
            if fm.name != name {
                return Err(MatchError::ModelField {
                    field: fm.name.clone(),
                    reason: "unexpected field name or order",
                });
            }
            if fm.levels.len() != levels.len()
                || fm.levels.iter().zip(levels).any(|(l, n)| l.name != *n)
            {
                return Err(bad("levels must match the engine's comparator levels"));
            }
            let mut w = Vec::with_capacity(levels.len());
            for l in &fm.levels {
                let ok = |p: f64| p.is_finite() && p > 0.0 && p <= 1.0;
                if !ok(l.m) || !ok(l.u) {
                    return Err(bad("m and u must be probabilities in (0, 1]"));
                }
                w.push((l.m.max(MIN_PROBABILITY) / l.u.max(MIN_PROBABILITY)).log2());
            }
            weights.push(w);
        }
        Ok(Self {
            description,
            prior_match_weight,
            fields,
            weights,
        })
    }

    /// Reads a model from its JSON form.
    pub fn from_json(json: &str) -> Result<Self, MatchError> {
        let doc: ModelDoc = serde_json::from_str(json).map_err(|e| MatchError::ModelJson {
            line: e.line(),
            column: e.column(),
            category: match e.classify() {
                serde_json::error::Category::Io => "io",
                serde_json::error::Category::Syntax => "syntax",
                serde_json::error::Category::Data => "unexpected structure or values",
                serde_json::error::Category::Eof => "unexpected end of input",
            },
        })?;
        Model::try_from(doc)
    }

    /// The model as pretty JSON, with its `version`.
    pub fn to_json(&self) -> String {
        let doc = ModelDoc::from(self.clone());
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }

    /// The match weight of one field's level, in bits (0 for missing/placeholder).
    pub(crate) fn weight(&self, field: usize, level: u8) -> f64 {
        if level >= PLACEHOLDER {
            return 0.0;
        }
        self.weights
            .get(field)
            .and_then(|w| w.get(usize::from(level)))
            .copied()
            .unwrap_or(0.0)
    }

    /// The largest weight any level of `field` can add (at least 0).
    pub(crate) fn max_weight(&self, field: usize) -> f64 {
        self.weights
            .get(field)
            .map_or(0.0, |w| w.iter().copied().fold(0.0, f64::max))
    }

    /// u of a field's exact level (the chance two random records agree exactly).
    pub(crate) fn u_exact(&self, field: usize) -> f64 {
        self.fields
            .get(field)
            .and_then(|f| f.levels.first())
            .map_or(1.0, |l| l.u)
    }

    /// The built-in model: probabilities set by hand from published MPI studies and
    /// US name/date distributions, good enough to run untrained.
    pub fn builtin() -> Self {
        let table: [&[(f64, f64)]; NFIELDS] = [
            &[
                (0.82, 0.008),
                (0.04, 0.001),
                (0.06, 0.001),
                (0.02, 0.002),
                (0.02, 0.01),
                (0.02, 0.03),
                (0.02, 0.948),
            ],
            &[
                (0.85, 0.003),
                (0.05, 0.0008),
                (0.03, 0.0001),
                (0.02, 0.001),
                (0.02, 0.01),
                (0.03, 0.985),
            ],
            &[
                (0.88, 0.00005),
                (0.02, 0.00002),
                (0.05, 0.0015),
                (0.02, 0.002),
                (0.015, 0.01),
                (0.015, 0.986),
            ],
            &[(0.97, 0.5), (0.03, 0.5)],
            &[(0.65, 0.0005), (0.08, 0.0005), (0.04, 0.003), (0.23, 0.996)],
            &[(0.75, 0.02), (0.04, 0.002), (0.21, 0.978)],
            &[(0.75, 0.01), (0.05, 0.05), (0.2, 0.94)],
            &[(0.9, 0.3), (0.1, 0.7)],
            &[(0.7, 0.00001), (0.03, 0.0001), (0.27, 0.9999)],
            &[(0.7, 0.00001), (0.05, 0.00005), (0.25, 0.99994)],
            &[
                (0.9, 0.00001),
                (0.05, 0.00005),
                (0.02, 0.0003),
                (0.03, 0.9996),
            ],
        ];
        let fields = FIELDS
            .iter()
            .zip(table)
            .map(|((name, levels), probs)| FieldModel {
                name: (*name).to_owned(),
                levels: levels
                    .iter()
                    .zip(probs)
                    .map(|(n, (m, u))| LevelModel {
                        name: (*n).to_owned(),
                        m: *m,
                        u: *u,
                    })
                    .collect(),
            })
            .collect();
        match Model::new("builtin".to_owned(), -13.0, fields) {
            Ok(m) => m,
            // The table above is checked by a test; an empty model never links.
            Err(_) => Self {
                description: "builtin".into(),
                prior_match_weight: -13.0,
                fields: Vec::new(),
                weights: Vec::new(),
            },
        }
    }
}

/// Fields whose exact agreement is adjusted by the value's frequency.
pub(crate) const TF_FIELDS: [usize; 2] = [f::GIVEN, f::FAMILY];

/// The level name of a code, for explanations.
pub(crate) fn level_name(field: usize, level: u8) -> &'static str {
    match level {
        MISSING => "missing",
        PLACEHOLDER => "placeholder",
        l => FIELDS
            .get(field)
            .and_then(|(_, levels)| levels.get(usize::from(l)))
            .copied()
            .unwrap_or("unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_model_is_complete_and_round_trips_through_json() {
        let m = Model::builtin();
        assert_eq!(m.fields.len(), NFIELDS);
        let json = m.to_json();
        assert!(json.contains("\"version\": 1"));
        let back = Model::from_json(&json).unwrap();
        assert_eq!(back, m);
        assert!(back.weight(f::NATIONAL_ID, 0) > 10.0);
        assert!(back.weight(f::GIVEN, 6) < -4.0);
        assert_eq!(back.weight(f::GIVEN, PLACEHOLDER), 0.0);
    }

    #[test]
    fn bad_model_json_is_rejected_without_panic() {
        let json = Model::builtin().to_json();
        let v2 = json.replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(
            Model::from_json(&v2),
            Err(MatchError::ModelVersion { found: 2, .. })
        ));
        let bad_u = json.replacen("\"u\": 0.008", "\"u\": -1.0", 1);
        assert!(Model::from_json(&bad_u).is_err());
        let err = Model::from_json("{not json").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(Model::from_json("").is_err());
        assert!(
            Model::from_json("{\"version\":1,\"prior_match_weight\":0,\"fields\":[]}").is_err()
        );
    }
}
