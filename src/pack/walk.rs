//! Pack's walker, on the calling thread: the tree walk (sorted names, depth first, lstat
//! only, never following symlinks), one metadata row per path (xattrs, link targets,
//! hardlinks), and each regular file read sequentially into the buffer pool and fed to
//! the encoder workers; a file's block rows and identity are written once all its
//! chunks came back. It never encodes nor uploads (see `encode`).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::chunker::{self, Chunker, Fed};
use super::{base, read_xattrs, Summary};
use crate::codec::ChunkRef;
use crate::error::{Context, Error, Result};
use crate::flist::v2::{NewEntry, V2Writer};
use crate::flist::{Identity, Ino, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::identity;
use crate::store::router::Router;
use crate::sys::progress::ProgressLine;

/// Walk `src` into `w`, with `jobs` encoder workers uploading through `router`.
pub(super) fn pack_tree(
    w: &V2Writer,
    src: &Path,
    src_meta: &Metadata,
    router: &Router,
    jobs: usize,
    base: Option<&mut base::BaseIndex>,
) -> Result<Summary> {
    let mut progress = Progress::new();
    let r = chunker::run(jobs, router, |chunker| {
        let mut p = Packer {
            w,
            chunker,
            waiting_links: HashMap::new(),
            hardlinked: HashSet::new(),
            seen: HashMap::new(),
            finished_links: HashMap::new(),
            summary: Summary::default(),
            progress: &mut progress,
            base,
            root: src,
        };
        p.walk(src, src_meta)?;
        p.chunker.wait_all()?;
        p.write_completed()?;
        Ok(p.summary.clone())
    });
    progress.clear();
    let (mut summary, up) = r?;
    summary.uploaded = up.chunks;
    summary.uploaded_bytes = up.bytes;
    Ok(summary)
}

pub(super) struct Packer<'a, 'c, 'x, 'f, 'p> {
    pub(super) w: &'a V2Writer,
    /// Content goes to the encoder workers through it.
    chunker: &'c mut Chunker<'x, 'f, 'p>,
    /// Later paths of a hardlinked file still being encoded, waiting for its blocks.
    waiting_links: HashMap<Ino, Vec<Ino>>,
    /// Files with several links whose blocks must be kept once complete.
    hardlinked: HashSet<Ino>,
    /// (st_dev, st_ino) of files with several links -> inode of the first path seen.
    seen: HashMap<(u64, u64), Ino>,
    /// Completed hardlinked files: their blocks and identity, for later paths.
    pub(super) finished_links: HashMap<Ino, (Vec<ChunkRef>, Identity)>,
    pub(super) summary: Summary,
    progress: &'a mut Progress,
    /// The earlier flist of an incremental pack (`--base`).
    pub(super) base: Option<&'a mut base::BaseIndex>,
    /// The directory being packed.
    pub(super) root: &'a Path,
}

