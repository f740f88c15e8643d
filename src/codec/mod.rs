//! Chunk codecs: how a plaintext chunk becomes a stored object and back, for both flist
//! generations, with every hash verified on the way back. This layer owns the chunk
//! identity type [`ChunkRef`]; it knows nothing of stores, caches or flists.

pub mod legacy;
pub mod v2;

use crate::error::{Error, Result};

/// Size of a chunk of file content, for both flist generations.
pub const CHUNK_SIZE: usize = 512 * 1024;

/// Plaintext length of chunk `index` of a file of `size` bytes cut in [`CHUNK_SIZE`]
/// pieces: a full chunk except the last (0 past the end).
pub fn chunk_len(size: u64, index: usize) -> u64 {
    let start = (index as u64).saturating_mul(CHUNK_SIZE as u64);
    size.saturating_sub(start).min(CHUNK_SIZE as u64)
}

/// Largest stored object or decompressed chunk accepted from a store (0-db's value limit).
pub const MAX_OBJECT: usize = 8 * 1024 * 1024;

/// Which pipeline a chunk went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Codec {
    /// rfs v2: BLAKE2b-256 key, Snappy raw, AES-256-GCM, BLAKE2b-256 id (32-byte id and key).
    V2,
    /// 0-fs / zflist: BLAKE2b-128 key, Snappy raw, XXTEA, BLAKE2b-128 hash (16 bytes each).
    Legacy,
}

impl Codec {
    /// Length in bytes of the codec's chunk ids and keys (32 for v2, 16 for legacy).
    pub fn id_len(self) -> usize {
        match self {
            Codec::V2 => 32,
            Codec::Legacy => 16,
        }
    }
}

/// The identity of one stored chunk: the id it is stored under and the key that decrypts
/// it. Fixed capacity, so it is `Copy` and allocation-free on the read path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkRef {
    /// The pipeline the chunk was stored with.
    pub codec: Codec,
    id: [u8; 32],
    key: [u8; 32],
}

impl ChunkRef {
    /// A v2 chunk: BLAKE2b-256 id of the stored object and key of the plaintext.
    pub fn v2(id: [u8; 32], key: [u8; 32]) -> Self {
        ChunkRef {
            codec: Codec::V2,
            id,
            key,
        }
    }

    /// A legacy chunk: BLAKE2b-128 hash (its id) and key.
    pub fn legacy(hash: [u8; 16], key: [u8; 16]) -> Self {
        let mut id = [0u8; 32];
        let mut k = [0u8; 32];
        id[..16].copy_from_slice(&hash);
        k[..16].copy_from_slice(&key);
        ChunkRef {
            codec: Codec::Legacy,
            id,
            key: k,
        }
    }

    /// Build from raw id and key bytes as found in an flist; the lengths pick the codec.
    pub fn from_slices(id: &[u8], key: &[u8]) -> Result<Self> {
        match (id.len(), key.len()) {
            (32, 32) => {
                let mut i = [0u8; 32];
                let mut k = [0u8; 32];
                i.copy_from_slice(id);
                k.copy_from_slice(key);
                Ok(Self::v2(i, k))
            }
            (16, 16) => {
                let mut i = [0u8; 16];
                let mut k = [0u8; 16];
                i.copy_from_slice(id);
                k.copy_from_slice(key);
                Ok(Self::legacy(i, k))
            }
            (a, b) => Err(Error::format(format!(
                "block with a {a}-byte id and a {b}-byte key (expected 32/32 or 16/16)"
            ))),
        }
    }

    /// The bytes the chunk is stored under.
    pub fn id(&self) -> &[u8] {
        &self.id[..self.codec.id_len()]
    }

    /// The key (the hash of the plaintext).
    pub fn key(&self) -> &[u8] {
        &self.key[..self.codec.id_len()]
    }

    /// Lowercase hex of the id, without allocating.
    pub fn hex_id(&self) -> heapless::String<64> {
        hex_bytes(self.id())
    }

    /// Decode a stored object into plaintext, verifying every hash.
    pub fn decode(&self, stored: &[u8]) -> Result<Vec<u8>> {
        match self.codec {
            Codec::V2 => v2::decode(self, stored),
            Codec::Legacy => legacy::decode(self, stored),
        }
    }

    /// Decode a stored object whose bytes are not kept: the plaintext is checked against
    /// the key (which proves it), the object is decrypted in place. Use [`Self::decode`]
    /// when the stored object itself is kept or copied.
    pub fn decode_plain(&self, stored: Vec<u8>) -> Result<Vec<u8>> {
        match self.codec {
            Codec::V2 => v2::decode_plain(self, stored),
            Codec::Legacy => legacy::decode(self, &stored),
        }
    }

    /// True when `plain` hashes to this chunk's key (used to check cached plaintext).
    pub fn plaintext_matches(&self, plain: &[u8]) -> bool {
        match self.codec {
            Codec::V2 => v2::plain_key(plain) == self.key,
            Codec::Legacy => legacy::plain_key(plain)[..] == self.key[..16],
        }
    }
}

impl std::fmt::Debug for ChunkRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chunk {}", self.hex_id())
    }
}

impl std::fmt::Display for ChunkRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex_id())
    }
}

/// Lowercase hex of up to 32 bytes into a fixed-capacity string.
pub fn hex_bytes(bytes: &[u8]) -> heapless::String<64> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = heapless::String::new();
    for b in bytes.iter().take(32) {
        // Capacity is 64 and we push at most 64 characters.
        let _ = s.push(DIGITS[(b >> 4) as usize] as char);
        let _ = s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Snappy raw decompression bounded by [`MAX_OBJECT`], shared by both codecs.
pub(crate) fn snappy_decompress(chunk: &ChunkRef, data: &[u8]) -> Result<Vec<u8>> {
    let len = snap::raw::decompress_len(data)
        .map_err(|e| Error::corrupt(format!("chunk {chunk}: bad snappy header: {e}")))?;
    if len > MAX_OBJECT {
        return Err(Error::corrupt(format!(
            "chunk {chunk}: claims {len} bytes of plaintext, more than the {MAX_OBJECT} allowed"
        )));
    }
    let mut out = vec![0u8; len];
    snap::raw::Decoder::new()
        .decompress(data, &mut out)
        .map_err(|e| Error::corrupt(format!("chunk {chunk}: snappy: {e}")))?;
    Ok(out)
}
