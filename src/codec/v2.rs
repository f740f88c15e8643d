//! The rfs v2 chunk pipeline, byte-compatible with rfs 2.x:
//! KEY = BLAKE2b-256(P); CT = AES-256-GCM(KEY, nonce KEY[0..12], Snappy-raw(P));
//! ID = BLAKE2b-256(CT). Decoding never trusts the GCM tag alone, because anyone who
//! knows P can re-encrypt different data under KEY: the plaintext is always checked
//! against KEY, and the object against ID when the object itself is kept (`decode`).
//!
//! Speed matters here (every byte packed or read cold goes through it twice):
//! BLAKE2b comes from `blake2b_simd` (AVX2 when the CPU has it) and AES-256-GCM from
//! `ring` (AES-NI/VAES and carry-less multiply assembly; already linked for TLS).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use super::{snappy_decompress, ChunkRef, MAX_OBJECT};
use crate::error::{Error, Result};

fn blake2b_256_params() -> blake2b_simd::Params {
    let mut p = blake2b_simd::Params::new();
    p.hash_length(32);
    p
}

fn to_array(h: &blake2b_simd::Hash) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(h.as_bytes());
    out
}

/// BLAKE2b with a 32-byte output: the v2 pipeline's key and id hash.
pub fn blake2b_256(data: &[u8]) -> [u8; 32] {
    to_array(&blake2b_256_params().hash(data))
}

/// BLAKE2b-256 of several inputs at once: with AVX2 four inputs share one pass, about
/// twice the throughput of hashing them one after the other.
fn blake2b_256_many(inputs: &[&[u8]]) -> Vec<[u8; 32]> {
    let params = blake2b_256_params();
    let mut jobs: Vec<blake2b_simd::many::HashManyJob> = inputs
        .iter()
        .map(|data| blake2b_simd::many::HashManyJob::new(&params, data))
        .collect();
    blake2b_simd::many::hash_many(jobs.iter_mut());
    jobs.iter().map(|j| to_array(&j.to_hash())).collect()
}

/// How many chunks [`Encoder::encode_batch`] hashes side by side on this CPU.
pub fn batch_degree() -> usize {
    blake2b_simd::many::degree()
}

/// AES-256-GCM with the rfs key/nonce convention (nonce = first 12 bytes of the key).
fn cipher(key: &[u8]) -> Option<(LessSafeKey, Nonce)> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let n = Nonce::try_assume_unique_for_key(key.get(..12)?).ok()?;
    Some((k, n))
}

pub(super) fn plain_key(plain: &[u8]) -> [u8; 32] {
    blake2b_256(plain)
}

/// Encode one chunk: `(chunk ref, stored object)`.
pub fn encode(plain: &[u8]) -> Result<(ChunkRef, Vec<u8>)> {
    let mut enc = Encoder::new();
    let (chunk, stored) = enc.encode(plain)?;
    Ok((chunk, stored.to_vec()))
}

/// A reusable encoder: keeps its compression state and output buffers between chunks
/// (pack encodes many chunks per worker without reallocating).
pub struct Encoder {
    snappy: snap::raw::Encoder,
    outs: Vec<Vec<u8>>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder with empty buffers (they grow to the largest chunk seen).
    pub fn new() -> Self {
        Encoder {
            snappy: snap::raw::Encoder::new(),
            outs: Vec::new(),
        }
    }

    /// Encode one chunk; the stored object borrows the encoder's buffer until the next call.
    pub fn encode(&mut self, plain: &[u8]) -> Result<(ChunkRef, &[u8])> {
        let key = blake2b_256(plain);
        if self.outs.is_empty() {
            self.outs.push(Vec::new());
        }
        let n = seal(&mut self.snappy, plain, &key, &mut self.outs[0])?;
        let stored = &self.outs[0][..n];
        Ok((ChunkRef::v2(blake2b_256(stored), key), stored))
    }

    /// Encode several chunks, hashing them side by side ([`batch_degree`] at a time is
    /// best). Gives the same chunks and objects as [`Encoder::encode`] on each, in order.
    pub fn encode_batch(&mut self, plains: &[&[u8]]) -> Result<Vec<(ChunkRef, &[u8])>> {
        let keys = blake2b_256_many(plains);
        if self.outs.len() < plains.len() {
            self.outs.resize_with(plains.len(), Vec::new);
        }
        let mut lens = Vec::with_capacity(plains.len());
        for ((plain, key), out) in plains.iter().zip(&keys).zip(self.outs.iter_mut()) {
            lens.push(seal(&mut self.snappy, plain, key, out)?);
        }
        let stored: Vec<&[u8]> = self.outs.iter().zip(&lens).map(|(o, &n)| &o[..n]).collect();
        let ids = blake2b_256_many(&stored);
        Ok(ids
            .into_iter()
            .zip(keys)
            .zip(stored)
            .map(|((id, key), s)| (ChunkRef::v2(id, key), s))
            .collect())
    }
}

/// Snappy-compress `plain` into `out` and encrypt it in place under `key`, the tag
/// appended; returns the stored object's length.
fn seal(
    snappy: &mut snap::raw::Encoder,
    plain: &[u8],
    key: &[u8; 32],
    out: &mut Vec<u8>,
) -> Result<usize> {
    let need = snap::raw::max_compress_len(plain.len()) + TAG_LEN;
    if out.len() < need {
        out.resize(need, 0);
    }
    let n = snappy
        .compress(plain, out)
        .map_err(|e| Error::invalid(format!("snappy compression failed: {e}")))?;
    let (cipher, nonce) =
        cipher(key).ok_or_else(|| Error::invalid("AES-256-GCM key of the wrong length"))?;
    let tag = cipher
        .seal_in_place_separate_tag(nonce, Aad::empty(), &mut out[..n])
        .map_err(|_| Error::invalid("AES-256-GCM encryption failed"))?;
    out[n..n + TAG_LEN].copy_from_slice(tag.as_ref());
    Ok(n + TAG_LEN)
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
    fn batch_gives_the_same_chunks_and_objects_as_one_at_a_time() {
        let big: Vec<u8> = (0..1_300_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        let plains: Vec<&[u8]> = vec![
            &big[..524_288],
            b"hello world\n",
            &big[524_288..1_048_576],
            b"",
            &big[1_048_576..],
            &big[7..100_007],
        ];
        let mut batch = Encoder::new();
        for n in 1..=plains.len() {
            let got: Vec<(ChunkRef, Vec<u8>)> = batch
                .encode_batch(&plains[..n])
                .unwrap()
                .into_iter()
                .map(|(c, o)| (c, o.to_vec()))
                .collect();
            assert_eq!(got.len(), n);
            for (plain, (chunk, stored)) in plains.iter().zip(&got) {
                assert_eq!(
                    (chunk, stored),
                    (&encode(plain).unwrap().0, &encode(plain).unwrap().1)
                );
                assert_eq!(&chunk.decode(stored).unwrap(), plain);
            }
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
