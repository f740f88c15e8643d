//! `zvfs unpack`: restore a tree, or some paths of it, from an flist.
//!
//! The tree is walked depth-first holding an open descriptor per directory level; every
//! entry is created relative to its parent's descriptor with exclusive creation and
//! without following symlinks (`O_NOFOLLOW`, `O_EXCL`, `*at` calls), after its name was
//! checked, so nothing in a hostile flist can make it write outside the target. Chunks are
//! fetched by a few workers (bounded queue) and written with positioned writes; a file's
//! owner, mode, xattrs and times are applied when its last chunk landed, a directory's
//! when all its entries exist. This module never decodes chunks itself: content comes
//! through [`super::Chunks`].

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::Chunks;
use crate::codec::{ChunkRef, CHUNK_SIZE};
use crate::error::{Context, Error, Result};
use crate::flist::{self, Entry, Flist, Ino, Kind, ROOT_INO};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Flist to read.
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    #[command(flatten)]
    pub cache: super::CacheFlags,
    /// Store URL overriding the flist's routes (repeatable, `[xx-xx=]URL`).
    #[arg(short = 's', long = "store", value_parser = super::StoreSpec)]
    pub stores: Vec<String>,
    /// Restore owners (uid/gid).
    #[arg(short = 'p', long = "preserve-ownership")]
    pub preserve: bool,
    /// Parallel chunk fetches.
    #[arg(short = 'j', long = "jobs", default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    /// Target directory (created if missing).
    pub target: PathBuf,
    /// Only these paths of the flist (and the directories leading to them).
    pub paths: Vec<String>,
}

/// What an unpack did.
#[derive(Debug, Default)]
pub struct Report {
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
}

pub fn run(args: Args) -> Result<i32> {
    let started = Instant::now();
    let fl = super::open_flist(&args.meta, args.cache.cache.as_deref())?;
    let chunks = Chunks::open(
        &*fl,
        &args.stores,
        &args.cache,
        args.jobs,
        &args.store_flags,
    )?;
    let sel = Selection::new(&*fl, &args.paths)?;
    std::fs::create_dir_all(&args.target)
        .with_ctx(|| format!("creating target {}", args.target.display()))?;
    let target = rustix::fs::open(
        &args.target,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening target {}: {e}", args.target.display())))?;
    let opts = Options {
        preserve: args.preserve,
        jobs: args.jobs.max(1),
    };
    let result = restore(&*fl, &chunks, target, &sel, &opts);
    let (gets, fetched) = chunks.fetched();
    match &result {
        Ok(r) => eprintln!(
            "unpacked {} entries ({} files, {} bytes) into {} in {:.2} s; fetched {gets} chunks ({fetched} bytes) from stores",
            r.entries,
            r.files,
            r.bytes,
            args.target.display(),
            started.elapsed().as_secs_f64()
        ),
        Err(_) => eprintln!("fetched {gets} chunks ({fetched} bytes) from stores before failing"),
    }
    result.map(|_| 0)
}

pub struct Options {
    pub preserve: bool,
    pub jobs: usize,
}

/// Which entries to restore: everything, or the named paths with their leading dirs.
pub struct Selection {
    all: bool,
    /// Restored with everything below them.
    chosen: HashSet<Ino>,
    /// Directories leading to chosen entries: created, but only the chosen child entered.
    leading: HashSet<Ino>,
}

impl Selection {
    pub fn new(fl: &dyn Flist, paths: &[String]) -> Result<Selection> {
        let mut sel = Selection {
            all: paths.is_empty(),
            chosen: HashSet::new(),
            leading: HashSet::new(),
        };
        for p in paths {
            let e = flist::resolve(fl, p.as_bytes())?;
            if e.ino == ROOT_INO {
                sel.all = true;
                continue;
            }
            sel.chosen.insert(e.ino);
            let mut cur = e;
            let mut hops = 0u32;
            while cur.ino != ROOT_INO {
                let parent = fl.get(cur.parent).with_ctx(|| format!("parent of {p}"))?;
                hops += 1;
                if !parent.is_dir() || hops > 100_000 {
                    return Err(Error::format(format!(
                        "{p}: broken parent chain in the flist (inode {})",
                        parent.ino
                    )));
                }
                if !sel.leading.insert(parent.ino) {
                    break;
                }
                cur = parent;
            }
        }
        Ok(sel)
    }
}

fn show(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

fn errno(e: Errno, what: impl std::fmt::Display) -> Error {
    Error::io(format!("{what}: {e}"))
}

fn mode_of(e: &Entry) -> Mode {
    Mode::from_raw_mode(e.mode & 0o7777)
}

fn times(e: &Entry) -> Timestamps {
    let t = Timespec {
        tv_sec: e.mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn owner(e: &Entry) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    (
        Some(rustix::fs::Uid::from_raw(e.uid)),
        Some(rustix::fs::Gid::from_raw(e.gid)),
    )
}

/// A regular file whose chunks are being written.
struct OpenFile {
    file: File,
    entry: Entry,
    path: Vec<u8>,
    blocks: usize,
    remaining: AtomicUsize,
}

struct FetchJob {
    file: Arc<OpenFile>,
    index: usize,
    chunk: ChunkRef,
}

struct Shared<'a> {
    fl: &'a dyn Flist,
    chunks: &'a Chunks,
    preserve: bool,
    abort: AtomicBool,
    error: Mutex<Option<Error>>,
    bytes: AtomicU64,
}

impl Shared<'_> {
    fn fail(&self, e: Error) {
        self.abort.store(true, Ordering::SeqCst);
        if let Ok(mut g) = self.error.lock() {
            if g.is_none() {
                *g = Some(e);
            }
        }
    }
}

/// One directory level being restored.
struct Frame {
    fd: OwnedFd,
    entry: Entry,
    path: Vec<u8>,
    kids: std::vec::IntoIter<Entry>,
    all: bool,
    /// Apply the entry's metadata when leaving (not for a partially restored root).
    finalize: bool,
}

pub fn restore(
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
        abort: AtomicBool::new(false),
        error: Mutex::new(None),
        bytes: AtomicU64::new(0),
    };
    let (tx, rx) = mpsc::sync_channel::<FetchJob>(opts.jobs * 2);
    let rx = Mutex::new(rx);
    let mut report = std::thread::scope(|s| {
        for _ in 0..opts.jobs {
            let rx = &rx;
            let shared = &shared;
            s.spawn(move || fetch_worker(rx, shared));
        }
        let mut w = Walker {
            shared: &shared,
            sel,
            tx,
            links: HashMap::new(),
            seen_dirs: HashSet::new(),
            report: Report::default(),
        };
        if let Err(e) = w.run(target) {
            shared.fail(e);
        }
        let report = std::mem::take(&mut w.report);
        drop(w); // close the queue: workers finish what is queued and end
        report
    });
    if let Ok(mut g) = shared.error.lock() {
        if let Some(e) = g.take() {
            return Err(e);
        }
    }
    report.bytes = shared.bytes.load(Ordering::Relaxed);
    Ok(report)
}

