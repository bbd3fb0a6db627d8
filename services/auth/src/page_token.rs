//! Signed page tokens: an opaque cursor bound to the caller, the query and an expiry, signed
//! with HMAC-SHA256; the current key signs and the previous key still verifies (rotation).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Key bytes; Debug never prints them.
struct KeyBytes(Vec<u8>);

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A signing key and its ID.
#[derive(Debug)]
pub struct PageKey {
    id: String,
    key: KeyBytes,
}

impl PageKey {
    /// A key with its ID (at most 255 bytes) and secret bytes.
    pub fn new(id: impl Into<String>, key: Vec<u8>) -> Self {
        Self {
            id: id.into(),
            key: KeyBytes(key),
        }
    }
}

/// Why a page token was refused; services answer INVALID_ARGUMENT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageTokenError {
    /// Not a token this service issued, or altered.
    #[error("page token is malformed or altered")]
    Invalid,
    /// Signed with a key no longer configured.
    #[error("page token key is unknown")]
    UnknownKey,
    /// Past its expiry.
    #[error("page token has expired")]
    Expired,
}

/// Issues and verifies page tokens.
#[derive(Debug)]
pub struct PageTokens {
    current: PageKey,
    previous: Option<PageKey>,
    ttl_secs: u64,
}

impl PageTokens {
    /// Default lifetime of a token: one hour.
    pub const DEFAULT_TTL_SECS: u64 = 3600;

    /// Tokens signed with `current`, also verifying those of `previous`.
    pub fn new(current: PageKey, previous: Option<PageKey>) -> Self {
        Self {
            current,
            previous,
            ttl_secs: Self::DEFAULT_TTL_SECS,
        }
    }

    /// Changes the lifetime of new tokens.
    pub fn with_ttl_secs(mut self, ttl_secs: u64) -> Self {
        self.ttl_secs = ttl_secs;
        self
    }

    /// Signs `cursor` for `principal` and the query bytes (the list request without its
    /// page token); `now` is Unix seconds.
    pub fn issue(&self, principal: &str, query: &[u8], cursor: &[u8], now: u64) -> String {
        let expiry = now.saturating_add(self.ttl_secs);
        let mac = mac(&self.current, principal, query, cursor, expiry);
        let mut body = Vec::with_capacity(1 + self.current.id.len() + 8 + cursor.len() + 32);
        let id = self.current.id.as_bytes();
        body.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        body.extend_from_slice(&id[..id.len().min(255)]);
        body.extend_from_slice(&expiry.to_be_bytes());
        body.extend_from_slice(&mac);
        body.extend_from_slice(cursor);
        URL_SAFE_NO_PAD.encode(body)
    }

    /// Checks a token and returns its cursor.
    pub fn verify(
        &self,
        token: &str,
        principal: &str,
        query: &[u8],
        now: u64,
    ) -> Result<Vec<u8>, PageTokenError> {
        let body = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| PageTokenError::Invalid)?;
        let (&id_len, rest) = body.split_first().ok_or(PageTokenError::Invalid)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + 8 + 32 {
            return Err(PageTokenError::Invalid);
        }
        let (id, rest) = rest.split_at(id_len);
        let (expiry, rest) = rest.split_at(8);
        let (tag, cursor) = rest.split_at(32);
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id.as_bytes() == id)
            .ok_or(PageTokenError::UnknownKey)?;
        let mut e = [0u8; 8];
        e.copy_from_slice(expiry);
        let expiry = u64::from_be_bytes(e);
        let m = mac_state(key, principal, query, cursor, expiry);
        m.verify_slice(tag).map_err(|_| PageTokenError::Invalid)?;
        if now >= expiry {
            return Err(PageTokenError::Expired);
        }
        Ok(cursor.to_vec())
    }
}

fn mac_state(
    key: &PageKey,
    principal: &str,
    query: &[u8],
    cursor: &[u8],
    expiry: u64,
) -> HmacSha256 {
    // Hmac accepts keys of any length, so this cannot fail.
    let mut m = match HmacSha256::new_from_slice(&key.key.0) {
        Ok(m) => m,
        Err(_) => unreachable!("hmac accepts any key length"),
    };
    for part in [
        key.id.as_bytes(),
        principal.as_bytes(),
        Sha256::digest(query).as_slice(),
        cursor,
    ] {
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part);
    }
    m.update(&expiry.to_be_bytes());
    m
}

fn mac(key: &PageKey, principal: &str, query: &[u8], cursor: &[u8], expiry: u64) -> [u8; 32] {
    mac_state(key, principal, query, cursor, expiry)
        .finalize()
        .into_bytes()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::new(
            PageKey::new("k2", b"new-key".to_vec()),
            Some(PageKey::new("k1", b"old-key".to_vec())),
        )
    }

    #[test]
    fn round_trip_and_refusals() {
        let t = tokens();
        let tok = t.issue("alice", b"q", b"cursor-7", 100);
        assert_eq!(t.verify(&tok, "alice", b"q", 101).unwrap(), b"cursor-7");
        assert_eq!(
            t.verify(&tok, "mallory", b"q", 101),
            Err(PageTokenError::Invalid)
        );
        assert_eq!(
            t.verify(&tok, "alice", b"other", 101),
            Err(PageTokenError::Invalid)
        );
        assert_eq!(
            t.verify(&tok, "alice", b"q", 100 + 3600),
            Err(PageTokenError::Expired)
        );
        let mut raw = URL_SAFE_NO_PAD.decode(&tok).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(
            t.verify(&tampered, "alice", b"q", 101),
            Err(PageTokenError::Invalid)
        );
    }

    #[test]
    fn previous_key_verifies_and_unknown_key_is_refused() {
        let old = PageTokens::new(PageKey::new("k1", b"old-key".to_vec()), None);
        let tok = old.issue("alice", b"q", b"c", 0);
        assert_eq!(tokens().verify(&tok, "alice", b"q", 1).unwrap(), b"c");
        let other = PageTokens::new(PageKey::new("k9", b"x".to_vec()), None);
        assert_eq!(
            other.verify(&tok, "alice", b"q", 1),
            Err(PageTokenError::UnknownKey)
        );
        assert!(!format!("{:?}", tokens()).contains("new-key"));
    }
}