impl Packer<'_, '_, '_, '_, '_> {
    fn walk(&mut self, src: &Path, src_meta: &Metadata) -> Result<()> {
        let root = self.add(src, src_meta, 0, b"/")?;
        if root != crate::flist::ROOT_INO {
            return Err(Error::format(format!(
                "root inode got number {root}, expected 1"
            )));
        }
        let mut stack: Vec<(PathBuf, Ino)> = vec![(src.to_path_buf(), root)];
        while let Some((dir, dino)) = stack.pop() {
            let mut names: Vec<OsString> = Vec::new();
            for e in std::fs::read_dir(&dir).with_ctx(|| format!("listing {}", dir.display()))? {
                let e = e.with_ctx(|| format!("listing {}", dir.display()))?;
                names.push(e.file_name());
            }
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            let mut subdirs = Vec::new();
            for name in names {
                let p = dir.join(&name);
                let meta =
                    std::fs::symlink_metadata(&p).with_ctx(|| format!("lstat {}", p.display()))?;
                let ino = self.add(&p, &meta, dino, name.as_bytes())?;
                if meta.is_dir() {
                    subdirs.push((p, ino));
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }

    /// Record one path: its row, xattrs, link target or content.
    fn add(&mut self, path: &Path, meta: &Metadata, parent: Ino, name: &[u8]) -> Result<Ino> {
        let mode = meta.mode();
        let kind = mode & S_IFMT;
        let size = match kind {
            S_IFDIR => 4096,
            _ => meta.size(),
        };
        let ino = self.w.add_entry(&NewEntry {
            parent,
            name,
            mode,
            uid: meta.uid(),
            gid: meta.gid(),
            size,
            rdev: meta.rdev(),
            mtime: meta.mtime(),
            ctime: meta.ctime(),
        })?;
        self.summary.entries += 1;
        for (k, v) in read_xattrs(path)? {
            self.w.add_xattr(ino, &k, &v)?;
        }
        if kind == S_IFLNK {
            let target =
                std::fs::read_link(path).with_ctx(|| format!("readlink {}", path.display()))?;
            self.w.set_link_target(ino, target.as_os_str().as_bytes())?;
        }
        if kind != S_IFDIR && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(&first) = self.seen.get(&key) {
                self.w.add_hardlink(ino, first)?;
                if kind == S_IFREG {
                    self.summary.files += 1;
                    if let Some((blocks, ident)) = self.finished_links.get(&first) {
                        self.w.add_blocks(ino, blocks)?;
                        self.w.set_identity(ino, ident)?;
                        self.summary.chunks += blocks.len() as u64;
                    } else if self.chunker.is_pending(first) {
                        self.waiting_links.entry(first).or_default().push(ino);
                    }
                }
                return Ok(ino);
            }
            self.seen.insert(key, ino);
        }
        if kind == S_IFREG {
            self.add_content(path, meta, ino)?;
        }
        Ok(ino)
    }

    fn add_content(&mut self, file_path: &Path, meta: &Metadata, ino: Ino) -> Result<()> {
        let path: Arc<Path> = Arc::from(file_path);
        let what = || format!("reading {}", path.display());
        let mut f = open_nofollow(&path).with_ctx(what)?;
        let fmeta = f.metadata().with_ctx(what)?;
        if fmeta.dev() != meta.dev() || fmeta.ino() != meta.ino() {
            return Err(Error::io(format!(
                "{} was replaced while being packed",
                path.display()
            )));
        }
        let size = meta.size();
        if self.base.is_some() {
            let partial = identity::partial_checksum(&f, size).with_ctx(what)?;
            if self.reuse_from_base(&path, meta, &f, &partial, ino)? {
                return Ok(());
            }
        }
        self.summary.files += 1;
        if meta.nlink() > 1 {
            self.hardlinked.insert(ino);
        }
        let (progress, files) = (&mut *self.progress, self.summary.files);
        let chunks_before = self.chunker.fed.chunks;
        let read_total = self.chunker.add(ino, &mut f, size, &path, &mut |fed| {
            progress.tick(files, fed)
        })?;
        self.summary.bytes += read_total;
        self.summary.chunks += self.chunker.fed.chunks - chunks_before;
        if read_total != size {
            return Err(Error::io(format!(
                "{} changed while being packed (size {size} at lstat, {read_total} bytes read)",
                path.display()
            )));
        }
        self.write_completed()
    }

    /// Write the block rows (and identity) of every file whose chunks are all stored, and
    /// of the later paths of the hardlinked ones.
    fn write_completed(&mut self) -> Result<()> {
        for c in self.chunker.take_completed() {
            let ino = c.key;
            self.w.add_blocks(ino, &c.blocks)?;
            self.w.set_identity(ino, &c.identity)?;
            for link in self.waiting_links.remove(&ino).unwrap_or_default() {
                self.w.add_blocks(link, &c.blocks)?;
                self.w.set_identity(link, &c.identity)?;
                self.summary.chunks += c.blocks.len() as u64;
            }
            if self.hardlinked.remove(&ino) {
                self.finished_links.insert(ino, (c.blocks, c.identity));
            }
        }
        Ok(())
    }
}

/// Open a regular file for reading without following a symlink, without updating atime
/// when allowed.
fn open_nofollow(path: &Path) -> std::io::Result<File> {
    let open = |flags: i32| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
    };
    match open(libc::O_NOFOLLOW | libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(libc::O_NOFOLLOW),
        r => r,
    }
}

/// Pack's progress line: files, MB, chunks and rate.
#[derive(Default)]
struct Progress(ProgressLine);

impl Progress {
    fn new() -> Progress {
        Progress(ProgressLine::new())
    }

    fn tick(&mut self, files: u64, fed: &Fed) {
        if self.0.due() {
            let rate = self.0.rate(fed.bytes);
            self.0.show(format_args!(
                "{} files, {:.1} MB, {} chunks, {:.1} MB/s",
                files,
                fed.bytes as f64 / 1e6,
                fed.chunks,
                rate
            ));
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}
