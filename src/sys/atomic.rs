//! Atomic replacement of a file: the one way zvfs writes a file that someone may read
//! while it is written (flists, mount registry and OCI state, downloaded flists, store
//! objects, cache files). The content goes to a temporary file in the target's directory
//! (`.NAME.zvfs-tmp-PID`, locked by its writer so that [`super::leftovers`] can tell it from
//! a dead writer's), which is synced, renamed over the target, and its directory synced.
//! A reader sees the old file or the new one, never a part; a writer that fails or dies
//! leaves the target as it was. Callers whose durability comes from one later `syncfs`
//! (stores) or who need none (the cache verifies on use) skip the syncs.
//!
//! It owns only the temporary file's life: it never decides what is written.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};

use super::leftovers;

/// Marker of the temporary files: `.<name>` + this + `<pid>`.
pub const TMP_MARK: &str = ".zvfs-tmp-";

/// Markers earlier zvfs versions used (config edits, convert): their leftovers are
/// recognised and cleaned too.
const FORMER_MARKS: [&str; 2] = [".zvfs-edit.", ".zvfs-tmp."];

/// How durable a replacement is when [`AtomicFile::commit`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// File and directory are synced: the new content survives a power loss.
    Synced,
    /// Nothing is synced here: the caller syncs the filesystem later (or does not care).
    Unsynced,
}

/// A temporary file that becomes `target` on [`commit`](AtomicFile::commit) and is removed
/// (with an SQLite `-journal` beside it) when dropped uncommitted.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: PathBuf,
    target: PathBuf,
    file: File,
    durability: Durability,
    done: bool,
}

/// The directory a path's file lives in (`.` for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The writer's pid in a temporary file name `.<name>.zvfs-tmp-<pid>` (and its SQLite
/// `-journal`; also the names of earlier versions), `None` for any other name.
pub fn temp_pid(name: &str) -> Option<u32> {
    let name = name.strip_suffix("-journal").unwrap_or(name);
    std::iter::once(TMP_MARK)
        .chain(FORMER_MARKS)
        .find_map(|mark| {
            let (head, pid) = name.rsplit_once(mark)?;
            if head.len() < 2 || !head.starts_with('.') {
                return None;
            }
            leftovers::pid_between(pid, "", "")
        })
}

/// Remove the temporary files that dead writers left directly in `dir`; a journal goes
/// only once its database is gone. Returns how many were removed.
pub fn clean_leftovers(dir: &Path) -> u64 {
    let files = leftovers::clean_dir(dir, |name| {
        if name.ends_with("-journal") {
            None
        } else {
            temp_pid(name)
        }
    });
    let journals = leftovers::clean_dir(dir, |name| {
        let db = name.strip_suffix("-journal")?;
        let pid = temp_pid(name)?;
        (!dir.join(db).exists()).then_some(pid)
    });
    files + journals
}

impl AtomicFile {
    /// A synced replacement of `target` (see [`AtomicFile::with`]).
    pub fn new(target: &Path) -> Result<AtomicFile> {
        Self::with(target, Durability::Synced, None)
    }

    /// Start replacing `target`: refuse a directory, remove dead writers' temporary files
    /// from its directory, and create this writer's (locked), named `.NAME.zvfs-tmp-PID`
    /// unless `temp_name` gives a name of the caller's own pattern (in the same directory).
    pub fn with(
        target: &Path,
        durability: Durability,
        temp_name: Option<OsString>,
    ) -> Result<AtomicFile> {
        let name = target
            .file_name()
            .ok_or_else(|| Error::invalid(format!("{}: not a file name", target.display())))?;
        if target.is_dir() {
            return Err(Error::invalid(format!(
                "{} is a directory",
                target.display()
            )));
        }
        let dir = parent_dir(target);
        let tmp_name = match temp_name {
            Some(n) => n,
            None => {
                clean_leftovers(&dir);
                let mut n = OsString::from(".");
                n.push(name);
                n.push(format!("{TMP_MARK}{}", std::process::id()));
                n
            }
        };
        let tmp = dir.join(tmp_name);
        let file = File::create(&tmp).with_ctx(|| format!("creating {}", tmp.display()))?;
        // Marks the file as in use for other processes' clean-up; a filesystem without
        // locks only loses that protection.
        if let Err(e) = leftovers::lock_writer(&file) {
            log::debug!("locking {}: {e}", tmp.display());
        }
        Ok(AtomicFile {
            tmp,
            target: target.to_path_buf(),
            file,
            durability,
            done: false,
        })
    }

