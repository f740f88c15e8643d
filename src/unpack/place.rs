//! Unpack's restore visitor: what each entry becomes in the target, created relative to
//! its parent's descriptor without following symlinks (`O_NOFOLLOW`, `O_EXCL`, `*at`
//! calls), under a temporary name first. It reuses directories and files already in
//! place, replaces what else is there (never a directory), removes leftovers of an
//! interrupted run, links later paths of hardlinked files, and queues a file's chunks to
//! the fetch workers. It never fetches nor decodes a chunk itself.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

use super::check::{LeafData, Visit};
use super::restore::{
    apply_fd_meta, finish_file, release, rename, DirState, ExtraName, FetchJob, OpenFile, Shared,
};
use super::{errno, join, mode_of, owner, show, temp_name, times, Report, TEMP_PREFIX};
use crate::codec::{ChunkRef, CHUNK_SIZE};
use crate::error::{Context, Error, Result};
use crate::flist::{Entry, Ino, Kind};
use crate::pipeline::Feed;

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

pub(super) struct Restorer<'s, 'a, 'f, 'p> {
    shared: &'s Shared<'a>,
    /// The fetch workers' end of the pipeline.
    pub(super) feed: &'f mut Feed<'p, FetchJob, ()>,
    /// The target's own descriptor, to find first paths of hardlinks.
    target: OwnedFd,
    /// The directories entered, innermost last.
    dirs: Vec<Arc<DirState>>,
    /// Content inode of a hardlinked file -> its first restored path.
    links: HashMap<Ino, LinkSrc>,
    /// Reused to compare existing files with their chunks.
    buf: Vec<u8>,
    pub(super) report: Report,
}

impl<'s, 'a, 'f, 'p> Restorer<'s, 'a, 'f, 'p> {
    pub(super) fn new(
        shared: &'s Shared<'a>,
        feed: &'f mut Feed<'p, FetchJob, ()>,
        target: OwnedFd,
    ) -> Self {
        Restorer {
            shared,
            feed,
            target,
            dirs: Vec::new(),
            links: HashMap::new(),
            buf: Vec::new(),
            report: Report::default(),
        }
    }
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

impl Visit for Restorer<'_, '_, '_, '_> {
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
        release(&dir, self.shared)
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

impl Restorer<'_, '_, '_, '_> {
    /// Take the fetches that finished; fails with the first error once one failed.
    fn check_abort(&mut self) -> Result<()> {
        while self.feed.try_next()?.is_some() {}
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
            self.feed.push(FetchJob {
                file: of.clone(),
                index,
                chunk,
            })?;
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
