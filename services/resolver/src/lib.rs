//! The identity resolver: "who is who" across every silo.
//!
//! [`store`] persists the identity index (SQLite embedded by default, or
//! PostgreSQL). The matching itself lives in `tessera-matching`.
pub mod store;
