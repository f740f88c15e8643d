//! Unpack's second pass, the restore: the pass driver (the walk on the calling thread,
//! chunk fetches on the workers of a [`crate::pipeline`] with a bounded queue), and what
//! completes asynchronously: a file is renamed into place (with its other paths) once its
//! last chunk landed, and a directory gets its metadata once everything inside it landed.
//! Creating the entries is `place`'s job; this module never decides what to create.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::AtFlags;

use super::check::walk;
use super::place::Restorer;
use super::{errno, mode_of, owner, show, times, Options, Report, Selection};
use crate::codec::{ChunkRef, CHUNK_SIZE};
use crate::content::Chunks;
use crate::error::{Context, Error, Result};
use crate::flist::{Entry, Flist};
use crate::pipeline::{self, Config};

pub(super) struct Shared<'a> {
    pub(super) fl: &'a dyn Flist,
    pub(super) chunks: &'a Chunks,
    pub(super) preserve: bool,
    /// The target directory (for messages: the local path of what fails to be written).
    pub(super) root: &'a std::path::Path,
    /// Set at the first failure: directories finished after it get no metadata.
    pub(super) abort: AtomicBool,
    pub(super) bytes: AtomicU64,
}

impl Shared<'_> {
    /// Note a failure (the error itself travels back through the pipeline).
    pub(super) fn failed(&self) {
        self.abort.store(true, Ordering::SeqCst);
    }
}

/// A directory being restored. Its metadata is applied when `pending` drops to zero: the
/// walk left it and every entry inside it (files still fetching, subdirectories) landed.
pub(super) struct DirState {
    pub(super) fd: OwnedFd,
    pub(super) entry: Entry,
    pub(super) path: Vec<u8>,
    /// Apply the entry's metadata (not for a partially restored root).
    pub(super) finalize: bool,
    pub(super) pending: AtomicUsize,
    /// Holds one `pending` of its parent until this directory is finished.
    pub(super) parent: Option<Arc<DirState>>,
}

/// One hold of `dir` is done; finishes it (and then its parents) when it was the last.
pub(super) fn release(dir: &Arc<DirState>, shared: &Shared<'_>) -> Result<()> {
    let mut cur = dir.clone();
    loop {
        if cur.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
            return Ok(());
        }
        if cur.finalize && !shared.abort.load(Ordering::Relaxed) {
            if let Err(e) = apply_fd_meta(cur.fd.as_fd(), &cur.entry, &cur.path, shared) {
                shared.failed();
                return Err(e);
            }
        }
        match cur.parent.clone() {
            Some(p) => cur = p,
            None => return Ok(()),
        }
    }
}

/// Another path of a hardlinked file still being written: a link to its temporary name,
/// renamed into place with it.
pub(super) struct ExtraName {
    pub(super) dir: Arc<DirState>,
    pub(super) temp: Vec<u8>,
    pub(super) name: Vec<u8>,
    pub(super) path: Vec<u8>,
}

impl ExtraName {
    fn land(self, shared: &Shared<'_>) -> Result<()> {
        let fd = self.dir.fd.as_fd();
        if let Err(e) = rename(fd, &self.temp, &self.name, &self.path) {
            let _ = rustix::fs::unlinkat(fd, OsStr::from_bytes(&self.temp), AtFlags::empty());
            shared.failed();
            return Err(e);
        }
        release(&self.dir, shared)
    }
}

pub(super) fn rename(dir: BorrowedFd<'_>, temp: &[u8], name: &[u8], path: &[u8]) -> Result<()> {
    rustix::fs::renameat(dir, OsStr::from_bytes(temp), dir, OsStr::from_bytes(name)).map_err(|e| {
        errno(
            e,
            format!("renaming the completed {} into place", show(path)),
        )
    })
}

/// A regular file whose chunks are being written under its temporary name.
pub(super) struct OpenFile {
    pub(super) file: File,
    pub(super) dir: Arc<DirState>,
    pub(super) temp: Vec<u8>,
    pub(super) entry: Entry,
    pub(super) path: Vec<u8>,
    pub(super) blocks: usize,
    pub(super) remaining: AtomicUsize,
    /// `Some` until the file is complete and under its name: the other paths waiting.
    pub(super) waiting: Mutex<Option<Vec<ExtraName>>>,
}