fn fetch_worker(rx: &Mutex<mpsc::Receiver<FetchJob>>, shared: &Shared<'_>) {
    loop {
        let job = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if shared.abort.load(Ordering::Relaxed) {
            continue;
        }
        if let Err(e) = write_chunk(&job, shared) {
            shared.fail(e);
        }
    }
}

fn write_chunk(job: &FetchJob, shared: &Shared<'_>) -> Result<()> {
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
    f.file
        .write_all_at(&plain, offset)
        .with_ctx(|| format!("writing {}", what()))?;
    shared
        .bytes
        .fetch_add(plain.len() as u64, Ordering::Relaxed);
    if f.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        finish_file(f, shared)?;
    }
    Ok(())
}

/// Owner, mode, xattrs, then times (chown clears setuid bits and capabilities; writes
/// change mtime), on the open descriptor.
fn finish_file(f: &OpenFile, shared: &Shared<'_>) -> Result<()> {
    let fd = f.file.as_fd();
    apply_fd_meta(fd, &f.entry, &f.path, shared)
}

fn apply_fd_meta(fd: BorrowedFd<'_>, e: &Entry, path: &[u8], shared: &Shared<'_>) -> Result<()> {
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

struct Walker<'s, 'a> {
    shared: &'s Shared<'a>,
    sel: &'s Selection,
    tx: mpsc::SyncSender<FetchJob>,
    /// Content inode of a hardlinked file -> where it was first restored (parent, name).
    links: HashMap<Ino, (Vec<u8>, Vec<u8>)>,
    seen_dirs: HashSet<Ino>,
    report: Report,
}

impl Walker<'_, '_> {
    fn run(&mut self, target: OwnedFd) -> Result<()> {
        let fl = self.shared.fl;
        let root = fl.get(ROOT_INO)?;
        if !root.is_dir() {
            return Err(Error::format("the flist root is not a directory"));
        }
        self.seen_dirs.insert(ROOT_INO);
        let kids = fl.children(ROOT_INO)?;
        let mut stack = vec![Frame {
            fd: target,
            entry: root,
            path: Vec::new(),
            kids: kids.into_iter(),
            all: self.sel.all,
            finalize: self.sel.all,
        }];
        // The target's own descriptor, to find first paths of hardlinks.
        let target_fd = stack[0]
            .fd
            .try_clone()
            .map_err(|e| Error::io(format!("dup target fd: {e}")))?;
        while let Some(top) = stack.last_mut() {
            if self.shared.abort.load(Ordering::Relaxed) {
                return Ok(()); // a worker failed; its error is reported
            }
            let Some(kid) = top.kids.next() else {
                let done = stack.pop().ok_or_else(|| Error::io("empty stack"))?;
                if done.finalize {
                    apply_fd_meta(done.fd.as_fd(), &done.entry, &done.path, self.shared)?;
                }
                continue;
            };
            let include = top.all
                || self.sel.chosen.contains(&kid.ino)
                || self.sel.leading.contains(&kid.ino);
            if !include {
                continue;
            }
            if kid.is_dir() && self.seen_dirs.contains(&kid.ino) {
                return Err(Error::format(format!(
                    "directory cycle in the flist: inode {} (named {:?}) appears again in {}",
                    kid.ino,
                    String::from_utf8_lossy(&kid.name),
                    show(&top.path)
                )));
            }
            flist::check_name(&kid.name).with_ctx(|| {
                format!(
                    "entry {} in {} (named {:?})",
                    kid.ino,
                    show(&top.path),
                    String::from_utf8_lossy(&kid.name)
                )
            })?;
            let all = top.all || self.sel.chosen.contains(&kid.ino);
            let mut path = top.path.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&kid.name);
            self.report.entries += 1;
            if kid.is_dir() {
                if !self.seen_dirs.insert(kid.ino) {
                    return Err(Error::format(format!(
                        "directory cycle in the flist at {} (inode {})",
                        show(&path),
                        kid.ino
                    )));
                }
                let fd = make_dir(top.fd.as_fd(), &kid.name, &path)?;
                let kids = fl.children(kid.ino)?;
                stack.push(Frame {
                    fd,
                    entry: kid,
                    path,
                    kids: kids.into_iter(),
                    all,
                    finalize: true,
                });
            } else {
                self.leaf(&target_fd, top.fd.as_fd(), &top.path, kid, &path)?;
            }
        }
        if self.sel.all {
            // Entries the walk never reached hang off a parent cycle (or are orphans).
            let total = fl.totals()?.entries;
            if self.report.entries + 1 != total {
                return Err(Error::format(format!(
                    "{} of the flist's {total} entries are not reachable from its root (parent cycle or orphaned entries)",
                    total.saturating_sub(self.report.entries + 1)
                )));
            }
        }
        Ok(())
    }

    /// Restore a non-directory entry in `dir`.
    fn leaf(
        &mut self,
        target: &OwnedFd,
        dir: BorrowedFd<'_>,
        parent: &[u8],
        e: Entry,
        path: &[u8],
    ) -> Result<()> {
        let fl = self.shared.fl;
        let name = OsStr::from_bytes(&e.name);
        let p = || show(path);
        let kind = Kind::from_mode(e.mode)
            .ok_or_else(|| Error::format(format!("{}: unknown file type", p())))?;
        // Later paths of a hardlinked file become links to the first one restored.
        let grouped = e.link_of.is_some() || (e.nlink > 1 && kind != Kind::Dir);
        if grouped {
            if let Some((lparent, lname)) = self.links.get(&e.content_ino()) {
                let pfd = if lparent.is_empty() {
                    target.try_clone().map_err(|er| Error::io(er.to_string()))?
                } else {
                    rustix::fs::openat2(
                        target,
                        OsStr::from_bytes(lparent),
                        OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC,
                        Mode::empty(),
                        ResolveFlags::BENEATH
                            | ResolveFlags::NO_SYMLINKS
                            | ResolveFlags::NO_MAGICLINKS,
                    )
                    .map_err(|er| errno(er, format!("opening {}", show(lparent))))?
                };
                rustix::fs::linkat(&pfd, OsStr::from_bytes(lname), dir, name, AtFlags::empty())
                    .map_err(|er| errno(er, format!("hardlinking {}", p())))?;
                if kind == Kind::File {
                    self.report.files += 1;
                }
                return Ok(());
            }
            self.links
                .insert(e.content_ino(), (parent.to_vec(), e.name.clone()));
        }
        match kind {
            Kind::File => self.file(dir, e, path),
            Kind::Symlink => {
                if !fl.children(e.ino)?.is_empty() {
                    return Err(Error::format(format!(
                        "{}: symlink inode {} has children in the flist (hostile flist)",
                        p(),
                        e.ino
                    )));
                }
                let target = fl.link_target(e.ino).with_ctx(p)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), dir, name)
                    .map_err(|er| errno(er, format!("creating symlink {}", p())))?;
                self.node_meta(dir, &e, path, false)
            }
            Kind::Fifo | Kind::CharDev | Kind::BlockDev | Kind::Socket => {
                let ft = FileType::from_raw_mode(e.mode);
                match rustix::fs::mknodat(dir, name, ft, Mode::from_raw_mode(0o600), e.rdev) {
                    Ok(()) => self.node_meta(dir, &e, path, true),
                    Err(Errno::PERM) if matches!(kind, Kind::CharDev | Kind::BlockDev) => {
                        log::warn!("{}: device node not created (not root?)", p());
                        Ok(())
                    }
                    Err(er) => Err(errno(er, format!("creating {} {}", kind.name(), p()))),
                }
            }
            Kind::Dir => Err(Error::format(format!("{}: unexpected directory", p()))),
        }
    }

    fn file(&mut self, dir: BorrowedFd<'_>, e: Entry, path: &[u8]) -> Result<()> {
        let fl = self.shared.fl;
        let p = || show(path);
        let mut blocks = fl.blocks(e.ino).with_ctx(p)?;
        if blocks.is_empty() && e.size > 0 && e.link_of.is_some() {
            blocks = fl.blocks(e.content_ino()).with_ctx(p)?;
        }
        let need = e.size.div_ceil(CHUNK_SIZE as u64);
        if blocks.len() as u64 != need {
            return Err(Error::format(format!(
                "{}: {} bytes need {need} chunks but the flist lists {}",
                p(),
                e.size,
                blocks.len()
            )));
        }
        let fd = rustix::fs::openat(
            dir,
            OsStr::from_bytes(&e.name),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|er| errno(er, format!("creating {}", p())))?;
        let file = File::from(fd);
        file.set_len(e.size)
            .with_ctx(|| format!("sizing {}", p()))?;
        self.report.files += 1;
        let of = Arc::new(OpenFile {
            file,
            blocks: blocks.len(),
            remaining: AtomicUsize::new(blocks.len()),
            path: path.to_vec(),
            entry: e,
        });
        if blocks.is_empty() {
            return finish_file(&of, self.shared);
        }
        for (index, chunk) in blocks.into_iter().enumerate() {
            self.tx
                .send(FetchJob {
                    file: of.clone(),
                    index,
                    chunk,
                })
                .map_err(|_| Error::io("unpack workers are gone"))?;
        }
        Ok(())
    }

    /// Owner, mode, xattrs and times of a node created by name (symlink, fifo, device).
    fn node_meta(&self, dir: BorrowedFd<'_>, e: &Entry, path: &[u8], chmod: bool) -> Result<()> {
        let name = OsStr::from_bytes(&e.name);
        let p = || show(path);
        if self.shared.preserve {
            let (u, g) = owner(e);
            rustix::fs::chownat(dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|er| errno(er, format!("chown {}", p())))?;
        }
        if chmod {
            // We just created this node with mknodat: it is not a symlink.
            rustix::fs::chmodat(dir, name, mode_of(e), AtFlags::empty())
                .map_err(|er| errno(er, format!("chmod {}", p())))?;
        }
        let xattrs = self.shared.fl.xattrs(e.ino)?;
        if !xattrs.is_empty() {
            // l*xattr through the directory's descriptor: the last component is not followed.
            let mut via = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            via.push(name);
            for (k, v) in xattrs {
                rustix::fs::lsetxattr(
                    &via,
                    OsStr::from_bytes(&k),
                    &v,
                    rustix::fs::XattrFlags::empty(),
                )
                .map_err(|er| {
                    errno(
                        er,
                        format!("setting xattr {} on {}", String::from_utf8_lossy(&k), p()),
                    )
                })?;
            }
        }
        rustix::fs::utimensat(dir, name, &times(e), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|er| errno(er, format!("utimes {}", p())))?;
        Ok(())
    }
}

/// Create (or reuse an existing real directory) `name` in `parent`; never follows a
/// symlink.
fn make_dir(parent: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> Result<OwnedFd> {
    let name = OsStr::from_bytes(name);
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(errno(e, format!("creating directory {}", show(path)))),
    }
    rustix::fs::openat(
        parent,
        name,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        errno(
            e,
            format!(
                "opening directory {} (refusing anything but a real directory)",
                show(path)
            ),
        )
    })
}
