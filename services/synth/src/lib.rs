//! Synthetic patient populations for benchmarking Tessera's identity resolver.
//!
//! The crate owns two layers, kept apart so that other renderers (FHIR resources,
//! billing or CRM rows) can be added for the same people:
//!
//! - [`person`]: the person-level model, and [`population`], whose
//!   [`Population`] streams [`Person`]s with true demographics drawn from the
//!   frequency tables in `tables` (common names repeat a lot), grouped into
//!   households and into the hard cases the resolver must get right: twins,
//!   junior/senior pairs, households and unrelated people with the same common
//!   name ([`TrapRates`]).
//! - `render`: one silo's view of a person ([`SynthRecord`]), with the silo's
//!   field presence, a random local ID in the silo's style, and per-record noise
//!   ([`NoiseRates`]): typos, nicknames, maiden names, stale addresses, swapped
//!   dates, missing fields, placeholders, format, case and whitespace variation.
//!
//! [`generate`] streams records (locally shuffled, so that a person's records are
//! not adjacent); [`write_csv`] writes the records CSV ([`RECORDS_HEADER`]) and
//! the truth CSV ([`TRUTH_HEADER`]) to any writers. Output is a pure function of
//! the [`SynthConfig`]: the same seed gives byte-identical output. The crate does
//! no file I/O of its own except [`write_silos`], which writes the quickstart's
//! silos (FHIR NDJSON, SQLite databases, the two CSVs) into a directory.
//!
//! ```
//! use tessera_synth::{SynthConfig, write_csv};
//!
//! let config = SynthConfig { people: 1_000, seed: 7, ..SynthConfig::default() };
//! let (mut records, mut truth) = (Vec::new(), Vec::new());
//! let stats = write_csv(&config, &mut records, &mut truth)?;
//! assert_eq!(stats.people, 1_000);
//! assert!(stats.records > 2_000); // about 2.8 records per person by default
//! assert!(records.starts_with(b"source,local_id,given_name,family_name,birth_date,"));
//! # Ok::<(), tessera_synth::SynthError>(())
//! ```
//!
//! Memory stays bounded by the shuffle window plus, per person and record, a few
//! bytes of the sets that keep SSNs, emails and local IDs unique (about 60 MB
//! of resident memory for 1,000,000 records).

pub mod config;
mod noise;
pub mod person;
pub mod population;
mod render;
mod silo_files;
pub mod silos;
mod tables;

use std::io::Write;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

pub use config::{FieldPresence, IdStyle, NoiseRates, SiloSpec, SynthConfig, TrapRates};
pub use person::{Person, TrapCounts};
pub use population::Population;
pub use render::SynthRecord;
pub use silo_files::write_silos;

use render::Renderer;

/// The records CSV header, in the resolver's canonical column order.
pub const RECORDS_HEADER: [&str; 13] = [
    "source",
    "local_id",
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "address_line",
    "city",
    "state",
    "postal_code",
    "phone",
    "email",
    "ssn",
];

/// The truth CSV header: which person each record belongs to.
pub const TRUTH_HEADER: [&str; 3] = ["source", "local_id", "person_id"];

/// Records held back at most for local shuffling.
const SHUFFLE_WINDOW: usize = 1 << 15;

