//! Ed25519 signatures (RFC 8032).
//!
//! The service signs with one key for several purposes (audit checkpoints, consent
//! receipts); each purpose is a context label, and the signed message is
//! `"custodia-sig/1" ‖ 0x00 ‖ label ‖ 0x00 ‖ message`, so a signature made for one purpose
//! never verifies for another. Issuer signatures come from outside and are verified raw
//! over the bytes the issuer signed (RFC 8785 canonical JSON).

use ed25519_dalek::Signer;
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::CryptoError;

/// Context label of audit checkpoint signatures.
pub const CONTEXT_AUDIT_CHECKPOINT: &str = "audit-checkpoint";
/// Context label of consent receipt signatures.
pub const CONTEXT_CONSENT_RECEIPT: &str = "consent-receipt";
/// Context label of webhook signatures (over `timestamp ‖ "." ‖ body`).
pub const CONTEXT_WEBHOOK: &str = "webhook";

/// An Ed25519 signing key (zeroized on drop by ed25519-dalek).
pub struct SigningKey(ed25519_dalek::SigningKey);

/// An Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(ed25519_dalek::SigningKey::generate(&mut OsRng))
    }
    /// From the 32-byte seed.
    pub fn from_seed(seed: &[u8]) -> Result<Self, CryptoError> {
        let seed: [u8; 32] = seed.try_into().map_err(|_| CryptoError::InvalidKey)?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }
    /// The 32-byte seed, for the key file.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }
    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }
    /// Signs `message` for the purpose `context` (see the module docs).
    pub fn sign(&self, context: &str, message: &[u8]) -> [u8; 64] {
        self.0.sign(&framed(context, message)).to_bytes()
    }
    /// Signs raw bytes with no context: what an issuer does to its deposits (the service
    /// itself always signs with a context, [`SigningKey::sign`]).
    pub fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl VerifyingKey {
    /// From the 32-byte encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::InvalidKey)?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| CryptoError::InvalidKey)
    }
    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    /// Verifies a service signature made by [`SigningKey::sign`] for `context`.
    pub fn verify(
        &self,
        context: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.verify_raw(&framed(context, message), signature)
    }
    /// Verifies a plain Ed25519 signature over `message` (issuer signatures).
    pub fn verify_raw(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let sig =
            ed25519_dalek::Signature::from_slice(signature).map_err(|_| CryptoError::Signature)?;
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| CryptoError::Signature)
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey({})", crate::digest::hex(&self.to_bytes()))
    }
}

fn framed(context: &str, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + context.len() + message.len());
    out.extend_from_slice(b"custodia-sig/1\0");
    out.extend_from_slice(context.as_bytes());
    out.push(0);
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1, TEST 1 (empty message) and TEST 2 (one byte).
    #[test]
    fn rfc8032_vectors() {
        let cases = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
        ];
        for (seed, public, msg, sig) in cases {
            let key = SigningKey::from_seed(&hex::decode(seed).unwrap()).unwrap();
            assert_eq!(hex::encode(key.verifying_key().to_bytes()), public);
            let msg = hex::decode(msg).unwrap();
            assert_eq!(hex::encode(key.sign_raw(&msg)), sig);
            let vk = VerifyingKey::from_bytes(&hex::decode(public).unwrap()).unwrap();
            vk.verify_raw(&msg, &hex::decode(sig).unwrap()).unwrap();
        }
    }

    #[test]
    fn contexts_are_separated() {
        let key = SigningKey::generate();
        let vk = key.verifying_key();
        let sig = key.sign(CONTEXT_AUDIT_CHECKPOINT, b"head");
        vk.verify(CONTEXT_AUDIT_CHECKPOINT, b"head", &sig).unwrap();
        assert!(vk.verify(CONTEXT_CONSENT_RECEIPT, b"head", &sig).is_err());
        assert!(vk.verify_raw(b"head", &sig).is_err());
        assert!(vk.verify(CONTEXT_AUDIT_CHECKPOINT, b"head2", &sig).is_err());
    }
}
