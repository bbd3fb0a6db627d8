//! The identity resolver's matching engine: it decides whether two records of a
//! person's demographics, from different silos, are the same person.
//!
//! [`record`] holds the input types every other part of the resolver shares:
//! source record keys, demographics as the silos send them, and their validation.
//! `normalize` turns demographics into compact comparable records; `blocking`
//! derives the keys under which likely matches meet; `compare` grades each field
//! pair into levels; [`Model`] turns levels into Fellegi-Sunter match weights
//! (estimated without labels by [`train`], or [`Model::builtin`]); `score` adds
//! them up, applies the guards that keep twins, juniors/seniors and households
//! apart, and decides MATCH, POSSIBLE_MATCH or NO_MATCH with a FHIR match grade
//! and per-field explanations. [`Index`] serves lookups against whole master
//! clusters; [`link_batch`] deduplicates a batch ([`link_batch_sources`] also
//! keeps records of a source declared deduplicated apart). The crate does no I/O of its
//! own: readers and writers come from the caller, storage and transport belong
//! to the resolver service and the gateway.

mod batch;
mod blocking;
mod compare;
mod contact;
mod csv_io;
mod error;
mod guards;
mod index;
mod model;
mod nickname;
mod normalize;
pub mod record;
mod review;
mod score;
mod strdist;
mod train;

pub use batch::{BatchReport, link_batch, link_batch_report, link_batch_sources};
pub use csv_io::{CSV_COLUMNS, read_records_csv};
pub use error::MatchError;
pub use index::{Candidate, Candidates, Index, MasterId, RecordId};
pub use model::{FieldModel, LevelModel, MODEL_VERSION, Model};
pub use normalize::NormalizeConfig;
pub use record::{
    Address, Decision, Demographics, FieldViolation, FieldWeight, RecordLimits, Sex, SourceKey,
};
pub use review::{ReviewPair, review_pairs};
pub use score::{Conflict, Explanation, MatchConfig, MatchGrade, explain};
pub use train::{TrainConfig, train};
