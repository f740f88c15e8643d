//! The bounded, crash-safe, shared chunk cache: verified plaintext chunks on local disk at
//! `<dir>/<hh>/<hh>/<hex id>` (the rfs layout, so a node's rfs cache carries over).
//!
//! - A chunk enters the cache only as plaintext the router already verified (both hashes),
//!   written to a temporary file and renamed into place, so a crash never leaves a partial
//!   file under a chunk's name.
//! - A cache file is checked against its key the first time a process uses it (files from
//!   a crash, a full disk or another tool may be truncated or wrong); a bad file is removed
//!   and fetched again, never served. Verified ids are remembered in a bounded LRU.
//! - Concurrent requests for one missing chunk are merged into one fetch (single flight),
//!   and the number of chunks fetched at once is bounded.
//! - The total size stays under a quota shared by every process using the directory
//!   ([`quota`]): least recently used files (oldest mtime; hits touch it) are evicted.
//!   Eviction never breaks a reader: open files stay readable and a file gone between
//!   lookup and open is a miss. A failed cache write never fails a read.
//!
//! This module owns the cache directory; it never decodes chunks itself (the router does)
//! and knows nothing of flists or FUSE.

pub mod mapped;
pub mod quota;

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;

use crate::codec::{ChunkRef, MAX_OBJECT};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::store::router::Router;
use crate::sys::atomic::{AtomicFile, Durability};

pub use quota::{parse_size, DEFAULT_CACHE_SIZE};

/// How many verified chunk ids a process remembers (about 100 bytes each).
const VERIFIED_CAPACITY: usize = 8192;

/// A hit touches a cache file's mtime (its LRU age) at most this often.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// Counters for logs, `cache stats` and tests.
#[derive(Default, Debug)]
pub struct CacheStats {
    /// Reads served from a verified cache file.
    pub hits: AtomicU64,
    /// Reads that found no good cache file.
    pub misses: AtomicU64,
    /// Chunks fetched from the stores.
    pub fetches: AtomicU64,
    /// Misses that waited for a fetch already under way instead of starting one.
    pub merged: AtomicU64,
    /// Cache files found truncated or corrupt (removed and fetched again).
    pub bad_files: AtomicU64,
    /// Chunks that could not be written to the cache (served anyway).
    pub write_errors: AtomicU64,
}

/// The outcome of one fetch, shared with every request that waited for it.
type Shared = std::result::Result<Arc<Vec<u8>>, (ErrorKind, String)>;

#[derive(Default)]
struct Flight {
    done: Mutex<Option<Shared>>,
    cv: Condvar,
}

impl Flight {
    fn finish(&self, r: Shared) {
        if let Ok(mut g) = self.done.lock() {
            *g = Some(r);
        }
        self.cv.notify_all();
    }

    fn wait(&self) -> Shared {
        let mut g = match self.done.lock() {
            Ok(g) => g,
            Err(_) => return Err((ErrorKind::Io, "chunk fetch lock poisoned".into())),
        };
        loop {
            if let Some(r) = g.as_ref() {
                return r.clone();
            }
            g = match self.cv.wait(g) {
                Ok(g) => g,
                Err(_) => return Err((ErrorKind::Io, "chunk fetch lock poisoned".into())),
            };
        }
    }
}

/// A counting semaphore bounding the chunks fetched (and held in memory) at once.
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
    /// Holders of a slot and those waiting for one.
    wanted: AtomicU64,
}

struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n.max(1)),
            cv: Condvar::new(),
            wanted: AtomicU64::new(0),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        self.wanted.fetch_add(1, Ordering::Relaxed);
        let mut g = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *g == 0 {
            g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        *g -= 1;
        SlotGuard(self)
    }

    fn try_acquire(&self) -> Option<SlotGuard<'_>> {
        let mut g = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if *g == 0 {
            return None;
        }
        *g -= 1;
        self.wanted.fetch_add(1, Ordering::Relaxed);
        Some(SlotGuard(self))
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut g = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *g += 1;
        self.0.wanted.fetch_sub(1, Ordering::Relaxed);
        self.0.cv.notify_one();
    }
}

/// What [`ChunkCache::prefetch_within_bound`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefetched {
    /// The chunk was in the cache already.
    Cached,
    /// The chunk was fetched (by this call or by a fetch under way it joined).
    Fetched,
    /// The cache is at its bound: nothing was fetched, and further prefetch would evict.
    Full,
}

/// The most pieces [`ChunkCache::map_pieces`] maps at once (a 1 MiB read spans at most 3
/// chunks of 512 KiB).
pub const MAX_PIECES: usize = 4;

