//! Compiles `tessera/v1/*.proto` with protox (pure Rust, no `protoc`) and generates the
//! prost messages and tonic clients and servers from the resulting descriptor set.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let files = [
        "tessera/v1/common.proto",
        "tessera/v1/identity.proto",
        "tessera/v1/patient_view.proto",
        "tessera/v1/adapter.proto",
    ];
    let includes = [".", "third_party"];

    let fds = protox::compile(files, includes)?;
    std::fs::write(
        out_dir.join("tessera_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // No `connect()` helpers: they need tonic's transport feature, which callers pick.
        .build_transport(false)
        .compile_fds(fds)?;

    println!("cargo:rerun-if-changed=tessera");
    println!("cargo:rerun-if-changed=third_party");
    Ok(())
}
