//! The `tessera` gateway: everything that knows about processes, sockets, files
//! and the environment.
//!
//! [`config`] parses and checks the YAML configuration file; [`server`] wires the
//! contract's gRPC services, health ([`health`]) and reflection onto a listener the
//! caller bound, and drains it on shutdown; [`pending`] holds the services whose
//! implementations have not landed, which say so (UNIMPLEMENTED through
//! `tessera_proto::error`, the one place errors become `tonic::Status`); [`telemetry`] sets up logging.
//! [`identity`] turns the config's identity section into the resolver's
//! [`tessera_resolver::open::OpenOptions`]; [`adapters`] lists the adapter
//! kinds and builds the configured sources into the patient-view aggregator;
//! [`startup`] brings the resolver and the sources up before the server
//! reports SERVING. [`commands`] holds the command line's commands over the
//! libraries that do the work (`tessera resolver ...`, `tessera synth`, `tessera
//! bench` over `tessera-bench`, `tessera adapter check`, `tessera audit`);
//! `tessera view` is `tessera-client`. The `tessera` binary (`main.rs`) is the
//! command line over these parts. [`security`] builds the policy, the authenticator,
//! the audit sink and the page-token keys from the config; the server writes one audit
//! record per call before its response leaves (`tessera_audit::AuditLayer`).

pub mod adapters;
pub mod commands;
pub mod config;
pub mod health;
pub mod identity;
pub mod pending;
pub mod security;
pub mod server;
pub mod startup;
pub mod telemetry;
