//! The rfs v2 chunk pipeline, byte-compatible with rfs 2.x:
//! KEY = BLAKE2b-256(P); CT = AES-256-GCM(KEY, nonce KEY[0..12], Snappy-raw(P));
//! ID = BLAKE2b-256(CT). Decoding never trusts the GCM tag alone, because anyone who
//! knows P can re-encrypt different data under KEY: the plaintext is always checked
//! against KEY, and the object against ID when the object itself is kept ([`decode`]).
//!
//! Speed matters here (every byte packed or read cold goes through it twice):
//! BLAKE2b comes from `blake2b_simd` (AVX2 when the CPU has it) and AES-256-GCM from
//! `ring` (AES-NI/VAES and carry-less multiply assembly; already linked for TLS).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use super::{snappy_decompress, ChunkRef, MAX_OBJECT};
use crate::error::{Error, Result};

pub fn blake2b_256(data: &[u8]) -> [u8; 32] {
    let h = blake2b_simd::Params::new().hash_length(32).hash(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(h.as_bytes());
    out
}

/// The AES-256-GCM key and nonce of a chunk: KEY and its first 12 bytes.
fn cipher(key: &[u8]) -> Option<(LessSafeKey, Nonce)> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let n = Nonce::try_assume_unique_for_key(key.get(..12)?).ok()?;
    Some((k, n))
}

pub(super) fn plain_key(plain: &[u8]) -> [u8; 32] {
    blake2b_256(plain)
}

/// Encode one plaintext chunk; returns its reference and the object to store.
pub fn encode(plain: &[u8]) -> Result<(ChunkRef, Vec<u8>)> {
    let mut enc = Encoder::new();
    let (chunk, stored) = enc.encode(plain)?;
    Ok((chunk, stored.to_vec()))
}

/// A reusable encoder: keeps the Snappy state and an output buffer that is never shrunk
/// nor re-zeroed, so packing allocates nothing per chunk once warmed up.
pub struct Encoder {
    snappy: snap::raw::Encoder,
    out: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        Encoder {
            snappy: snap::raw::Encoder::new(),
            out: Vec::new(),
        }
    }

    /// Encode `plain`; returns the chunk's reference and the object to store (valid until
    /// the next call).
    pub fn encode(&mut self, plain: &[u8]) -> Result<(ChunkRef, &[u8])> {
        let key = blake2b_256(plain);
        // Room for the compressed data plus the 16-byte GCM tag.
        let need = snap::raw::max_compress_len(plain.len()) + TAG_LEN;
        if self.out.len() < need {
            self.out.resize(need, 0);
        }
        let n = self
            .snappy
            .compress(plain, &mut self.out)
            .map_err(|e| Error::invalid(format!("snappy compression failed: {e}")))?;
        let (cipher, nonce) =
            cipher(&key).ok_or_else(|| Error::invalid("AES-256-GCM key of the wrong length"))?;
        let tag = cipher
            .seal_in_place_separate_tag(nonce, Aad::empty(), &mut self.out[..n])
            .map_err(|_| Error::invalid("AES-256-GCM encryption failed"))?;
        self.out[n..n + TAG_LEN].copy_from_slice(tag.as_ref());
        let stored = &self.out[..n + TAG_LEN];
        let id = blake2b_256(stored);
        Ok((ChunkRef::v2(id, key), stored))
    }
}

const TAG_LEN: usize = 16;

pub(super) fn decode(chunk: &ChunkRef, stored: &[u8]) -> Result<Vec<u8>> {
    check_size(chunk, stored)?;
    if blake2b_256(stored)[..] != *chunk.id() {
        return Err(Error::corrupt(format!(
            "chunk {chunk}: stored object does not hash to its id"
        )));
    }
    decode_plain(chunk, stored.to_vec())
}

