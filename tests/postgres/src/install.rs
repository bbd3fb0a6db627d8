//! Where the PostgreSQL binaries are.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use crate::Error;

/// Debian installs each major version's server under `/usr/lib/postgresql/<version>/bin`.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The tools this crate runs; a version directory must have them all.
const TOOLS: [&str; 4] = ["initdb", "postgres", "pg_isready", "createdb"];

/// The newest installed PostgreSQL's `bin` directory.
pub(crate) fn find_bin_dir() -> Result<PathBuf, Error> {
    newest_bin_dir(Path::new(DEBIAN_ROOT)).ok_or_else(|| Error::NotInstalled {
        searched: PathBuf::from(DEBIAN_ROOT),
    })
}

fn newest_bin_dir(root: &Path) -> Option<PathBuf> {
    let entries = fs::read_dir(root).ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = parse_version(&entry.file_name())?;
            let bin = entry.path().join("bin");
            TOOLS
                .iter()
                .all(|tool| bin.join(tool).is_file())
                .then_some((version, bin))
        })
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, bin)| bin)
}

/// `"15"` -> `[15]`, `"9.6"` -> `[9, 6]`, so that 15 sorts above 9.6.
fn parse_version(name: &OsStr) -> Option<Vec<u32>> {
    name.to_str()?
        .split('.')
        .map(|part| part.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let mut versions: Vec<_> = ["9.6", "15", "10", "abc"]
            .iter()
            .filter_map(|v| parse_version(OsStr::new(v)))
            .collect();
        versions.sort();
        assert_eq!(versions, vec![vec![9, 6], vec![10], vec![15]]);
    }

    #[test]
    fn the_newest_complete_version_wins() {
        let root = tempfile::tempdir().expect("temp dir");
        for (version, tools) in [("9.6", &TOOLS[..]), ("15", &TOOLS[..]), ("16", &TOOLS[..1])] {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).expect("bin dir");
            for tool in tools {
                fs::write(bin.join(tool), "").expect("tool");
            }
        }
        assert_eq!(
            newest_bin_dir(root.path()),
            Some(root.path().join("15").join("bin")),
            "16 lacks postgres, so 15 is the newest usable version"
        );
        assert_eq!(newest_bin_dir(&root.path().join("missing")), None);
    }
}
