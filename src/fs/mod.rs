//! The read-only FUSE filesystem over an flist. It maps kernel requests onto the flist
//! model and the chunk cache: a read is a straight line from the file's chunk list
//! (loaded once per open, shared by every open of the inode) through the chunk cache to
//! the router. Content never changes, so the kernel keeps its page cache across opens and
//! entries and attributes get long timeouts. Slow requests (open, opendir, read) run on a
//! bounded worker pool; a read that needs a chunk from the stores moves on to a separate
//! fetch pool, so reads stuck on a slow store never hold the workers that answer reads of
//! cached content. Sequential reads trigger bounded read-ahead of the next chunks.
//! Directories are listed page by page from the flist, so memory does not grow with a
//! directory's size. An flist without any xattr answers getxattr with ENOSYS, which makes
//! the kernel stop sending them for the whole mount (`ls -l` would otherwise cost two
//! round trips per entry, each answered ENODATA); listxattr still answers (an empty list,
//! from memory), so `getfattr -d` shows no xattrs rather than an error.
//! Every write is refused with EROFS. No callback panics: errors map to an errno (EIO for
//! store and integrity failures, with a log line naming the chunk).
//!
//! This module owns no storage: metadata comes from `flist`, content from `cache`.

pub mod buffers;
pub mod mount;
pub mod pool;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    consts, FileAttr, FileType, Filesystem, KernelConfig, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow,
};
use libc::{c_int, EBADF, EIO, ENODATA, ENOENT, ENOSYS, ENOTDIR, ERANGE, EROFS};
use lru::LruCache;

use crate::cache::{mapped, ChunkCache, Piece, MAX_PIECES};
use crate::codec::{ChunkRef, CHUNK_SIZE};
use crate::error::{Error, Result};
use crate::flist::{Entry, Flist, Ino, Kind, Totals, ROOT_INO};
use crate::store::router::Router;

/// How long the kernel may trust entries and attributes: the flist never changes.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// Entries kept in memory by inode.
const ENTRY_CACHE: usize = 4096;
/// Largest read-ahead the kernel is asked for.
pub(crate) const MAX_READAHEAD: u32 = 1 << 20;
/// Reads assembling their reply at once (one that must copy holds a buffer of the
/// largest request; one mapped from the cache holds its mapped window).
const READ_BUFFERS: usize = 4;
/// How far ahead of a sequential reader cached chunks are read into the page cache.
const HINT_CHUNKS: u64 = 32;

/// Tuning of a mounted filesystem.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// Worker threads serving reads, opens and directory loads.
    pub threads: usize,
    /// Chunks fetched ahead of a sequential reader.
    pub readahead_chunks: usize,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            threads: 8,
            readahead_chunks: 6,
        }
    }
}

/// An open regular file.
struct OpenFile {
    size: u64,
    chunks: Arc<Vec<ChunkRef>>,
    /// Where a sequential reader's next read starts.
    next: AtomicU64,
    /// Chunks below this index were already queued for read-ahead.
    ahead: AtomicU64,
    /// Chunks below this index were already queued for a page-cache hint.
    hinted: AtomicU64,
}

/// An open directory, listed page by page ([`DIR_PAGE`] children at a time, in inode
/// order) so the daemon's memory does not grow with the directory: a listing's offset
/// names the last child it returned (its inode + 2; 1 and 2 follow `.` and `..`), and
/// the next request resumes in the page kept here or reads the next one from the flist.
/// Nothing is read at opendir: the kernel keeps listings in its cache (FOPEN_CACHE_DIR)
/// and then opens directories without reading them again, so a warm tree walk costs no
/// flist query per directory.
struct OpenDir {
    this: Arc<Entry>,
    parent: Arc<Entry>,
    page: Mutex<Option<Arc<DirPage>>>,
}

/// Children of a directory read in one go: those above inode `after`, at most
/// [`DIR_PAGE`] (fewer only at the end of the directory).
struct DirPage {
    after: Ino,
    entries: Vec<Entry>,
}

/// Children read from the flist per directory page.
const DIR_PAGE: usize = 512;

/// The offset that resumes a listing after the child with inode `ino`.
fn dir_cookie(ino: Ino) -> i64 {
    (ino.min(i64::MAX as u64 - 2) + 2) as i64
}