/// Decode for a reader that keeps only the plaintext: decrypts in place (no copy) and
/// checks the GCM tag and BLAKE2b(P) == KEY, but not BLAKE2b(CT) == ID. The key check
/// alone proves the plaintext is the one the flist names (finding other data that hashes
/// to KEY is a second preimage of BLAKE2b-256), so hashing the object a second time
/// would only prove which bytes the store kept, which matters when the stored object
/// itself is copied (`clone` uses [`decode`]).
pub(super) fn decode_plain(chunk: &ChunkRef, mut stored: Vec<u8>) -> Result<Vec<u8>> {
    check_size(chunk, &stored)?;
    let (cipher, nonce) = cipher(chunk.key())
        .ok_or_else(|| Error::corrupt(format!("chunk {chunk}: bad key length")))?;
    let compressed = cipher
        .open_in_place(nonce, Aad::empty(), &mut stored)
        .map_err(|_| {
            Error::corrupt(format!(
                "chunk {chunk}: decryption failed (wrong key or corrupt)"
            ))
        })?;
    let plain = snappy_decompress(chunk, compressed)?;
    if blake2b_256(&plain)[..] != *chunk.key() {
        return Err(Error::corrupt(format!(
            "chunk {chunk}: plaintext does not hash to its key (re-encrypted data?)"
        )));
    }
    Ok(plain)
}

fn check_size(chunk: &ChunkRef, stored: &[u8]) -> Result<()> {
    if stored.len() > MAX_OBJECT {
        return Err(Error::corrupt(format!(
            "chunk {chunk}: stored object too large"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfs_test_vector_hello_world() {
        let (chunk, ct) = encode(b"hello world\n").unwrap();
        assert_eq!(
            hex::encode(chunk.key()),
            "c71b05fd1d1c7bf7e928ff18e58db5193e9316416cc26ba9cc9094da80d7011e"
        );
        assert_eq!(
            hex::encode(chunk.id()),
            "d139c46e6cc65acfa2eef1d0cd7abf014667fdc9a5ca75d9184671f97301a0db"
        );
        assert_eq!(ct.len(), 30);
        assert_eq!(chunk.decode(&ct).unwrap(), b"hello world\n");
    }

    #[test]
    fn reused_encoder_buffer_gives_the_same_objects() {
        let mut enc = Encoder::new();
        // big incompressible-ish, then small: the reused buffer must be cut right
        let big: Vec<u8> = (0..600_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for plain in [&big[..], b"hello world\n", &big[..1000], b""] {
            let (chunk2, ct2) = encode(plain).unwrap();
            let (chunk, out) = enc.encode(plain).unwrap();
            assert_eq!(chunk, chunk2);
            assert_eq!(out, &ct2[..]);
            assert_eq!(chunk.decode(out).unwrap(), plain);
        }
    }

    #[test]
    fn flipped_byte_is_refused_naming_the_chunk() {
        let (chunk, mut ct) = encode(b"some data").unwrap();
        ct[3] ^= 1;
        let err = chunk.decode(&ct).unwrap_err();
        assert!(err.msg.contains(&chunk.hex_id().to_string()), "{err}");
        let err = chunk.decode_plain(ct).unwrap_err();
        assert!(err.msg.contains(&chunk.hex_id().to_string()), "{err}");
    }

    #[test]
    fn reencrypted_plaintext_under_same_key_is_refused() {
        // A store that knows P can encrypt other data under KEY: the GCM tag verifies,
        // the id check and the key check must not.
        let (chunk, _) = encode(b"genuine").unwrap();
        let mut ct = snap::raw::Encoder::new().compress_vec(b"evil!!!").unwrap();
        let (cipher, nonce) = cipher(chunk.key()).unwrap();
        cipher
            .seal_in_place_append_tag(nonce, Aad::empty(), &mut ct)
            .unwrap();
        let forged = ChunkRef::v2(blake2b_256(&ct), chunk.key().try_into().unwrap());
        let err = forged.decode(&ct).unwrap_err();
        assert!(err.msg.contains("does not hash to its key"), "{err}");
        let err = forged.decode_plain(ct.clone()).unwrap_err();
        assert!(err.msg.contains("does not hash to its key"), "{err}");
        // Under the genuine id too: the plaintext check alone refuses it.
        let err = chunk.decode_plain(ct).unwrap_err();
        assert!(err.msg.contains("does not hash to its key"), "{err}");
    }
}
