//! The client side of a running gateway: `tessera view`, one person's view
//! across every source from PatientViewService, printed as tables a person can
//! read or as JSON.
//!
//! [`connect`] reaches the gateway (plaintext or TLS, client certificates for
//! mutual TLS, a bearer token on every call); [`view`] holds the command's
//! arguments, turns them into requests, calls under the deadline and renders
//! the answer.

pub mod connect;
pub mod view;

pub use view::{ViewArgs, run};