impl OpenDir {
    /// The kept page and the position in it where a listing resumes after child inode
    /// `after` (0: from the first child); `None` when the next page must be read.
    fn resume(&self, after: Ino) -> Option<(Arc<DirPage>, usize)> {
        let page = self.page.lock().ok()?.clone()?;
        let pos = if after == page.after {
            0
        } else {
            page.entries.binary_search_by_key(&after, |e| e.ino).ok()? + 1
        };
        if pos == page.entries.len() && page.entries.len() == DIR_PAGE {
            return None;
        }
        Some((page, pos))
    }
}

/// State shared by the session thread and the workers.
struct Shared {
    flist: Box<dyn Flist>,
    /// Whether any entry of the flist has an xattr (else xattr requests get ENOSYS).
    has_xattrs: bool,
    cache: ChunkCache,
    router: Router,
    /// Computed on the first statfs (a full scan of the flist), not at mount time.
    totals: OnceLock<Totals>,
    entries: Mutex<LruCache<Ino, Arc<Entry>>>,
    contents: Mutex<HashMap<Ino, Weak<Vec<ChunkRef>>>>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    dirs: Mutex<HashMap<u64, Arc<OpenDir>>>,
    next_fh: AtomicU64,
    /// Reply buffers of reads in flight.
    buffers: buffers::Buffers,
}

pub struct ZvfsFs {
    shared: Arc<Shared>,
    cfg: FsConfig,
    workers: Option<pool::Pool>,
    /// Reads that need a chunk fetched (as many threads as workers).
    fetchers: Option<pool::Pool>,
    readahead: Option<pool::Pool>,
    /// Jobs queued or running on the workers (not reads waiting on the fetch pool).
    answering: Arc<AtomicUsize>,
    on_ready: Option<Box<dyn FnOnce() + Send>>,
}

fn time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
        Kind::Socket => FileType::Socket,
    }
}

/// The attributes the kernel sees. Hardlinked paths share one inode number (the inode
/// that owns the content).
pub fn attr_of(e: &Entry) -> FileAttr {
    let mtime = time(e.mtime);
    FileAttr {
        ino: e.content_ino(),
        size: e.size,
        blocks: e.size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: time(e.ctime),
        crtime: mtime,
        kind: file_type(e.kind()),
        perm: (e.mode & 0o7777) as u16,
        nlink: e.nlink,
        uid: e.uid,
        gid: e.gid,
        rdev: e.rdev as u32,
        blksize: CHUNK_SIZE as u32,
        flags: 0,
    }
}

/// Log a failed request and return its errno.
fn fail(what: &str, e: &Error) -> c_int {
    let errno = e.errno();
    if errno == ENOENT {
        log::debug!("{what}: {e}");
    } else {
        log::error!("{what}: {e}");
    }
    errno
}

/// Answer a readdir from `offset` with as many entries as fit.
/// The two listing replies (plain and with attributes), filled by one [`fill_dir`].
trait DirReply: Send + 'static {
    /// Add one entry; `true` when the reply is full.
    fn add_entry(&mut self, e: &Entry, ino: u64, next: i64, name: &OsStr) -> bool;
    fn done(self);
    fn fail(self, errno: c_int);
}

impl DirReply for ReplyDirectory {
    fn add_entry(&mut self, e: &Entry, ino: u64, next: i64, name: &OsStr) -> bool {
        self.add(ino, next, file_type(e.kind()), name)
    }
    fn done(self) {
        self.ok()
    }
    fn fail(self, errno: c_int) {
        self.error(errno)
    }
}

impl DirReply for ReplyDirectoryPlus {
    fn add_entry(&mut self, e: &Entry, ino: u64, next: i64, name: &OsStr) -> bool {
        self.add(ino, next, name, &TTL, &attr_of(e), 0)
    }
    fn done(self) {
        self.ok()
    }
    fn fail(self, errno: c_int) {
        self.error(errno)
    }
}

/// The child inode after which a listing at `offset` resumes (0: the first child).
fn resume_after(offset: i64) -> Ino {
    (offset.max(2) - 2) as Ino
}

