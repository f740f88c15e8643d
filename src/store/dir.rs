//! `dir://` store: one file per object under the store's directory, in one of two layouts:
//! - `flat`: `<root>/<hex id>`, the only layout released rfs (2.0.0 to 2.0.7; Zero-OS nodes
//!   ship 2.0.6) reads;
//! - `sharded`: `<root>/<hh>/<hex id>` (`hh`: the id's first byte), which rfs's unreleased
//!   master writes (and reads, with flat) and zvfs wrote before layouts could be chosen.
//!
//! The URL is `dir:///path[?layout=flat|sharded]`. Without `layout`, a store keeps the
//! layout it already uses: sharded as soon as its root has a `<hh>` directory, flat
//! otherwise, so a new or empty store is flat and every rfs can read it. Reads try the
//! store's layout first, then the other one, so objects written either way are found. The
//! URL, query included, is what an flist records as a route; rfs ignores the query (it
//! takes the URL's path).
//!
//! Writes go through a temporary file (`.tmp.<pid>.<hex id>` next to the object, locked
//! by its writer) and a rename, so a crash never leaves a partial object under its name;
//! existing objects of the right length are not rewritten (a shorter one, left by a crash
//! before it reached the disk, is replaced). The first write of a process removes the
//! temporary files that dead processes left in the root and the `<hh>` directories (see
//! [`crate::sys::leftovers`]); a store only read is never scanned or changed.
//! Writes are not synced one by one: [`Store::flush`] syncs the filesystem holding the
//! store once (writers call it before publishing anything that refers to the objects,
//! e.g. before an flist is renamed into place), and dropping a store that wrote anything
//! flushes it too.

use std::io::{ErrorKind as IoKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, OnceLock};

use super::Store;
use crate::codec::hex_bytes;
use crate::error::{Context, Error, Result};
use crate::sys::atomic::{AtomicFile, Durability};
use crate::sys::leftovers;

/// Where a dir store puts its objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `<root>/<hex id>`
    Flat,
    /// `<root>/<hh>/<hex id>`
    Sharded,
}

impl Layout {
    /// The layout named `flat` or `sharded` (the `layout=` of a `dir://` URL).
    pub fn parse(s: &str) -> Option<Layout> {
        match s {
            "flat" => Some(Layout::Flat),
            "sharded" => Some(Layout::Sharded),
            _ => None,
        }
    }

    /// The layout's name, as [`Layout::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Flat => "flat",
            Layout::Sharded => "sharded",
        }
    }

    fn other(self) -> Layout {
        match self {
            Layout::Flat => Layout::Sharded,
            Layout::Sharded => Layout::Flat,
        }
    }

    /// The layout a store directory already uses: sharded when it has a `<hh>`
    /// directory, flat otherwise (also when it is empty or missing: the default).
    pub fn detect(root: &Path) -> Layout {
        let sharded = (0..=255u8).any(|b| root.join(format!("{b:02x}")).is_dir());
        if sharded {
            Layout::Sharded
        } else {
            Layout::Flat
        }
    }
}

/// A `dir:///path[?layout=flat|sharded]` store: one file per object under a local
/// directory, named by the object's hex id.
pub struct DirStore {
    root: PathBuf,
    url: String,
    /// The layout the URL asks for, if any.
    asked: Option<Layout>,
    /// The layout in use, decided on first use.
    layout: OnceLock<Layout>,
    /// Leftovers of dead writers were removed (on the first write).
    cleaned: Once,
    /// Objects were written since the last flush.
    dirty: AtomicBool,
}

