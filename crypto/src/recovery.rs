//! Recovery codes: 128 random bits, written in Crockford base32 (26 characters) followed
//! by two check characters (10 bits of SHA-256 over the code), grouped by four:
//! `XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXCC`. Parsing ignores case, spaces and dashes and maps
//! the look-alikes `O`→`0`, `I`/`L`→`1`, as Crockford's alphabet intends.
//!
//! Enrolment codes (the proof of identity a citizen brings to registration) take the same
//! form; the server keeps only their [`RecoveryCode::fingerprint`].

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{CryptoError, KeyEncryptionKey, kdf};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_BYTES: usize = 16;
const DATA_CHARS: usize = 26;

/// A one-time recovery code. Zeroized on drop and never printed by `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RecoveryCode([u8; CODE_BYTES]);

impl RecoveryCode {
    /// A fresh random code.
    pub fn generate() -> Self {
        let mut bytes = [0u8; CODE_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The code as shown once to the citizen.
    pub fn display(&self) -> Zeroizing<String> {
        let mut chars = Zeroizing::new(encode(&self.0));
        chars.push_str(&check_chars(&self.0));
        let mut out = String::with_capacity(35);
        for (i, c) in chars.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            out.push(c);
        }
        Zeroizing::new(out)
    }

    /// Parses a typed code, checking its check characters.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let cleaned: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| !matches!(c, '-' | ' '))
                .map(|c| match c.to_ascii_uppercase() {
                    'O' => '0',
                    'I' | 'L' => '1',
                    other => other,
                })
                .collect(),
        );
        if cleaned.len() != DATA_CHARS + 2 || !cleaned.is_ascii() {
            return Err(CryptoError::InvalidRecoveryCode);
        }
        let (data, check) = cleaned.split_at(DATA_CHARS);
        let bytes = decode(data).ok_or(CryptoError::InvalidRecoveryCode)?;
        if check != check_chars(&bytes) {
            return Err(CryptoError::InvalidRecoveryCode);
        }
        Ok(Self(bytes))
    }

    /// SHA-256 over a domain label, `context` and the code: what is stored to recognise a
    /// one-time code without keeping it. 128 random bits need no slow hash.
    pub fn fingerprint(&self, label: &str, context: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [label.as_bytes(), context] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update(self.0);
        h.finalize().into()
    }

    /// The key-encryption key this code stands for. The code already carries 128 bits of
    /// entropy, so HKDF (not a slow KDF) is enough; `salt` makes each wrap distinct.
    pub fn kek(&self, salt: &[u8]) -> KeyEncryptionKey {
        let mut ikm = Zeroizing::new(self.0.to_vec());
        ikm.extend_from_slice(salt);
        kdf::derive_from_bytes(&ikm, "recovery-code")
    }
}

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

fn encode(bytes: &[u8; CODE_BYTES]) -> String {
    let n = u128::from_be_bytes(*bytes);
    // 26 characters × 5 bits = 130 bits: the first character carries only 3 bits.
    (0..DATA_CHARS)
        .rev()
        .filter_map(|i| ALPHABET.get(((n >> (i * 5)) & 0x1f) as usize))
        .map(|&b| char::from(b))
        .collect()
}

fn decode(text: &str) -> Option<[u8; CODE_BYTES]> {
    let mut n: u128 = 0;
    for (i, c) in text.bytes().enumerate() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u128;
        if i == 0 && v > 0b111 {
            return None; // would overflow 128 bits
        }
        n = (n << 5) | v;
    }
    Some(n.to_be_bytes())
}

fn check_chars(bytes: &[u8; CODE_BYTES]) -> String {
    let digest = Sha256::digest(bytes);
    let (first, second) = (digest.first().copied(), digest.get(1).copied());
    let bits = (u16::from(first.unwrap_or(0)) << 2) | (u16::from(second.unwrap_or(0)) >> 6);
    // Both values are below 32, the alphabet's length.
    [bits >> 5, bits & 0x1f]
        .iter()
        .filter_map(|&v| ALPHABET.get(usize::from(v)))
        .map(|&b| char::from(b))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip() {
        let code = RecoveryCode::generate();
        let shown = code.display();
        assert_eq!(shown.len(), 28 + 6);
        let back = RecoveryCode::parse(&shown.to_lowercase()).unwrap();
        assert_eq!(back.0, code.0);
        assert_eq!(back.kek(b"s"), code.kek(b"s"));
    }

    #[test]
    fn fingerprints_bind_the_label_and_context() {
        let code = RecoveryCode([9u8; CODE_BYTES]);
        let f = code.fingerprint("enrolment-code", b"id-1");
        assert_eq!(f, code.fingerprint("enrolment-code", b"id-1"));
        assert_ne!(f, code.fingerprint("enrolment-code", b"id-2"));
        assert_ne!(f, code.fingerprint("enrolment-cod", b"eid-1"));
        assert_ne!(
            f,
            RecoveryCode([8u8; CODE_BYTES]).fingerprint("enrolment-code", b"id-1")
        );
    }

    #[test]
    fn a_typo_is_caught() {
        let code = RecoveryCode([7u8; CODE_BYTES]);
        let shown = code.display();
        let mut chars: Vec<char> = shown.chars().collect();
        chars[0] = if chars[0] == '0' { '1' } else { '0' };
        let typo: String = chars.into_iter().collect();
        assert!(RecoveryCode::parse(&typo).is_err());
        assert!(RecoveryCode::parse("too-short").is_err());
    }
}
