//! `zvfs pack`: turn a directory into an flist plus chunks in stores.
//!
//! One thread walks the tree (lstat only, never following symlinks), writes the metadata
//! rows and reads file contents sequentially into a small pool of 512 KiB buffers; `-j`
//! workers encode each chunk (codec v2) and upload it through the router. Results come
//! back out of order and a file's block rows are written, in file order, once all its
//! chunks are stored. Memory is bounded by the buffer pool (a few chunks per worker); no
//! file is ever held whole. The flist is written to a temporary file next to the output
//! and renamed into place only when everything succeeded.
//! This module does not decide formats (flist::v2, codec) nor talk to stores directly.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use crate::codec::{v2, ChunkRef, CHUNK_SIZE};
use crate::error::{Context, Error, ExitCode, Result};
use crate::flist::v2::{NewEntry, V2Writer};
use crate::flist::{Identity, Ino, Route, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::identity;
use crate::store::router::Router;
use crate::store::{redact, strip_password};
use crate::sys::atomic::AtomicFile;

pub mod base;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output flist path.
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// Store URL, optionally with a first-byte range: `[xx-xx=]URL` (repeatable).
    #[arg(short = 's', long = "store", required = true, value_parser = super::StoreSpec)]
    pub stores: Vec<String>,
    /// Tag to record, `key=value` (repeatable; `version` is reserved).
    #[arg(long = "tag", value_parser = super::TagSpec::Pair)]
    pub tags: Vec<String>,
    /// Encoding and upload workers (default: available parallelism).
    #[arg(short = 'j', long = "jobs")]
    pub jobs: Option<usize>,
    /// Keep passwords in the routes written into the flist.
    #[arg(long)]
    pub no_strip_password: bool,
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    /// Incremental pack: a file whose path, size, mtime and partial checksum match its
    /// entry in this earlier flist reuses that entry's chunk list and checksums; it is
    /// not read whole and nothing is uploaded for it (see `base.rs` for the risk).
    #[arg(long, value_name = "OLD.fl")]
    pub base: Option<PathBuf>,
    /// With --base: still read reused files whole and compare their full checksum
    /// (nothing is uploaded for those that match).
    #[arg(long, requires = "base")]
    pub base_verify: bool,
    /// Directory to pack.
    pub source: PathBuf,
}

/// Plaintext buffers per worker: a batch being encoded, and one read ahead.
const BUFFERS_PER_WORKER: usize = MAX_BATCH + 1;

/// Chunks a worker encodes together (their hashes computed side by side, AVX2: 4).
const MAX_BATCH: usize = 4;

/// What a pack did, for the summary line.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    pub chunks: u64,
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    pub seconds: f64,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let tags = parse_tags(&args.tags)?;
    let routes = args
        .stores
        .iter()
        .map(|s| Route::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let router = Router::new(&routes, &args.store_flags.config())?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
        .max(1);

    let src = &args.source;
    let src_meta = std::fs::symlink_metadata(src)
        .with_ctx(|| format!("source directory {}", src.display()))?;
    if !src_meta.is_dir() {
        return Err(Error::invalid(format!(
            "source {} is not a directory",
            src.display()
        )));
    }

    let mut base = match &args.base {
        Some(p) => Some(base::BaseIndex::open(p, args.base_verify, &routes)?),
        None => None,
    };
    let tmp = AtomicFile::new(&args.meta)?;
    let writer = V2Writer::create(tmp.path())?;
    for (k, v) in &tags {
        writer.set_tag(k, v)?;
    }
    for r in route_rows(&routes, args.no_strip_password) {
        writer.add_route(&r)?;
    }
    let mut summary = pack_tree(&writer, src, &src_meta, &router, jobs, base.as_mut())?;
    // Objects are synced once, here, before the flist that refers to them is published.
    router.flush()?;
    writer.finish()?;
    tmp.commit()?;
    summary.seconds = started.elapsed().as_secs_f64();
    let mbs = summary.bytes as f64 / 1e6 / summary.seconds.max(1e-6);
    println!(
        "packed {} into {}: {} entries, {} files, {} bytes, {} chunks, {} unique chunks uploaded ({} bytes), {:.2} s, {:.1} MB/s",
        src.display(),
        args.meta.display(),
        summary.entries,
        summary.files,
        summary.bytes,
        summary.chunks,
        summary.uploaded,
        summary.uploaded_bytes,
        summary.seconds,
        mbs
    );
    if let (Some(b), Some(p)) = (&base, &args.base) {
        println!("{}", b.report(p));
    }
    log::debug!(
        "stores: {}",
        routes
            .iter()
            .map(|r| redact(&r.url))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::Ok)
}

/// The routes as recorded in the flist: passwords stripped unless asked to keep them.
fn route_rows(routes: &[Route], keep_passwords: bool) -> Vec<Route> {
    routes
        .iter()
        .map(|r| Route {
            start: r.start,
            end: r.end,
            url: if keep_passwords {
                r.url.clone()
            } else {
                strip_password(&r.url)
            },
        })
        .collect()
}