impl DirStore {
    /// Parse a `dir://` URL; nothing is read or created yet (the directory may not exist).
    /// An `Invalid` error for a malformed URL or an unknown query parameter.
    pub fn open(url: &str) -> Result<DirStore> {
        let bad = || Error::invalid(format!("bad dir store URL {url:?} (expected dir:///path)"));
        let rest = url.strip_prefix("dir://").ok_or_else(bad)?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(bad());
        }
        let mut asked = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("layout", v)) => {
                    asked = Some(Layout::parse(v).ok_or_else(|| {
                        Error::invalid(format!(
                            "unknown layout {v:?} in dir store URL {url:?} (expected flat or sharded)"
                        ))
                    })?)
                }
                _ if pair.is_empty() => {}
                _ => {
                    return Err(Error::invalid(format!(
                        "unknown query parameter {pair:?} in dir store URL {url:?} (known: layout=flat|sharded)"
                    )))
                }
            }
        }
        Ok(DirStore {
            root: PathBuf::from(path),
            url: url.to_string(),
            asked,
            layout: OnceLock::new(),
            cleaned: Once::new(),
            dirty: AtomicBool::new(false),
        })
    }

    /// The layout objects are written in (and looked up in first).
    pub fn layout(&self) -> Layout {
        *self.layout.get_or_init(|| {
            let l = self.asked.unwrap_or_else(|| Layout::detect(&self.root));
            log::debug!("dir store {}: {} layout", self.root.display(), l.name());
            l
        })
    }

    fn path_in(&self, layout: Layout, id: &[u8]) -> PathBuf {
        let hex = hex_bytes(id);
        match layout {
            Layout::Flat => self.root.join(hex.as_str()),
            Layout::Sharded => self.root.join(&hex[..2]).join(hex.as_str()),
        }
    }

    /// Remove the temporary files of dead writers, once per process.
    fn clean_leftovers(&self) {
        self.cleaned.call_once(|| {
            let mut n = leftovers::clean_dir(&self.root, tmp_pid);
            for b in 0..=255u8 {
                let d = self.root.join(format!("{b:02x}"));
                if d.is_dir() {
                    n += leftovers::clean_dir(&d, tmp_pid);
                }
            }
            if n > 0 {
                log::info!(
                    "dir store {}: removed {n} temporary files left by dead processes",
                    self.root.display()
                );
            }
        });
    }
}

/// The writer's pid in a temporary file name `.tmp.<pid>.<hex id>`.
fn tmp_pid(name: &str) -> Option<u32> {
    let (pid, hex) = name.strip_prefix(".tmp.")?.split_once('.')?;
    if hex.len() < 32 || !leftovers::is_hex(hex) {
        return None;
    }
    leftovers::pid_between(pid, "", "")
}

fn read_opt(path: &PathBuf) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == IoKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Objects at least this big start their write-back as soon as they are written.
const EARLY_WRITEBACK: usize = 64 * 1024;