/// Answer a listing from `offset` (0 is ".", 1 is "..", then the children after the one
/// the offset names, see [`OpenDir`]), reading pages from the flist as needed when
/// `may_read`, else stopping at the end of the kept page (a short reply: the kernel asks
/// again from there).
fn fill_dir<R: DirReply>(shared: &Shared, d: &OpenDir, offset: i64, mut reply: R, may_read: bool) {
    if offset <= 0 && reply.add_entry(&d.this, d.this.ino, 1, OsStr::new(".")) {
        return reply.done();
    }
    if offset <= 1 && reply.add_entry(&d.parent, d.parent.ino, 2, OsStr::new("..")) {
        return reply.done();
    }
    let mut after = resume_after(offset);
    loop {
        let (page, pos) = match d.resume(after) {
            Some(p) => p,
            None => match shared.flist.children_after(d.this.ino, after, DIR_PAGE) {
                Ok(entries) => {
                    let page = Arc::new(DirPage { after, entries });
                    if let Ok(mut kept) = d.page.lock() {
                        *kept = Some(page.clone());
                    }
                    (page, 0)
                }
                Err(e) => return reply.fail(fail(&format!("readdir of inode {}", d.this.ino), &e)),
            },
        };
        for c in page.entries.get(pos..).unwrap_or(&[]) {
            let name = OsStr::from_bytes(&c.name);
            if reply.add_entry(c, c.content_ino(), dir_cookie(c.ino), name) {
                return reply.done();
            }
            after = c.ino;
        }
        if page.entries.len() < DIR_PAGE || !may_read {
            break;
        }
    }
    reply.done();
}

impl Shared {
    fn open_dir_of(&self, fh: u64) -> Option<Arc<OpenDir>> {
        self.dirs.lock().ok()?.get(&fh).cloned()
    }

    fn entry(&self, ino: Ino) -> Result<Arc<Entry>> {
        if let Ok(mut c) = self.entries.lock() {
            if let Some(e) = c.get(&ino) {
                return Ok(e.clone());
            }
        }
        let e = Arc::new(self.flist.get(ino)?);
        self.remember(&e);
        Ok(e)
    }

    fn remember(&self, e: &Arc<Entry>) {
        if let Ok(mut c) = self.entries.lock() {
            c.put(e.ino, e.clone());
        }
    }

    /// The chunk list of a content inode, shared by every open of it.
    fn chunks(&self, ino: Ino) -> Result<Arc<Vec<ChunkRef>>> {
        if let Ok(m) = self.contents.lock() {
            if let Some(c) = m.get(&ino).and_then(Weak::upgrade) {
                return Ok(c);
            }
        }
        let chunks = Arc::new(self.flist.blocks(ino)?);
        if let Ok(mut m) = self.contents.lock() {
            m.retain(|_, w| w.strong_count() > 0);
            m.insert(ino, Arc::downgrade(&chunks));
        }
        Ok(chunks)
    }

    fn fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn open_file(&self, ino: Ino) -> Result<u64> {
        let e = self.entry(ino)?;
        if e.kind() != Kind::File {
            return Err(Error::invalid(format!("inode {ino} is not a regular file")));
        }
        let chunks = self.chunks(e.content_ino())?;
        let expected = e.size.div_ceil(CHUNK_SIZE as u64);
        if (chunks.len() as u64) < expected {
            return Err(Error::corrupt(format!(
                "inode {ino}: {} bytes need {expected} chunks, the flist lists {}",
                e.size,
                chunks.len()
            )));
        }
        let fh = self.fh();
        let f = Arc::new(OpenFile {
            size: e.size,
            chunks,
            next: AtomicU64::new(0),
            ahead: AtomicU64::new(0),
            hinted: AtomicU64::new(0),
        });
        if let Ok(mut m) = self.files.lock() {
            m.insert(fh, f);
        }
        Ok(fh)
    }

    fn open_dir(&self, ino: Ino) -> Result<u64> {
        let this = self.entry(ino)?;
        if !this.is_dir() {
            return Err(Error::invalid(format!("inode {ino} is not a directory")));
        }
        let parent = if this.ino == ROOT_INO || this.parent == 0 {
            this.clone()
        } else {
            self.entry(this.parent)?
        };
        let fh = self.fh();
        let d = Arc::new(OpenDir {
            this,
            parent,
            page: Mutex::new(None),
        });
        if let Ok(mut m) = self.dirs.lock() {
            m.insert(fh, d);
        }
        Ok(fh)
    }

