//! The legacy (0-fs / zflist) chunk pipeline: key = BLAKE2b-128(P), Snappy raw, the
//! xxtea-c "length appended" XXTEA variant, hash = BLAKE2b-128(stored). Decoding checks
//! the stored hash and the plaintext key.

use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest};

use super::{snappy_decompress, ChunkRef, MAX_OBJECT};
use crate::error::{Error, Result};

type Blake2b128 = Blake2b<U16>;

/// BLAKE2b with a 16-byte output: the legacy pipeline's key and id hash.
pub fn blake2b_128(data: &[u8]) -> [u8; 16] {
    Blake2b128::digest(data).into()
}

pub(super) fn plain_key(plain: &[u8]) -> [u8; 16] {
    blake2b_128(plain)
}

const DELTA: u32 = 0x9e37_79b9;

fn key_words(key: &[u8]) -> [u32; 4] {
    let mut k = [0u32; 4];
    for (i, w) in k.iter_mut().enumerate() {
        *w = u32::from_le_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]]);
    }
    k
}

#[inline]
fn mx(sum: u32, y: u32, z: u32, p: usize, e: usize, k: &[u32; 4]) -> u32 {
    (((z >> 5) ^ (y << 2)).wrapping_add((y >> 3) ^ (z << 4)))
        ^ ((sum ^ y).wrapping_add(k[(p & 3) ^ e] ^ z))
}

fn encrypt_words(v: &mut [u32], k: &[u32; 4]) {
    let n = v.len();
    if n < 2 {
        return;
    }
    let rounds = 6 + 52 / n;
    let mut sum: u32 = 0;
    let mut z = v[n - 1];
    for _ in 0..rounds {
        sum = sum.wrapping_add(DELTA);
        let e = ((sum >> 2) & 3) as usize;
        for p in 0..n {
            let y = v[(p + 1) % n];
            v[p] = v[p].wrapping_add(mx(sum, y, z, p, e, k));
            z = v[p];
        }
    }
}

fn decrypt_words(v: &mut [u32], k: &[u32; 4]) {
    let n = v.len();
    if n < 2 {
        return;
    }
    let rounds = 6 + 52 / n;
    let mut sum = (rounds as u32).wrapping_mul(DELTA);
    let mut y = v[0];
    for _ in 0..rounds {
        let e = ((sum >> 2) & 3) as usize;
        for p in (0..n).rev() {
            let z = v[if p == 0 { n - 1 } else { p - 1 }];
            v[p] = v[p].wrapping_sub(mx(sum, y, z, p, e, k));
            y = v[p];
        }
        sum = sum.wrapping_sub(DELTA);
    }
}

fn to_words(data: &[u8]) -> Vec<u32> {
    data.chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(b)
        })
        .collect()
}

/// XXTEA-encrypt with the original length appended as a final word.
pub fn xxtea_encrypt(data: &[u8], key: &[u8; 16]) -> Vec<u8> {
    let mut v = to_words(data);
    v.push(data.len() as u32);
    encrypt_words(&mut v, &key_words(key));
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Inverse of [`xxtea_encrypt`]; `None` when the embedded length is impossible.
pub fn xxtea_decrypt(data: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    if !data.len().is_multiple_of(4) || data.len() < 4 || key.len() != 16 {
        return None;
    }
    let mut v = to_words(data);
    decrypt_words(&mut v, &key_words(key));
    let n = v.len();
    let m = v[n - 1] as usize;
    let max = 4 * (n - 1);
    if m > max || m + 3 < max {
        return None;
    }
    let mut out: Vec<u8> = v[..n - 1].iter().flat_map(|w| w.to_le_bytes()).collect();
    out.truncate(m);
    Some(out)
}

/// Encode one plaintext chunk the way zflist does (used by tests and fixtures).
pub fn encode(plain: &[u8]) -> Result<(ChunkRef, Vec<u8>)> {
    let key = blake2b_128(plain);
    let compressed = snap::raw::Encoder::new()
        .compress_vec(plain)
        .map_err(|e| Error::invalid(format!("snappy compression failed: {e}")))?;
    let stored = xxtea_encrypt(&compressed, &key);
    Ok((ChunkRef::legacy(blake2b_128(&stored), key), stored))
}

pub(super) fn decode(chunk: &ChunkRef, stored: &[u8]) -> Result<Vec<u8>> {
    if stored.len() > MAX_OBJECT {
        return Err(Error::corrupt(format!(
            "chunk {chunk}: stored object too large"
        )));
    }
    if blake2b_128(stored)[..] != *chunk.id() {
        return Err(Error::corrupt(format!(
            "chunk {chunk}: stored object does not hash to its id"
        )));
    }
    let compressed = xxtea_decrypt(stored, chunk.key())
        .ok_or_else(|| Error::corrupt(format!("chunk {chunk}: XXTEA decryption failed")))?;
    let plain = snappy_decompress(chunk, &compressed)?;
    if blake2b_128(&plain)[..] != *chunk.key() {
        return Err(Error::corrupt(format!(
            "chunk {chunk}: plaintext does not hash to its key"
        )));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zflist_test_vector_hello_world() {
        let (chunk, stored) = encode(b"hello world\n").unwrap();
        assert_eq!(hex::encode(chunk.key()), "c0cdb4699cdaa9eea4c563a934f1d52b");
        assert_eq!(
            hex::encode(&stored),
            "893f00077aad00982c3024bda3cbe527b9e1ecb0"
        );
        assert_eq!(hex::encode(chunk.id()), "a5147f6e7cac3a7076f942cb5e00d896");
        assert_eq!(chunk.decode(&stored).unwrap(), b"hello world\n");
    }

    #[test]
    fn xxtea_roundtrip_all_small_lengths() {
        let key = [7u8; 16];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let ct = xxtea_encrypt(&data, &key);
            assert_eq!(ct.len(), 4 * data.len().div_ceil(4) + 4);
            assert_eq!(xxtea_decrypt(&ct, &key).unwrap(), data);
        }
    }

    #[test]
    fn flipped_bit_is_refused() {
        let (chunk, mut stored) = encode(b"hello world\n").unwrap();
        stored[5] ^= 0x10;
        assert_eq!(
            chunk.decode(&stored).err().map(|e| e.kind),
            Some(crate::error::ErrorKind::Corrupt)
        );
    }
}
