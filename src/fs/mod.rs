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
//! The read path (open, read, read-ahead) lives in `read`, directory listings in `dir`;
//! this file holds the shared state, lookups, attributes, xattrs, statfs and the refusals.

pub mod buffers;
mod dir;
pub mod mount;
pub mod pool;
pub mod prefetch;
mod read;
pub mod stats;
mod trace;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::fuse::abi::{flags, fopen};
use crate::fuse::{
    FileAttr, FileType, Filesystem, KernelConfig, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr,
};
use libc::{c_int, ENODATA, ENOENT, ENOSYS, ENOTDIR, ERANGE, EROFS};
use lru::LruCache;

use crate::cache::ChunkCache;
use crate::codec::{ChunkRef, CHUNK_SIZE};
use crate::error::{Error, Result};
use crate::flist::{Entry, Flist, Ino, Kind, Totals, ROOT_INO};
use crate::store::router::Router;
use dir::OpenDir;
use read::{OpenFile, HINT_CHUNKS, READ_BUFFERS};

/// How long the kernel may trust entries and attributes: the flist never changes.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// Entries kept in memory by inode.
const ENTRY_CACHE: usize = 4096;
/// Largest read-ahead the kernel is asked for.
pub(crate) const MAX_READAHEAD: u32 = 1 << 20;

/// Files of at most this many chunks (8 MiB) are fetched whole at their first read: a
/// program and its libraries are mapped and paged in out of order, each fault a round trip
/// of its own over a distant link, and a start touches nearly all of their chunks.
pub const DEFAULT_WHOLE_FILE_CHUNKS: usize = 16;

/// Fetches the read-ahead and whole-file fetches keep in flight at least (and on a local
/// store, or before the link was measured).
pub const MIN_INFLIGHT: usize = 4;
/// The most they keep in flight by default, however long and fat the link.
pub const DEFAULT_MAX_INFLIGHT: usize = 32;

/// Tuning of a mounted filesystem.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// Worker threads serving reads, opens and directory loads.
    pub threads: usize,
    /// Chunks fetched ahead of a sequential reader.
    pub readahead_chunks: usize,
    /// A file of at most this many chunks (and more than one) has all of them fetched at
    /// its first read, in parallel, whatever the read's offset (0: never).
    pub whole_file_chunks: usize,
    /// Chunks of the flist's prefetch list fetched at once (0: no prefetch).
    pub prefetch_parallel: usize,
    /// The most read-ahead and whole-file fetches in flight: between [`MIN_INFLIGHT`]
    /// and this, the number is sized from the link the router measured (its round trip
    /// and bandwidth), and a sequential reader's read-ahead deepens to it.
    pub max_inflight: usize,
    /// Record the first read of each (file, chunk) into this file (`--record-trace`).
    pub record_trace: Option<std::path::PathBuf>,
    /// Which worker of a mount this is (0, then 1, 2, ... after takeovers): its file
    /// handles start at `generation << 40`, so they never collide with the handles an
    /// earlier worker gave out and the kernel still holds.
    pub generation: u64,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            threads: 8,
            readahead_chunks: 6,
            whole_file_chunks: DEFAULT_WHOLE_FILE_CHUNKS,
            prefetch_parallel: prefetch::DEFAULT_PARALLEL,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            record_trace: None,
            generation: 0,
        }
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
    /// How far the prefetch of the flist's list got (reported by `stats`).
    prefetch: stats::PrefetchProgress,
    /// Holds read-ahead and whole-file fetches to the number the link needs in flight.
    ahead: pool::Gate,
    /// The trace being recorded (`--record-trace`).
    trace: Option<trace::Tracer>,
    /// Set when the filesystem is taken down (background work stops).
    stopping: std::sync::atomic::AtomicBool,
    /// When the filesystem was created (the uptime in `stats`).
    started: Instant,
}

