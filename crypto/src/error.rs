use thiserror::Error;

/// Why a cryptographic operation failed. Messages never contain key material or plaintext.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authentication failed: wrong key, wrong associated data, or modified ciphertext.
    #[error("decryption failed: wrong key, wrong context or modified ciphertext")]
    Decrypt,
    /// A stream ended before its last chunk, or a ciphertext is shorter than its header.
    #[error("ciphertext is truncated")]
    Truncated,
    /// The input is not in the expected format.
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    /// The version byte names an algorithm this build does not know.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// A key derivation failed (invalid Argon2 parameters, for example).
    #[error("key derivation failed: {0}")]
    Kdf(&'static str),
    /// A recovery code is mistyped or its check characters do not match.
    #[error("recovery code is not valid")]
    InvalidRecoveryCode,
    /// A public or private key has the wrong length or is not a valid point.
    #[error("invalid key")]
    InvalidKey,
    /// A signature does not verify.
    #[error("signature does not verify")]
    Signature,
    /// A stream has more chunks than its counter can number.
    #[error("stream too long")]
    StreamTooLong,
    /// JSON could not be put in canonical form.
    #[error("cannot canonicalise JSON: {0}")]
    Canonical(String),
}
