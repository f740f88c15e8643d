//! Pack's walker, on the calling thread: the tree walk (sorted names, depth first, lstat
//! only, never following symlinks), one metadata row per path (xattrs, link targets,
//! hardlinks), and each regular file read sequentially into the buffer pool and fed to
//! the encoder workers; a file's block rows and identity are written once all its
//! chunks came back. It never encodes nor uploads (see `encode`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::encode::{self, Counters, Done, Job};
use super::{base, read_xattrs, Summary};
use crate::codec::{v2, ChunkRef, CHUNK_SIZE};
use crate::error::{Context, Error, Result};
use crate::flist::v2::{NewEntry, V2Writer};
use crate::flist::{Identity, Ino, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::identity;
use crate::pipeline::{self, Feed};
use crate::store::router::Router;

/// Walk `src` into `w`, with `jobs` encoder workers uploading through `router`.
pub(super) fn pack_tree(
    w: &V2Writer,
    src: &Path,
    src_meta: &Metadata,
    router: &Router,
    jobs: usize,
    base: Option<&mut base::BaseIndex>,
) -> Result<Summary> {
    let counters = Counters::default();
    let nbufs = encode::buffers(jobs);
    let (pool_tx, pool_rx) = mpsc::sync_channel::<Vec<u8>>(nbufs);
    for _ in 0..nbufs {
        // Capacity only: pages are touched when first filled.
        let _ = pool_tx.send(Vec::with_capacity(CHUNK_SIZE));
    }
    let mut progress = Progress::new();
    let r = pipeline::run_batched(
        encode::config(jobs),
        v2::Encoder::new,
        |enc, batch| encode::encode_batch(enc, batch, &pool_tx, &counters, router),
        |feed| {
            let mut p = Packer {
                w,
                feed,
                pool_rx: &pool_rx,
                pool_tx: &pool_tx,
                pending: HashMap::new(),
                seen: HashMap::new(),
                finished_links: HashMap::new(),
                summary: Summary::default(),
                progress: &mut progress,
                base,
                root: src,
            };
            p.walk(src, src_meta)?;
            p.wait_all()?;
            Ok(p.summary.clone())
        },
    );
    progress.clear();
    let mut summary = r?;
    summary.uploaded = counters.uploaded.load(Ordering::Relaxed);
    summary.uploaded_bytes = counters.uploaded_bytes.load(Ordering::Relaxed);
    Ok(summary)
}

/// A regular file whose chunks are still being encoded or uploaded.
struct PendingFile {
    path: PathBuf,
    chunks: Vec<Option<ChunkRef>>,
    received: usize,
    /// Number of chunks, known once the file was read to its end.
    total: Option<usize>,
    identity: Option<Identity>,
    /// Later paths of the same (hardlinked) file, waiting for these blocks.
    links: Vec<Ino>,
    /// Keep the blocks after completion: more paths of this file may come.
    hardlinked: bool,
}

pub(super) struct Packer<'a, 'f, 'p> {
    pub(super) w: &'a V2Writer,
    /// The encoder workers' end of the pipeline.
    feed: &'f mut Feed<'p, Job, Done>,
    pool_rx: &'a mpsc::Receiver<Vec<u8>>,
    pool_tx: &'a mpsc::SyncSender<Vec<u8>>,
    pending: HashMap<Ino, PendingFile>,
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

impl Packer<'_, '_, '_> {
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
                    } else if let Some(p) = self.pending.get_mut(&first) {
                        p.links.push(ino);
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
        let path = &path;
        let what = || format!("reading {}", path.display());
        let mut f = open_nofollow(path).with_ctx(what)?;
        let fmeta = f.metadata().with_ctx(what)?;
        if fmeta.dev() != meta.dev() || fmeta.ino() != meta.ino() {
            return Err(Error::io(format!(
                "{} was replaced while being packed",
                path.display()
            )));
        }
        let size = meta.size();
        let partial = identity::partial_checksum(&f, size).with_ctx(what)?;
        if self.base.is_some() && self.reuse_from_base(path, meta, &f, &partial, ino)? {
            return Ok(());
        }
        let mut full = identity::FullChecksum::new();
        self.summary.files += 1;
        self.pending.insert(
            ino,
            PendingFile {
                path: path.to_path_buf(),
                chunks: Vec::new(),
                received: 0,
                total: None,
                identity: None,
                links: Vec::new(),
                hardlinked: meta.nlink() > 1,
            },
        );
        let mut index = 0;
        let mut read_total: u64 = 0;
        loop {
            self.drain()?;
            let mut buf = self.buffer()?;
            if buf.len() < CHUNK_SIZE {
                buf.resize(CHUNK_SIZE, 0);
            }
            let len = match fill(&mut f, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = self.pool_tx.send(buf);
                    return Err(Error::from(e).context(what()));
                }
            };
            if len == 0 {
                let _ = self.pool_tx.send(buf);
                break;
            }
            full.update(&buf[..len]);
            read_total += len as u64;
            self.summary.bytes += len as u64;
            self.summary.chunks += 1;
            self.progress.tick(&self.summary);
            self.feed.push(Job {
                ino,
                index,
                buf,
                len,
                path: path.clone(),
            })?;
            index += 1;
            if len < CHUNK_SIZE {
                break;
            }
        }
        if read_total != size {
            return Err(Error::io(format!(
                "{} changed while being packed (size {size} at lstat, {read_total} bytes read)",
                path.display()
            )));
        }
        if let Some(p) = self.pending.get_mut(&ino) {
            p.total = Some(index);
            p.identity = Some(Identity {
                partial,
                checksum: full.finish(),
            });
        }
        self.maybe_complete(ino)
    }

    /// A free plaintext buffer, waiting for a worker to return one if needed.
    fn buffer(&mut self) -> Result<Vec<u8>> {
        loop {
            match self.pool_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(b) => return Ok(b),
                Err(mpsc::RecvTimeoutError::Timeout) => self.drain()?,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::io("pack buffer pool closed"))
                }
            }
        }
    }

    /// Handle every result already available, without waiting.
    fn drain(&mut self) -> Result<()> {
        while let Some(d) = self.feed.try_next()? {
            self.on_done(d)?;
        }
        Ok(())
    }

    fn on_done(&mut self, d: Done) -> Result<()> {
        let Done { ino, index, chunk } = d;
        let Some(p) = self.pending.get_mut(&ino) else {
            return Ok(());
        };
        if p.chunks.len() <= index {
            p.chunks.resize(index + 1, None);
        }
        p.chunks[index] = Some(chunk);
        p.received += 1;
        self.maybe_complete(ino)
    }

    /// Write a file's block rows once all its chunks are stored.
    fn maybe_complete(&mut self, ino: Ino) -> Result<()> {
        let ready = matches!(self.pending.get(&ino), Some(p) if p.total == Some(p.received));
        if !ready {
            return Ok(());
        }
        let Some(p) = self.pending.remove(&ino) else {
            return Ok(());
        };
        let blocks = p
            .chunks
            .into_iter()
            .collect::<Option<Vec<ChunkRef>>>()
            .ok_or_else(|| Error::io(format!("{}: a chunk result is missing", p.path.display())))?;
        let ident = p
            .identity
            .ok_or_else(|| Error::io(format!("{}: identity missing", p.path.display())))?;
        self.w.add_blocks(ino, &blocks)?;
        self.w.set_identity(ino, &ident)?;
        for link in &p.links {
            self.w.add_blocks(*link, &blocks)?;
            self.w.set_identity(*link, &ident)?;
            self.summary.chunks += blocks.len() as u64;
        }
        if p.hardlinked {
            self.finished_links.insert(ino, (blocks, ident));
        }
        Ok(())
    }

    /// Wait for every outstanding chunk.
    fn wait_all(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            match self.feed.next()? {
                Some(d) => self.on_done(d)?,
                None => {
                    return Err(Error::io(format!(
                        "pack workers ended with {} files unfinished",
                        self.pending.len()
                    )))
                }
            }
        }
        Ok(())
    }
}

/// Read until `buf` is full or the file ends; returns the bytes read.
fn fill(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(r) => n += r,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
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

/// Progress on stderr, only when stderr is a terminal.
struct Progress {
    on: bool,
    last: Instant,
    started: Instant,
    shown: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            last: Instant::now(),
            started: Instant::now(),
            shown: false,
        }
    }

    fn tick(&mut self, s: &Summary) {
        if !self.on || self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-6);
        let _ = write!(
            std::io::stderr(),
            "\r{} files, {:.1} MB, {} chunks, {:.1} MB/s   ",
            s.files,
            s.bytes as f64 / 1e6,
            s.chunks,
            s.bytes as f64 / 1e6 / secs
        );
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r{:60}\r", "");
            self.shown = false;
        }
    }
}
