//! End to end: the real `tessera` binary, which cargo builds for this test target
//! and names in `CARGO_BIN_EXE_tessera`, started through the `tessera-e2e` harness
//! and called from Rust (tonic) and Python (grpcio) clients. One module per area.

use std::path::Path;

mod adapters;
mod cli;
mod fhir_view;
mod grpc_server;
mod identity;
#[path = "../../../../adapters/fhir/tests/integration/logs.rs"]
mod logs;
mod patient_view;
mod python_client;
mod quickstart;
mod secure;
#[allow(dead_code)] // shared with the FHIR adapter's tests, which use all of it
#[path = "../../../../adapters/fhir/tests/integration/seed.rs"]
mod seed;
mod shutdown;
mod telemetry;

/// The `tessera` executable cargo built for this test run.
fn tessera_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tessera"))
}
