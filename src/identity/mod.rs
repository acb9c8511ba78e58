//! Who is behind a request, without keeping what proves it: which parts of
//! a request carry credentials ([`credentials`]), whom they identify
//! ([`principal`]), and the keyed hashes credentials are identified by. The key is the redaction key
//! (`classify.redaction_key_hex`, else a random one per process), so a hash
//! in an event (an API-key principal, the password a spraying campaign
//! tried) cannot be reversed with a dictionary by whoever reads the event.
//!
//! `tokens`: what the API issues (per-issuer token profiles) and what a
//! presented token is (issued, consistent, or suspicious and why), and which
//! endpoints are shown to check tokens. `jwt_secrets`: the embedded public
//! wordlist of JWT secrets and the HMAC check against it. Tokens are decoded
//! in `crate::jwt` only.

pub mod jwt_secrets;
pub mod tokens;

pub mod credentials;
pub mod principal;

pub use credentials::{Carrier, Credential, CredentialKind, Credentials};
pub use principal::{IdentityBook, Principal, PrincipalKind};

use crate::config::ClassifySettings;

/// Keyed BLAKE3 over secrets, one domain per purpose.
#[derive(Clone)]
pub struct SecretHasher {
    key: [u8; 32],
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher(<key hidden>)")
    }
}

impl Default for SecretHasher {
    /// A random key: hashes correlate within this process only.
    fn default() -> Self {
        SecretHasher {
            key: crate::classify::random_key(),
        }
    }
}

impl SecretHasher {
    /// The hasher of the configured redaction key (random when none is set).
    pub fn new(settings: &ClassifySettings) -> SecretHasher {
        SecretHasher {
            key: crate::classify::parse_key_hex(&settings.redaction_key_hex)
                .unwrap_or_else(crate::classify::random_key),
        }
    }

    /// 32 bytes identifying `value` for `purpose` (e.g. "api key"); equal
    /// values give equal digests under one key, nothing else is revealed.
    pub fn digest(&self, purpose: &str, value: &[u8]) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(purpose.as_bytes());
        hasher.update(&[0]);
        hasher.update(value);
        *hasher.finalize().as_bytes()
    }

    /// The first 16 hex digits of [`SecretHasher::digest`].
    pub fn short_hex(&self, purpose: &str, value: &[u8]) -> String {
        let digest = self.digest(purpose, value);
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_depend_on_key_purpose_and_value() {
        let settings = |k: &str| ClassifySettings {
            redaction_key_hex: k.repeat(32),
            ..ClassifySettings::default()
        };
        let a = SecretHasher::new(&settings("ab"));
        let b = SecretHasher::new(&settings("cd"));
        assert_eq!(a.short_hex("api key", b"k"), a.short_hex("api key", b"k"));
        assert_eq!(a.short_hex("api key", b"k").len(), 16);
        assert_ne!(a.short_hex("api key", b"k"), b.short_hex("api key", b"k"));
        assert_ne!(a.short_hex("api key", b"k"), a.short_hex("session", b"k"));
        assert_ne!(a.digest("password", b"x"), a.digest("password", b"y"));
        // Unkeyed hashes are what a dictionary reverses: these are not them.
        let unkeyed = blake3::hash(b"hunter2");
        assert_ne!(a.digest("password", b"hunter2"), *unkeyed.as_bytes());
    }
}
