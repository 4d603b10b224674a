//! Lease tokens: the random secret that proves ownership of a lock key.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

/// A lease's ownership token: 128 bits from the operating system's random source, as 32
/// lowercase hex digits. Only the holder of the token can release or extend the lease.
///
/// A token is a capability, so `Debug` and `Display` show only a short fingerprint
/// (`tok:1a2b3c4d`); [`Token::expose`] returns the secret itself.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    /// Draws a new token from the OS random source.
    pub(crate) fn generate() -> Result<Self, crate::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| crate::Error::Entropy(e.to_string()))?;
        let hex = bytes
            .iter()
            .flat_map(|byte| {
                [
                    DIGITS[usize::from(byte >> 4)],
                    DIGITS[usize::from(byte & 0xf)],
                ]
            })
            .map(char::from)
            .collect();
        Ok(Self(hex))
    }

    /// A token read back from Redis (only to fingerprint it).
    pub(crate) fn from_stored(token: &str) -> Self {
        Self(token.to_owned())
    }

    /// The secret value stored in Redis. Treat it like a password.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// A short, non-reversible fingerprint that is safe to log.
    pub fn fingerprint(&self) -> String {
        let mut hasher = DefaultHasher::new();
        self.0.hash(&mut hasher);
        format!("tok:{:08x}", hasher.finish() >> 32)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_128_bit_hex_and_distinct() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_eq!(a.expose().len(), 32);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn formatting_never_shows_the_secret() {
        let token = Token::generate().unwrap();
        for shown in [format!("{token}"), format!("{token:?}")] {
            assert!(!shown.contains(token.expose()), "{shown}");
            assert!(!shown.contains(&token.expose()[..8]), "{shown}");
            assert!(shown.starts_with("tok:"));
        }
        assert_eq!(token.fingerprint(), token.clone().fingerprint());
    }
}