/// `--tag k=v` arguments; `version` is reserved for the schema marker.
fn parse_tags(tags: &[String]) -> Result<Vec<(String, String)>> {
    tags.iter()
        .map(|t| {
            let (k, v) = super::check_tag_spec(t).map_err(|e| e.context("--tag"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// One chunk to encode and upload.
struct Job {
    ino: Ino,
    index: usize,
    buf: Vec<u8>,
    len: usize,
}

enum Done {
    Chunk {
        ino: Ino,
        index: usize,
        chunk: ChunkRef,
    },
    Failed {
        ino: Ino,
        index: usize,
        err: Error,
    },
}

/// Counters shared with the workers.
#[derive(Default)]
struct Shared {
    abort: AtomicBool,
    uploaded: AtomicU64,
    uploaded_bytes: AtomicU64,
    ids: Mutex<HashSet<[u8; 32]>>,
}

fn pack_tree(
    w: &V2Writer,
    src: &Path,
    src_meta: &Metadata,
    router: &Router,
    jobs: usize,
    base: Option<&mut base::BaseIndex>,
) -> Result<Summary> {
    let shared = Shared::default();
    let nbufs = jobs * BUFFERS_PER_WORKER + 1;
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(nbufs);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let (pool_tx, pool_rx) = mpsc::sync_channel::<Vec<u8>>(nbufs);
    for _ in 0..nbufs {
        // Capacity only: pages are touched when first filled.
        let _ = pool_tx.send(Vec::with_capacity(CHUNK_SIZE));
    }
    std::thread::scope(|s| {
        for _ in 0..jobs {
            let job_rx = &job_rx;
            let done_tx = done_tx.clone();
            let pool_tx = pool_tx.clone();
            let shared = &shared;
            s.spawn(move || worker(job_rx, done_tx, pool_tx, shared, router));
        }
        drop(done_tx);
        let mut p = Packer {
            w,
            job_tx: Some(job_tx),
            done_rx,
            pool_rx,
            pool_tx,
            pending: HashMap::new(),
            seen: HashMap::new(),
            finished_links: HashMap::new(),
            summary: Summary::default(),
            progress: Progress::new(),
            base,
            root: src,
        };
        let r = p.walk(src, src_meta).and_then(|_| p.wait_all());
        if r.is_err() {
            shared.abort.store(true, Ordering::SeqCst);
        }
        p.progress.clear();
        let mut summary = p.summary.clone();
        drop(p); // closes the job channel so the workers end
        summary.uploaded = shared.uploaded.load(Ordering::Relaxed);
        summary.uploaded_bytes = shared.uploaded_bytes.load(Ordering::Relaxed);
        r.map(|_| summary)
    })
}

fn worker(
    jobs: &Mutex<mpsc::Receiver<Job>>,
    done: mpsc::Sender<Done>,
    pool: mpsc::SyncSender<Vec<u8>>,
    shared: &Shared,
    router: &Router,
) {
    let mut enc = v2::Encoder::new();
    let degree = v2::batch_degree().clamp(1, MAX_BATCH);
    loop {
        let Some(batch) = next_batch(jobs, degree) else {
            return;
        };
        if shared.abort.load(Ordering::Relaxed) {
            for job in batch {
                let _ = pool.send(job.buf);
            }
            continue;
        }
        let plains: Vec<&[u8]> = batch.iter().map(|j| &j.buf[..j.len]).collect();
        let results: Vec<Result<ChunkRef>> = match enc.encode_batch(&plains) {
            Ok(encoded) => encoded
                .into_iter()
                .map(|(chunk, out)| store_chunk(shared, router, chunk, out))
                .collect(),
            Err(e) => batch
                .iter()
                .map(|_| Err(Error::new(e.kind, e.msg.clone())))
                .collect(),
        };
        for (job, r) in batch.into_iter().zip(results) {
            let _ = pool.send(job.buf);
            let msg = match r {
                Ok(chunk) => Done::Chunk {
                    ino: job.ino,
                    index: job.index,
                    chunk,
                },
                Err(err) => {
                    shared.abort.store(true, Ordering::SeqCst);
                    Done::Failed {
                        ino: job.ino,
                        index: job.index,
                        err,
                    }
                }
            };
            if done.send(msg).is_err() {
                return;
            }
        }
    }
}

/// Wait for one job, then take up to `max` that are already queued (hashed side by side).
/// `None` once the walker is done.
fn next_batch(jobs: &Mutex<mpsc::Receiver<Job>>, max: usize) -> Option<Vec<Job>> {
    let rx = jobs.lock().ok()?;
    let mut batch = vec![rx.recv().ok()?];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Upload an encoded chunk unless this pack already stored one with the same id.
fn store_chunk(shared: &Shared, router: &Router, chunk: ChunkRef, out: &[u8]) -> Result<ChunkRef> {
    let mut id = [0u8; 32];
    id.copy_from_slice(chunk.id());
    let fresh = match shared.ids.lock() {
        Ok(mut ids) => ids.insert(id),
        Err(_) => true,
    };
    if fresh {
        router.put(chunk.id(), out)?;
        shared.uploaded.fetch_add(1, Ordering::Relaxed);
        shared
            .uploaded_bytes
            .fetch_add(out.len() as u64, Ordering::Relaxed);
    }
    Ok(chunk)
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

struct Packer<'a> {
    w: &'a V2Writer,
    job_tx: Option<mpsc::SyncSender<Job>>,
    done_rx: mpsc::Receiver<Done>,
    pool_rx: mpsc::Receiver<Vec<u8>>,
    pool_tx: mpsc::SyncSender<Vec<u8>>,
    pending: HashMap<Ino, PendingFile>,
    /// (st_dev, st_ino) of files with several links -> inode of the first path seen.
    seen: HashMap<(u64, u64), Ino>,
    /// Completed hardlinked files: their blocks and identity, for later paths.
    finished_links: HashMap<Ino, (Vec<ChunkRef>, Identity)>,
    summary: Summary,
    progress: Progress,
    /// The earlier flist of an incremental pack (`--base`).
    base: Option<&'a mut base::BaseIndex>,
    /// The directory being packed.
    root: &'a Path,
}

impl Packer<'_> {
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

    fn add_content(&mut self, path: &Path, meta: &Metadata, ino: Ino) -> Result<()> {
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
            let tx = self
                .job_tx
                .as_ref()
                .ok_or_else(|| Error::io("pack workers are gone"))?;
            tx.send(Job {
                ino,
                index,
                buf,
                len,
            })
            .map_err(|_| Error::io("pack workers are gone"))?;
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
        while let Ok(d) = self.done_rx.try_recv() {
            self.on_done(d)?;
        }
        Ok(())
    }

    fn on_done(&mut self, d: Done) -> Result<()> {
        match d {
            Done::Chunk { ino, index, chunk } => {
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
            Done::Failed { ino, index, err } => {
                let path = self
                    .pending
                    .get(&ino)
                    .map(|p| p.path.display().to_string())
                    .unwrap_or_else(|| format!("inode {ino}"));
                Err(err.context(format!(
                    "packing {path} (chunk {index} at offset {})",
                    index as u64 * CHUNK_SIZE as u64
                )))
            }
        }
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

    /// Close the job queue and wait for every outstanding chunk.
    fn wait_all(&mut self) -> Result<()> {
        self.job_tx = None;
        while !self.pending.is_empty() {
            match self.done_rx.recv() {
                Ok(d) => self.on_done(d)?,
                Err(_) => {
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

/// Every extended attribute of `path` (not following a symlink), sorted by name.
pub(crate) fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    use rustix::io::Errno;
    let what = || format!("reading extended attributes of {}", path.display());
    let names = loop {
        let n = match rustix::fs::llistxattr_query(path) {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(e.to_string()).context(what())),
        };
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; n];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                break buf;
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(Error::io(e.to_string()).context(what())),
        }
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_os = std::ffi::OsStr::from_bytes(name);
        let value = loop {
            let n = match rustix::fs::lgetxattr_query(path, name_os) {
                Ok(n) => n,
                Err(Errno::NODATA) => break None,
                Err(e) => {
                    return Err(Error::io(e.to_string()).context(format!(
                        "{}: {}",
                        what(),
                        String::from_utf8_lossy(name)
                    )))
                }
            };
            let mut v = vec![0u8; n];
            match rustix::fs::lgetxattr(path, name_os, &mut v[..]) {
                Ok(len) => {
                    v.truncate(len);
                    break Some(v);
                }
                Err(Errno::RANGE) => continue,
                Err(Errno::NODATA) => break None,
                Err(e) => {
                    return Err(Error::io(e.to_string()).context(format!(
                        "{}: {}",
                        what(),
                        String::from_utf8_lossy(name)
                    )))
                }
            }
        };
        if let Some(v) = value {
            out.push((name.to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_rows_strip_passwords_unless_kept() {
        let routes = vec![
            Route::parse("00-7f=zdb://u:secret@h:9900/ns").unwrap(),
            Route::parse("dir:///srv/store").unwrap(),
        ];
        let rows = route_rows(&routes, false);
        assert_eq!(rows[0].url, "zdb://u@h:9900/ns");
        assert_eq!((rows[0].start, rows[0].end), (0, 0x7f));
        assert_eq!(rows[1].url, "dir:///srv/store");
        assert_eq!((rows[1].start, rows[1].end), (0, 255));
        assert_eq!(route_rows(&routes, true)[0].url, "zdb://u:secret@h:9900/ns");
    }

    #[test]
    fn version_tag_is_refused() {
        let err = parse_tags(&["version=3".into()]).unwrap_err();
        assert!(err.msg.contains("reserved"), "{err}");
        assert!(parse_tags(&["novalue".into()]).is_err());
        assert_eq!(
            parse_tags(&["author=me=you".into()]).unwrap(),
            vec![("author".to_string(), "me=you".to_string())]
        );
    }
}
