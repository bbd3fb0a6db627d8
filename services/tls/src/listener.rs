//! The rule for plaintext listeners.

use std::net::SocketAddr;

use crate::ListenerError;

/// Refuses a plaintext listener on an address other than loopback.
///
/// Without TLS, only a loopback address (`127.0.0.0/8`, `::1`, or `::ffff:127.x.y.z`) is
/// allowed, unless `insecure` is set; then the call succeeds and warning loudly is the
/// caller's job. With TLS configured, any address is allowed. Pure: no I/O.
pub fn check_listener(
    addr: SocketAddr,
    tls_configured: bool,
    insecure: bool,
) -> Result<(), ListenerError> {
    if tls_configured || insecure || addr.ip().to_canonical().is_loopback() {
        Ok(())
    } else {
        Err(ListenerError::PlaintextNonLoopback { addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn plaintext_is_allowed_on_loopback_only() {
        for ok in [
            "127.0.0.1:50051",
            "127.1.2.3:1",
            "[::1]:50051",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(check_listener(addr(ok), false, false).is_ok(), "{ok}");
        }
        for refused in [
            "0.0.0.0:50051",
            "10.1.2.3:50051",
            "[::]:50051",
            "[2001:db8::1]:1",
        ] {
            let err = check_listener(addr(refused), false, false).unwrap_err();
            assert!(
                matches!(err, ListenerError::PlaintextNonLoopback { addr: a } if a == addr(refused)),
                "{refused}"
            );
            assert!(err.to_string().starts_with("refusing a plaintext listener"));
        }
    }

    #[test]
    fn tls_or_explicit_insecure_allows_any_address() {
        assert!(check_listener(addr("0.0.0.0:50051"), true, false).is_ok());
        assert!(check_listener(addr("0.0.0.0:50051"), false, true).is_ok());
        assert!(check_listener(addr("[::]:50051"), true, true).is_ok());
    }
}
