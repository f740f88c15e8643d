//! The unpack engine: restore a tree, or some paths of it, from an flist.
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
//! directory is never removed. Chunks are fetched by the workers of a [`crate::pipeline`] (bounded queue) and
//! written with positioned writes; a directory's owner, mode, xattrs and times are applied
//! once everything inside it landed. This module never decodes chunks itself: content
//! comes through [`crate::content::Chunks`].
//!
//! Files: `check` (the walk and the first pass), `restore` (the second pass's driver and
//! what completes on the workers), `place` (what each entry becomes in the target). This
//! module parses no command line and prints nothing.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use rustix::fs::{FlockOperation, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::content::Chunks;
use crate::error::{Context, Error, Result};
use crate::flist::{self, Entry, Flist, Ino, ROOT_INO};

mod check;
mod place;
mod restore;

/// How to restore.
#[derive(Debug, Clone)]
pub struct Options {
    /// The target directory (created if missing).
    pub target: PathBuf,
    /// Restore owners (uid/gid).
    pub preserve: bool,
    /// Parallel chunk fetches (at least 1).
    pub jobs: usize,
}

/// What an unpack did.
#[derive(Debug, Default)]
pub struct Report {
    /// Entries restored below the root.
    pub entries: u64,
    /// Regular files (every path of a hardlinked file counts).
    pub files: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Files (paths) already in place with the right content: kept, nothing fetched.
    pub kept: u64,
    /// Temporary files of an earlier, interrupted unpack that were removed.
    pub leftovers: u64,
}

/// An flist and a selection that passed the first pass: safe to restore.
pub struct Checked<'a> {
    fl: &'a dyn Flist,
    sel: &'a Selection,
}

/// Pass 1: check the whole tree `sel` restores (names, duplicates, cycles, children of
/// symlinks, chunk lists, reachability) without fetching or writing anything.
pub fn check<'a>(fl: &'a dyn Flist, sel: &'a Selection) -> Result<Checked<'a>> {
    check::walk(fl, sel, &mut check::Check)?;
    Ok(Checked { fl, sel })
}

/// Pass 2: restore a checked tree into `opts.target` (created if missing), fetching
/// content through `chunks`. One unpack at a time per target (an advisory lock), so the
/// leftovers a run removes are never another run's files.
pub fn unpack(checked: &Checked<'_>, chunks: &Chunks, opts: &Options) -> Result<Report> {
    std::fs::create_dir_all(&opts.target)
        .with_ctx(|| format!("creating target {}", opts.target.display()))?;
    let target = rustix::fs::open(
        &opts.target,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_ctx(|| format!("opening target {}", opts.target.display()))?;
    // One unpack at a time per target: the leftovers a run removes are never another's.
    match rustix::fs::flock(&target, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => {
            return Err(Error::invalid(format!(
                "{}: another zvfs unpack is writing into this target",
                opts.target.display()
            )))
        }
        Err(e) => log::warn!("{}: cannot lock the target: {e}", opts.target.display()),
    }
    let dup = target.try_clone().ctx("dup target fd")?;
    let result = restore_into(checked, chunks, dup, opts);
    drop(target); // releases the lock
    result
}

/// Restore a checked tree into the open directory `target` (`opts.target` only names
/// it; no lock is taken).
pub fn restore_into(
    checked: &Checked<'_>,
    chunks: &Chunks,
    target: OwnedFd,
    opts: &Options,
) -> Result<Report> {
    restore::restore(checked.fl, chunks, target, checked.sel, opts)
}

/// Which entries to restore: everything, or the named paths with their leading dirs.
pub struct Selection {
    pub(crate) all: bool,
    /// Restored with everything below them.
    pub(crate) chosen: HashSet<Ino>,
    /// Directories leading to chosen entries: created, but only the chosen child entered.
    pub(crate) leading: HashSet<Ino>,
}

impl Selection {
    /// Everything when `paths` is empty (or names the root), else the entries at
    /// `paths` (flist paths, `/`-separated) with all below them and the directories
    /// leading to them.
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

pub(super) fn show(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

pub(super) fn errno(e: Errno, what: impl std::fmt::Display) -> Error {
    Error::from(e).context(what)
}

pub(super) fn mode_of(e: &Entry) -> Mode {
    Mode::from_raw_mode(e.mode & 0o7777)
}

pub(super) fn times(e: &Entry) -> Timestamps {
    let t = Timespec {
        tv_sec: e.mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

pub(super) fn owner(e: &Entry) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    (
        Some(rustix::fs::Uid::from_raw(e.uid)),
        Some(rustix::fs::Gid::from_raw(e.gid)),
    )
}

pub(super) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = parent.to_vec();
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// Names of the temporary entries an unpack creates (and removes on a re-run).
pub(super) const TEMP_PREFIX: &[u8] = b".zvfs-unpack-";

/// The name an entry is written under before it is renamed into place: unique per
/// directory (the inode number), recognisable, never longer than a name may be.
pub(super) fn temp_name(e: &Entry) -> Vec<u8> {
    let mut t = TEMP_PREFIX.to_vec();
    t.extend_from_slice(format!("{}-", e.ino).as_bytes());
    t.extend_from_slice(&e.name);
    t.truncate(255);
    t
}
