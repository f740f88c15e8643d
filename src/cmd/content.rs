//! File content as `dedup`, `diff` and incremental `pack` compare it: chunk-key sequences
//! of flist files, chunk plaintext sizes, one bounded pass over a local file that yields
//! both its full checksum and its chunk keys, a walk of a local directory, and the
//! display form of raw-byte paths. It never fetches chunks nor writes anything.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::codec::{ChunkRef, Codec, CHUNK_SIZE};
use crate::error::{Context, Error, Result};
use crate::identity::FullChecksum;

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

/// Plaintext size of chunk `index` of a file of `size` bytes: 512 KiB except the last.
pub fn chunk_plain_size(size: u64, index: usize) -> u64 {
    let start = index as u64 * CHUNK_SIZE as u64;
    size.saturating_sub(start).min(CHUNK_SIZE as u64)
}

/// What one read of a whole local file yields.
#[derive(Clone, Debug)]
pub struct WholeRead {
    /// SHA-256 of the content (the identity `checksum`).
    pub checksum: [u8; 32],
    /// The v2 chunk keys (BLAKE2b-256 of each 512 KiB plaintext chunk), in file order.
    pub keys: Vec<ChunkKey>,
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

/// Called by [`walk_dir`] with the absolute path, the relative path and the metadata.
pub type LocalVisitor<'a> = dyn FnMut(&Path, &[u8], &Metadata) -> Result<()> + 'a;

/// Visit every entry below the local directory `root` (not following symlinks, not
/// visiting `root` itself), parents before children, siblings sorted by name, with the
/// path relative to `root` as raw bytes.
pub fn walk_dir(root: &Path, visit: &mut LocalVisitor<'_>) -> Result<()> {
    let mut stack: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    push_children(root, &[], &mut stack)?;
    while let Some((abs, rel)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&abs).with_ctx(|| format!("{}", abs.display()))?;
        visit(&abs, &rel, &meta)?;
        if meta.is_dir() {
            push_children(&abs, &rel, &mut stack)?;
        }
    }
    Ok(())
}

fn push_children(dir: &Path, rel: &[u8], stack: &mut Vec<(PathBuf, Vec<u8>)>) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let what = || format!("listing {}", dir.display());
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).with_ctx(what)? {
        names.push(e.with_ctx(what)?.file_name());
    }
    names.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    for name in names {
        let mut r = rel.to_vec();
        if !r.is_empty() {
            r.push(b'/');
        }
        r.extend_from_slice(name.as_bytes());
        stack.push((dir.join(&name), r));
    }
    Ok(())
}

/// The display form of a path relative to a tree's root: `/` + the path, valid UTF-8
/// printed as is, other bytes and control characters escaped (`\xNN`, `\n`, `\\`), so
/// that one path is always one line.
pub fn display_path(rel: &[u8]) -> String {
    let mut out = String::with_capacity(rel.len() + 1);
    out.push('/');
    for chunk in rel.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let mut b = [0u8; 4];
                    for byte in c.encode_utf8(&mut b).bytes() {
                        out.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// Buffered standard output for reports. A closed pipe (`zvfs diff A B | head`) ends the
/// output quietly (later lines are dropped) instead of failing or panicking.
pub struct Out {
    w: std::io::BufWriter<std::io::Stdout>,
    closed: bool,
}

impl Default for Out {
    fn default() -> Self {
        Self::new()
    }
}

impl Out {
    pub fn new() -> Out {
        Out {
            w: std::io::BufWriter::new(std::io::stdout()),
            closed: false,
        }
    }

    /// Write one line (a newline is added).
    pub fn line(&mut self, text: std::fmt::Arguments<'_>) -> Result<()> {
        use std::io::Write;
        if self.closed {
            return Ok(());
        }
        let r = self.w.write_fmt(text).and_then(|_| self.w.write_all(b"\n"));
        self.check(r)
    }

    /// Flush what is buffered.
    pub fn finish(mut self) -> Result<()> {
        use std::io::Write;
        if self.closed {
            return Ok(());
        }
        let r = self.w.flush();
        self.check(r)
    }

    fn check(&mut self, r: std::io::Result<()>) -> Result<()> {
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(Error::from(e).context("writing to standard output")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        let c = CHUNK_SIZE as u64;
        assert_eq!(chunk_plain_size(c, 0), c);
        assert_eq!(chunk_plain_size(c + 5, 1), 5);
        assert_eq!(chunk_plain_size(10, 0), 10);
        assert_eq!(chunk_plain_size(10, 3), 0);
    }

    #[test]
    fn paths_display_on_one_line() {
        assert_eq!(display_path(b""), "/");
        assert_eq!(display_path("a/é b".as_bytes()), "/a/é b");
        assert_eq!(display_path(b"x\ny\\\xff"), "/x\\ny\\\\\\xff");
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
        assert!(read_whole(&p, 5).is_err());
    }
}
