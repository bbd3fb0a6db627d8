//! The crate's one error type.

use std::path::PathBuf;

/// Why a test PostgreSQL server or database could not be provided.
///
/// `Clone` so that [`TestPostgres::shared`](crate::TestPostgres::shared) can hand the
/// same startup failure to every test of the process.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No PostgreSQL server binaries were found.
    #[error(
        "postgresql server binaries (initdb, postgres, pg_isready, createdb) not found \
         under {searched}/*/bin; run scripts/install-postgres"
    )]
    NotInstalled {
        /// The directory whose versioned subdirectories were searched.
        searched: PathBuf,
    },
    /// The throwaway certificates could not be made.
    #[error("making the test certificates: {0}")]
    Certificates(String),
    /// Starting, asking or stopping the server failed.
    #[error("the test PostgreSQL server: {0}")]
    Server(#[from] tessera_test_server::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_installation_says_how_to_install_it() {
        let error = Error::NotInstalled {
            searched: PathBuf::from("/usr/lib/postgresql"),
        };
        assert_eq!(
            error.to_string(),
            "postgresql server binaries (initdb, postgres, pg_isready, createdb) not found \
             under /usr/lib/postgresql/*/bin; run scripts/install-postgres"
        );
    }
}