/// Ask the kernel to start writing a big object to disk now, without waiting for it: the
/// disk then works while the packer encodes the next chunks, instead of all at once in
/// the final `syncfs` (page-cache thresholds are gigabytes on a large-memory node).
fn start_writeback(f: &std::fs::File, len: usize) {
    use std::os::fd::AsRawFd;
    if len >= EARLY_WRITEBACK {
        // SAFETY: a plain syscall on an fd we own; its failure only loses the hint.
        let _ = unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
}

impl Store for DirStore {
    fn get(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        let first = self.layout();
        for layout in [first, first.other()] {
            let path = self.path_in(layout, id);
            if let Some(d) = read_opt(&path).with_ctx(|| format!("reading {}", path.display()))? {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    fn exists(&self, id: &[u8]) -> Result<bool> {
        let first = self.layout();
        Ok(self.path_in(first, id).exists() || self.path_in(first.other(), id).exists())
    }

    /// Writes in the store's layout only: an object present only in the other layout is
    /// written again, so a flat store stays readable by released rfs.
    fn set(&self, id: &[u8], data: &[u8]) -> Result<()> {
        self.clean_leftovers();
        let path = self.path_in(self.layout(), id);
        // Content-addressed: an object of the right length under this id is this object.
        if matches!(std::fs::metadata(&path), Ok(m) if m.len() == data.len() as u64) {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).with_ctx(|| format!("creating {}", dir.display()))?;
        // Durability comes from the one `syncfs` of `flush`.
        let tmp_name = format!(".tmp.{}.{}", std::process::id(), hex_bytes(id));
        let write = || -> Result<()> {
            let mut f = AtomicFile::with(&path, Durability::Unsynced, Some(tmp_name.into()))?;
            f.file()
                .write_all(data)
                .with_ctx(|| format!("writing {}", f.path().display()))?;
            start_writeback(f.file(), data.len());
            f.commit()
        };
        self.dirty.store(true, Ordering::SeqCst);
        write().with_ctx(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// One `syncfs` of the filesystem holding the store, when anything was written.
    fn flush(&self) -> Result<()> {
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let what = || format!("syncing store {}", self.root.display());
        let dir = std::fs::File::open(&self.root).with_ctx(what)?;
        if let Err(e) = rustix::fs::syncfs(&dir) {
            self.dirty.store(true, Ordering::SeqCst);
            return Err(Error::io(e.to_string()).context(what()));
        }
        Ok(())
    }

    fn name(&self) -> &str {
        &self.url
    }
}

impl Drop for DirStore {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            log::error!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(d: &Path, query: &str) -> DirStore {
        DirStore::open(&format!("dir://{}{query}", d.display())).unwrap()
    }

    #[test]
    fn new_store_is_flat_and_reads_both_layouts() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path(), "");
        let id = [0xabu8; 32];
        assert_eq!(s.get(&id).unwrap(), None);
        s.set(&id, b"x").unwrap();
        assert_eq!(s.layout(), Layout::Flat);
        assert!(d.path().join(hex::encode(id)).is_file());
        assert!(!d.path().join("ab").exists());
        assert_eq!(s.get(&id).unwrap().unwrap(), b"x");
        // existing objects are not rewritten
        s.set(&id, b"y").unwrap();
        assert_eq!(s.get(&id).unwrap().unwrap(), b"x");
        // a truncated object (a crash before it reached the disk) is replaced
        std::fs::write(d.path().join(hex::encode(id)), b"").unwrap();
        s.set(&id, b"x").unwrap();
        assert_eq!(s.get(&id).unwrap().unwrap(), b"x");
        s.flush().unwrap();
        // an object in the other layout is found too
        let id2 = [0x01u8; 32];
        std::fs::create_dir(d.path().join("01")).unwrap();
        std::fs::write(d.path().join("01").join(hex::encode(id2)), b"sharded").unwrap();
        assert_eq!(s.get(&id2).unwrap().unwrap(), b"sharded");
        assert!(s.exists(&id2).unwrap());
    }

    #[test]
    fn existing_sharded_store_stays_sharded_unless_asked() {
        let d = tempfile::tempdir().unwrap();
        let id = [0x5au8; 32];
        open(d.path(), "?layout=sharded").set(&id, b"s").unwrap();
        assert!(d.path().join("5a").join(hex::encode(id)).is_file());
        let id2 = [0x11u8; 32];
        let s = open(d.path(), "");
        s.set(&id2, b"t").unwrap();
        assert_eq!(s.layout(), Layout::Sharded);
        assert!(d.path().join("11").join(hex::encode(id2)).is_file());
        // asked explicitly, flat it is, even here; reads find both
        let flat = open(d.path(), "?layout=flat");
        flat.set(&id2, b"t").unwrap();
        assert!(d.path().join(hex::encode(id2)).is_file());
        assert_eq!(flat.get(&id).unwrap().unwrap(), b"s");
    }

    #[test]
    fn bad_layouts_and_parameters_are_refused() {
        for url in [
            "dir:///x?layout=nested",
            "dir:///x?layout=",
            "dir:///x?lay=flat",
            "dir://?layout=flat",
        ] {
            let e = DirStore::open(url)
                .err()
                .unwrap_or_else(|| panic!("{url} accepted"));
            assert!(e.msg.contains(url), "{e}");
        }
        assert!(DirStore::open("dir:///x?layout=flat&").is_ok());
    }
}
