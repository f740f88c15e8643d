//! The OCI hook's state directory (default `/run/zvfs/oci`, gone at reboot like the
//! mounts it describes):
//!
//! ```text
//! lock                          flock held by every prepare and hook
//! meta/<md5>                    flists downloaded from a URL, named by md5
//! flists/<md5>/shared.json      the shared read-only mount of that flist
//! flists/<md5>/ro               its mountpoint, when zvfs oci mounted it itself
//! flists/<md5>/log              the log of that mount's daemon
//! flists/<md5>/users/<name>     one file per container using it (the reference count)
//! containers/<name>/record.json the container's bundle, rootfs, flist md5 and lower dir
//! containers/<name>/upper,work  its writable overlay layer
//! ```
//!
//! This module owns the layout, the lock and the records; it mounts nothing.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// State directory used when `--state-dir` is not given.
pub const DEFAULT_STATE_DIR: &str = "/run/zvfs/oci";

/// What `prepare` set up for one container; `hook` undoes exactly this.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerRecord {
    /// The container's state name (`containers/<name>`).
    pub name: String,
    /// Canonical bundle directory.
    pub bundle: PathBuf,
    /// Canonical root filesystem path (the overlay's mountpoint).
    pub rootfs: PathBuf,
    /// md5 of the flist file (the key of the shared read-only mount).
    pub md5: String,
    /// The read-only mount used as the overlay's lower layer.
    pub lower: PathBuf,
}

/// An open state directory; its paths follow the layout above.
pub struct State {
    root: PathBuf,
}

/// Held while a prepare or hook runs; released on drop (or when the process ends).
pub struct Lock {
    _file: File,
}

impl State {
    /// Open the state directory `root`, creating it and its `containers`, `flists` and
    /// `meta` subdirectories when missing.
    pub fn open(root: &Path) -> Result<State> {
        for sub in ["containers", "flists", "meta"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).with_ctx(|| format!("creating {}", d.display()))?;
        }
        let root = root
            .canonicalize()
            .with_ctx(|| format!("state directory {}", root.display()))?;
        Ok(State { root })
    }

    /// The state directory (canonical path).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Exclusive lock over the whole state directory.
    pub fn lock(&self) -> Result<Lock> {
        let path = self.root.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_ctx(|| format!("opening {}", path.display()))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(std::io::Error::from)
            .with_ctx(|| format!("locking {}", path.display()))?;
        Ok(Lock { _file: file })
    }

    /// `meta/`: the flists downloaded from a URL, named by md5.
    pub fn meta_dir(&self) -> PathBuf {
        self.root.join("meta")
    }

    /// `flists/<md5>/`: the shared read-only mount of that flist and its users.
    pub fn flist_dir(&self, md5: &str) -> PathBuf {
        self.root.join("flists").join(md5)
    }

    /// `containers/<name>/`: that container's record and writable layer.
    pub fn container_dir(&self, name: &str) -> PathBuf {
        self.root.join("containers").join(name)
    }

    /// The record of container `name`, or `None` when it has none.
    pub fn container(&self, name: &str) -> Result<Option<ContainerRecord>> {
        read_json(&self.container_dir(name).join("record.json"))
    }

    /// Replace (atomically) the record of container `rec.name`, creating its directory.
    pub fn write_container(&self, rec: &ContainerRecord) -> Result<()> {
        write_json(&self.container_dir(&rec.name).join("record.json"), rec)
    }
}

/// A JSON file, or None when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::from(e).context(format!("reading {}", path.display()))),
    }
}

/// Write JSON atomically (temporary file, then rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::invalid(format!("encoding {}: {e}", path.display())))?;
    bytes.push(b'\n');
    crate::sys::atomic::write_file(path, &bytes, None)
}