    /// The temporary file's path (to open it with another library, e.g. SQLite).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The temporary file, open for writing.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Make the temporary file the target: sync it (when synced), rename it, sync the
    /// directory. On error the target is untouched and the temporary file removed.
    pub fn commit(self) -> Result<()> {
        let target = self.target.clone();
        self.commit_as(&target)
    }

    /// [`commit`](AtomicFile::commit) under another name in the same directory (a name
    /// known only once the content is written, e.g. its checksum).
    pub fn commit_as(mut self, target: &Path) -> Result<()> {
        self.target = target.to_path_buf();
        if self.durability == Durability::Synced {
            // Through a fresh descriptor: another library may have written the file.
            File::open(&self.tmp)
                .and_then(|f| f.sync_all())
                .with_ctx(|| format!("syncing {}", self.tmp.display()))?;
        }
        std::fs::rename(&self.tmp, &self.target).with_ctx(|| {
            format!(
                "renaming {} to {}",
                self.tmp.display(),
                self.target.display()
            )
        })?;
        self.done = true;
        if self.durability == Durability::Synced {
            let dir = parent_dir(&self.target);
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .with_ctx(|| format!("syncing directory {}", dir.display()))?;
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
            let mut journal = self.tmp.clone().into_os_string();
            journal.push("-journal");
            let _ = std::fs::remove_file(journal);
        }
    }
}

/// Replace `target` by `bytes` (synced), creating its directory if needed, with file mode
/// `mode` when given (else 0644 less the umask).
pub fn write_file(target: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    let dir = parent_dir(target);
    std::fs::create_dir_all(&dir).with_ctx(|| format!("creating {}", dir.display()))?;
    let mut f = AtomicFile::new(target)?;
    let tmp = f.path().to_path_buf();
    f.file()
        .write_all(bytes)
        .with_ctx(|| format!("writing {}", tmp.display()))?;
    if let Some(m) = mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(m))
            .with_ctx(|| format!("setting the mode of {}", tmp.display()))?;
    }
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("state.json");
        write_file(&t, b"one", Some(0o600)).unwrap();
        assert_eq!(std::fs::read(&t).unwrap(), b"one");
        {
            let mut f = AtomicFile::new(&t).unwrap();
            f.file().write_all(b"half").unwrap();
            assert!(temp_pid(&f.path().file_name().unwrap().to_string_lossy()).is_some());
            // dropped uncommitted: the old content stays, no temporary file is left
        }
        assert_eq!(std::fs::read(&t).unwrap(), b"one");
        write_file(&t, b"two", None).unwrap();
        assert_eq!(std::fs::read(&t).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "only the target is left");
        let e = AtomicFile::new(d.path()).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Invalid);
    }

    #[test]
    fn temp_names() {
        assert_eq!(temp_pid(".a.fl.zvfs-tmp-12"), Some(12));
        assert_eq!(temp_pid(".a.fl.zvfs-tmp-12-journal"), Some(12));
        assert_eq!(temp_pid("a.fl.zvfs-tmp-12"), None);
        assert_eq!(temp_pid(".a.fl.zvfs-tmp-12x"), None);
        assert_eq!(temp_pid(".zvfs-tmp-12"), None);
        assert_eq!(temp_pid(".a.fl.zvfs-edit.7-journal"), Some(7));
        assert_eq!(temp_pid(".a.fl.zvfs-tmp.7"), Some(7));
        assert_eq!(temp_pid(".a.fl.zvfs-edit.7.bak"), None);
    }
}
