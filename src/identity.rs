//! Content identity (formats.md section 6, from the Spacedrive design): a cheap sampled
//! `partial_checksum` and the full SHA-256 `checksum`. This module only hashes bytes it is
//! given or samples a file with positioned reads; it never walks trees nor touches flists.

use std::fs::File;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

use crate::error::{Context, Result};

/// Bytes per sample.
pub const SAMPLE: u64 = 10_000;
/// Files up to this size are hashed whole (after the size).
pub const WHOLE_LIMIT: u64 = 50_000;

/// The offsets of the five samples of a file of `size` bytes (> WHOLE_LIMIT).
pub fn sample_offsets(size: u64) -> [u64; 5] {
    [0, size / 4, size / 2, 3 * size / 4, size - SAMPLE]
}

/// `partial_checksum` of an open file of `size` bytes: SHA-256 over the size (u64 LE)
/// then either the whole content (size <= 50,000) or five 10,000-byte samples.
pub fn partial_checksum(file: &File, size: u64) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(size.to_le_bytes());
    let mut buf = vec![
        0u8;
        if size <= WHOLE_LIMIT {
            size as usize
        } else {
            SAMPLE as usize
        }
    ];
    if size <= WHOLE_LIMIT {
        file.read_exact_at(&mut buf, 0)
            .ctx("reading file for its partial checksum")?;
        h.update(&buf);
    } else {
        for off in sample_offsets(size) {
            file.read_exact_at(&mut buf, off)
                .ctx("sampling file for its partial checksum")?;
            h.update(&buf);
        }
    }
    Ok(h.finalize().into())
}

/// `partial_checksum` of in-memory content (tests, tools).
pub fn partial_checksum_bytes(data: &[u8]) -> [u8; 32] {
    let size = data.len() as u64;
    let mut h = Sha256::new();
    h.update(size.to_le_bytes());
    if size <= WHOLE_LIMIT {
        h.update(data);
    } else {
        for off in sample_offsets(size) {
            h.update(&data[off as usize..(off + SAMPLE) as usize]);
        }
    }
    h.finalize().into()
}

/// Incremental full checksum, fed while a file is chunked (no second read).
#[derive(Default, Clone)]
pub struct FullChecksum(Sha256);

impl FullChecksum {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}
