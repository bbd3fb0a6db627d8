//! Throwaway certificates for development: a CA, a server certificate and one client
//! certificate per dev caller.
//!
//! Caller identity: each client certificate carries a URI SAN
//! `spiffe://tessera.dev/<name>` (the SPIFFE ID form, so the same policy keys work with
//! a real SPIFFE deployment later), a DNS SAN `<name>.tessera.local` for tools that only
//! look at DNS names, and the common name `<name>`.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::TlsError;

/// The dev callers a client certificate is written for.
pub const DEV_CALLERS: [&str; 3] = ["reader", "steward", "marketing"];

/// The trust domain of the dev callers' SPIFFE IDs.
pub const DEV_TRUST_DOMAIN: &str = "tessera.dev";

/// How long dev certificates are valid.
const VALIDITY: Duration = Duration::days(365);

/// The files [`dev_certs`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevCerts {
    /// The CA certificate, to configure as the client CA bundle and clients' trust.
    pub ca_cert: PathBuf,
    /// The server certificate, for `localhost`, `127.0.0.1` and `::1`.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// Per caller in [`DEV_CALLERS`] order: name, certificate, key.
    pub callers: Vec<(String, PathBuf, PathBuf)>,
}

/// Writes a throwaway CA (`ca.pem`, `ca.key`), a server certificate for `localhost`,
/// `127.0.0.1` and `::1` (`server.pem`, `server.key`) and a client certificate per
/// [`DEV_CALLERS`] entry (`<name>.pem`, `<name>.key`) into `out_dir`.
///
/// The directory is created if needed and set to mode 0700; keys are written 0600,
/// certificates 0644. Without `force`, nothing is written if any of the files exists.
/// Certificates are valid from one hour ago for a year. For development only.
pub fn dev_certs(out_dir: &Path, force: bool) -> Result<DevCerts, TlsError> {
    let path = |name: &str| out_dir.join(name);
    let names: Vec<String> = ["ca", "server"]
        .into_iter()
        .chain(DEV_CALLERS)
        .flat_map(|stem| [format!("{stem}.pem"), format!("{stem}.key")])
        .collect();
    if !force && let Some(existing) = names.iter().map(|n| path(n)).find(|p| p.exists()) {
        return Err(TlsError::AlreadyExists { path: existing });
    }
    create_private_dir(out_dir)?;

    let now = OffsetDateTime::now_utc();
    let validity = |params: &mut CertificateParams| {
        params.not_before = now - Duration::hours(1);
        params.not_after = now + VALIDITY;
    };

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    validity(&mut ca_params);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tessera dev ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write_file(&path("ca.pem"), ca_cert.pem().as_bytes(), 0o644, force)?;
    write_file(
        &path("ca.key"),
        ca_key.serialize_pem().as_bytes(),
        0o600,
        force,
    )?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut server = CertificateParams::default();
    validity(&mut server);
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &issuer)?;
    write_file(
        &path("server.pem"),
        server_cert.pem().as_bytes(),
        0o644,
        force,
    )?;
    write_file(
        &path("server.key"),
        server_key.serialize_pem().as_bytes(),
        0o600,
        force,
    )?;

    let mut callers = Vec::new();
    for name in DEV_CALLERS {
        let mut params = CertificateParams::default();
        validity(&mut params);
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = vec![
            SanType::URI(format!("spiffe://{DEV_TRUST_DOMAIN}/{name}").try_into()?),
            SanType::DnsName(format!("{name}.tessera.local").try_into()?),
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let (cert_path, key_path) = (path(&format!("{name}.pem")), path(&format!("{name}.key")));
        write_file(&cert_path, cert.pem().as_bytes(), 0o644, force)?;
        write_file(&key_path, key.serialize_pem().as_bytes(), 0o600, force)?;
        callers.push((name.to_owned(), cert_path, key_path));
    }

    Ok(DevCerts {
        ca_cert: path("ca.pem"),
        server_cert: path("server.pem"),
        server_key: path("server.key"),
        callers,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    let failed = |source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(failed)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(failed)?;
    }
    Ok(())
}

/// Writes `bytes` with `mode` (on Unix). The mode is set at creation, so a key is never
/// readable by others, even for a moment; an existing file gets it before it is
/// truncated.
fn write_file(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<(), TlsError> {
    let failed = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true);
    if force {
        options.create(true);
        #[cfg(unix)]
        if path.exists() {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(failed)?;
        }
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => TlsError::AlreadyExists {
            path: path.to_path_buf(),
        },
        _ => failed(source),
    })?;
    file.set_len(0).map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerIdentity;
    use rustls::pki_types::{CertificateDer, pem::PemObject};

    #[test]
    fn writes_ca_server_and_caller_certificates_with_private_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("certs");

        let written = dev_certs(&out, false).unwrap();

        assert_eq!(written.ca_cert, out.join("ca.pem"));
        let mut names: Vec<String> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "ca.key",
                "ca.pem",
                "marketing.key",
                "marketing.pem",
                "reader.key",
                "reader.pem",
                "server.key",
                "server.pem",
                "steward.key",
                "steward.pem"
            ]
        );
        let reader = CertificateDer::from_pem_file(out.join("reader.pem")).unwrap();
        assert_eq!(
            PeerIdentity::from_der(&reader).unwrap(),
            PeerIdentity {
                sans: vec![
                    "spiffe://tessera.dev/reader".to_owned(),
                    "reader.tessera.local".to_owned()
                ],
                subject_cn: Some("reader".to_owned()),
            }
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&out), 0o700);
            for key in [
                "ca.key",
                "server.key",
                "reader.key",
                "steward.key",
                "marketing.key",
            ] {
                assert_eq!(mode(&out.join(key)), 0o600, "{key}");
            }
            assert_eq!(mode(&out.join("server.pem")), 0o644);
        }
    }

    #[test]
    fn refuses_to_overwrite_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("steward.key"), b"keep me").unwrap();

        let err = dev_certs(tmp.path(), false).unwrap_err();

        assert!(matches!(&err, TlsError::AlreadyExists { path } if path.ends_with("steward.key")));
        assert_eq!(
            fs::read(tmp.path().join("steward.key")).unwrap(),
            b"keep me"
        );
        assert!(
            !tmp.path().join("ca.pem").exists(),
            "nothing written on refusal"
        );

        dev_certs(tmp.path(), true).unwrap();
        let key = fs::read_to_string(tmp.path().join("steward.key")).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(tmp.path().join("steward.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
