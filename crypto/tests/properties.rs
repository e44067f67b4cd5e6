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