    /// An entry from memory only (no flist query), for requests answered inline.
    fn cached_entry(&self, ino: Ino) -> Option<Arc<Entry>> {
        self.entries.lock().ok()?.get(&ino).cloned()
    }

    /// Fill `buf` with the file's bytes from `offset` (the caller sized it with
    /// [`read_len`]): chunk by chunk through the cache.
    fn read_into(&self, f: &OpenFile, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut at = 0;
        for piece in pieces(f, offset, buf.len()) {
            let p = piece?;
            self.cache
                .read_exact_at(&p.chunk, &self.router, p.offset, &mut buf[at..at + p.len])?;
            at += p.len;
        }
        Ok(())
    }

    /// Whether every chunk of the file's `len` bytes from `offset` is in the cache (so a
    /// read of them needs no store). A cache error counts as cached: the read reports it.
    fn all_cached(&self, f: &OpenFile, offset: u64, len: usize) -> bool {
        pieces(f, offset, len).all(|p| match p {
            Ok(p) => self.cache.is_cached(&p.chunk).unwrap_or(true),
            Err(_) => true,
        })
    }

    /// The file's `len` bytes from `offset` mapped straight from the cache files (fetched
    /// first when missing); `None` when they cannot be mapped and must be copied.
    fn map_range(&self, f: &OpenFile, offset: u64, len: usize) -> Result<Option<mapped::Window>> {
        let mut list: heapless::Vec<Piece, MAX_PIECES> = heapless::Vec::new();
        for piece in pieces(f, offset, len) {
            if list.push(piece?).is_err() {
                return Ok(None);
            }
        }
        self.cache.map_pieces(&list, &self.router)
    }
}

/// Answer a read of `len` bytes at `offset`, fetching missing chunks. One of a bounded
/// number of reads assembling a reply at once: mapped straight from the cache when it can
/// be, else copied into a buffer.
fn serve_read(
    shared: &Shared,
    f: &OpenFile,
    ino: u64,
    offset: u64,
    size: u32,
    len: usize,
    reply: ReplyData,
) {
    let mut slot = shared.buffers.lend(len);
    let copied = match shared.map_range(f, offset, len) {
        Ok(Some(window)) => return reply.data(window.bytes()),
        Ok(None) => shared.read_into(f, offset, slot.slice(len)),
        Err(e) => Err(e),
    };
    match copied {
        Ok(()) => reply.data(slot.slice(len)),
        Err(e) => {
            log::error!("read of inode {ino} at {offset} (+{size}): {e}");
            reply.error(EIO)
        }
    }
}

/// The chunk pieces that hold the file's `len` bytes from `offset`, in order.
fn pieces(f: &OpenFile, offset: u64, len: usize) -> impl Iterator<Item = Result<Piece>> + '_ {
    let cs = CHUNK_SIZE as u64;
    let end = offset + len as u64;
    let mut pos = offset;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let idx = (pos / cs) as usize;
        let within = (pos % cs) as usize;
        let n = (cs - within as u64).min(end - pos) as usize;
        let here = pos;
        pos += n as u64;
        Some(match f.chunks.get(idx) {
            Some(chunk) => Ok(Piece {
                chunk: *chunk,
                offset: within,
                len: n,
            }),
            None => {
                pos = end;
                Err(Error::corrupt(format!(
                    "file has no chunk {idx} for offset {here}"
                )))
            }
        })
    })
}

/// The bytes a read of `size` at `offset` returns: less at the end of the file.
fn read_len(f: &OpenFile, offset: u64, size: u32) -> usize {
    if offset >= f.size {
        return 0;
    }
    (f.size.min(offset.saturating_add(size as u64)) - offset) as usize
}

