//! HPKE (RFC 9180) base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
//! AES-256-GCM: issuer deposits are sealed to a citizen's public key so they can arrive
//! while the citizen is away, and only the citizen's (vault-wrapped) private key opens them.
//!
//! Sealed format: `0x01 ‖ enc(32) ‖ ciphertext ‖ tag(16)`.

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::CryptoError;

type Kem = X25519HkdfSha256;
const VERSION: u8 = 0x01;
const ENC_LEN: usize = 32;

/// A citizen's X25519 private key. Stored only encrypted under the vault key.
pub struct HpkeSecretKey(<Kem as hpke::Kem>::PrivateKey);

/// A citizen's X25519 public key, stored in clear so issuers can deposit.
#[derive(Clone, PartialEq, Eq)]
pub struct HpkePublicKey(<Kem as hpke::Kem>::PublicKey);

/// A fresh key pair.
pub fn generate_keypair() -> (HpkeSecretKey, HpkePublicKey) {
    let (sk, pk) = Kem::gen_keypair(&mut OsRng);
    (HpkeSecretKey(sk), HpkePublicKey(pk))
}

impl HpkeSecretKey {
    /// The 32-byte encoding, for wrapping under the vault key.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.to_bytes().to_vec())
    }
    /// Parses the 32-byte encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        <Kem as hpke::Kem>::PrivateKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| CryptoError::InvalidKey)
    }
    /// The matching public key.
    pub fn public_key(&self) -> HpkePublicKey {
        HpkePublicKey(<Kem as hpke::Kem>::sk_to_pk(&self.0))
    }
}

impl std::fmt::Debug for HpkeSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HpkeSecretKey(<redacted>)")
    }
}

impl HpkePublicKey {
    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes().to_vec()
    }
    /// Parses the 32-byte encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        <Kem as hpke::Kem>::PublicKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| CryptoError::InvalidKey)
    }
}

impl std::fmt::Debug for HpkePublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HpkePublicKey({})", crate::digest::hex(&self.to_bytes()))
    }
}

/// Seals `plaintext` to `recipient`; `info` names the application context and `aad`
/// binds the ciphertext to what it belongs to (a deposit id, for example).
pub fn seal(
    recipient: &HpkePublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem, _>(
        &OpModeS::Base,
        &recipient.0,
        info,
        plaintext,
        aad,
        &mut OsRng,
    )
    .map_err(|_| CryptoError::InvalidKey)?;
    let mut out = Vec::with_capacity(1 + ENC_LEN + ct.len());
    out.push(VERSION);
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens what [`seal`] made for this key, `info` and `aad`.
pub fn open(
    secret: &HpkeSecretKey,
    info: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let (&version, rest) = sealed.split_first().ok_or(CryptoError::Truncated)?;
    if version != VERSION {
        return Err(CryptoError::UnsupportedVersion(version));
    }
    if rest.len() < ENC_LEN + 16 {
        return Err(CryptoError::Truncated);
    }
    let (enc, ct) = rest.split_at(ENC_LEN);
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| CryptoError::Decrypt)?;
    hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
        &OpModeR::Base,
        &secret.0,
        &enc,
        info,
        ct,
        aad,
    )
    .map(Zeroizing::new)
    .map_err(|_| CryptoError::Decrypt)
}

/// `info` of short texts sealed to a citizen (the other side's name in a delegation).
const TEXT_INFO: &[u8] = b"custodia-sealed-text/1";

/// Seals a short text to `recipient`, bound to `aad`.
pub fn seal_text(
    recipient: &HpkePublicKey,
    aad: &crate::Aad,
    text: &str,
) -> Result<Vec<u8>, CryptoError> {
    seal(recipient, TEXT_INFO, aad.as_bytes(), text.as_bytes())
}

/// Opens a text sealed by [`seal_text`] for this secret key and `aad`.
pub fn open_text(
    secret: &HpkeSecretKey,
    aad: &crate::Aad,
    sealed: &[u8],
) -> Result<String, CryptoError> {
    let bytes = open(secret, TEXT_INFO, aad.as_bytes(), sealed)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| CryptoError::Decrypt)
}

/// `info` of sealed symmetric keys.
const KEY_INFO: &[u8] = b"custodia-sealed-key/1";

/// Seals a symmetric key to `recipient`, bound to `aad` (issuer deposits: the document's
/// data key, sealed to its owner while they are away).
pub fn seal_key(
    recipient: &HpkePublicKey,
    aad: &crate::Aad,
    key: &impl crate::SymmetricKey,
) -> Result<Vec<u8>, CryptoError> {
    seal(recipient, KEY_INFO, aad.as_bytes(), key.expose())
}

/// Opens a key sealed by [`seal_key`] for this secret key and `aad`.
pub fn open_key<K: crate::SymmetricKey>(
    secret: &HpkeSecretKey,
    aad: &crate::Aad,
    sealed: &[u8],
) -> Result<K, CryptoError> {
    let bytes = open(secret, KEY_INFO, aad.as_bytes(), sealed)?;
    K::try_from_slice(&bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hpke::aead::AesGcm128;

    /// RFC 9180 Appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM,
    /// base mode. RFC 9180 publishes no X25519 + AES-256-GCM vector, so this vector pins
    /// the KEM and key schedule Custodia uses (only the AEAD differs, and AES-256-GCM has
    /// its own known answers in `envelope`).
    #[test]
    fn rfc9180_a1_base_mode() {
        let ikm_r = hex::decode("6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037")
            .unwrap();
        let (sk_r, pk_r) = Kem::derive_keypair(&ikm_r);
        assert_eq!(
            hex::encode(sk_r.to_bytes()),
            "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8"
        );
        assert_eq!(
            hex::encode(pk_r.to_bytes()),
            "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d"
        );
        let info = hex::decode("4f6465206f6e2061204772656369616e2055726e").unwrap();
        let enc = hex::decode("37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431")
            .unwrap();
        let ct = hex::decode(
            "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a",
        )
        .unwrap();
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc).unwrap();
        let pt = hpke::single_shot_open::<AesGcm128, HkdfSha256, Kem>(
            &OpModeR::Base,
            &sk_r,
            &enc,
            &info,
            &ct,
            b"Count-0",
        )
        .unwrap();
        assert_eq!(pt, b"Beauty is truth, truth beauty");
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let (sk, pk) = generate_keypair();
        let sealed = seal(&pk, b"deposit", b"id-1", b"tax clearance").unwrap();
        assert_eq!(
            open(&sk, b"deposit", b"id-1", &sealed).unwrap().as_slice(),
            b"tax clearance"
        );
        assert!(open(&sk, b"deposit", b"id-2", &sealed).is_err());
        assert!(open(&sk, b"other", b"id-1", &sealed).is_err());
        let (other, _) = generate_keypair();
        assert!(open(&other, b"deposit", b"id-1", &sealed).is_err());
        let restored = HpkeSecretKey::from_bytes(&sk.to_bytes()).unwrap();
        assert_eq!(restored.public_key(), pk);
    }
}
