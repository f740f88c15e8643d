//! The read path of the FUSE filesystem: opening a regular file (its chunk list, loaded
//! once and shared by every open of the inode, checked against the file's size), answering
//! reads (mapped straight from the cache files or copied into one of a bounded number of
//! buffers; a read needing a store moves to the fetch pool), and sequential read-ahead
//! (chunk prefetch and page-cache hints). It must not answer metadata requests (lookup,
//! getattr, readdir, xattr: `fs/mod.rs`) nor touch stores except through the cache.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::fuse::abi::fopen;
use crate::fuse::{ReplyData, ReplyEmpty, ReplyOpen};
use libc::{EIO, EROFS};

use super::{fail, Shared, ZvfsFs, MAX_READAHEAD, MIN_INFLIGHT};
use crate::cache::{mapped, Piece, MAX_PIECES};
use crate::codec::{ChunkRef, CHUNK_SIZE};
use crate::content::FileContent;
use crate::error::{Error, Result};
use crate::flist::{Ino, Kind};

/// Reads assembling their reply at once (one that must copy holds a buffer of the
/// largest request; one mapped from the cache holds its mapped window).
pub(super) const READ_BUFFERS: usize = 4;
/// How far ahead of a sequential reader cached chunks are read into the page cache.
pub(super) const HINT_CHUNKS: u64 = 32;

/// An open regular file.
pub(super) struct OpenFile {
    size: u64,
    chunks: Arc<Vec<ChunkRef>>,
    /// Where a sequential reader's next read starts.
    next: AtomicU64,
    /// Chunks below this index were already queued for read-ahead.
    ahead: AtomicU64,
    /// Chunks below this index were already queued for a page-cache hint.
    hinted: AtomicU64,
}

impl Shared {
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

    fn open_file(&self, ino: Ino) -> Result<u64> {
        let fh = self.fh();
        self.open_file_as(ino, fh).map(|_| fh)
    }

    /// Open `ino` under handle `fh`: a new open, or a handle an earlier worker gave out
    /// (the kernel still holds it after a takeover) rebuilt from its inode.
    fn open_file_as(&self, ino: Ino, fh: u64) -> Result<Arc<OpenFile>> {
        let e = self.entry(ino)?;
        if e.kind() != Kind::File {
            return Err(Error::invalid(format!("inode {ino} is not a regular file")));
        }
        // Random access needs the fixed layout: the chunk list must cover the size.
        let content = FileContent::new(
            e.size,
            self.chunks(e.content_ino())?,
            format!("inode {ino}"),
        );
        content.check_fixed()?;
        let f = Arc::new(OpenFile {
            size: content.size(),
            chunks: content.chunks().clone(),
            next: AtomicU64::new(0),
            ahead: AtomicU64::new(0),
            hinted: AtomicU64::new(0),
        });
        if let Ok(mut m) = self.files.lock() {
            m.insert(fh, f.clone());
        }
        Ok(f)
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
    /// The `open` callback: regular files only, read-only (else EROFS); the chunk list is
    /// loaded on a worker.
    pub(super) fn open_file_reply(&self, ino: u64, flags: i32, reply: ReplyOpen) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return reply.error(EROFS);
        }
        let shared = self.shared.clone();
        self.work(move || match shared.open_file(ino) {
            Ok(fh) => reply.opened(fh, fopen::KEEP_CACHE),
            Err(e) => reply.error(fail(&format!("open of inode {ino}"), &e)),
        });
    }

    /// The `read` callback: read-ahead is queued here, the reply assembled by a worker (or
    /// by the fetch pool when a chunk must come from a store).
    pub(super) fn read_reply(&self, ino: u64, fh: u64, offset: i64, size: u32, reply: ReplyData) {
        let f = self
            .shared
            .files
            .lock()
            .ok()
            .and_then(|m| m.get(&fh).cloned());
        let f = match f {
            Some(f) => f,
            // A handle of the worker before this one (the mount survived it).
            None => match self.shared.open_file_as(ino, fh) {
                Ok(f) => f,
                Err(e) => return reply.error(fail(&format!("read of inode {ino}"), &e)),
            },
        };
        let offset = offset.max(0) as u64;
        if let Some(t) = &self.shared.trace {
            let end = offset.saturating_add(size as u64).min(f.size);
            if end > offset {
                let cs = CHUNK_SIZE as u64;
                t.read(ino, offset / cs..end.div_ceil(cs));
            }
        }
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

    /// The `release` callback of a regular file: forget its open state.
    pub(super) fn release_file(&self, fh: u64, reply: ReplyEmpty) {
        if let Ok(mut m) = self.shared.files.lock() {
            m.remove(&fh);
        }
        reply.ok();
    }

    /// Queue the chunks after a sequential read for background fetching (the next
    /// `readahead_chunks`), and the cached ones further on for a page-cache hint: a
    /// reader of cached content then finds the cache files' pages (and their inodes)
    /// already read, the disk kept busy several requests ahead as for a native read.
    fn read_ahead(&self, f: &Arc<OpenFile>, offset: u64, size: u32) {
        let total = f.chunks.len() as u64;
        let whole = self.cfg.whole_file_chunks as u64;
        if total > 1 && total <= whole && f.ahead.load(Ordering::Relaxed) < total {
            // A small file is fetched whole at its first read, its chunks at once.
            self.queue_ahead(f, &f.ahead, 0..total, true);
        }
        let mut n = self.cfg.readahead_chunks as u64;
        // Over a link that needs more fetches in flight, the read-ahead deepens to them.
        let inflight = self.inflight_target() as u64;
        if n > 0 && inflight > MIN_INFLIGHT as u64 {
            n = n.max(inflight);
        }
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

    /// Fetches to keep in flight ahead of readers: sized from the link the router
    /// measured, within [`MIN_INFLIGHT`] and `--max-inflight`.
    fn inflight_target(&self) -> usize {
        let max = self.cfg.max_inflight;
        self.shared.router.link().target(MIN_INFLIGHT, max)
    }

    /// Queue `range` (less what `mark` says was queued already) on the read-ahead pool:
    /// fetching missing chunks when `fetch` (as many at once as the link needs), else
    /// only hinting cached ones.
    fn queue_ahead(&self, f: &OpenFile, mark: &AtomicU64, range: Range<u64>, fetch: bool) {
        let Some(ra) = &self.readahead else { return };
        let max = self.cfg.max_inflight;
        for idx in range.start.max(mark.load(Ordering::Relaxed))..range.end {
            let Some(chunk) = f.chunks.get(idx as usize).copied() else {
                break;
            };
            let shared = self.shared.clone();
            let queued = ra.try_spawn(move || {
                let r = if fetch {
                    let limit = || shared.router.link().target(MIN_INFLIGHT, max);
                    let _in = shared.ahead.enter(limit);
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