/// Part of a read: `len` bytes of a chunk's plaintext from `offset`.
#[derive(Clone, Copy, Debug)]
pub struct Piece {
    /// The chunk.
    pub chunk: ChunkRef,
    /// Start in the chunk's plaintext, in bytes.
    pub offset: usize,
    /// Length, in bytes.
    pub len: usize,
}

/// The on-disk cache of verified chunk plaintexts (`<dir>/<hh>/<hh>/<hex id>`, the rfs
/// layout), bounded by its [`quota::Quota`]; concurrent misses of one chunk share one fetch.
pub struct ChunkCache {
    dir: PathBuf,
    quota: quota::Quota,
    /// Chunks whose cache file this process checked, with the last time it touched them.
    verified: Mutex<LruCache<ChunkRef, Instant>>,
    flights: Mutex<HashMap<ChunkRef, Arc<Flight>>>,
    slots: Slots,
    /// Hits, misses and fetches of this process.
    pub stats: CacheStats,
}

impl ChunkCache {
    /// Open (creating it if needed) a cache directory bounded to `max_bytes`, shared with
    /// any other process using the same directory. At most `max_fetches` chunks are
    /// fetched (and held in memory) at once.
    pub fn open(dir: &Path, max_bytes: u64, max_fetches: usize) -> Result<ChunkCache> {
        std::fs::create_dir_all(dir)
            .with_ctx(|| format!("creating cache directory {}", dir.display()))?;
        let quota = quota::Quota::open(dir, max_bytes)?;
        Ok(ChunkCache {
            dir: dir.to_path_buf(),
            quota,
            verified: Mutex::new(LruCache::new(
                NonZeroUsize::new(VERIFIED_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            )),
            flights: Mutex::new(HashMap::new()),
            slots: Slots::new(max_fetches),
            stats: CacheStats::default(),
        })
    }

    /// Fetches reads are waiting for (under way or waiting for a slot): a prefetch holds
    /// back while there are some.
    pub fn demand_fetches(&self) -> u64 {
        self.slots.wanted.load(Ordering::Relaxed)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory's size bound and its maintenance operations.
    pub fn quota(&self) -> &quota::Quota {
        &self.quota
    }

    /// `<dir>/<hh>/<hh>/<hex id>`, as rfs lays it out.
    pub fn path_of(&self, chunk: &ChunkRef) -> PathBuf {
        quota::chunk_path(&self.dir, chunk.hex_id().as_str())
    }

    /// Fill `buf` with the chunk's plaintext from `offset`, from the cache or the stores.
    /// Fails (naming the chunk) when the chunk is shorter than `offset + buf.len()`.
    pub fn read_exact_at(
        &self,
        chunk: &ChunkRef,
        router: &Router,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<()> {
        if self.read_cached(chunk, offset, buf)? {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let plain = self.fetch_shared(chunk, router)?;
        copy_range(chunk, &plain, offset, buf)
    }

    /// The pieces' bytes mapped back to back straight from their cache files (see
    /// [`mapped`]), so the caller replies without copying them into a buffer of its own.
    /// Pieces missing from the cache are fetched, and files this process has not checked
    /// yet are checked, first. `Ok(None)` when the pieces cannot all be mapped (not
    /// page-aligned, more than [`MAX_PIECES`], or a chunk the cache could not keep): the
    /// caller then copies them with [`ChunkCache::read_exact_at`].
    pub fn map_pieces(&self, pieces: &[Piece], router: &Router) -> Result<Option<mapped::Window>> {
        let ranges = pieces.iter().map(|p| (p.offset as u64, p.len));
        if pieces.len() > MAX_PIECES || !mapped::can_map(ranges) {
            return Ok(None);
        }
        if let Some(w) = self.map_checked(pieces) {
            self.stats
                .hits
                .fetch_add(pieces.len() as u64, Ordering::Relaxed);
            return Ok(Some(w));
        }
        for p in pieces {
            if !self.ensure_checked(&p.chunk, router)? {
                return Ok(None);
            }
        }
        Ok(self.map_checked(pieces))
    }

    /// Map pieces whose cache files this process has checked; `None` if any is not.
    fn map_checked(&self, pieces: &[Piece]) -> Option<mapped::Window> {
        let mut files: heapless::Vec<File, MAX_PIECES> = heapless::Vec::new();
        for p in pieces {
            let touched = self.is_verified(&p.chunk)?;
            let f = File::open(self.path_of(&p.chunk)).ok()?;
            if f.metadata().ok()?.len() < p.offset.saturating_add(p.len) as u64 {
                // Shorter than it was when checked: it is checked again before use.
                self.forget_verified(&p.chunk);
                return None;
            }
            if touched.elapsed() >= TOUCH_INTERVAL {
                self.touch(&p.chunk, &f);
            }
            files.push(f).ok()?;
        }
        let parts: heapless::Vec<mapped::Part<'_>, MAX_PIECES> = files
            .iter()
            .zip(pieces)
            .map(|(file, p)| mapped::Part {
                file,
                offset: p.offset as u64,
                len: p.len,
            })
            .collect();
        match mapped::Window::map(&parts) {
            Ok(w) => Some(w),
            Err(e) => {
                log::debug!("cache: mapping a read of {} chunks: {e}", pieces.len());
                None
            }
        }
    }

    /// Make sure a chunk's cache file is there and checked by this process, fetching it
    /// when absent or bad; `false` when the cache could not keep it (full or unwritable).
    fn ensure_checked(&self, chunk: &ChunkRef, router: &Router) -> Result<bool> {
        if self.is_verified(chunk).is_some() {
            return Ok(true);
        }
        if self.load_verified(chunk)?.is_some() {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        self.fetch_shared(chunk, router)?;
        Ok(self.is_verified(chunk).is_some())
    }

    /// Whether the chunk's cache file is there and checked by this process (checking it
    /// now if it was not), so that reading it needs no store.
    pub fn is_cached(&self, chunk: &ChunkRef) -> Result<bool> {
        if self.is_verified(chunk).is_some() {
            return Ok(true);
        }
        Ok(self.load_verified(chunk)?.is_some())
    }

    /// The whole verified plaintext of a chunk (for unpack and cat).
    pub fn get(&self, chunk: &ChunkRef, router: &Router) -> Result<Arc<Vec<u8>>> {
        if let Some(data) = self.load_verified(chunk)? {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::new(data));
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        self.fetch_shared(chunk, router)
    }

    /// Make sure a chunk is in the cache without keeping it in memory (read-ahead).
    /// A cached chunk's file is read into the page cache in the background (so a
    /// sequential reader of cached content never waits for the disk); a missing chunk is
    /// fetched unless every fetch slot is busy with on-demand reads. It takes no slot
    /// itself: the caller bounds how many read-ahead fetches run at once (the mount sizes
    /// that from the link), so a long fat link is kept busy beyond the slots.
    pub fn prefetch(&self, chunk: &ChunkRef, router: &Router) -> Result<()> {
        if self.hint(chunk) {
            return Ok(());
        }
        if let Ok(m) = self.flights.lock() {
            if m.contains_key(chunk) {
                return Ok(());
            }
        }
        let Some(slot) = self.slots.try_acquire() else {
            return Ok(());
        };
        drop(slot);
        self.fetch_shared_as(chunk, router, false).map(|_| ())
    }

    /// Fetch a chunk a trace says will be read (the mount-time prefetch), unless it is
    /// cached already or caching it would need an eviction: a prefetch stops at the
    /// cache's bound, so it never evicts anything (chunks it fetched before they are read
    /// among them). It takes no fetch slot (the caller bounds how many run at once); an
    /// on-demand read of the same chunk waits for this fetch instead of starting its own.
    pub fn prefetch_within_bound(&self, chunk: &ChunkRef, router: &Router) -> Result<Prefetched> {
        if self.is_cached(chunk)? {
            return Ok(Prefetched::Cached);
        }
        let need = quota::file_cost(crate::codec::CHUNK_SIZE as u64) + 2 * quota::DIR_COST;
        if self.quota.usage()?.saturating_add(need) > self.quota.max() {
            return Ok(Prefetched::Full);
        }
        self.fetch_shared_as(chunk, router, false)?;
        Ok(Prefetched::Fetched)
    }

    /// Start reading a cached chunk's file into the page cache, without waiting for the
    /// disk; `false` when the chunk is not in the cache.
    pub fn hint(&self, chunk: &ChunkRef) -> bool {
        match File::open(self.path_of(chunk)) {
            Ok(f) => {
                let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::WillNeed);
                true
            }
            Err(_) => false,
        }
    }

    /// Make sure a chunk is in the cache, fetching it when absent, without keeping it in
    /// memory (`zvfs warm`). Returns whether it had to be fetched. A file already there is
    /// trusted here; like every cache file it is checked when a process first reads it.
    pub fn warm(&self, chunk: &ChunkRef, router: &Router) -> Result<bool> {
        if self.path_of(chunk).exists() {
            return Ok(false);
        }
        self.fetch_shared(chunk, router).map(|_| true)
    }

    fn is_verified(&self, chunk: &ChunkRef) -> Option<Instant> {
        self.verified.lock().ok()?.get(chunk).copied()
    }

    fn set_verified(&self, chunk: &ChunkRef, touched: Instant) {
        if let Ok(mut v) = self.verified.lock() {
            v.put(*chunk, touched);
        }
    }

    fn forget_verified(&self, chunk: &ChunkRef) {
        if let Ok(mut v) = self.verified.lock() {
            v.pop(chunk);
        }
    }

    fn touch(&self, chunk: &ChunkRef, f: &File) {
        let _ = f.set_modified(SystemTime::now());
        self.set_verified(chunk, Instant::now());
    }

    /// Serve a range from the cache file; `false` on a miss (absent or bad file).
    fn read_cached(&self, chunk: &ChunkRef, offset: usize, buf: &mut [u8]) -> Result<bool> {
        let path = self.path_of(chunk);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(false),
            Err(e) => {
                log::warn!("cache: cannot open {}: {e}", path.display());
                return Ok(false);
            }
        };
        if let Some(touched) = self.is_verified(chunk) {
            let n = read_full_at(&f, buf, offset as u64)
                .with_ctx(|| format!("reading cache file {}", path.display()))?;
            if n == buf.len() {
                if touched.elapsed() >= TOUCH_INTERVAL {
                    self.touch(chunk, &f);
                }
                return Ok(true);
            }
            // Shorter than it was when checked: someone changed it; check it again.
            self.forget_verified(chunk);
        }
        match self.check_file(chunk, &path, &f)? {
            Some(data) => {
                self.touch(chunk, &f);
                copy_range(chunk, &data, offset, buf)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The whole plaintext from the cache file, verified; `None` on a miss.
    fn load_verified(&self, chunk: &ChunkRef) -> Result<Option<Vec<u8>>> {
        let path = self.path_of(chunk);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(None),
            Err(e) => {
                log::warn!("cache: cannot open {}: {e}", path.display());
                return Ok(None);
            }
        };
        let data = self.check_file(chunk, &path, &f)?;
        if data.is_some() {
            self.touch(chunk, &f);
        }
        Ok(data)
    }

    /// Read and verify a cache file; removes it and returns `None` when it is bad.
    fn check_file(&self, chunk: &ChunkRef, path: &Path, f: &File) -> Result<Option<Vec<u8>>> {
        let len = f
            .metadata()
            .with_ctx(|| format!("reading cache file {}", path.display()))?
            .len();
        let mut data = Vec::new();
        let good = if len as usize > MAX_OBJECT {
            false
        } else {
            data.reserve_exact(len as usize);
            let r = f;
            r.take(MAX_OBJECT as u64 + 1)
                .read_to_end(&mut data)
                .with_ctx(|| format!("reading cache file {}", path.display()))?;
            chunk.plaintext_matches(&data)
        };
        if good {
            return Ok(Some(data));
        }
        self.stats.bad_files.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "cache: {} ({len} bytes) does not match chunk {chunk} (truncated or corrupt); removing it and fetching again",
            path.display()
        );
        self.forget_verified(chunk);
        if std::fs::remove_file(path).is_ok() {
            self.quota.release(quota::file_cost(len));
        }
        Ok(None)
    }

    /// Fetch a chunk once however many requests want it at the same time.
    fn fetch_shared(&self, chunk: &ChunkRef, router: &Router) -> Result<Arc<Vec<u8>>> {
        self.fetch_shared_as(chunk, router, true)
    }

    /// [`ChunkCache::fetch_shared`], taking one of the fetch slots when `demand` (a read
    /// that waits for it); read-ahead and a trace prefetch (`!demand`) bound their own
    /// parallelism and never take a slot an on-demand read needs.
    fn fetch_shared_as(
        &self,
        chunk: &ChunkRef,
        router: &Router,
        demand: bool,
    ) -> Result<Arc<Vec<u8>>> {
        let (flight, leader) = {
            let mut m = self
                .flights
                .lock()
                .map_err(|_| Error::io("chunk fetch table lock poisoned"))?;
            match m.get(chunk) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight::default());
                    m.insert(*chunk, f.clone());
                    (f, true)
                }
            }
        };
        if !leader {
            self.stats.merged.fetch_add(1, Ordering::Relaxed);
            return flight.wait().map_err(|(k, m)| Error::new(k, m));
        }
        let result = self.fetch_and_store(chunk, router, demand);
        let shared: Shared = match &result {
            Ok(d) => Ok(d.clone()),
            Err(e) => Err((e.kind, e.msg.clone())),
        };
        flight.finish(shared);
        if let Ok(mut m) = self.flights.lock() {
            m.remove(chunk);
        }
        result
    }

    fn fetch_and_store(
        &self,
        chunk: &ChunkRef,
        router: &Router,
        demand: bool,
    ) -> Result<Arc<Vec<u8>>> {
        let _slot = demand.then(|| self.slots.acquire());
        // Another flight may have stored it between our miss and our turn.
        if let Some(data) = self.load_verified(chunk)? {
            return Ok(Arc::new(data));
        }
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let plain = router.fetch(chunk)?;
        self.store(chunk, &plain);
        Ok(Arc::new(plain))
    }

    /// Write verified plaintext into the cache; failures are logged, never returned.
    fn store(&self, chunk: &ChunkRef, plain: &[u8]) {
        let path = self.path_of(chunk);
        if path.exists() {
            return;
        }
        let len = plain.len() as u64;
        let Some(leaf) = path.parent() else { return };
        // What it takes on disk, with the directories it may have to create.
        let new_dirs = match leaf.parent() {
            _ if leaf.is_dir() => 0,
            Some(l1) if l1.is_dir() => 1,
            _ => 2,
        };
        let reserved = quota::file_cost(len) + new_dirs * quota::DIR_COST;
        let tmp_name = format!(
            "{}{}.{}",
            quota::TMP_PREFIX,
            std::process::id(),
            chunk.hex_id()
        );
        // The temporary file is created (with its full length) under the quota's lock,
        // together with its reservation: a scan by any process sharing the cache (which
        // recomputes usage from the files present) counts it, and no unreserved bytes
        // pile up on disk while writers wait behind an eviction. No sync: a cache file is
        // verified before its first use in a process.
        let create = || create_sized(leaf, &path, &tmp_name, len);
        let mut file = match self.quota.reserve_with(reserved, create) {
            Ok(f) => f,
            Err(e) => {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                log::warn!("cache: not caching chunk {chunk}: {e}");
                return;
            }
        };
        let tmp = file.path().to_path_buf();
        let written = file
            .file()
            .write_all(plain)
            .with_ctx(|| format!("writing {}", tmp.display()));
        let done = written.and_then(|()| self.quota.exclusive(|| file.commit()));
        match done {
            Ok(()) => self.set_verified(chunk, Instant::now()),
            Err(e) => {
                self.quota.release(reserved);
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                log::warn!("cache: caching chunk {chunk} failed ({e}); serving it from memory");
            }
        }
    }
}

/// A new file of `len` bytes (sparse) at `path`, its directory created when missing, and
/// locked as a live writer's (see [`crate::sys::leftovers`]). A directory removed between
/// its creation and the file's (an empty shard directory pruned by another process that
/// does not share the lock, such as rfs) is created again.
fn create_sized(dir: &Path, path: &Path, tmp_name: &str, len: u64) -> Result<AtomicFile> {
    let mut tries = 0;
    let mut f = loop {
        std::fs::create_dir_all(dir).with_ctx(|| format!("creating {}", dir.display()))?;
        match AtomicFile::with(path, Durability::Unsynced, Some(tmp_name.into())) {
            Ok(f) => break f,
            // An eviction removed the emptied directory meanwhile.
            Err(e) if e.kind == ErrorKind::NotFound && tries < 3 => tries += 1,
            Err(e) => return Err(e),
        }
    };
    let tmp = f.path().display().to_string();
    f.file().set_len(len).with_ctx(|| format!("sizing {tmp}"))?;
    Ok(f)
}

/// Copy `buf.len()` bytes of `data` from `offset`, or fail naming the chunk.
fn copy_range(chunk: &ChunkRef, data: &[u8], offset: usize, buf: &mut [u8]) -> Result<()> {
    let end = offset.saturating_add(buf.len());
    if end > data.len() {
        return Err(Error::corrupt(format!(
            "chunk {chunk}: holds {} bytes but the flist needs bytes {offset}..{end}",
            data.len()
        )));
    }
    buf.copy_from_slice(&data[offset..end]);
    Ok(())
}

/// `pread` until `buf` is full or the end of the file; returns the bytes read.
fn read_full_at(f: &File, buf: &mut [u8], mut offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                offset += n as u64;
            }
            Err(e) if e.kind() == IoKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
