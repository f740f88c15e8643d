//! Legacy chunk decoding (`ChunkRef::decode` of a 16-byte chunk: BLAKE2b-128, XXTEA,
//! Snappy) on arbitrary objects. The first byte picks the mode, the next 32 are an id and
//! a key (zero-padded), the rest is the payload:
//! - 0: the payload as the stored object under that id and key;
//! - 1: the payload as the stored object, the id made to match it (XXTEA meets arbitrary
//!   data and lengths);
//! - 2: the payload as the Snappy data, XXTEA-encrypted here under the key and given the
//!   matching id: Snappy decoding meets arbitrary data;
//! - 3: the payload as plaintext: `codec::legacy::encode` then decode must give it back.
//!
//! Every mode also runs `xxtea_decrypt` with a key of the length the mode byte says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zvfs::codec::{legacy, ChunkRef};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut head = [0u8; 32];
    let n = rest.len().min(32);
    head[..n].copy_from_slice(&rest[..n]);
    let payload = &rest[n..];
    let mut id = [0u8; 16];
    let mut key = [0u8; 16];
    id.copy_from_slice(&head[..16]);
    key.copy_from_slice(&head[16..]);
    let _ = legacy::xxtea_decrypt(payload, &head[..(mode as usize >> 2) % 33]);
    match mode % 4 {
        0 => {
            let c = ChunkRef::legacy(id, key);
            let _ = c.decode(payload);
            let _ = c.decode_plain(payload.to_vec());
            let _ = c.plaintext_matches(payload);
        }
        1 => {
            let c = ChunkRef::legacy(legacy::blake2b_128(payload), key);
            let _ = c.decode(payload);
        }
        2 => {
            let stored = legacy::xxtea_encrypt(payload, &key);
            let c = ChunkRef::legacy(legacy::blake2b_128(&stored), key);
            let _ = c.decode(&stored);
        }
        _ => {
            let (c, stored) = legacy::encode(payload).expect("encoding a chunk");
            let back = c.decode(&stored).expect("decoding what was encoded");
            assert_eq!(back, payload, "legacy round trip");
            assert!(c.plaintext_matches(payload));
        }
    }
});
