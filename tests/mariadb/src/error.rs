//! The crate's one error type.

/// Why a test MariaDB server or database could not be provided.
///
/// `Clone` so that [`TestMariaDb::shared`](crate::TestMariaDb::shared) can hand the
/// same startup failure to every test of the process.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The MariaDB server or its tools were not found.
    #[error(
        "mariadb server binaries (mariadbd, mariadb-install-db, mariadb, mariadb-admin) \
         not found ({missing} is missing); run scripts/install-mariadb"
    )]
    NotInstalled {
        /// The first tool that was not found.
        missing: String,
    },
    /// The throwaway certificates could not be made.
    #[error("making the test certificates: {0}")]
    Certificates(String),
    /// Starting, asking or stopping the server failed.
    #[error("the test MariaDB server: {0}")]
    Server(#[from] tessera_test_server::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_installation_says_how_to_install_it() {
        let error = Error::NotInstalled {
            missing: "mariadbd".to_owned(),
        };
        assert!(
            error
                .to_string()
                .ends_with("(mariadbd is missing); run scripts/install-mariadb"),
            "{error}"
        );
    }
}
