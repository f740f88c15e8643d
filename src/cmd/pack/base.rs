//! The base of an incremental pack (`zvfs pack --base OLD.fl`): an index of OLD's regular
//! files by path, and the quick check that lets pack reuse a file's chunk list and
//! identity without reading it whole nor uploading anything: same path, size, mtime
//! (whole seconds, as flists keep it) and partial checksum. `--base-verify` adds a full
//! read to compare the full checksum. This module reads OLD's metadata only; it never
//! fetches chunks, and it does not write the new flist (pack does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::codec::{ChunkRef, Codec, CHUNK_SIZE};
use crate::error::{Context, Result};
use crate::flist::{self, Flist, Identity, Ino, Kind};

/// What OLD knows of one regular file.
struct BaseFile {
    /// The inode owning the content (the first path of a hardlinked file).
    ino: Ino,
    size: u64,
    mtime: i64,
    identity: Identity,
}

/// What pack may reuse for a file that passed the quick check.
#[derive(Clone, Debug)]
pub struct Reuse {
    pub blocks: Vec<ChunkRef>,
    pub identity: Identity,
}

/// Reuse figures, reported by pack.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BaseStats {
    /// Files of OLD that have an identity (candidates for reuse).
    pub base_files: u64,
    /// Files whose chunk list was reused (not uploaded; not read whole unless verified).
    pub reused_files: u64,
    pub reused_bytes: u64,
    /// Reused files read whole by `--base-verify`.
    pub verified_files: u64,
    /// Files that passed the quick check but failed `--base-verify` (packed anew).
    pub verify_mismatches: u64,
}

pub struct BaseIndex {
    path: PathBuf,
    fl: Box<dyn Flist>,
    files: HashMap<Vec<u8>, BaseFile>,
    verify: bool,
    pub stats: BaseStats,
}

impl BaseIndex {
    /// Index the regular files of OLD that record an identity (flists made by rfs have
    /// none: nothing of them can be reused, since the quick check needs the partial
    /// checksum). Paths are relative to the root, as raw bytes (`a/b`).
    pub fn open(path: &Path, verify: bool) -> Result<BaseIndex> {
        let fl = flist::open(path)?;
        let mut files = HashMap::new();
        let root = fl.get(flist::ROOT_INO)?;
        flist::walk(fl.as_ref(), &root, Vec::new(), &mut |e, rel| {
            if e.kind() != Kind::File {
                return Ok(());
            }
            if let Some(identity) = fl.identity(e.content_ino())? {
                files.insert(
                    rel.to_vec(),
                    BaseFile {
                        ino: e.content_ino(),
                        size: e.size,
                        mtime: e.mtime,
                        identity,
                    },
                );
            }
            Ok(())
        })
        .with_ctx(|| format!("indexing base flist {}", path.display()))?;
        let stats = BaseStats {
            base_files: files.len() as u64,
            ..BaseStats::default()
        };
        Ok(BaseIndex {
            path: path.to_path_buf(),
            fl,
            files,
            verify,
            stats,
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The quick check for the file at `rel` (path relative to the packed root), whose
    /// `size`, `mtime` (seconds) and `partial` checksum pack just took; `local` is the
    /// file on disk, read whole only with `--base-verify`. `Some` means: write these
    /// blocks and this identity, read nothing more, upload nothing. The blocks are
    /// checked to cover `size` in 512 KiB v2 chunks, so a damaged base is never reused.
    pub fn reuse(
        &mut self,
        rel: &[u8],
        size: u64,
        mtime: i64,
        partial: &[u8; 32],
        local: &Path,
    ) -> Result<Option<Reuse>> {
        let Some(b) = self.files.get(rel) else {
            return Ok(None);
        };
        if b.size != size || b.mtime != mtime || &b.identity.partial != partial {
            return Ok(None);
        }
        let (ino, identity) = (b.ino, b.identity);
        let blocks = self
            .fl
            .blocks(ino)
            .with_ctx(|| format!("base flist {}", self.path.display()))?;
        let expected = size.div_ceil(CHUNK_SIZE as u64);
        if blocks.len() as u64 != expected || blocks.iter().any(|c| c.codec != Codec::V2) {
            return Ok(None);
        }
        if self.verify {
            self.stats.verified_files += 1;
            if full_checksum(local)? != identity.checksum {
                self.stats.verify_mismatches += 1;
                return Ok(None);
            }
        }
        self.stats.reused_files += 1;
        self.stats.reused_bytes += size;
        Ok(Some(Reuse { blocks, identity }))
    }
}

/// SHA-256 of a whole local file.
fn full_checksum(path: &Path) -> Result<[u8; 32]> {
    let what = || format!("verifying {} against the base", path.display());
    let mut f = std::fs::File::open(path).with_ctx(what)?;
    crate::identity::checksum_reader(&mut f).with_ctx(what)
}
