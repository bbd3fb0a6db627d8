//! The `grpc` adapter kind: Tessera as the client of `SourceAdapterService`, so a
//! silo's adapter can be written in any language and run as a process of its own,
//! reached over TCP or a Unix domain socket.
//!
//! At build the adapter asks the process to describe itself (retrying while it
//! starts). Each fetch passes the caller's deadline as `grpc-timeout` and stops
//! waiting at it; a dropped call resets the HTTP/2 stream, which the process sees
//! as a cancellation. A process that dies or cannot be reached is `Unavailable`
//! for this source only. Status messages from the process are not passed on (they
//! may say anything); errors name the gRPC code. Records whose payload is not JSON
//! are skipped and counted as malformed.
//!
//! ```yaml
//! kind: grpc
//! config:
//!   endpoint: unix:/run/tessera/marketing.sock   # or http://127.0.0.1:50061
//!   system: marketing
//! ```
//!
//! Over TCP the process can be reached with TLS (`https://`), verified against a
//! configured CA or the system's trust store, and with a client certificate for
//! processes that require mutual TLS:
//!
//! ```yaml
//! kind: grpc
//! config:
//!   endpoint: https://marketing-adapter.internal:50061
//!   tls:
//!     ca: certs/ca.pem
//!     cert: certs/tessera.pem
//!     key: certs/tessera.key
//! ```
//!
//! `examples/python-adapter` is an adapter in Python that a platform team can copy.

mod adapter;
mod convert;
mod tls;

pub use adapter::{GrpcAdapter, GrpcConfig, GrpcKind};
pub use tls::GrpcTlsConfig;
