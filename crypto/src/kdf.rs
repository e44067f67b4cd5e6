//! Key derivation: HKDF-SHA256 subkeys (RFC 5869) and Argon2id passphrase keys (RFC 9106).

use argon2::{Algorithm, Argon2, Params, Version};
use hkdf::Hkdf;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroize;

use crate::{CryptoError, KEY_LEN, KeyEncryptionKey, Passphrase, SymmetricKey};

const HKDF_SALT: &[u8] = b"custodia/hkdf/v1";

/// Derives a subkey of `ikm` for the labelled context `label` (HKDF-SHA256, RFC 5869).
/// Different labels give independent keys; the same label always gives the same key.
pub fn derive_subkey<K: SymmetricKey>(ikm: &impl SymmetricKey, label: &str) -> K {
    derive_from_bytes(ikm.expose(), label)
}

/// Derives a key from high-entropy secret bytes (a session secret, a recovery code).
pub fn derive_from_bytes<K: SymmetricKey>(ikm: &[u8], label: &str) -> K {
    let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), ikm);
    let mut okm = [0u8; KEY_LEN];
    // 32 bytes is far below HKDF-SHA256's limit of 255 × 32, so expand cannot fail;
    // should it ever, the all-zero output is replaced below by a failing key anyway.
    if hk.expand(label.as_bytes(), &mut okm).is_err() {
        okm = [0u8; KEY_LEN];
    }
    let key = K::from_bytes(okm);
    okm.zeroize();
    key
}

/// Argon2id cost parameters and salt, stored beside every passphrase-wrapped key so the
/// costs can be raised later without breaking existing vaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassphraseKdf {
    /// Algorithm name; always `"argon2id"` (version 0x13).
    pub alg: String,
    /// Memory cost in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Parallelism.
    pub p: u32,
    /// Random 16-byte salt, hex.
    pub salt: String,
}

/// Argon2id cost settings (the salt is drawn fresh for each new wrap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    /// Memory cost in KiB (default 64 MiB).
    pub m_kib: u32,
    /// Iterations (default 3).
    pub t: u32,
    /// Parallelism (default 1).
    pub p: u32,
}

impl Default for Argon2Cost {
    fn default() -> Self {
        Self {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

impl PassphraseKdf {
    /// Fresh parameters with a random salt.
    pub fn new(cost: Argon2Cost) -> Self {
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        Self {
            alg: "argon2id".into(),
            m_kib: cost.m_kib,
            t: cost.t,
            p: cost.p,
            salt: hex::encode(salt),
        }
    }

    /// Derives the key-encryption key for `passphrase` under these parameters.
    pub fn derive(&self, passphrase: &Passphrase) -> Result<KeyEncryptionKey, CryptoError> {
        if self.alg != "argon2id" {
            return Err(CryptoError::Kdf("unknown algorithm"));
        }
        let salt =
            crate::digest::hex_decode(&self.salt).ok_or(CryptoError::Kdf("salt is not hex"))?;
        let mut out = [0u8; KEY_LEN];
        argon2id(
            passphrase.expose().as_bytes(),
            &salt,
            self.m_kib,
            self.t,
            self.p,
            &mut out,
        )?;
        let key = KeyEncryptionKey::from_bytes(out);
        out.zeroize();
        Ok(key)
    }
}

fn argon2id(
    pwd: &[u8],
    salt: &[u8],
    m: u32,
    t: u32,
    p: u32,
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let params = Params::new(m, t, p, Some(out.len()))
        .map_err(|_| CryptoError::Kdf("invalid parameters"))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pwd, salt, out)
        .map_err(|_| CryptoError::Kdf("argon2 failed"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{MasterKey, ServiceKey};

    /// RFC 5869 Appendix A.1 (basic test case with SHA-256).
    #[test]
    fn hkdf_rfc5869_case_1() {
        let ikm = [0x0bu8; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let (prk, hk) = Hkdf::<Sha256>::extract(Some(&salt), &ikm);
        assert_eq!(
            hex::encode(prk),
            "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
        );
        let mut okm = [0u8; 42];
        hk.expand(&info, &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    /// RFC 9106 §5.3: Argon2id with secret and associated data.
    #[test]
    fn argon2id_rfc9106_vector() {
        let password = [0x01u8; 32];
        let salt = [0x02u8; 16];
        let secret = [0x03u8; 8];
        let ad = [0x04u8; 12];
        let params = argon2::ParamsBuilder::new()
            .m_cost(32)
            .t_cost(3)
            .p_cost(4)
            .data(argon2::AssociatedData::new(&ad).unwrap())
            .output_len(32)
            .build()
            .unwrap();
        let a2 =
            Argon2::new_with_secret(&secret, Algorithm::Argon2id, Version::V0x13, params).unwrap();
        let mut out = [0u8; 32];
        a2.hash_password_into(&password, &salt, &mut out).unwrap();
        assert_eq!(
            hex::encode(out),
            "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
        );
    }

    #[test]
    fn subkeys_are_labelled_and_stable() {
        let master = MasterKey::from_bytes([1u8; 32]);
        let a: ServiceKey = derive_subkey(&master, "grant-wrap");
        let b: ServiceKey = derive_subkey(&master, "blind-index");
        assert_ne!(a, b);
        assert_eq!(a, derive_subkey::<ServiceKey>(&master, "grant-wrap"));
    }

    #[test]
    fn passphrase_kdf_params_travel_with_the_salt() {
        let cost = Argon2Cost {
            m_kib: 64,
            t: 1,
            p: 1,
        };
        let kdf = PassphraseKdf::new(cost);
        let json = serde_json::to_string(&kdf).unwrap();
        let back: PassphraseKdf = serde_json::from_str(&json).unwrap();
        let p = Passphrase::new("a long passphrase".into());
        assert_eq!(kdf.derive(&p).unwrap(), back.derive(&p).unwrap());
        assert_ne!(
            kdf.derive(&p).unwrap(),
            kdf.derive(&Passphrase::new("another passphrase".into()))
                .unwrap()
        );
        assert_ne!(
            kdf.derive(&p).unwrap(),
            PassphraseKdf::new(cost).derive(&p).unwrap()
        );
    }
}
