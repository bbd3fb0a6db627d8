//! The identity resolver: "who is who" across every silo.
//!
//! [`store`] persists the identity index (embedded SQLite by default, or
//! PostgreSQL). [`resolver::Resolver`] runs the workflow over it: upsert and
//! match, review, manual link, merge, unmerge and the link history, with the
//! in-memory matching index from `tessera-matching`. [`golden`] derives a master's
//! golden record with per-field provenance. [`grpc`] is IdentityService, the gRPC
//! edge where the contract's types are converted and errors become statuses.
//! [`open`] opens the store and the resolver a deployment describes, and loads
//! an empty store from the sources' identity feeds.

mod directory;
pub mod golden;
pub mod grpc;
pub mod open;
pub mod resolver;
pub mod store;

pub use grpc::IdentityGrpc;
pub use resolver::{Resolver, ResolverConfig, ResolverError};

/// Store URLs for tests: one fresh database per backend, so every store and
/// workflow test runs on embedded SQLite and on a real PostgreSQL server.
#[cfg(test)]
mod test_backends {
    use tessera_test_postgres::TestPostgres;

    /// (label, url, temp dir to keep alive) for SQLite and PostgreSQL.
    pub(crate) async fn urls() -> Vec<(&'static str, String, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let sqlite = format!("sqlite://{}", dir.path().join("identity.db").display());
        let postgres = TestPostgres::shared()
            .and_then(TestPostgres::create_database)
            .unwrap_or_else(|e| panic!("PostgreSQL for tests: {e}"));
        vec![("sqlite", sqlite, Some(dir)), ("postgres", postgres, None)]
    }
}
