//! Custodia's cryptography, and nothing else: no I/O, no async, no database types.
//!
//! # Formats and invariants
//!
//! * **Envelope** ([`envelope`]): `0x01 ‖ nonce(12) ‖ AES-256-GCM(ciphertext ‖ tag(16))`.
//!   The version byte is authenticated (it is prefixed to the associated data), so a
//!   future algorithm can take a new version byte without ambiguity. Nonces are random
//!   96-bit values; every key encrypts few enough messages that random nonces are safe.
//! * **Associated data** ([`Aad`]) is mandatory: no function encrypts without one. An
//!   `Aad` names a purpose label and a list of `(name, value)` pairs (document id,
//!   version, owner...), encoded length-prefixed so no two different contexts share an
//!   encoding. Ciphertext moved to another row fails to open.
//! * **Stream** ([`stream`]): files are cut into 64 KiB chunks, each sealed with the
//!   STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015): nonce =
//!   `prefix(7) ‖ counter(u32 BE) ‖ last(1)`. The random prefix, the header and the
//!   caller's `Aad` are bound into every chunk, so truncation, reordering, duplication
//!   and swapping chunks between files are all detected.
//! * **Key wrapping** ([`wrap`]): a 256-bit key sealed as an envelope under a key-
//!   encryption key, with the `Aad` of what the wrapped key belongs to.
//! * **Key derivation** ([`kdf`]): HKDF-SHA256 subkeys under labelled contexts (RFC 5869);
//!   Argon2id for passphrases with its parameters stored beside the salt (RFC 9106).
//! * **Recovery codes** ([`recovery`]): 128 random bits in Crockford base32 with two
//!   check characters, grouped by four.
//! * **HPKE** ([`hpke_seal`]): RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256),
//!   HKDF-SHA256, AES-256-GCM, for deposits sealed to a citizen who is away.
//! * **Signatures** ([`sign`]): Ed25519 (RFC 8032). Service signatures are domain-separated
//!   by a context label; issuer signatures are verified raw, as the issuer made them.
//! * **Digests** ([`digest`]): SHA-256, RFC 8785 canonical JSON, and keyed blind indexes
//!   (HMAC-SHA256) for values that must be found but never stored in clear.
//!
//! Every key type zeroizes on drop, prints `Name(<redacted>)` in `Debug`, and compares in
//! constant time.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::indexing_slicing, clippy::panic)]
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::panic))]

mod aad;
pub mod digest;
pub mod envelope;
mod error;
pub mod hpke_seal;
pub mod kdf;
mod keys;
pub mod recovery;
pub mod sign;
pub mod stream;
pub mod tlog;
pub mod witness;
pub mod wrap;

pub use aad::Aad;
pub use error::CryptoError;
pub use keys::{
    BlindIndexKey, DataKey, DelegationKey, GrantKey, KeyEncryptionKey, MasterKey, Passphrase,
    SecretBytes, ServiceKey, SymmetricKey, VaultKey, ct_eq,
};

/// Length in bytes of every symmetric key in Custodia.
pub const KEY_LEN: usize = 32;

/// `N` bytes from the operating system's random source, for values that are unguessable
/// but not secret (blob names, request ids). Key material uses the key types instead.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand_core::RngCore as _;
    let mut bytes = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes
}
