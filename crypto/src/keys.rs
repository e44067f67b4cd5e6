use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{CryptoError, KEY_LEN};

/// A 256-bit symmetric key. Implemented by every key newtype so the envelope, wrapping
/// and derivation functions accept any of them while the types keep roles apart.
pub trait SymmetricKey: Sized {
    /// Builds the key from raw bytes (taking ownership; the caller's copy is its own).
    fn from_bytes(bytes: [u8; KEY_LEN]) -> Self;
    /// The raw key bytes, for the cipher. Never log or store them unwrapped.
    fn expose(&self) -> &[u8; KEY_LEN];
    /// A fresh random key from the operating system's CSPRNG.
    fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        let key = Self::from_bytes(bytes);
        bytes.zeroize();
        key
    }
    /// Builds the key from a slice that must be exactly 32 bytes.
    fn try_from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::InvalidKey)?;
        let key = Self::from_bytes(arr);
        arr.zeroize();
        Ok(key)
    }
}

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; KEY_LEN]);

        impl SymmetricKey for $name {
            fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
                Self(bytes)
            }
            fn expose(&self) -> &[u8; KEY_LEN] {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
            }
        }
        impl Eq for $name {}
    };
}

key_type!(
    /// The server's root key, kept in a file beside the data (mode 0600). It wraps only
    /// service keys; it never wraps a citizen's vault key (SPEC G5).
    MasterKey
);
key_type!(
    /// A random service key (grant wrapping, blind index...), stored wrapped under the
    /// master key so a master key rotation only re-wraps it.
    ServiceKey
);
key_type!(
    /// A citizen's vault key: wraps that citizen's data keys and private key. Wrapped only
    /// under passphrase- and recovery-derived keys and, while unlocked, a session secret.
    VaultKey
);
key_type!(
    /// The key of one document version's fields and file.
    DataKey
);
key_type!(
    /// A per-grant key: wraps the data keys a grant covers; itself wrapped under a
    /// service key. Destroying its wrap ends access cryptographically.
    GrantKey
);
key_type!(
    /// A per-delegation key: wraps the data keys a delegation covers; itself sealed to the
    /// delegate's public key and wrapped under the principal's vault key. Destroying those
    /// ends the delegate's access cryptographically.
    DelegationKey
);
key_type!(
    /// A key-encryption key derived from a passphrase, a recovery code or a session secret.
    KeyEncryptionKey
);
key_type!(
    /// The key of keyed hashes (blind indexes) such as the national ID lookup.
    BlindIndexKey
);

/// Secret bytes of any length (a session secret, a private key's encoding, an API key).
/// Zeroized on drop, redacted in `Debug`, compared in constant time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps bytes the caller hands over.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    /// `len` random bytes.
    pub fn random(len: usize) -> Self {
        let mut bytes = vec![0u8; len];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }
    /// The bytes. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}
impl Eq for SecretBytes {}

/// A vault passphrase as typed by the citizen. Zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Takes ownership of the typed passphrase.
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }
    /// The passphrase text, for the KDF and strength checks only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Constant-time equality of two byte strings (length may leak, contents do not).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_key_bytes() {
        let key = DataKey::from_bytes([0xAB; KEY_LEN]);
        assert_eq!(format!("{key:?}"), "DataKey(<redacted>)");
        let p = Passphrase::new("correct horse".into());
        assert!(!format!("{p:?}").contains("horse"));
        let s = SecretBytes::new(vec![0xAB; 4]);
        assert!(!format!("{s:?}").to_lowercase().contains("ab"));
    }

    #[test]
    fn generated_keys_differ_and_compare_by_value() {
        let a = VaultKey::generate();
        let b = VaultKey::generate();
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(VaultKey::try_from_slice(&[0u8; 31]).is_err());
    }
}
