//! `zvfs unpack`: restore a tree, or some paths of it, from an flist.
//!
//! Two passes over the flist. The first only reads metadata and refuses a hostile or
//! broken tree (unsafe names, duplicate names, parent cycles, children of symlinks, chunk
//! lists that do not fit the size, unreachable entries) before any store is opened, any
//! chunk fetched or the target even created. The second restores, holding an open
//! descriptor per directory level: every entry is created relative to its parent's
//! descriptor without following symlinks (`O_NOFOLLOW`, `O_EXCL`, `*at` calls), so nothing
//! in a hostile flist nor a symlink planted in the target can make it write outside the
//! target. Non-directories are created under a temporary name (`.zvfs-unpack-INO-NAME`)
//! and renamed into place only once complete (a file: every chunk written and its
//! metadata applied), so a failed unpack never leaves a partial file under a final name;
//! the temporary files of a failed run are removed, those of a killed run by the next run.
//! Re-running into the same target completes the job: existing directories are reused,
//! files whose size and content (checked against the chunk keys, nothing fetched) already
//! match are kept, anything else that is not a directory is replaced; an existing
//! directory is never removed. Chunks are fetched by a few workers (bounded queue) and
//! written with positioned writes; a directory's owner, mode, xattrs and times are applied
//! once everything inside it landed. This module never decodes chunks itself: content
//! comes through [`crate::content::Chunks`].

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::Instant;

use rustix::fs::{
    AtFlags, FileType, FlockOperation, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps,
};
use rustix::io::Errno;

