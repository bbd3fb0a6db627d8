//! The caller's identity, read from its client certificate.

use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer};

use crate::TlsError;

/// Who is calling, as its verified client certificate says.
///
/// `sans` holds the certificate's subject alternative names of the kinds that name a
/// workload or a person, in certificate order: URIs (`spiffe://tessera.dev/reader`), DNS
/// names (`reader.tessera.local`) and e-mail addresses. IP address SANs are left out:
/// they name a host, not a caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Subject alternative names: URIs, DNS names and e-mail addresses.
    pub sans: Vec<String>,
    /// The subject's common name, if it has one.
    pub subject_cn: Option<String>,
}

impl PeerIdentity {
    /// Reads the identity from a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, TlsError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|_| TlsError::PeerCertificate)?;
        let sans = match cert
            .subject_alternative_name()
            .map_err(|_| TlsError::PeerCertificate)?
        {
            Some(ext) => ext
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(s) | GeneralName::DNSName(s) | GeneralName::RFC822Name(s) => {
                        Some((*s).to_owned())
                    }
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        let subject_cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        Ok(Self { sans, subject_cn })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    #[test]
    fn reads_uri_dns_and_email_sans_and_the_common_name() {
        let mut params = CertificateParams::new(vec!["reader.tessera.local".to_owned()]).unwrap();
        params.subject_alt_names.push(SanType::URI(
            "spiffe://tessera.dev/reader".try_into().unwrap(),
        ));
        params
            .subject_alt_names
            .push(SanType::Rfc822Name("ops@tessera.dev".try_into().unwrap()));
        params
            .subject_alt_names
            .push(SanType::IpAddress("10.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, "reader");
        let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();

        let identity = PeerIdentity::from_der(cert.der()).unwrap();

        assert_eq!(
            identity.sans,
            vec![
                "reader.tessera.local",
                "spiffe://tessera.dev/reader",
                "ops@tessera.dev"
            ]
        );
        assert_eq!(identity.subject_cn.as_deref(), Some("reader"));
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_identity() {
        assert!(matches!(
            PeerIdentity::from_der(b"not a certificate"),
            Err(TlsError::PeerCertificate)
        ));
    }
}
