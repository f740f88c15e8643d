//! `dir://` store: objects at `<root>/<hh>/<hex id>`, with the older flat `<root>/<hex id>`
//! tried on read. Writes go through a temporary file and a rename, so a crash never leaves
//! a partial object under its name; existing objects of the right length are not
//! rewritten (a shorter one, left by a crash before it reached the disk, is replaced).
//! Writes are not synced one by one: [`Store::flush`] syncs the filesystem holding the
//! store once (writers call it before publishing anything that refers to the objects,
//! e.g. before an flist is renamed into place), and dropping a store that wrote anything
//! flushes it too.

use std::io::{ErrorKind as IoKind, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Store;
use crate::codec::hex_bytes;
use crate::error::{Context, Error, Result};

pub struct DirStore {
    root: PathBuf,
    url: String,
    /// Objects were written since the last flush.
    dirty: AtomicBool,
}

impl DirStore {
    pub fn open(url: &str) -> Result<DirStore> {
        let path = url
            .strip_prefix("dir://")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                Error::invalid(format!("bad dir store URL {url:?} (expected dir:///path)"))
            })?;
        Ok(DirStore {
            root: PathBuf::from(path),
            url: url.to_string(),
            dirty: AtomicBool::new(false),
        })
    }

    fn nested(&self, id: &[u8]) -> PathBuf {
        let hex = hex_bytes(id);
        self.root.join(&hex[..2]).join(hex.as_str())
    }

    fn flat(&self, id: &[u8]) -> PathBuf {
        self.root.join(hex_bytes(id).as_str())
    }
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
        let nested = self.nested(id);
        if let Some(d) = read_opt(&nested).with_ctx(|| format!("reading {}", nested.display()))? {
            return Ok(Some(d));
        }
        let flat = self.flat(id);
        read_opt(&flat).with_ctx(|| format!("reading {}", flat.display()))
    }

    fn exists(&self, id: &[u8]) -> Result<bool> {
        Ok(self.nested(id).exists() || self.flat(id).exists())
    }

    fn set(&self, id: &[u8], data: &[u8]) -> Result<()> {
        let path = self.nested(id);
        // Content-addressed: an object of the right length under this id is this object.
        if matches!(std::fs::metadata(&path), Ok(m) if m.len() == data.len() as u64) {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).with_ctx(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!(".tmp.{}.{}", std::process::id(), hex_bytes(id)));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            start_writeback(&f, data.len());
            std::fs::rename(&tmp, &path)
        };
        self.dirty.store(true, Ordering::SeqCst);
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::from(e).context(format!("writing {}", path.display())));
        }
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

    #[test]
    fn two_level_write_and_flat_fallback() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::open(&format!("dir://{}", d.path().display())).unwrap();
        let id = [0xabu8; 32];
        assert_eq!(s.get(&id).unwrap(), None);
        s.set(&id, b"x").unwrap();
        assert!(d.path().join("ab").join(hex::encode(id)).exists());
        assert_eq!(s.get(&id).unwrap().unwrap(), b"x");
        // existing objects are not rewritten
        s.set(&id, b"y").unwrap();
        assert_eq!(s.get(&id).unwrap().unwrap(), b"x");
        // a truncated object (a crash before it reached the disk) is replaced
        std::fs::write(d.path().join("ab").join(hex::encode(id)), b"").unwrap();
        s.set(&id, b"x").unwrap();
        assert_eq!(s.get(&id).unwrap().unwrap(), b"x");
        s.flush().unwrap();
        let id2 = [0x01u8; 32];
        std::fs::write(d.path().join(hex::encode(id2)), b"flat").unwrap();
        assert_eq!(s.get(&id2).unwrap().unwrap(), b"flat");
        assert!(s.exists(&id2).unwrap());
    }
}
