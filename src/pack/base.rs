//! The base of an incremental pack (`zvfs pack --base OLD.fl`): an index of OLD's regular
//! files by path, and the quick check that lets pack reuse a file's chunk list and
//! identity without reading it whole nor uploading anything: same path, size, mtime
//! (whole seconds, as flists keep it) and partial checksum. `--base-verify` adds a full
//! read to compare the full checksum. This module reads OLD's metadata only; it never
//! fetches chunks, and it does not write the new flist (pack does).

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::codec::{ChunkRef, Codec, CHUNK_SIZE};
use crate::error::{Context, Result};
use crate::flist::{self, Flist, Identity, Ino, Kind, Route};
use crate::identity::FullChecksum;
use crate::store::{redact, strip_password};

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
    /// The base entry's chunk list, written as is.
    pub blocks: Vec<ChunkRef>,
    /// The base entry's content identity.
    pub identity: Identity,
}

/// Reuse figures, reported by pack.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BaseStats {
    /// Files of OLD that have an identity (candidates for reuse).
    pub base_files: u64,
    /// Files whose chunk list was reused (not uploaded; not read whole unless verified).
    pub reused_files: u64,
    /// Their content bytes.
    pub reused_bytes: u64,
    /// Reused files read whole by `--base-verify`.
    pub verified_files: u64,
    /// Files that passed the quick check but failed `--base-verify` (packed anew).
    pub verify_mismatches: u64,
    /// Files read whole and packed (no match in the base, or a failed verification).
    pub packed_files: u64,
    /// Their content bytes.
    pub packed_bytes: u64,
}

/// The index of an earlier flist's regular files, by path, for an incremental pack.
pub struct BaseIndex {
    path: PathBuf,
    fl: Box<dyn Flist>,
    files: HashMap<Vec<u8>, BaseFile>,
    verify: bool,
    /// What was reused so far.
    pub stats: BaseStats,
}

impl BaseIndex {
    /// Index the regular files of OLD that record an identity (flists made by rfs have
    /// none: nothing of them can be reused, since the quick check needs the partial
    /// checksum). Paths are relative to the root, as raw bytes (`a/b`).
    /// `routes` are the new pack's stores: a warning is logged when OLD's chunks were
    /// stored elsewhere (reused chunks are not copied; `zvfs clone` does that).
    pub fn open(path: &Path, verify: bool, routes: &[Route]) -> Result<BaseIndex> {
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
        let old: BTreeSet<String> = fl.routes()?.into_iter().map(|r| r.url).collect();
        let new: BTreeSet<String> = routes.iter().map(|r| strip_password(&r.url)).collect();
        if !old.is_subset(&new) {
            log::warn!(
                "base {}: its chunks were stored at {} and this pack writes to {}; reused chunks are not copied, make sure these stores hold them",
                path.display(),
                old.iter().map(|u| redact(u)).collect::<Vec<_>>().join(", "),
                new.iter().map(|u| redact(u)).collect::<Vec<_>>().join(", ")
            );
        }
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

    /// Files of the base that can be reused (they record an identity).
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// No file of the base can be reused.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The quick check for the file at `rel` (path relative to the packed root), whose
    /// `size`, `mtime` (seconds) and `partial` checksum pack just took from the open
    /// `file` (read whole only with `--base-verify`, by positioned reads, so the file
    /// offset is untouched for pack). `Some` means: write these blocks and this
    /// identity, read nothing more, upload nothing. `None` means: pack the file (it is
    /// counted as packed). The blocks must cover `size` in 512 KiB v2 chunks, so a
    /// damaged base entry is never reused.
    pub fn reuse(
        &mut self,
        rel: &[u8],
        size: u64,
        mtime: i64,
        partial: &[u8; 32],
        file: &File,
    ) -> Result<Option<Reuse>> {
        let found = self.check(rel, size, mtime, partial, file)?;
        if found.is_none() {
            self.stats.packed_files += 1;
            self.stats.packed_bytes += size;
        }
        Ok(found)
    }

    fn check(
        &mut self,
        rel: &[u8],
        size: u64,
        mtime: i64,
        partial: &[u8; 32],
        file: &File,
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
            if full_checksum_at(file, size)? != identity.checksum {
                self.stats.verify_mismatches += 1;
                return Ok(None);
            }
        }
        self.stats.reused_files += 1;
        self.stats.reused_bytes += size;
        Ok(Some(Reuse { blocks, identity }))
    }

    /// One line for pack's output.
    pub fn report(&self, base_path: &Path) -> String {
        let s = &self.stats;
        let mut line = format!(
            "base {}: {} files ({} bytes) reused (not read whole, nothing uploaded), {} files ({} bytes) read and packed",
            base_path.display(),
            s.reused_files,
            s.reused_bytes,
            s.packed_files,
            s.packed_bytes
        );
        if self.verify {
            line.push_str(&format!(
                "; --base-verify read {} files whole, {} did not match and were packed",
                s.verified_files, s.verify_mismatches
            ));
        }
        line
    }
}

/// SHA-256 of the first `size` bytes of an open file, by positioned reads of 512 KiB.
fn full_checksum_at(file: &File, size: u64) -> Result<[u8; 32]> {
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut h = FullChecksum::new();
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(CHUNK_SIZE as u64) as usize;
        file.read_exact_at(&mut buf[..n], off)
            .ctx("verifying a file against the base")?;
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(h.finish())
}

impl super::walk::Packer<'_, '_, '_, '_, '_> {
    /// Pack's hook: when the base has a matching entry for this regular file, write its
    /// blocks and identity (for later hardlinked paths too) and return true; pack then
    /// skips reading and uploading it.
    pub(super) fn reuse_from_base(
        &mut self,
        path: &Path,
        meta: &Metadata,
        file: &File,
        partial: &[u8; 32],
        ino: Ino,
    ) -> Result<bool> {
        let Some(base) = self.base.as_deref_mut() else {
            return Ok(false);
        };
        let rel = path.strip_prefix(self.root).unwrap_or(path);
        let found = base
            .reuse(
                rel.as_os_str().as_bytes(),
                meta.size(),
                meta.mtime(),
                partial,
                file,
            )
            .with_ctx(|| format!("{}", path.display()))?;
        let Some(r) = found else {
            return Ok(false);
        };
        self.summary.files += 1;
        self.summary.bytes += meta.size();
        self.summary.chunks += r.blocks.len() as u64;
        self.w.add_blocks(ino, &r.blocks)?;
        self.w.set_identity(ino, &r.identity)?;
        if meta.nlink() > 1 {
            self.finished_links.insert(ino, (r.blocks, r.identity));
        }
        Ok(true)
    }
}
