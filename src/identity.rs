//! Content identity (formats.md section 6, from the Spacedrive design): a cheap sampled
//! `partial_checksum` and the full SHA-256 `checksum`. This module only hashes bytes it is
//! given, samples a file with positioned reads or reads one through; it never walks trees
//! nor touches flists.

use std::fs::File;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

use std::io::Read;
use std::path::Path;

use crate::codec::{ChunkRef, Codec, CHUNK_SIZE};
use crate::error::{Context, Error, Result};

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
    /// A checksum of nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next bytes of the content.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The SHA-256 of everything fed (the identity `checksum`).
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// The full checksum of everything `r` yields, read in 512 KiB pieces (bounded memory).
pub fn checksum_reader(r: &mut impl std::io::Read) -> std::io::Result<[u8; 32]> {
    let mut buf = vec![0u8; 512 * 1024];
    let mut h = FullChecksum::new();
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(h.finish()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The plaintext key of one chunk, comparable across flists of the same codec: the key is
/// the hash of the plaintext, so equal key sequences mean equal content.
pub type ChunkKey = (Codec, [u8; 32]);

/// The key of a chunk reference (padded to 32 bytes for legacy 16-byte keys).
pub fn chunk_key(c: &ChunkRef) -> ChunkKey {
    let mut k = [0u8; 32];
    let src = c.key();
    k[..src.len()].copy_from_slice(src);
    (c.codec, k)
}

/// What one read of a whole local file yields.
#[derive(Clone, Debug)]
pub struct WholeRead {
    /// SHA-256 of the content (the identity `checksum`).
    pub checksum: [u8; 32],
    /// The v2 chunk keys (BLAKE2b-256 of each 512 KiB plaintext chunk), in file order.
    pub keys: Vec<ChunkKey>,
    /// Bytes read (equal to the expected length).
    pub size: u64,
}

/// Read `path` once, in 512 KiB pieces (bounded memory), hashing the whole content and
/// each chunk. Fails if the file's length is not `expected` (it changed under us).
pub fn read_whole(path: &Path, expected: u64) -> Result<WholeRead> {
    let what = || format!("reading {}", path.display());
    let mut f = File::open(path).with_ctx(what)?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut full = FullChecksum::new();
    let mut keys = Vec::new();
    let mut size = 0u64;
    loop {
        let mut n = 0;
        while n < buf.len() {
            let r = f.read(&mut buf[n..]).with_ctx(what)?;
            if r == 0 {
                break;
            }
            n += r;
        }
        if n == 0 {
            break;
        }
        full.update(&buf[..n]);
        keys.push((Codec::V2, crate::codec::v2::blake2b_256(&buf[..n])));
        size += n as u64;
        if n < buf.len() {
            break;
        }
    }
    if size != expected {
        return Err(Error::io(format!(
            "{}: changed while being read ({size} bytes read, {expected} expected)",
            path.display()
        )));
    }
    Ok(WholeRead {
        checksum: full.finish(),
        keys,
        size,
    })
}

/// Content identity computed while a file streams past in order (formats.md section 6):
/// the whole content for small files, else the five 10,000-byte samples.
pub struct StreamIdentity {
    size: u64,
    full: FullChecksum,
    small: Vec<u8>,
    samples: Vec<(u64, Vec<u8>)>,
}

impl StreamIdentity {
    /// For a file of `size` bytes.
    pub fn new(size: u64) -> Self {
        let samples = if size <= WHOLE_LIMIT {
            Vec::new()
        } else {
            sample_offsets(size)
                .iter()
                .map(|&o| (o, Vec::with_capacity(SAMPLE as usize)))
                .collect()
        };
        StreamIdentity {
            size,
            full: FullChecksum::new(),
            small: Vec::new(),
            samples,
        }
    }

    /// Feed `data`, which starts at byte `offset` of the file.
    pub fn update(&mut self, offset: u64, data: &[u8]) {
        self.full.update(data);
        if self.size <= WHOLE_LIMIT {
            let room = (WHOLE_LIMIT as usize).saturating_sub(self.small.len());
            self.small.extend_from_slice(&data[..data.len().min(room)]);
            return;
        }
        let end = offset + data.len() as u64;
        for (start, buf) in &mut self.samples {
            let s_end = *start + SAMPLE;
            let lo = offset.max(*start);
            let hi = end.min(s_end);
            if lo < hi {
                buf.extend_from_slice(&data[(lo - offset) as usize..(hi - offset) as usize]);
            }
        }
    }

    /// The partial and full checksums of what was fed.
    pub fn finish(self) -> crate::flist::Identity {
        let mut h = Sha256::new();
        h.update(self.size.to_le_bytes());
        if self.size <= WHOLE_LIMIT {
            h.update(&self.small);
        } else {
            for (_, s) in &self.samples {
                h.update(s);
            }
        }
        crate::flist::Identity {
            partial: h.finalize().into(),
            checksum: self.full.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Fixed vectors pinning the partial checksum definition. The expected digests were
    //! computed independently with Python's `hashlib` (see the comments), not with this
    //! code, so a change of definition (order, offsets, size encoding) fails here.
    use super::*;
    use std::io::Write;

    /// Deterministic content: byte `i` is `(7 * i + (i >> 10)) & 0xff`.
    /// Python: `bytes(((i * 7 + (i >> 10)) & 0xff) for i in range(n))`.
    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 7 + (i >> 10)) & 0xff) as u8).collect()
    }

    fn hex32(d: [u8; 32]) -> String {
        hex::encode(d)
    }

    /// Both entry points on the same content, asserting they agree.
    fn both(data: &[u8]) -> String {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        let from_file = partial_checksum(&f, data.len() as u64).unwrap();
        let from_bytes = partial_checksum_bytes(data);
        assert_eq!(
            from_file,
            from_bytes,
            "file and bytes disagree at size {}",
            data.len()
        );
        hex32(from_bytes)
    }

    #[test]
    fn small_file_is_hashed_whole_after_its_size() {
        // sha256(struct.pack('<Q', 12) + b"hello world\n")
        assert_eq!(
            both(b"hello world\n"),
            "99f4f280a5fd9d117b5aa133d12755b627c1708723e05e7009bcdc24d57c5763"
        );
        // sha256(struct.pack('<Q', 0))
        assert_eq!(
            both(b""),
            "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc"
        );
    }

    #[test]
    fn boundary_sizes() {
        // 50,000 bytes: still hashed whole.
        assert_eq!(
            both(&pattern(50_000)),
            "fc9e670820303973a1096abce99888dd83c517e9a723004916c3b4e00b72c843"
        );
        // 50,001 bytes: five (overlapping) samples at 0, 12500, 25000, 37500, 40001.
        let d = pattern(50_001);
        assert_eq!(
            both(&d),
            "75cbce46c553e5fc8e3416eb5cbe1a69425c282fdc245bf41a76b693759faeb3"
        );
        // ...which is not the whole-content hash of the same bytes.
        assert_ne!(
            hex32(partial_checksum_bytes(&d)),
            "e4066ffb0ec9230331ac8a5759745af7d87e7f3b295e8d8e8cc3a2df2c890c10"
        );
        assert_eq!(sample_offsets(50_001), [0, 12_500, 25_000, 37_500, 40_001]);
    }

    #[test]
    fn large_file_depends_only_on_size_and_samples() {
        let n = 1 << 20;
        let orig = pattern(n);
        let want = "81f54cf971b502a033597f6d8fe430aa8677648e8fd12bc7fbf32cfb2fe00020";
        assert_eq!(both(&orig), want);
        let offs = sample_offsets(n as u64);
        assert_eq!(offs, [0, 262_144, 524_288, 786_432, 1_038_576]);
        let in_sample = |i: u64| offs.iter().any(|&o| (o..o + SAMPLE).contains(&i));

        // A byte outside every sample: same partial checksum (full checksum differs).
        for i in [10_000u64, 262_143, 272_144, 600_000, 1_038_575] {
            assert!(!in_sample(i));
            let mut d = orig.clone();
            d[i as usize] ^= 0x5a;
            assert_eq!(both(&d), want, "byte {i} outside the samples changed it");
        }
        // A byte inside each sample (first and last byte of each): a different one.
        for &o in &offs {
            for i in [o, o + SAMPLE - 1] {
                let mut d = orig.clone();
                d[i as usize] ^= 0x01;
                assert_ne!(both(&d), want, "byte {i} inside a sample did not change it");
            }
        }
        // The size is hashed: one more byte at the end changes it.
        let mut d = orig.clone();
        d.push(0);
        assert_ne!(both(&d), want);
    }

    #[test]
    fn full_checksum_is_sha256_of_the_content() {
        // hashlib.sha256(pattern(1 << 20)).hexdigest()
        let d = pattern(1 << 20);
        let mut fc = FullChecksum::new();
        for piece in d.chunks(65_537) {
            fc.update(piece);
        }
        assert_eq!(
            hex32(fc.finish()),
            "1536b576ded8fc55b76d38571fef4cb3da8054ca5b967eec02dd60a71a2b914c"
        );
        assert_eq!(
            hex32(checksum_reader(&mut &d[..]).unwrap()),
            "1536b576ded8fc55b76d38571fef4cb3da8054ca5b967eec02dd60a71a2b914c"
        );
    }

    #[test]
    fn short_file_is_an_error_not_a_panic() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&pattern(1000)).unwrap();
        assert_eq!(
            partial_checksum(&f, 2000).err().map(|e| e.kind),
            Some(crate::error::ErrorKind::Io)
        );
        assert_eq!(
            partial_checksum(&f, 100_000).err().map(|e| e.kind),
            Some(crate::error::ErrorKind::Io)
        );
    }

    #[test]
    fn whole_read_matches_codec_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..CHUNK_SIZE + 100).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let w = read_whole(&p, data.len() as u64).unwrap();
        assert_eq!(w.keys.len(), 2);
        let (c0, _) = crate::codec::v2::encode(&data[..CHUNK_SIZE]).unwrap();
        let (c1, _) = crate::codec::v2::encode(&data[CHUNK_SIZE..]).unwrap();
        assert_eq!(w.keys, vec![chunk_key(&c0), chunk_key(&c1)]);
        let e = read_whole(&p, 5).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Io);
        assert!(e.msg.contains("changed while being read"), "{e}");
    }
}