impl ZvfsFs {
    pub fn new(
        flist: Box<dyn Flist>,
        cache: ChunkCache,
        router: Router,
        cfg: FsConfig,
    ) -> Result<ZvfsFs> {
        let root = flist.get(ROOT_INO)?;
        if !root.is_dir() {
            return Err(Error::format("the flist's root is not a directory"));
        }
        let shared = Arc::new(Shared {
            has_xattrs: flist.has_xattrs(),
            flist,
            cache,
            router,
            totals: OnceLock::new(),
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(ENTRY_CACHE).unwrap_or(NonZeroUsize::MIN),
            )),
            contents: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            buffers: buffers::Buffers::new(READ_BUFFERS, MAX_READAHEAD as usize),
        });
        let threads = cfg.threads.clamp(1, 64);
        let workers = pool::Pool::new("zvfs-worker", threads, threads * 4)
            .map_err(|e| Error::io(format!("starting worker threads: {e}")))?;
        // Reads waiting for a fetch are cheap to queue (a reply and a few handles); a deep
        // queue keeps workers from blocking behind them.
        let fetchers = pool::Pool::new("zvfs-fetch", threads, threads * 64)
            .map_err(|e| Error::io(format!("starting fetch threads: {e}")))?;
        let queue = cfg.readahead_chunks.max(HINT_CHUNKS as usize) * 2;
        let readahead = pool::Pool::new("zvfs-readahead", 4, queue)
            .map_err(|e| Error::io(format!("starting read-ahead threads: {e}")))?;
        Ok(ZvfsFs {
            shared,
            cfg,
            workers: Some(workers),
            fetchers: Some(fetchers),
            readahead: Some(readahead),
            answering: Arc::new(AtomicUsize::new(0)),
            on_ready: None,
        })
    }

    /// Called once the kernel finished the FUSE handshake (the mount serves requests).
    pub fn on_ready(&mut self, f: impl FnOnce() + Send + 'static) {
        self.on_ready = Some(Box::new(f));
    }

    /// How many requests the workers hold (queued or running). Reads waiting for a
    /// store are not counted: they may take the whole deadline. Lets the daemon tell,
    /// once unmounted, whether anything answerable is still in flight.
    pub fn answering(&self) -> Arc<AtomicUsize> {
        self.answering.clone()
    }

    fn work(&self, job: impl FnOnce() + Send + 'static) {
        struct Done(Arc<AtomicUsize>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.answering.fetch_add(1, Ordering::Relaxed);
        let done = Done(self.answering.clone());
        let job = move || {
            let _done = done;
            job()
        };
        match &self.workers {
            Some(p) => p.spawn(job),
            None => job(),
        }
    }

    /// A listing: answered here when it resumes in the page in memory, else by a worker
    /// (that reads the next page from the flist).
    fn list<R: DirReply>(&self, fh: u64, offset: i64, reply: R) {
        let Some(d) = self.shared.open_dir_of(fh) else {
            return reply.fail(EBADF);
        };
        if d.resume(resume_after(offset)).is_some() {
            return fill_dir(&self.shared, &d, offset, reply, false);
        }
        let shared = self.shared.clone();
        self.work(move || fill_dir(&shared, &d, offset, reply, true));
    }

    /// Queue the chunks after a sequential read for background fetching (the next
    /// `readahead_chunks`), and the cached ones further on for a page-cache hint: a
    /// reader of cached content then finds the cache files' pages (and their inodes)
    /// already read, the disk kept busy several requests ahead as for a native read.
    fn read_ahead(&self, f: &Arc<OpenFile>, offset: u64, size: u32) {
        let n = self.cfg.readahead_chunks as u64;
        let end = offset.saturating_add(size as u64).min(f.size);
        // The kernel's own read-ahead may issue a sequential stream slightly out of order.
        let prev = f.next.swap(end, Ordering::Relaxed);
        let sequential = offset == 0 || offset.abs_diff(prev) <= MAX_READAHEAD as u64;
        if !sequential || n == 0 {
            return;
        }
        let cs = CHUNK_SIZE as u64;
        let next = end.div_ceil(cs);
        let total = f.chunks.len() as u64;
        let fetch_end = (end / cs + 1 + n).min(total);
        self.queue_ahead(f, &f.ahead, next..fetch_end, true);
        let hint_end = (end / cs + 1 + n.max(HINT_CHUNKS)).min(total);
        self.queue_ahead(f, &f.hinted, next.max(fetch_end)..hint_end, false);
    }

    /// Queue `range` (less what `mark` says was queued already) on the read-ahead pool:
    /// fetching missing chunks when `fetch`, else only hinting cached ones.
    fn queue_ahead(&self, f: &OpenFile, mark: &AtomicU64, range: Range<u64>, fetch: bool) {
        let Some(ra) = &self.readahead else { return };
        for idx in range.start.max(mark.load(Ordering::Relaxed))..range.end {
            let Some(chunk) = f.chunks.get(idx as usize).copied() else {
                break;
            };
            let shared = self.shared.clone();
            let queued = ra.try_spawn(move || {
                let r = if fetch {
                    shared.cache.prefetch(&chunk, &shared.router)
                } else {
                    shared.cache.hint(&chunk);
                    Ok(())
                };
                if let Err(e) = r {
                    log::warn!("read-ahead: {e}");
                }
            });
            if !queued {
                break;
            }
            mark.store(idx + 1, Ordering::Relaxed);
        }
    }
}