impl Drop for OpenFile {
    /// A file that never completed (an error stopped the unpack) leaves no temporary.
    fn drop(&mut self) {
        let waiting = match self.waiting.get_mut() {
            Ok(w) => w.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(extras) = waiting {
            let _ = rustix::fs::unlinkat(
                self.dir.fd.as_fd(),
                OsStr::from_bytes(&self.temp),
                AtFlags::empty(),
            );
            for x in extras {
                let _ = rustix::fs::unlinkat(
                    x.dir.fd.as_fd(),
                    OsStr::from_bytes(&x.temp),
                    AtFlags::empty(),
                );
            }
        }
    }
}

pub(super) struct FetchJob {
    pub(super) file: Arc<OpenFile>,
    pub(super) index: usize,
    pub(super) chunk: ChunkRef,
}

/// Restore what `sel` chooses of `fl` into the directory `target`.
pub(super) fn restore(
    fl: &dyn Flist,
    chunks: &Chunks,
    target: OwnedFd,
    sel: &Selection,
    opts: &Options,
) -> Result<Report> {
    let shared = Shared {
        fl,
        chunks,
        preserve: opts.preserve,
        root: &opts.target,
        abort: AtomicBool::new(false),
        bytes: AtomicU64::new(0),
    };
    let jobs = opts.jobs.max(1);
    let mut report = pipeline::run(
        Config::new(jobs).queue(jobs * 2),
        // A job skipped after a failure is dropped, and with it its file's temporary.
        |job: FetchJob| write_chunk(&job, &shared).inspect_err(|_| shared.failed()),
        |feed| {
            let mut r = Restorer::new(&shared, feed, target);
            match walk(fl, sel, &mut r) {
                Ok(n) => r.report.entries = n,
                Err(e) => {
                    shared.failed();
                    return Err(e);
                }
            }
            // Every queued chunk lands (or the first failure comes back).
            while r.feed.next()?.is_some() {}
            Ok(std::mem::take(&mut r.report))
        },
    )?;
    report.bytes = shared.bytes.load(Ordering::Relaxed);
    Ok(report)
}

pub(super) fn write_chunk(job: &FetchJob, shared: &Shared<'_>) -> Result<()> {
    let f = &job.file;
    let what = || format!("{} (chunk {} of {})", show(&f.path), job.index, f.blocks);
    let plain = shared.chunks.fetch(&job.chunk).with_ctx(what)?;
    let offset = job.index as u64 * CHUNK_SIZE as u64;
    let expect = if job.index + 1 < f.blocks {
        CHUNK_SIZE as u64
    } else {
        f.entry.size.saturating_sub(offset)
    };
    if plain.len() as u64 != expect {
        return Err(Error::corrupt(format!(
            "{}: chunk {} holds {} bytes, expected {expect} for a file of {} bytes",
            what(),
            job.chunk,
            plain.len(),
            f.entry.size
        )));
    }
    f.file.write_all_at(&plain, offset).with_ctx(|| {
        let rel = String::from_utf8_lossy(&f.path)
            .trim_start_matches('/')
            .to_string();
        format!("writing {} ({})", shared.root.join(rel).display(), what())
    })?;
    shared
        .bytes
        .fetch_add(plain.len() as u64, Ordering::Relaxed);
    if f.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        finish_file(f, shared)?;
    }
    Ok(())
}

/// All chunks landed: metadata on the open descriptor, then the rename into place (and
/// of the file's other paths waiting for it).
pub(super) fn finish_file(f: &OpenFile, shared: &Shared<'_>) -> Result<()> {
    apply_fd_meta(f.file.as_fd(), &f.entry, &f.path, shared)?;
    let extras = {
        let mut g = f
            .waiting
            .lock()
            .map_err(|_| Error::io(format!("{}: poisoned lock", show(&f.path))))?;
        rename(f.dir.fd.as_fd(), &f.temp, &f.entry.name, &f.path)?;
        g.take().unwrap_or_default()
    };
    // The other paths land even when one fails; the first failure is returned.
    let mut result = release(&f.dir, shared);
    for x in extras {
        let landed = x.land(shared);
        if result.is_ok() {
            result = landed;
        }
    }
    result
}

/// Owner, mode, xattrs, then times (chown clears setuid bits and capabilities; writes
/// change mtime), on an open descriptor.
pub(super) fn apply_fd_meta(
    fd: BorrowedFd<'_>,
    e: &Entry,
    path: &[u8],
    shared: &Shared<'_>,
) -> Result<()> {
    let p = || show(path);
    if shared.preserve {
        let (u, g) = owner(e);
        rustix::fs::fchown(fd, u, g).map_err(|er| errno(er, format!("chown {}", p())))?;
    }
    rustix::fs::fchmod(fd, mode_of(e)).map_err(|er| errno(er, format!("chmod {}", p())))?;
    for (name, value) in shared.fl.xattrs(e.ino)? {
        rustix::fs::fsetxattr(
            fd,
            OsStr::from_bytes(&name),
            &value,
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(|er| {
            errno(
                er,
                format!(
                    "setting xattr {} on {}",
                    String::from_utf8_lossy(&name),
                    p()
                ),
            )
        })?;
    }
    rustix::fs::futimens(fd, &times(e)).map_err(|er| errno(er, format!("utimes {}", p())))?;
    Ok(())
}
