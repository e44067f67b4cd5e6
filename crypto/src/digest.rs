//! Digests: SHA-256, RFC 8785 canonical JSON, and keyed blind indexes.

use hkdf::hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::{BlindIndexKey, CryptoError, SymmetricKey};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Incremental SHA-256, for streamed files.
#[derive(Default, Clone)]
pub struct Sha256Stream(Sha256);

impl Sha256Stream {
    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The digest of everything fed.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// The RFC 8785 (JCS) canonical form of a JSON value.
pub fn canonical_json(value: &serde_json::Value) -> Result<String, CryptoError> {
    serde_json_canonicalizer::to_string(value).map_err(|e| CryptoError::Canonical(e.to_string()))
}

/// A keyed hash (HMAC-SHA256) of a normalised value under `label`, so a value can be found
/// by equality without being stored in clear. Different labels never collide.
pub fn blind_index(key: &BlindIndexKey, label: &str, value: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so constructing it cannot fail; fall back to a
    // digest that will simply match nothing if that ever changed.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.expose()) else {
        return [0u8; 32];
    };
    mac.update(label.as_bytes());
    mac.update(&[0]);
    mac.update(value);
    mac.finalize().into_bytes().into()
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Bytes from hex (either case); `None` unless every pair is a hex byte.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

/// Decodes 64 hex digits (either case) into a 32-byte hash, without allocating.
pub fn hex_decode_32(text: &str) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = (nibble(*high)? << 4) | nibble(*low)?;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hashes_decode_from_hex_in_either_case() {
        let hash = sha256(b"abc");
        assert_eq!(hex_decode_32(&hex(&hash)), Some(hash));
        assert_eq!(hex_decode_32(&hex(&hash).to_uppercase()), Some(hash));
        assert_eq!(hex_decode_32("00"), None);
        assert_eq!(hex_decode_32(&"g".repeat(64)), None);
    }

    #[test]
    fn sha256_known_answer() {
        // FIPS 180-2 example "abc".
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut s = Sha256Stream::default();
        s.update(b"a");
        s.update(b"bc");
        assert_eq!(s.finish(), sha256(b"abc"));
    }

    /// RFC 8785 §3.2.2/§3.2.3: members sorted by UTF-16 code units, numbers in
    /// ECMAScript form, no insignificant whitespace.
    #[test]
    fn canonical_json_rfc8785() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{ "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
                 "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                 "literals": [null, true, false] }"#,
        )
        .unwrap();
        assert_eq!(
            canonical_json(&v).unwrap(),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        let sorted: serde_json::Value = serde_json::from_str(
            r#"{"\u20ac":1,"\r":2,"1":3,"\u0080":4,"\ud83d\ude00":5,"\u00f6":6}"#,
        )
        .unwrap();
        assert_eq!(
            canonical_json(&sorted).unwrap(),
            "{\"\\r\":2,\"1\":3,\"\u{80}\":4,\"ö\":6,\"€\":1,\"😀\":5}"
        );
    }

    #[test]
    fn blind_index_is_keyed_and_labelled() {
        let k1 = BlindIndexKey::from_bytes([1; 32]);
        let k2 = BlindIndexKey::from_bytes([2; 32]);
        let a = blind_index(&k1, "national-id", b"11010519491231002X");
        assert_eq!(a, blind_index(&k1, "national-id", b"11010519491231002X"));
        assert_ne!(a, blind_index(&k2, "national-id", b"11010519491231002X"));
        assert_ne!(a, blind_index(&k1, "other", b"11010519491231002X"));
    }
}