impl Filesystem for ZvfsFs {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), c_int> {
        let _ = config.set_max_readahead(MAX_READAHEAD);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        // Adaptive readdirplus: attributes come with the listing only for processes that
        // stat what they list (`ls -l`, `find`); a plain `ls` of a huge directory gets the
        // smaller plain entries, several times fewer requests and no inode per entry.
        for cap in [
            consts::FUSE_DO_READDIRPLUS,
            consts::FUSE_READDIRPLUS_AUTO,
            consts::FUSE_CACHE_SYMLINKS,
            consts::FUSE_PARALLEL_DIROPS,
        ] {
            let _ = config.add_capabilities(cap);
        }
        if let Some(f) = self.on_ready.take() {
            f();
        }
        Ok(())
    }

    fn destroy(&mut self) {
        // Finish queued work before the session ends (waiting a bounded time: a fetch
        // stuck on a slow store must not hold up the unmount).
        self.workers = None;
        self.fetchers = None;
        self.readahead = None;
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self.shared.flist.lookup(parent, name.as_bytes()) {
            Ok(Some(e)) => {
                let e = Arc::new(e);
                self.shared.remember(&e);
                reply.entry(&TTL, &attr_of(&e), 0)
            }
            Ok(None) => reply.error(ENOENT),
            Err(e) => reply.error(fail(&format!("lookup in inode {parent}"), &e)),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.shared.entry(ino) {
            Ok(e) => reply.attr(&TTL, &attr_of(&e)),
            Err(e) => reply.error(fail(&format!("getattr of inode {ino}"), &e)),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self.shared.flist.link_target(ino) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(fail(&format!("readlink of inode {ino}"), &e)),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return reply.error(EROFS);
        }
        let shared = self.shared.clone();
        self.work(move || match shared.open_file(ino) {
            Ok(fh) => reply.opened(fh, consts::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(fail(&format!("open of inode {ino}"), &e)),
        });
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let f = self
            .shared
            .files
            .lock()
            .ok()
            .and_then(|m| m.get(&fh).cloned());
        let Some(f) = f else {
            return reply.error(EBADF);
        };
        let offset = offset.max(0) as u64;
        self.read_ahead(&f, offset, size);
        let shared = self.shared.clone();
        let fetch = self.fetchers.as_ref().and_then(|p| p.spawner());
        self.work(move || {
            let len = read_len(&f, offset, size);
            // A worker answers what the cache holds; a read that needs a store waits on
            // the fetch pool instead, never holding a worker.
            match fetch {
                Some(fetch) if !shared.all_cached(&f, offset, len) => {
                    fetch.spawn(move || serve_read(&shared, &f, ino, offset, size, len, reply))
                }
                _ => serve_read(&shared, &f, ino, offset, size, len, reply),
            }
        });
    }

    fn flush(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _lock_owner: u64,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Ok(mut m) = self.shared.files.lock() {
            m.remove(&fh);
        }
        reply.ok();
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let flags = consts::FOPEN_KEEP_CACHE | consts::FOPEN_CACHE_DIR;
        let shared = self.shared.clone();
        let open = move || match shared.open_dir(ino) {
            Ok(fh) => reply.opened(fh, flags),
            Err(e) if e.kind == crate::error::ErrorKind::Invalid => reply.error(ENOTDIR),
            Err(e) => reply.error(fail(&format!("opendir of inode {ino}"), &e)),
        };
        // Entries in memory make opendir cheap: answer it here, without a worker hop.
        let parent = self.shared.cached_entry(ino).map(|e| e.parent);
        let cheap = match parent {
            Some(p) => ino == ROOT_INO || p == 0 || self.shared.cached_entry(p).is_some(),
            None => false,
        };
        if cheap {
            open()
        } else {
            self.work(open)
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        reply: ReplyDirectory,
    ) {
        self.list(fh, offset, reply);
    }

    fn readdirplus(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        reply: ReplyDirectoryPlus,
    ) {
        self.list(fh, offset, reply);
    }

    fn releasedir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        reply: ReplyEmpty,
    ) {
        if let Ok(mut m) = self.shared.dirs.lock() {
            m.remove(&fh);
        }
        reply.ok();
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let shared = self.shared.clone();
        self.work(move || {
            let t = match shared.totals.get() {
                Some(t) => t,
                None => match shared.flist.totals() {
                    Ok(t) => shared.totals.get_or_init(|| t),
                    Err(e) => return reply.error(fail("statfs", &e)),
                },
            };
            let bsize = 4096u64;
            reply.statfs(
                t.bytes.div_ceil(bsize),
                0,
                0,
                t.entries,
                0,
                bsize as u32,
                255,
                bsize as u32,
            );
        });
    }

    fn getxattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        log::debug!("getxattr of inode {ino}: {name:?}");
        if !self.shared.has_xattrs {
            // ENOSYS: the kernel stops sending xattr requests for the whole mount and
            // answers them itself (EOPNOTSUPP), sparing `ls -l` a round trip per entry.
            return reply.error(ENOSYS);
        }
        let xattrs = match self.shared.flist.xattrs(ino) {
            Ok(x) => x,
            Err(e) => return reply.error(fail(&format!("getxattr of inode {ino}"), &e)),
        };
        match xattrs.iter().find(|(n, _)| n.as_slice() == name.as_bytes()) {
            None => reply.error(ENODATA),
            Some((_, v)) if size == 0 => reply.size(v.len() as u32),
            Some((_, v)) if (size as usize) < v.len() => reply.error(ERANGE),
            Some((_, v)) => reply.data(v),
        }
    }

    fn listxattr(&mut self, _req: &Request<'_>, ino: u64, size: u32, reply: ReplyXattr) {
        log::debug!("listxattr of inode {ino}");
        let xattrs = match self.shared.flist.xattrs(ino) {
            Ok(x) => x,
            Err(e) => return reply.error(fail(&format!("listxattr of inode {ino}"), &e)),
        };
        let mut list = Vec::new();
        for (n, _) in &xattrs {
            list.extend_from_slice(n);
            list.push(0);
        }
        if size == 0 {
            reply.size(list.len() as u32)
        } else if (size as usize) < list.len() {
            reply.error(ERANGE)
        } else {
            reply.data(&list)
        }
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, mask: i32, reply: ReplyEmpty) {
        if mask & libc::W_OK != 0 {
            reply.error(EROFS)
        } else {
            reply.ok()
        }
    }

    // Everything below would change the tree: read-only filesystem.

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        reply.error(EROFS)
    }

    fn mknod(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(EROFS)
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(EROFS)
    }

    fn unlink(&mut self, _req: &Request<'_>, _parent: u64, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(EROFS)
    }

    fn rmdir(&mut self, _req: &Request<'_>, _parent: u64, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(EROFS)
    }

    fn symlink(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(EROFS)
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _name: &OsStr,
        _newparent: u64,
        _newname: &OsStr,
        _flags: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(EROFS)
    }

    fn link(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _newparent: u64,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(EROFS)
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _offset: i64,
        _data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        reply.error(EROFS)
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(EROFS)
    }

    fn setxattr(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(EROFS)
    }

    fn removexattr(&mut self, _req: &Request<'_>, _ino: u64, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(EROFS)
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _offset: i64,
        _length: i64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(EROFS)
    }
}