use crate::codec::{ChunkRef, CHUNK_SIZE};
use crate::content::Chunks;
use crate::error::{Context, Error, ExitCode, Result};
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
    /// Files (paths) already in place with the right content: kept, nothing fetched.
    pub kept: u64,
    /// Temporary files of an earlier, interrupted unpack that were removed.
    pub leftovers: u64,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let fl = crate::flist::download::open_flist(&args.meta, args.cache.cache.as_deref())?;
    let sel = Selection::new(&*fl, &args.paths)?;
    // Pass 1: the whole tree to restore is checked before anything is fetched or written.
    walk(&*fl, &sel, &mut Check).with_ctx(|| {
        format!(
            "{}: refused, nothing was unpacked into {}",
            args.meta.display(),
            args.target.display()
        )
    })?;
    let chunks = Chunks::open(
        &*fl,
        &args.stores,
        args.cache.spec()?.as_ref(),
        args.jobs,
        &args.store_flags.config(),
    )?;
    std::fs::create_dir_all(&args.target)
        .with_ctx(|| format!("creating target {}", args.target.display()))?;
    let target = rustix::fs::open(
        &args.target,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening target {}: {e}", args.target.display())))?;
    // One unpack at a time per target: the leftovers a run removes are never another's.
    match rustix::fs::flock(&target, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => {
            return Err(Error::invalid(format!(
                "{}: another zvfs unpack is writing into this target",
                args.target.display()
            )))
        }
        Err(e) => log::warn!("{}: cannot lock the target: {e}", args.target.display()),
    }
    let opts = Options {
        preserve: args.preserve,
        jobs: args.jobs.max(1),
    };
    let dup = target
        .try_clone()
        .map_err(|e| Error::io(format!("dup target fd: {e}")))?;
    let result = restore(&*fl, &chunks, dup, &sel, &opts);
    drop(target); // releases the lock
    let (gets, fetched) = chunks.fetched();
    match &result {
        Ok(r) => eprintln!(
            "unpacked {} entries ({} files, {} bytes; {} files already in place, {} leftovers removed) into {} in {:.2} s; fetched {gets} chunks ({fetched} bytes) from stores",
            r.entries,
            r.files,
            r.bytes,
            r.kept,
            r.leftovers,
            args.target.display(),
            started.elapsed().as_secs_f64()
        ),
        Err(_) => eprintln!(
            "fetched {gets} chunks ({fetched} bytes) from stores before failing; files not complete were not left under their names"
        ),
    }
    result.map(|_| ExitCode::Ok)
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

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = parent.to_vec();
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

// ---------------------------------------------------------------- pass 1: the tree walk

/// Names of the temporary entries an unpack creates (and removes on a re-run).
const TEMP_PREFIX: &[u8] = b".zvfs-unpack-";

/// The name an entry is written under before it is renamed into place: unique per
/// directory (the inode number), recognisable, never longer than a name may be.
fn temp_name(e: &Entry) -> Vec<u8> {
    let mut t = TEMP_PREFIX.to_vec();
    t.extend_from_slice(format!("{}-", e.ino).as_bytes());
    t.extend_from_slice(&e.name);
    t.truncate(255);
    t
}

/// What a non-directory entry needs, read (and checked) during the walk.
enum LeafData {
    File(Vec<ChunkRef>),
    Symlink(Vec<u8>),
    Special,
}

/// What the walk hands over, parents before children.
trait Visit {
    /// A directory to create or reuse; `kids` are all its children in the flist.
    fn enter(&mut self, e: &Entry, path: &[u8], kids: &[Entry], finalize: bool) -> Result<()>;
    /// The last entered directory has no more entries to restore.
    fn leave(&mut self) -> Result<()>;
    /// A non-directory in the last entered directory (`parent` is that directory's path).
    fn leaf(
        &mut self,
        e: Entry,
        parent: &[u8],
        path: &[u8],
        kind: Kind,
        data: LeafData,
    ) -> Result<()>;
}

/// Pass 1: visits nothing, the walk's checks are the point.
struct Check;

impl Visit for Check {
    fn enter(&mut self, _: &Entry, _: &[u8], _: &[Entry], _: bool) -> Result<()> {
        Ok(())
    }
    fn leave(&mut self) -> Result<()> {
        Ok(())
    }
    fn leaf(&mut self, _: Entry, _: &[u8], _: &[u8], _: Kind, _: LeafData) -> Result<()> {
        Ok(())
    }
}

struct WalkFrame {
    kids: Vec<Entry>,
    next: usize,
    path: Vec<u8>,
    all: bool,
}

/// Whether `kid` of a directory restored whole (`all`) or leading to a chosen path is
/// restored.
fn included(sel: &Selection, all: bool, kid: &Entry) -> bool {
    all || sel.chosen.contains(&kid.ino) || sel.leading.contains(&kid.ino)
}

/// No cycle, safe and distinct names for the children of `path` that are restored.
fn check_kids(
    sel: &Selection,
    all: bool,
    path: &[u8],
    kids: &[Entry],
    seen_dirs: &HashSet<Ino>,
) -> Result<()> {
    let mut names = HashSet::new();
    for kid in kids.iter().filter(|k| included(sel, all, k)) {
        if kid.is_dir() && seen_dirs.contains(&kid.ino) {
            return Err(Error::format(format!(
                "directory cycle in the flist: inode {} (named {:?}) appears again in {}",
                kid.ino,
                String::from_utf8_lossy(&kid.name),
                show(path)
            )));
        }
        flist::check_name(&kid.name).with_ctx(|| {
            format!(
                "entry {} in {} (named {:?})",
                kid.ino,
                show(path),
                String::from_utf8_lossy(&kid.name)
            )
        })?;
        if !names.insert(kid.name.as_slice()) {
            return Err(Error::format(format!(
                "{}: the flist has two entries of that name (inode {} is the second)",
                show(&join(path, &kid.name)),
                kid.ino
            )));
        }
    }
    Ok(())
}

/// Walk what `sel` restores depth-first, checking the tree on the way (names, duplicates,
/// cycles, children of symlinks, chunk lists, reachability), and hand it to `v`. Returns
/// the number of entries visited below the root.
fn walk(fl: &dyn Flist, sel: &Selection, v: &mut dyn Visit) -> Result<u64> {
    let root = fl.get(ROOT_INO)?;
    if !root.is_dir() {
        return Err(Error::format("the flist root is not a directory"));
    }
    let mut seen_dirs = HashSet::new();
    seen_dirs.insert(ROOT_INO);
    let kids = fl.children(ROOT_INO)?;
    check_kids(sel, sel.all, b"", &kids, &seen_dirs)?;
    v.enter(&root, b"", &kids, sel.all)?;
    let mut stack = vec![WalkFrame {
        kids,
        next: 0,
        path: Vec::new(),
        all: sel.all,
    }];
    let mut entries = 0u64;
    while let Some(top) = stack.last_mut() {
        let Some(kid) = top.kids.get(top.next).cloned() else {
            stack.pop();
            v.leave()?;
            continue;
        };
        top.next += 1;
        if !included(sel, top.all, &kid) {
            continue;
        }
        let all = top.all || sel.chosen.contains(&kid.ino);
        let path = join(&top.path, &kid.name);
        entries += 1;
        if kid.is_dir() {
            if !seen_dirs.insert(kid.ino) {
                return Err(Error::format(format!(
                    "directory cycle in the flist: inode {} appears again at {}",
                    kid.ino,
                    show(&path)
                )));
            }
            let kids = fl.children(kid.ino)?;
            check_kids(sel, all, &path, &kids, &seen_dirs)?;
            v.enter(&kid, &path, &kids, true)?;
            stack.push(WalkFrame {
                kids,
                next: 0,
                path,
                all,
            });
            continue;
        }
        let p = || show(&path);
        let kind = Kind::from_mode(kid.mode)
            .ok_or_else(|| Error::format(format!("{}: unknown file type", p())))?;
        let data = match kind {
            Kind::File => {
                let mut blocks = fl.blocks(kid.ino).with_ctx(p)?;
                if blocks.is_empty() && kid.size > 0 && kid.link_of.is_some() {
                    blocks = fl.blocks(kid.content_ino()).with_ctx(p)?;
                }
                let need = kid.size.div_ceil(CHUNK_SIZE as u64);
                if blocks.len() as u64 != need {
                    return Err(Error::format(format!(
                        "{}: {} bytes need {need} chunks but the flist lists {}",
                        p(),
                        kid.size,
                        blocks.len()
                    )));
                }
                LeafData::File(blocks)
            }
            Kind::Symlink => {
                if !fl.children(kid.ino)?.is_empty() {
                    return Err(Error::format(format!(
                        "{}: symlink inode {} has children in the flist (hostile flist)",
                        p(),
                        kid.ino
                    )));
                }
                LeafData::Symlink(fl.link_target(kid.ino).with_ctx(p)?)
            }
            Kind::Dir => return Err(Error::format(format!("{}: unexpected directory", p()))),
            Kind::Fifo | Kind::CharDev | Kind::BlockDev | Kind::Socket => LeafData::Special,
        };
        let parent = top.path.clone();
        v.leaf(kid, &parent, &path, kind, data)?;
    }
    if sel.all {
        // Entries the walk never reached hang off a parent cycle (or are orphans).
        let total = fl.totals()?.entries;
        if entries + 1 != total {
            return Err(Error::format(format!(
                "{} of the flist's {total} entries are not reachable from its root (parent cycle or orphaned entries)",
                total.saturating_sub(entries + 1)
            )));
        }
    }
    Ok(entries)
}

// ---------------------------------------------------------------- pass 2: restore

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

/// A directory being restored. Its metadata is applied when `pending` drops to zero: the
/// walk left it and every entry inside it (files still fetching, subdirectories) landed.
struct DirState {
    fd: OwnedFd,
    entry: Entry,
    path: Vec<u8>,
    /// Apply the entry's metadata (not for a partially restored root).
    finalize: bool,
    pending: AtomicUsize,
    /// Holds one `pending` of its parent until this directory is finished.
    parent: Option<Arc<DirState>>,
}

/// One hold of `dir` is done; finishes it (and then its parents) when it was the last.
fn release(dir: &Arc<DirState>, shared: &Shared<'_>) {
    let mut cur = dir.clone();
    loop {
        if cur.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if cur.finalize && !shared.abort.load(Ordering::Relaxed) {
            if let Err(e) = apply_fd_meta(cur.fd.as_fd(), &cur.entry, &cur.path, shared) {
                shared.fail(e);
            }
        }
        match cur.parent.clone() {
            Some(p) => cur = p,
            None => return,
        }
    }
}

/// Another path of a hardlinked file still being written: a link to its temporary name,
/// renamed into place with it.
struct ExtraName {
    dir: Arc<DirState>,
    temp: Vec<u8>,
    name: Vec<u8>,
    path: Vec<u8>,
}

impl ExtraName {
    fn land(self, shared: &Shared<'_>) {
        let fd = self.dir.fd.as_fd();
        if let Err(e) = rename(fd, &self.temp, &self.name, &self.path) {
            let _ = rustix::fs::unlinkat(fd, OsStr::from_bytes(&self.temp), AtFlags::empty());
            shared.fail(e);
            return;
        }
        release(&self.dir, shared);
    }
}

fn rename(dir: BorrowedFd<'_>, temp: &[u8], name: &[u8], path: &[u8]) -> Result<()> {
    rustix::fs::renameat(dir, OsStr::from_bytes(temp), dir, OsStr::from_bytes(name)).map_err(|e| {
        errno(
            e,
            format!("renaming the completed {} into place", show(path)),
        )
    })
}

/// A regular file whose chunks are being written under its temporary name.
struct OpenFile {
    file: File,
    dir: Arc<DirState>,
    temp: Vec<u8>,
    entry: Entry,
    path: Vec<u8>,
    blocks: usize,
    remaining: AtomicUsize,
    /// `Some` until the file is complete and under its name: the other paths waiting.
    waiting: Mutex<Option<Vec<ExtraName>>>,
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

struct FetchJob {
    file: Arc<OpenFile>,
    index: usize,
    chunk: ChunkRef,
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
        let mut r = Restorer {
            shared: &shared,
            tx,
            target,
            dirs: Vec::new(),
            links: HashMap::new(),
            buf: Vec::new(),
            report: Report::default(),
        };
        match walk(fl, sel, &mut r) {
            Ok(n) => r.report.entries = n,
            Err(e) => shared.fail(e),
        }
        let report = std::mem::take(&mut r.report);
        drop(r); // close the queue: workers finish what is queued and end
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
            continue; // dropping the job drops the file: its temporary goes
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

/// All chunks landed: metadata on the open descriptor, then the rename into place (and
/// of the file's other paths waiting for it).
fn finish_file(f: &OpenFile, shared: &Shared<'_>) -> Result<()> {
    apply_fd_meta(f.file.as_fd(), &f.entry, &f.path, shared)?;
    let extras = {
        let mut g = f
            .waiting
            .lock()
            .map_err(|_| Error::io(format!("{}: poisoned lock", show(&f.path))))?;
        rename(f.dir.fd.as_fd(), &f.temp, &f.entry.name, &f.path)?;
        g.take().unwrap_or_default()
    };
    release(&f.dir, shared);
    for x in extras {
        x.land(shared);
    }
    Ok(())
}

/// Owner, mode, xattrs, then times (chown clears setuid bits and capabilities; writes
/// change mtime), on an open descriptor.
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

/// Where the first restored path of a hardlinked file is.
struct LinkSrc {
    parent: Vec<u8>,
    name: Vec<u8>,
    /// The file while it is being written (dead once complete, or when it was kept).
    file: Weak<OpenFile>,
}

fn link_src(parent: &[u8], e: &Entry, file: Weak<OpenFile>) -> LinkSrc {
    LinkSrc {
        parent: parent.to_vec(),
        name: e.name.clone(),
        file,
    }
}

struct Restorer<'s, 'a> {
    shared: &'s Shared<'a>,
    tx: mpsc::SyncSender<FetchJob>,
    /// The target's own descriptor, to find first paths of hardlinks.
    target: OwnedFd,
    /// The directories entered, innermost last.
    dirs: Vec<Arc<DirState>>,
    /// Content inode of a hardlinked file -> its first restored path.
    links: HashMap<Ino, LinkSrc>,
    /// Reused to compare existing files with their chunks.
    buf: Vec<u8>,
    report: Report,
}

/// What is at `name` in `dir` (not following a symlink), if anything.
fn existing(dir: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> Result<Option<Stat>> {
    match rustix::fs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(errno(e, format!("checking {} in the target", show(path)))),
    }
}

fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// An existing directory is never removed to make room for something else.
fn refuse_dir(st: &Option<Stat>, path: &[u8], kind: Kind) -> Result<()> {
    match st {
        Some(st) if file_type(st) == FileType::Directory => Err(Error::invalid(format!(
            "{} is a directory in the target but a {} in the flist: not replaced (remove it and unpack again)",
            show(path),
            kind.name()
        ))),
        _ => Ok(()),
    }
}

impl Visit for Restorer<'_, '_> {
    fn enter(&mut self, e: &Entry, path: &[u8], kids: &[Entry], finalize: bool) -> Result<()> {
        self.check_abort()?;
        let parent = self.dirs.last().cloned();
        let fd = match &parent {
            None => self
                .target
                .try_clone()
                .map_err(|er| Error::io(format!("dup target fd: {er}")))?,
            Some(p) => make_dir(p.fd.as_fd(), &e.name, path)?,
        };
        self.remove_leftovers(fd.as_fd(), path, kids)?;
        if let Some(p) = &parent {
            p.pending.fetch_add(1, Ordering::AcqRel);
        }
        self.dirs.push(Arc::new(DirState {
            fd,
            entry: e.clone(),
            path: path.to_vec(),
            finalize,
            pending: AtomicUsize::new(1),
            parent,
        }));
        Ok(())
    }

    fn leave(&mut self) -> Result<()> {
        let dir = self
            .dirs
            .pop()
            .ok_or_else(|| Error::io("unpack: left more directories than entered"))?;
        release(&dir, self.shared);
        Ok(())
    }

    fn leaf(
        &mut self,
        e: Entry,
        parent: &[u8],
        path: &[u8],
        kind: Kind,
        data: LeafData,
    ) -> Result<()> {
        self.check_abort()?;
        let dir = self
            .dirs
            .last()
            .cloned()
            .ok_or_else(|| Error::io("unpack: an entry outside any directory"))?;
        let st = existing(dir.fd.as_fd(), &e.name, path)?;
        refuse_dir(&st, path, kind)?;
        // Later paths of a hardlinked file become links to the first one restored.
        let grouped = e.link_of.is_some() || e.nlink > 1;
        if grouped && self.links.contains_key(&e.content_ino()) {
            if kind == Kind::File {
                self.report.files += 1;
            }
            return self.link(&dir, &e, path, st);
        }
        let p = || show(path);
        match data {
            LeafData::File(blocks) => {
                self.report.files += 1;
                self.file(&dir, e, parent, path, st, blocks, grouped)
            }
            LeafData::Symlink(target) => {
                let temp = temp_name(&e);
                let fd = dir.fd.as_fd();
                rustix::fs::symlinkat(OsStr::from_bytes(&target), fd, OsStr::from_bytes(&temp))
                    .map_err(|er| errno(er, format!("creating symlink {}", p())))?;
                self.place(fd, &e, &temp, path, false)?;
                if grouped {
                    self.links
                        .insert(e.content_ino(), link_src(parent, &e, Weak::new()));
                }
                Ok(())
            }
            LeafData::Special => {
                let temp = temp_name(&e);
                let fd = dir.fd.as_fd();
                let ft = FileType::from_raw_mode(e.mode);
                let made = rustix::fs::mknodat(
                    fd,
                    OsStr::from_bytes(&temp),
                    ft,
                    Mode::from_raw_mode(0o600),
                    e.rdev,
                );
                match made {
                    Ok(()) => {}
                    Err(Errno::PERM) if matches!(kind, Kind::CharDev | Kind::BlockDev) => {
                        log::warn!("{}: device node not created (not root?)", p());
                        return Ok(());
                    }
                    Err(er) => return Err(errno(er, format!("creating {} {}", kind.name(), p()))),
                }
                self.place(fd, &e, &temp, path, true)?;
                if grouped {
                    self.links
                        .insert(e.content_ino(), link_src(parent, &e, Weak::new()));
                }
                Ok(())
            }
        }
    }
}

impl Restorer<'_, '_> {
    fn check_abort(&self) -> Result<()> {
        if self.shared.abort.load(Ordering::Relaxed) {
            // a worker failed: its error is the one reported
            return Err(Error::io("unpack stopped after an error"));
        }
        Ok(())
    }

    /// Temporary files of an earlier run in a directory being restored are removed
    /// (names the flist itself has there are left alone).
    fn remove_leftovers(&mut self, dir: BorrowedFd<'_>, path: &[u8], kids: &[Entry]) -> Result<()> {
        let ours: HashSet<&[u8]> = kids.iter().map(|k| k.name.as_slice()).collect();
        let mut found = Vec::new();
        let mut rd = rustix::fs::Dir::read_from(dir)
            .map_err(|e| errno(e, format!("listing {}", show(path))))?;
        while let Some(ent) = rd.read() {
            let ent = ent.map_err(|e| errno(e, format!("listing {}", show(path))))?;
            let name = ent.file_name().to_bytes();
            if name.starts_with(TEMP_PREFIX) && !ours.contains(name) {
                found.push(name.to_vec());
            }
        }
        for name in found {
            let st = existing(dir, &name, &join(path, &name))?;
            if st.is_some_and(|st| file_type(&st) != FileType::Directory) {
                rustix::fs::unlinkat(dir, OsStr::from_bytes(&name), AtFlags::empty()).map_err(
                    |e| errno(e, format!("removing leftover {}", show(&join(path, &name)))),
                )?;
                log::info!("removed leftover {}", show(&join(path, &name)));
                self.report.leftovers += 1;
            }
        }
        Ok(())
    }

    /// Metadata on the temporary node `temp`, then rename it over `e`'s name.
    fn place(
        &self,
        dir: BorrowedFd<'_>,
        e: &Entry,
        temp: &[u8],
        path: &[u8],
        chmod: bool,
    ) -> Result<()> {
        let r = self
            .node_meta(dir, e, temp, path, chmod)
            .and_then(|()| rename(dir, temp, &e.name, path));
        if r.is_err() {
            let _ = rustix::fs::unlinkat(dir, OsStr::from_bytes(temp), AtFlags::empty());
        }
        r
    }

    /// Keep an existing regular file that already holds this content (checked chunk by
    /// chunk against the keys; nothing is fetched). Returns it opened, or `None`.
    fn same_file(
        &mut self,
        dir: BorrowedFd<'_>,
        e: &Entry,
        st: &Stat,
        blocks: &[ChunkRef],
        grouped: bool,
        path: &[u8],
    ) -> Result<Option<File>> {
        // A file with other links is only kept when the flist links it too (never apply
        // metadata to a foreign inode linked into the target).
        let links_ok = st.st_nlink == 1 || (grouped && st.st_nlink <= u64::from(e.nlink));
        if file_type(st) != FileType::RegularFile || st.st_size as u64 != e.size || !links_ok {
            return Ok(None);
        }
        let fd = rustix::fs::openat(
            dir,
            OsStr::from_bytes(&e.name),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|er| errno(er, format!("opening existing {}", show(path))))?;
        let now = rustix::fs::fstat(&fd).map_err(|er| errno(er, format!("stat {}", show(path))))?;
        if now.st_ino != st.st_ino || now.st_dev != st.st_dev {
            return Ok(None);
        }
        let file = File::from(fd);
        self.buf.resize(CHUNK_SIZE, 0);
        for (i, chunk) in blocks.iter().enumerate() {
            let off = i as u64 * CHUNK_SIZE as u64;
            let len = (e.size - off).min(CHUNK_SIZE as u64) as usize;
            match file.read_exact_at(&mut self.buf[..len], off) {
                Ok(()) => {}
                Err(er) if er.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(er) => return Err(Error::from(er).context(format!("reading {}", show(path)))),
            }
            if !chunk.plaintext_matches(&self.buf[..len]) {
                return Ok(None);
            }
        }
        Ok(Some(file))
    }

    #[allow(clippy::too_many_arguments)]
    fn file(
        &mut self,
        dir: &Arc<DirState>,
        e: Entry,
        parent: &[u8],
        path: &[u8],
        st: Option<Stat>,
        blocks: Vec<ChunkRef>,
        grouped: bool,
    ) -> Result<()> {
        let p = || show(path);
        if let Some(st) = &st {
            if let Some(kept) = self.same_file(dir.fd.as_fd(), &e, st, &blocks, grouped, path)? {
                apply_fd_meta(kept.as_fd(), &e, path, self.shared)?;
                self.report.kept += 1;
                if grouped {
                    self.links
                        .insert(e.content_ino(), link_src(parent, &e, Weak::new()));
                }
                return Ok(());
            }
        }
        let temp = temp_name(&e);
        let fd = rustix::fs::openat(
            dir.fd.as_fd(),
            OsStr::from_bytes(&temp),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|er| {
            errno(
                er,
                format!("creating {} (as {})", p(), show(&join(parent, &temp))),
            )
        })?;
        dir.pending.fetch_add(1, Ordering::AcqRel);
        // From here on, dropping `of` before it completed removes the temporary.
        let of = Arc::new(OpenFile {
            file: File::from(fd),
            dir: dir.clone(),
            temp,
            blocks: blocks.len(),
            remaining: AtomicUsize::new(blocks.len()),
            path: path.to_vec(),
            entry: e,
            waiting: Mutex::new(Some(Vec::new())),
        });
        of.file
            .set_len(of.entry.size)
            .with_ctx(|| format!("sizing {}", p()))?;
        if grouped {
            let src = link_src(parent, &of.entry, Arc::downgrade(&of));
            self.links.insert(of.entry.content_ino(), src);
        }
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

    /// A later path of a hardlinked file: a hardlink to the first restored path (kept
    /// when it already is one).
    fn link(
        &mut self,
        dir: &Arc<DirState>,
        e: &Entry,
        path: &[u8],
        st: Option<Stat>,
    ) -> Result<()> {
        let p = || show(path);
        let temp = temp_name(e);
        let fd = dir.fd.as_fd();
        let Some(src) = self.links.get(&e.content_ino()) else {
            return Err(Error::io(format!("{}: hardlink source lost", p())));
        };
        let lparent = src.parent.clone();
        let lname = src.name.clone();
        let alive = src.file.upgrade();
        if let Some(of) = &alive {
            let mut g = of
                .waiting
                .lock()
                .map_err(|_| Error::io(format!("{}: poisoned lock", p())))?;
            if let Some(extras) = g.as_mut() {
                // Still being written: link its temporary, renamed into place with it.
                rustix::fs::linkat(
                    of.dir.fd.as_fd(),
                    OsStr::from_bytes(&of.temp),
                    fd,
                    OsStr::from_bytes(&temp),
                    AtFlags::empty(),
                )
                .map_err(|er| errno(er, format!("hardlinking {}", p())))?;
                dir.pending.fetch_add(1, Ordering::AcqRel);
                extras.push(ExtraName {
                    dir: dir.clone(),
                    temp,
                    name: e.name.clone(),
                    path: path.to_vec(),
                });
                return Ok(());
            }
        }
        // The first path is complete under its name.
        let pfd = match &alive {
            Some(of) => of
                .dir
                .fd
                .try_clone()
                .map_err(|er| Error::io(er.to_string()))?,
            None if lparent.is_empty() => self
                .target
                .try_clone()
                .map_err(|er| Error::io(er.to_string()))?,
            None => rustix::fs::openat2(
                &self.target,
                OsStr::from_bytes(&lparent),
                OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            )
            .map_err(|er| errno(er, format!("opening {}", show(&lparent))))?,
        };
        drop(alive);
        let lname = OsStr::from_bytes(&lname);
        if let Some(st) = st {
            if let Ok(first) = rustix::fs::statat(&pfd, lname, AtFlags::SYMLINK_NOFOLLOW) {
                if (first.st_dev, first.st_ino) == (st.st_dev, st.st_ino) {
                    self.report.kept += 1;
                    return Ok(());
                }
            }
        }
        rustix::fs::linkat(&pfd, lname, fd, OsStr::from_bytes(&temp), AtFlags::empty())
            .map_err(|er| errno(er, format!("hardlinking {}", p())))?;
        if let Err(er) = rename(fd, &temp, &e.name, path) {
            let _ = rustix::fs::unlinkat(fd, OsStr::from_bytes(&temp), AtFlags::empty());
            return Err(er);
        }
        Ok(())
    }

    /// Owner, mode, xattrs and times of the node `name` (symlink, fifo, device) just
    /// created in `dir`.
    fn node_meta(
        &self,
        dir: BorrowedFd<'_>,
        e: &Entry,
        name: &[u8],
        path: &[u8],
        chmod: bool,
    ) -> Result<()> {
        let name = OsStr::from_bytes(name);
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

/// Create `name` in `parent`, or reuse the real directory already there (anything else
/// there that is not a directory, a symlink included, is removed first); never follows a
/// symlink.
fn make_dir(parent: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> Result<OwnedFd> {
    let name_os = OsStr::from_bytes(name);
    match existing(parent, name, path)? {
        Some(st) if file_type(&st) == FileType::Directory => {}
        Some(_) => {
            rustix::fs::unlinkat(parent, name_os, AtFlags::empty())
                .map_err(|e| errno(e, format!("removing {} to make it a directory", show(path))))?;
            mkdir(parent, name_os, path)?;
        }
        None => mkdir(parent, name_os, path)?,
    }
    rustix::fs::openat(
        parent,
        name_os,
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

fn mkdir(parent: BorrowedFd<'_>, name: &OsStr, path: &[u8]) -> Result<()> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(errno(e, format!("creating directory {}", show(path)))),
    }
}
