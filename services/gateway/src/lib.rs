//! The `tessera` gateway: everything that knows about processes, sockets, files
//! and the environment.
//!
//! [`config`] parses and checks the YAML configuration file; [`server`] wires the
//! contract's gRPC services, health ([`health`]) and reflection onto a listener the
//! caller bound, and drains it on shutdown; [`status`] is the one place where
//! errors become `tonic::Status`; [`pending`] holds the services whose
//! implementations have not landed, which say so; [`telemetry`] sets up logging.
//! [`identity`] opens the configured resolver; [`adapters`] lists the adapter
//! kinds and builds the configured sources into the patient-view aggregator;
//! [`commands`] holds the batch commands (`tessera resolver ...`, `tessera
//! synth`, `tessera bench`) and `tessera view`, the PatientViewService client,
//! which reaches the server through [`connect`] (TLS, client certificates, tokens).
//! [`startup`] brings the resolver and the sources up before the server
//! reports SERVING. The `tessera` binary (`main.rs`) is the command line over
//! these parts.

pub mod adapters;
pub mod commands;
pub mod config;
pub mod health;
pub mod identity;
pub mod pending;
pub mod server;
pub mod startup;
pub mod status;
pub mod telemetry;

// The server tests reach the real server as `tessera view` does.
#[cfg(test)]
use tessera_client::connect;
