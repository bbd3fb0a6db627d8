//! The `sql` adapter kind: a silo that is a relational database (billing, CRM),
//! reached with a configured, parameterised query per section.
//!
//! Each section is one query whose only parameter is the local ID, always bound
//! (there is no templating, so a local ID can never become SQL; in MySQL and
//! MariaDB every `?` is bound to it). Its rows become
//! records: every column a field, or the columns `fields` maps; JSON-text columns
//! nested; a record ID and an update time from named columns. Rows past a limit
//! are dropped. A query runs under the fetch's deadline on the server
//! (PostgreSQL's `statement_timeout`, MariaDB's `max_statement_time` or MySQL's
//! `max_execution_time`, a SQLite progress handler), and is cancelled on the
//! server when the caller goes away (`pg_cancel_backend`, `KILL QUERY`, the
//! progress handler). Sessions are read-only. Health is a cheap query, and an
//! optional feed query streams the silo's demographics to the resolver.
//!
//! PostgreSQL (`postgres://`), MySQL and MariaDB (`mysql://`, `mariadb://`) and
//! SQLite (`sqlite://`) are supported; PostgreSQL, MySQL and MariaDB over TLS
//! (rustls) when the URL asks for it (`sslmode=verify-full&sslrootcert=...`,
//! `ssl-mode=VERIFY_IDENTITY&ssl-ca=...`). The URL is a secret: `env:NAME` or
//! `file:PATH` reads it from the environment or a file, and it never appears in
//! `Debug` output, logs or errors. PostgreSQL, MariaDB and SQLite are tested
//! against real servers; MySQL proper speaks the same code but is not tested
//! here.
//!
//! ```yaml
//! kind: sql
//! config:
//!   system: billing
//!   url: env:BILLING_DATABASE_URL   # postgres://...?sslmode=verify-full&sslrootcert=/etc/tessera/db-ca.pem
//!   sections:
//!     invoices:
//!       description: Invoices and their balances
//!       query: SELECT id, issued_at, amount_cents, balance_cents FROM invoices WHERE patient_ref = $1 ORDER BY issued_at DESC
//!       record_id: id
//!       update_time: issued_at
//! ```
//!
//! Errors and logs name sections, columns and SQLSTATE codes, never a local ID or
//! a value (a database's own message can quote a value, so it is never passed on).

mod adapter;
mod config;
mod db;
mod record;

pub use adapter::{SqlAdapter, SqlKind};
pub use config::{FeedConfig, SectionConfig, SqlConfig};
