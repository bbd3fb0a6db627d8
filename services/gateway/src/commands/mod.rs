//! The command line's batch and offline commands (`tessera resolver ...`,
//! `tessera synth`, `tessera bench ...`, `tessera adapter check`, `tessera
//! audit`, `tessera dev-certs`): arguments, files the caller names and what
//! they print, over the libraries that do the work. `tessera view`, a client of
//! a running gateway, is `tessera-client`.

pub mod adapter;
pub mod audit;
pub mod bench;
pub mod dev_certs;
pub mod load;
pub mod resolver;
pub mod synth;

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use anyhow::Context;

/// Opens a file for buffered reading, naming it on failure.
pub(crate) fn open(path: &Path) -> anyhow::Result<BufReader<File>> {
    Ok(BufReader::new(File::open(path).with_context(|| {
        format!("{}: cannot open", path.display())
    })?))
}

/// Creates a file for buffered writing (and its directory), naming it on failure.
pub(crate) fn create(path: &Path) -> anyhow::Result<BufWriter<File>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    Ok(BufWriter::new(File::create(path).with_context(|| {
        format!("{}: cannot create", path.display())
    })?))
}
