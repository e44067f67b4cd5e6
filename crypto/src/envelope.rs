//! Single-message encryption: `0x01 ‖ nonce(12) ‖ AES-256-GCM(ciphertext ‖ tag)`.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::{Aad, CryptoError, SymmetricKey};

/// Version byte of the AES-256-GCM envelope.
pub const VERSION_AES256GCM: u8 = 0x01;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Encrypts `plaintext` under `key`, bound to `aad`, with a fresh random nonce.
pub fn seal(key: &impl SymmetricKey, aad: &Aad, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    seal_with_nonce(key, aad, &nonce, plaintext)
}

/// The deterministic core of [`seal`]; public within the crate for known-answer tests.
pub(crate) fn seal_with_nonce(
    key: &impl SymmetricKey,
    aad: &Aad,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.expose().into());
    let full_aad = versioned_aad(aad);
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(VERSION_AES256GCM);
    out.extend_from_slice(nonce);
    // AES-GCM encryption only fails for plaintexts over 64 GiB, which no caller builds in
    // memory; an empty output then fails to open rather than panicking here.
    if let Ok(ct) = cipher.encrypt(
        &(*nonce).into(),
        Payload {
            msg: plaintext,
            aad: &full_aad,
        },
    ) {
        out.extend_from_slice(&ct);
    }
    out
}

/// Decrypts an envelope made by [`seal`] with the same key and associated data.
pub fn open(
    key: &impl SymmetricKey,
    aad: &Aad,
    envelope: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let (&version, rest) = envelope.split_first().ok_or(CryptoError::Truncated)?;
    if version != VERSION_AES256GCM {
        return Err(CryptoError::UnsupportedVersion(version));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Truncated);
    }
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Truncated)?;
    let cipher = Aes256Gcm::new(key.expose().into());
    let full_aad = versioned_aad(aad);
    cipher
        .decrypt(
            &nonce.into(),
            Payload {
                msg: ct,
                aad: &full_aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
}

fn versioned_aad(aad: &Aad) -> Vec<u8> {
    let mut full = Vec::with_capacity(1 + aad.as_bytes().len());
    full.push(VERSION_AES256GCM);
    full.extend_from_slice(aad.as_bytes());
    full
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::DataKey;
    use aes_gcm::aead::AeadInOut;

    /// AES-256-GCM known answers, McGrew & Viega "The Galois/Counter Mode of Operation",
    /// test cases 13 and 14 (also in NIST's GCM validation suite): zero key, zero IV.
    #[test]
    fn aes256gcm_known_answers() {
        let cipher = Aes256Gcm::new(&[0u8; 32].into());
        let nonce = &[0u8; 12].into();
        // Test case 13: empty plaintext.
        let tag = cipher
            .encrypt_inout_detached(nonce, b"", (&mut [][..]).into())
            .unwrap();
        assert_eq!(hex::encode(tag), "530f8afbc74536b9a963b4f1c4cb738b");
        // Test case 14: one zero block.
        let mut block = [0u8; 16];
        let tag = cipher
            .encrypt_inout_detached(nonce, b"", (&mut block[..]).into())
            .unwrap();
        assert_eq!(hex::encode(block), "cea7403d4d606b6e074ec5d3baf39d18");
        assert_eq!(hex::encode(tag), "d0d1c8a799996bf0265b98b5d48ab919");
    }

    #[test]
    fn envelope_layout_is_version_nonce_ciphertext_tag() {
        let key = DataKey::from_bytes([7u8; 32]);
        let aad = Aad::new("t");
        let env = seal_with_nonce(&key, &aad, &[9u8; 12], b"hello");
        assert_eq!(env[0], VERSION_AES256GCM);
        assert_eq!(&env[1..13], &[9u8; 12]);
        assert_eq!(env.len(), OVERHEAD + 5);
        assert_eq!(open(&key, &aad, &env).unwrap().as_slice(), b"hello");
    }

    #[test]
    fn unknown_version_and_short_input_are_refused() {
        let key = DataKey::generate();
        let aad = Aad::new("t");
        let mut env = seal(&key, &aad, b"x");
        assert_eq!(open(&key, &aad, &[]), Err(CryptoError::Truncated));
        assert_eq!(open(&key, &aad, &env[..10]), Err(CryptoError::Truncated));
        env[0] = 2;
        assert_eq!(
            open(&key, &aad, &env),
            Err(CryptoError::UnsupportedVersion(2))
        );
    }
}
