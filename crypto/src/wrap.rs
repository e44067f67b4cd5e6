//! Key wrapping: a 256-bit key sealed in an [`envelope`](crate::envelope) under a
//! key-encryption key, bound to the context (`Aad`) of what the wrapped key belongs to.

use crate::{Aad, CryptoError, SymmetricKey, envelope};

/// Wraps `key` under `kek` for the context `aad`.
pub fn wrap_key(kek: &impl SymmetricKey, key: &impl SymmetricKey, aad: &Aad) -> Vec<u8> {
    envelope::seal(kek, aad, key.expose())
}

/// Unwraps a key made by [`wrap_key`]; the key type is chosen by the caller.
pub fn unwrap_key<K: SymmetricKey>(
    kek: &impl SymmetricKey,
    wrapped: &[u8],
    aad: &Aad,
) -> Result<K, CryptoError> {
    let bytes = envelope::open(kek, aad, wrapped)?;
    K::try_from_slice(&bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{DataKey, VaultKey};

    #[test]
    fn wrap_round_trip_and_context_binding() {
        let vault = VaultKey::generate();
        let data = DataKey::generate();
        let aad = Aad::new("data-key").with("doc", "a").with("version", "1");
        let wrapped = wrap_key(&vault, &data, &aad);
        let back: DataKey = unwrap_key(&vault, &wrapped, &aad).unwrap();
        assert_eq!(back, data);
        let other = Aad::new("data-key").with("doc", "b").with("version", "1");
        assert_eq!(
            unwrap_key::<DataKey>(&vault, &wrapped, &other),
            Err(CryptoError::Decrypt)
        );
        assert!(unwrap_key::<DataKey>(&VaultKey::generate(), &wrapped, &aad).is_err());
    }
}
