//! Directory listings of the FUSE filesystem: an open directory is listed page by page
//! from the flist ([`DIR_PAGE`] children at a time, in inode order), so the daemon's memory
//! does not grow with a directory's size; one filler serves readdir and readdirplus. It
//! must not read file content nor answer lookups or attributes (`fs/mod.rs`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};

use crate::fuse::{ReplyDirectory, ReplyDirectoryPlus};
use libc::c_int;

use super::{attr_of, fail, file_type, Shared, ZvfsFs, TTL};
use crate::error::{Error, Result};
use crate::flist::{Entry, Ino, ROOT_INO};

/// An open directory, listed page by page ([`DIR_PAGE`] children at a time, in inode
/// order) so the daemon's memory does not grow with the directory: a listing's offset
/// names the last child it returned (its inode + 2; 1 and 2 follow `.` and `..`), and
/// the next request resumes in the page kept here or reads the next one from the flist.
/// Nothing is read at opendir: the kernel keeps listings in its cache (FOPEN_CACHE_DIR)
/// and then opens directories without reading them again, so a warm tree walk costs no
/// flist query per directory.
pub(super) struct OpenDir {
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

/// Answer a readdir from `offset` with as many entries as fit.
/// The two listing replies (plain and with attributes), filled by one [`fill_dir`].
pub(super) trait DirReply: Send + 'static {
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
    pub(super) fn open_dir_of(&self, fh: u64) -> Option<Arc<OpenDir>> {
        self.dirs.lock().ok()?.get(&fh).cloned()
    }

    pub(super) fn open_dir(&self, ino: Ino) -> Result<u64> {
        let fh = self.fh();
        self.open_dir_as(ino, fh).map(|_| fh)
    }

    /// Open directory `ino` under handle `fh` (a new one, or one an earlier worker gave
    /// out, rebuilt from its inode).
    fn open_dir_as(&self, ino: Ino, fh: u64) -> Result<Arc<OpenDir>> {
        let this = self.entry(ino)?;
        if !this.is_dir() {
            return Err(Error::invalid(format!("inode {ino} is not a directory")));
        }
        let parent = if this.ino == ROOT_INO || this.parent == 0 {
            this.clone()
        } else {
            self.entry(this.parent)?
        };
        let d = Arc::new(OpenDir {
            this,
            parent,
            page: Mutex::new(None),
        });
        if let Ok(mut m) = self.dirs.lock() {
            m.insert(fh, d.clone());
        }
        Ok(d)
    }
}

impl ZvfsFs {
    /// A listing: answered here when it resumes in the page in memory, else by a worker
    /// (that reads the next page from the flist).
    pub(super) fn list<R: DirReply>(&self, ino: u64, fh: u64, offset: i64, reply: R) {
        let d = match self.shared.open_dir_of(fh) {
            Some(d) => d,
            // A handle of the worker before this one (the mount survived it).
            None => match self.shared.open_dir_as(ino, fh) {
                Ok(d) => d,
                Err(e) => return reply.fail(fail(&format!("readdir of inode {ino}"), &e)),
            },
        };
        if d.resume(resume_after(offset)).is_some() {
            return fill_dir(&self.shared, &d, offset, reply, false);
        }
        let shared = self.shared.clone();
        self.work(move || fill_dir(&shared, &d, offset, reply, true));
    }
}