/// What can go wrong generating a population.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The configuration is unusable; the message names the field.
    #[error("invalid synth config: {0}")]
    InvalidConfig(String),
    /// Writing a CSV row failed (usually an I/O error of the writer).
    #[error("writing csv output failed")]
    Write(#[from] csv::Error),
    /// Flushing a writer failed.
    #[error("flushing csv output failed")]
    Flush(#[from] std::io::Error),
    /// A silo file is in the way: silos are never overwritten.
    #[error("{}: already exists", .0.display())]
    Exists(std::path::PathBuf),
    /// A silo file or directory could not be created.
    #[error("{}: cannot create", path.display())]
    Create {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A silo database could not be created.
    #[error("{}: cannot create", path.display())]
    CreateDatabase {
        /// The database file.
        path: std::path::PathBuf,
        /// The database error.
        source: sqlx::Error,
    },
    /// Writing a silo database failed.
    #[error("writing a silo database failed")]
    Database(#[from] sqlx::Error),
    /// Writing a silo file failed.
    #[error("{}: cannot write", path.display())]
    WriteFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Records written for one silo.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SiloStats {
    /// The silo's name.
    pub name: String,
    /// Records in the silo, duplicates included.
    pub records: usize,
    /// Of which second registrations of a person already in the silo.
    pub duplicates: usize,
}

/// What a run produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SynthStats {
    /// Distinct people.
    pub people: usize,
    /// Records, all silos.
    pub records: usize,
    /// Per silo, in config order.
    pub silos: Vec<SiloStats>,
    /// The hard cases generated.
    pub traps: TrapCounts,
}

/// Streams the records of `config`'s population, all silos mixed and locally
/// shuffled (within a window of 32,768 records), so that a person's records are
/// not adjacent.
///
/// # Panics
///
/// If the config is invalid (see [`SynthConfig::validate`]); [`try_generate`]
/// returns the error instead.
pub fn generate(config: &SynthConfig) -> Records {
    match try_generate(config) {
        Ok(records) => records,
        Err(e) => panic!("{e}"),
    }
}

impl SynthRecord {
    /// The record as a row of the records CSV, in [`RECORDS_HEADER`] order.
    pub fn csv_row(&self) -> [&str; 13] {
        [
            &self.source,
            &self.local_id,
            &self.given_name,
            &self.family_name,
            &self.birth_date,
            &self.sex,
            &self.address_line,
            &self.city,
            &self.state,
            &self.postal_code,
            &self.phone,
            &self.email,
            &self.ssn,
        ]
    }
}

/// [`generate`], returning an invalid config as an error.
pub fn try_generate(config: &SynthConfig) -> Result<Records, SynthError> {
    config.validate()?;
    Ok(Records::new(config))
}

/// The record stream of [`generate`]; [`Records::stats`] counts what it has
/// produced so far.
#[derive(Debug)]
pub struct Records {
    silos: Vec<SiloSpec>,
    population: Population,
    renderer: Renderer,
    rng: ChaCha8Rng,
    buffer: Vec<SynthRecord>,
    exhausted: bool,
    people: usize,
    stats: Vec<SiloStats>,
}

impl Records {
    fn new(config: &SynthConfig) -> Self {
        Self {
            silos: config.silos.clone(),
            population: Population::new(config),
            renderer: Renderer::new(config.silos.len(), config.noise, config.traps),
            rng: ChaCha8Rng::seed_from_u64(config.seed.rotate_left(17) ^ 0x00c0_ffee_d15c_0de5),
            buffer: Vec::with_capacity(SHUFFLE_WINDOW + 16),
            exhausted: false,
            people: 0,
            stats: config
                .silos
                .iter()
                .map(|s| SiloStats {
                    name: s.name.clone(),
                    ..SiloStats::default()
                })
                .collect(),
        }
    }

    /// Counts of what has been generated so far (everything, once the iterator
    /// is exhausted).
    pub fn stats(&self) -> SynthStats {
        SynthStats {
            people: self.people,
            records: self.stats.iter().map(|s| s.records).sum(),
            silos: self.stats.clone(),
            traps: self.population.trap_counts().clone(),
        }
    }

    /// Renders the next person's records into the buffer; false when done.
    fn pull_person(&mut self) -> bool {
        let Some(person) = self.population.next() else {
            self.exhausted = true;
            return false;
        };
        self.people += 1;
        let mut chosen: Vec<usize> = (0..self.silos.len())
            .filter(|&i| self.rng.random::<f64>() < self.silos[i].coverage)
            .collect();
        if chosen.is_empty() {
            let total: f64 = self.silos.iter().map(|s| s.coverage.max(0.0)).sum();
            let mut x = self.rng.random::<f64>() * total;
            let mut pick = 0;
            for (i, s) in self.silos.iter().enumerate() {
                pick = i;
                x -= s.coverage.max(0.0);
                if x < 0.0 {
                    break;
                }
            }
            chosen.push(pick);
        }
        for i in chosen {
            let silo = &self.silos[i];
            let record = self.renderer.render(&mut self.rng, i, silo, &person);
            self.buffer.push(record);
            self.stats[i].records += 1;
            if self.rng.random::<f64>() < silo.duplicate_rate {
                let record = self.renderer.render(&mut self.rng, i, silo, &person);
                self.buffer.push(record);
                self.stats[i].records += 1;
                self.stats[i].duplicates += 1;
            }
        }
        true
    }
}

impl Iterator for Records {
    type Item = SynthRecord;

    fn next(&mut self) -> Option<SynthRecord> {
        while !self.exhausted && self.buffer.len() < SHUFFLE_WINDOW {
            self.pull_person();
        }
        if self.buffer.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.buffer.len());
        Some(self.buffer.swap_remove(i))
    }
}

/// Generates `config`'s population and writes the records CSV to `records` and
/// the truth CSV to `truth`, both with headers, streaming row by row (the CSV
/// writers buffer, so plain files need no `BufWriter`).
pub fn write_csv(
    config: &SynthConfig,
    records: impl Write,
    truth: impl Write,
) -> Result<SynthStats, SynthError> {
    let mut stream = try_generate(config)?;
    let mut records = csv::Writer::from_writer(records);
    let mut truth = csv::Writer::from_writer(truth);
    records.write_record(RECORDS_HEADER)?;
    truth.write_record(TRUTH_HEADER)?;
    for r in stream.by_ref() {
        records.write_record(r.csv_row())?;
        let id = r.person_id.to_string();
        truth.write_record([r.source.as_str(), r.local_id.as_str(), id.as_str()])?;
    }
    records.flush()?;
    truth.flush()?;
    Ok(stream.stats())
}

#[cfg(test)]
mod tests;
