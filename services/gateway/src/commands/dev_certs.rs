//! `tessera dev-certs`: a throwaway CA, a server certificate for localhost and
//! client certificates for the dev callers, written by [`tessera_tls::dev_certs`].

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

/// `tessera dev-certs`.
#[derive(Debug, Args)]
pub struct DevCertsArgs {
    /// The directory to write into (created 0700 if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

/// Writes the certificates and prints the paths written, one per line (never
/// key material).
pub fn run(args: &DevCertsArgs) -> anyhow::Result<()> {
    let written = tessera_tls::dev_certs(&args.out, args.force)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ca certificate:     {}", written.ca_cert.display())?;
    writeln!(out, "server certificate: {}", written.server_cert.display())?;
    writeln!(out, "server key:         {}", written.server_key.display())?;
    for (name, cert, key) in &written.callers {
        writeln!(out, "{name} certificate: {}", cert.display())?;
        writeln!(out, "{name} key:         {}", key.display())?;
    }
    writeln!(
        out,
        "for development only: the CA key is in the same directory"
    )?;
    out.flush()?;
    Ok(())
}