/// The filesystem handed to the FUSE session (`crate::fuse`): the flist, the chunk cache, the router and the
/// worker, fetch and read-ahead pools serving one mount.
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
    FileAttr {
        ino: e.content_ino(),
        size: e.size,
        blocks: e.size.div_ceil(512),
        atime: e.mtime,
        mtime: e.mtime,
        ctime: e.ctime,
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

impl Shared {
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

    fn fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    /// The absolute path of an inode in the flist (hardlinks: the path of the entry
    /// `ino` names, the content owner's for a FUSE inode), walking parents; `None` when an
    /// entry is missing or the parents loop.
    fn path_of(&self, ino: Ino) -> Option<Vec<u8>> {
        crate::flist::path_by(ino, |i| self.entry(i).map(|e| (e.parent, e.name.clone()))).ok()
    }

    /// An entry from memory only (no flist query), for requests answered inline.
    fn cached_entry(&self, ino: Ino) -> Option<Arc<Entry>> {
        self.entries.lock().ok()?.get(&ino).cloned()
    }
}

impl ZvfsFs {
    /// A filesystem over `flist`, reading content through `cache` from `router`, and its
    /// thread pools started (`cfg.threads` clamped to 1..=64). Fails if the flist's root
    /// cannot be read or is not a directory, or if threads cannot be started.
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
        let tracer = match &cfg.record_trace {
            Some(p) => Some(trace::Tracer::create(p)?),
            None => None,
        };
        let shared = Arc::new(Shared {
            trace: tracer,
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
            next_fh: AtomicU64::new((cfg.generation << 40) | 1),
            buffers: buffers::Buffers::new(READ_BUFFERS, MAX_READAHEAD as usize),
            prefetch: stats::PrefetchProgress::default(),
            ahead: pool::Gate::default(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            started: Instant::now(),
        });
        let threads = cfg.threads.clamp(1, 64);
        let workers = pool::Pool::new("zvfs-worker", threads, threads * 4)
            .map_err(|e| Error::io(format!("starting worker threads: {e}")))?;
        // Reads waiting for a fetch are cheap to queue (a reply and a few handles); a deep
        // queue keeps workers from blocking behind them.
        let fetchers = pool::Pool::new("zvfs-fetch", threads, threads * 64)
            .map_err(|e| Error::io(format!("starting fetch threads: {e}")))?;
        let inflight = cfg.max_inflight.max(MIN_INFLIGHT);
        let queue = cfg.readahead_chunks.max(HINT_CHUNKS as usize).max(inflight) * 2;
        // Threads for the most fetches in flight; a gate holds them to the link's need.
        let readahead = pool::Pool::new("zvfs-readahead", inflight, queue)
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

    /// A handle taking statistics snapshots of this filesystem from any thread, also
    /// once the filesystem was moved into its FUSE session.
    pub fn stats_handle(&self) -> stats::StatsHandle {
        stats::StatsHandle {
            shared: self.shared.clone(),
            max_inflight: self.cfg.max_inflight,
        }
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
}

impl Filesystem for ZvfsFs {
    fn init(&mut self, config: &mut KernelConfig) -> Result<(), c_int> {
        config.max_readahead = config.max_readahead.min(MAX_READAHEAD);
        config.max_background = 64;
        config.congestion_threshold = 48;
        // Adaptive readdirplus: attributes come with the listing only for processes that
        // stat what they list (`ls -l`, `find`); a plain `ls` of a huge directory gets the
        // smaller plain entries, several times fewer requests and no inode per entry.
        config.requested |= flags::DO_READDIRPLUS
            | flags::READDIRPLUS_AUTO
            | flags::CACHE_SYMLINKS
            | flags::PARALLEL_DIROPS;
        if let Some(t) = &self.shared.trace {
            let weak = Arc::downgrade(&self.shared);
            t.start(Box::new(move |ino| weak.upgrade()?.path_of(ino)));
        }
        if let Some(f) = self.on_ready.take() {
            f();
        }
        prefetch::start(self.shared.clone(), self.cfg.prefetch_parallel);
        Ok(())
    }

    fn destroy(&mut self) {
        // Finish queued work before the session ends (waiting a bounded time: a fetch
        // stuck on a slow store must not hold up the unmount).
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.workers = None;
        self.fetchers = None;
        self.readahead = None;
        if let Some(t) = &self.shared.trace {
            t.finish();
        }
    }

    fn lookup(&mut self, parent: u64, name: &OsStr, reply: ReplyEntry) {
        crate::sys::failpoint::lookup(name);
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

    fn getattr(&mut self, ino: u64, reply: ReplyAttr) {
        match self.shared.entry(ino) {
            Ok(e) => reply.attr(&TTL, &attr_of(&e)),
            Err(e) => reply.error(fail(&format!("getattr of inode {ino}"), &e)),
        }
    }

    fn readlink(&mut self, ino: u64, reply: ReplyData) {
        match self.shared.flist.link_target(ino) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(fail(&format!("readlink of inode {ino}"), &e)),
        }
    }

    fn open(&mut self, ino: u64, flags: i32, reply: ReplyOpen) {
        self.open_file_reply(ino, flags, reply)
    }

    fn read(&mut self, ino: u64, fh: u64, offset: i64, size: u32, reply: ReplyData) {
        self.read_reply(ino, fh, offset, size, reply)
    }

    fn release(&mut self, _ino: u64, fh: u64, reply: ReplyEmpty) {
        self.release_file(fh, reply)
    }

    fn opendir(&mut self, ino: u64, reply: ReplyOpen) {
        let flags = fopen::KEEP_CACHE | fopen::CACHE_DIR;
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

    fn readdir(&mut self, ino: u64, fh: u64, offset: i64, reply: ReplyDirectory) {
        self.list(ino, fh, offset, reply);
    }

    fn readdirplus(&mut self, ino: u64, fh: u64, offset: i64, reply: ReplyDirectoryPlus) {
        self.list(ino, fh, offset, reply);
    }

    fn releasedir(&mut self, _ino: u64, fh: u64, reply: ReplyEmpty) {
        if let Ok(mut m) = self.shared.dirs.lock() {
            m.remove(&fh);
        }
        reply.ok();
    }

    fn statfs(&mut self, _ino: u64, reply: ReplyStatfs) {
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

    fn getxattr(&mut self, ino: u64, name: &OsStr, size: u32, reply: ReplyXattr) {
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

    fn listxattr(&mut self, ino: u64, size: u32, reply: ReplyXattr) {
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

    fn access(&mut self, _ino: u64, mask: i32, reply: ReplyEmpty) {
        if mask & libc::W_OK != 0 {
            reply.error(EROFS)
        } else {
            reply.ok()
        }
    }
}
