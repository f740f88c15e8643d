//! v2 chunk decoding (`ChunkRef::decode` and `decode_plain`, what every read of a chunk
//! runs) on arbitrary objects. The first byte picks the mode, the next 64 are an id and a
//! key (zero-padded), the rest is the payload:
//! - 0: the payload as the stored object under that id and key (hash checks fail early);
//! - 1: the payload as the stored object, the id made to match it (decryption fails);
//! - 2: the payload as the Snappy data, sealed here with AES-256-GCM under the key and
//!   given the matching id: decryption succeeds and Snappy decoding meets arbitrary data;
//! - 3: the payload as plaintext: `codec::v2::encode` then decode must give it back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zvfs::codec::{v2, ChunkRef};

fn seal(key: &[u8; 32], data: &[u8]) -> Vec<u8> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"));
    let nonce = Nonce::try_assume_unique_for_key(&key[..12]).expect("12-byte nonce");
    let mut out = data.to_vec();
    k.seal_in_place_append_tag(nonce, Aad::empty(), &mut out)
        .expect("sealing");
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut head = [0u8; 64];
    let n = rest.len().min(64);
    head[..n].copy_from_slice(&rest[..n]);
    let payload = &rest[n..];
    let mut id = [0u8; 32];
    let mut key = [0u8; 32];
    id.copy_from_slice(&head[..32]);
    key.copy_from_slice(&head[32..]);
    match mode % 4 {
        0 => {
            let c = ChunkRef::v2(id, key);
            let _ = c.decode(payload);
            let _ = c.decode_plain(payload.to_vec());
            let _ = c.plaintext_matches(payload);
        }
        1 => {
            let c = ChunkRef::v2(v2::blake2b_256(payload), key);
            let _ = c.decode(payload);
        }
        2 => {
            let stored = seal(&key, payload);
            let c = ChunkRef::v2(v2::blake2b_256(&stored), key);
            let _ = c.decode(&stored);
            let _ = c.decode_plain(stored);
        }
        _ => {
            let (c, stored) = v2::encode(payload).expect("encoding a chunk");
            let back = c.decode(&stored).expect("decoding what was encoded");
            assert_eq!(back, payload, "v2 round trip");
            assert!(c.plaintext_matches(payload));
        }
    }
});
