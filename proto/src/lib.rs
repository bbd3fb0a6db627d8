//! Tessera's gRPC contract, generated from `proto/tessera/v1/*.proto`.
//!
//! The `.proto` files are the source of truth; this crate only compiles them (with
//! protox, so no `protoc` is needed) into prost messages and tonic clients and
//! servers, and embeds the file descriptor set that the gateway serves through
//! gRPC reflection. Services convert these types to their own domain types at
//! their gRPC edge; nothing past that edge sees generated types.
//!
//! [`error`] is that edge's other half: the one place where a service's errors
//! become `tonic::Status` with google.rpc details, in the one [`ERROR_DOMAIN`].

/// Google API definitions the contract imports (vendored under `proto/third_party`).
pub mod google {
    /// `google.api`: resource and field-behavior annotations.
    #[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    }
    /// `google.rpc`: the status model used for per-item errors.
    #[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}

/// Tessera's own packages.
pub mod tessera {
    /// `tessera.v1`: IdentityService, PatientViewService and SourceAdapterService.
    #[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/tessera.v1.rs"));
    }
}

pub use tessera::v1;

pub mod error;

pub use error::ERROR_DOMAIN;

/// The encoded `FileDescriptorSet` of every `.proto` in the contract (imports
/// included), for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tessera_descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_holds_the_three_services() {
        let fds = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let services: Vec<String> = fds
            .file
            .iter()
            .filter(|f| f.package() == "tessera.v1")
            .flat_map(|f| f.service.iter().map(|s| format!("tessera.v1.{}", s.name())))
            .collect();
        assert_eq!(
            services.len(),
            3,
            "expected exactly three services, got {services:?}"
        );
        for name in [
            "tessera.v1.IdentityService",
            "tessera.v1.PatientViewService",
            "tessera.v1.SourceAdapterService",
        ] {
            assert!(services.iter().any(|s| s == name), "{name} missing");
        }
    }
}
