//! Property tests: round trips hold, and any tampering fails.
#![allow(clippy::unwrap_used)]

use custodia_crypto::stream::{self, CHUNK_LEN, HEADER_LEN, TAG_LEN};
use custodia_crypto::{Aad, DataKey, SymmetricKey, envelope, wrap};
use proptest::prelude::*;

const FULL: usize = CHUNK_LEN + TAG_LEN;

fn key() -> DataKey {
    DataKey::generate()
}

fn aad(doc: &str) -> Aad {
    Aad::new("test-file").with("doc", doc).with("version", "1")
}

/// Splits a stream into its header and chunk ciphertexts.
fn chunks(ct: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let (h, body) = ct.split_at(HEADER_LEN);
    (h.to_vec(), body.chunks(FULL).map(<[u8]>::to_vec).collect())
}

fn join(header: &[u8], chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = header.to_vec();
    for c in chunks {
        out.extend_from_slice(c);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn envelope_round_trip(pt in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let k = key();
        let env = envelope::seal(&k, &aad("a"), &pt);
        let opened = envelope::open(&k, &aad("a"), &env).unwrap();
        prop_assert_eq!(opened.as_slice(), pt.as_slice());
    }

    #[test]
    fn envelope_any_flipped_bit_fails(pt in proptest::collection::vec(any::<u8>(), 0..256), bit in any::<usize>()) {
        let k = key();
        let mut env = envelope::seal(&k, &aad("a"), &pt);
        let bit = bit % (env.len() * 8);
        env[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(envelope::open(&k, &aad("a"), &env).is_err());
    }

    #[test]
    fn envelope_other_context_fails(pt in proptest::collection::vec(any::<u8>(), 0..256), a in "[a-z]{1,8}", b in "[a-z]{1,8}") {
        prop_assume!(a != b);
        let k = key();
        let env = envelope::seal(&k, &aad(&a), &pt);
        prop_assert!(envelope::open(&k, &aad(&b), &env).is_err());
    }

    #[test]
    fn wrapped_keys_round_trip_and_bind(seed in any::<[u8; 32]>()) {
        let kek = key();
        let inner = DataKey::from_bytes(seed);
        let w = wrap::wrap_key(&kek, &inner, &aad("a"));
        prop_assert_eq!(wrap::unwrap_key::<DataKey>(&kek, &w, &aad("a")).unwrap(), inner);
        prop_assert!(wrap::unwrap_key::<DataKey>(&kek, &w, &aad("b")).is_err());
    }

    #[test]
    fn stream_round_trip_any_piece_sizes(
        len in 0usize..(3 * CHUNK_LEN + 100),
        piece in 1usize..(CHUNK_LEN + 500),
    ) {
        let k = key();
        let pt: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut enc = stream::StreamEncryptor::new(&k, &aad("a"));
        let mut ct = Vec::new();
        for p in pt.chunks(piece) {
            enc.push(p, &mut ct).unwrap();
        }
        enc.finish(&mut ct).unwrap();
        prop_assert_eq!(ct.len() as u64, stream::ciphertext_len(len as u64));
        let mut dec = stream::StreamDecryptor::new(&k, &aad("a"));
        let mut out = Vec::new();
        for p in ct.chunks(piece) {
            dec.push(p, &mut out).unwrap();
        }
        dec.finish(&mut out).unwrap();
        prop_assert_eq!(out, pt);
    }

    #[test]
    fn stream_flipped_bit_fails(len in 1usize..(2 * CHUNK_LEN + 10), bit in any::<usize>()) {
        let k = key();
        let mut ct = stream::encrypt_all(&k, &aad("a"), &vec![3u8; len]).unwrap();
        let bit = bit % (ct.len() * 8);
        ct[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(stream::decrypt_all(&k, &aad("a"), &ct).is_err());
    }

    #[test]
    fn stream_truncation_fails(len in 0usize..(3 * CHUNK_LEN), cut in any::<usize>()) {
        let k = key();
        let ct = stream::encrypt_all(&k, &aad("a"), &vec![4u8; len]).unwrap();
        let cut = cut % ct.len();
        prop_assert!(stream::decrypt_all(&k, &aad("a"), &ct[..cut]).is_err());
    }

    #[test]
    fn stream_reordered_or_duplicated_chunks_fail(n in 2usize..5, tail in 1usize..CHUNK_LEN, i in any::<usize>(), j in any::<usize>()) {
        let k = key();
        let ct = stream::encrypt_all(&k, &aad("a"), &vec![5u8; (n - 1) * CHUNK_LEN + tail]).unwrap();
        let (h, cs) = chunks(&ct);
        let (i, j) = (i % cs.len(), j % cs.len());
        if i != j {
            let mut swapped = cs.clone();
            swapped.swap(i, j);
            prop_assert!(stream::decrypt_all(&k, &aad("a"), &join(&h, &swapped)).is_err());
        }
        let mut dup = cs.clone();
        dup.insert(i, cs[i].clone());
        prop_assert!(stream::decrypt_all(&k, &aad("a"), &join(&h, &dup)).is_err());
        let mut dropped = cs.clone();
        dropped.remove(i);
        prop_assert!(stream::decrypt_all(&k, &aad("a"), &join(&h, &dropped)).is_err());
    }

    #[test]
    fn stream_chunks_swapped_between_files_fail(i in 0usize..2) {
        // Same key and same context: only the per-file random prefix tells them apart.
        let k = key();
        let a = stream::encrypt_all(&k, &aad("a"), &vec![6u8; 2 * CHUNK_LEN + 1]).unwrap();
        let b = stream::encrypt_all(&k, &aad("a"), &vec![6u8; 2 * CHUNK_LEN + 1]).unwrap();
        let (ha, mut ca) = chunks(&a);
        let (_, cb) = chunks(&b);
        ca[i] = cb[i].clone();
        prop_assert!(stream::decrypt_all(&k, &aad("a"), &join(&ha, &ca)).is_err());
    }

    #[test]
    fn stream_other_context_or_key_fails(len in 0usize..1000) {
        let k = key();
        let ct = stream::encrypt_all(&k, &aad("a"), &vec![7u8; len]).unwrap();
        prop_assert!(stream::decrypt_all(&k, &aad("b"), &ct).is_err());
        prop_assert!(stream::decrypt_all(&key(), &aad("a"), &ct).is_err());
    }
}

/// Arbitrary JSON: what an issuer or an agency may send to be signed or hashed.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        // RFC 8785 works on I-JSON: integers beyond ±2^53 are not exact as doubles.
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(|n| serde_json::json!(n)),
        "\\PC{0,12}".prop_map(serde_json::Value::String),
        "[\\x00-\\x1f\"\\\\\u{7f}\u{2028}\u{1F600}]{0,6}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// RFC 8785: the canonical form reads back as the same value and is its own
    /// canonical form.
    #[test]
    fn jcs_round_trips_and_is_stable(v in json_value()) {
        let text = custodia_crypto::digest::canonical_json(&v).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(custodia_crypto::digest::canonical_json(&back).unwrap(), text.clone());
    }

    /// Members are ordered by their names' UTF-16 code units (RFC 8785 §3.2.3), which is
    /// not the order of UTF-8 bytes once names leave the BMP.
    #[test]
    fn jcs_orders_members_by_utf16(names in proptest::collection::btree_set("[a-zA-Z\u{e000}-\u{e0ff}\u{1F600}-\u{1F610}]{0,4}", 0..8)) {
        let v = serde_json::Value::Object(names.iter().map(|n| (n.clone(), serde_json::Value::Null)).collect());
        let mut sorted: Vec<&String> = names.iter().collect();
        sorted.sort_by_key(|n| n.encode_utf16().collect::<Vec<u16>>());
        let expected = format!(
            "{{{}}}",
            sorted.iter().map(|n| format!("{}:null", serde_json::to_string(n).unwrap())).collect::<Vec<_>>().join(",")
        );
        prop_assert_eq!(custodia_crypto::digest::canonical_json(&v).unwrap(), expected);
    }

    /// Numbers are written in their shortest form that reads back as the same double
    /// (RFC 8785 §3.2.2.3, as ECMAScript prints them).
    #[test]
    fn jcs_numbers_read_back_exactly(f in proptest::num::f64::NORMAL | proptest::num::f64::ZERO) {
        let text = custodia_crypto::digest::canonical_json(&serde_json::json!(f)).unwrap();
        let back: f64 = text.parse().unwrap();
        prop_assert_eq!(back, f);
    }

    /// Whitespace and member order in what a client sends do not change the canonical
    /// form (so a signature over it holds however the JSON was pretty-printed).
    #[test]
    fn jcs_ignores_layout(v in json_value()) {
        let compact = serde_json::to_string(&v).unwrap();
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        let a: serde_json::Value = serde_json::from_str(&compact).unwrap();
        let b: serde_json::Value = serde_json::from_str(&pretty).unwrap();
        prop_assert_eq!(
            custodia_crypto::digest::canonical_json(&a).unwrap(),
            custodia_crypto::digest::canonical_json(&b).unwrap()
        );
    }
}
