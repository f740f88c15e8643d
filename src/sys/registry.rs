//! The registry of running mount daemons: each daemon (its supervisor, whose pid is the
//! mount's source) writes `<run dir>/<pid>.json` (default `/run/zvfs`, `ZVFS_RUN_DIR`
//! overrides) once its mount is ready, rewrites it for each new worker and removes it
//! when it exits. The file names the flist (path and md5), the cache, the store
//! overrides, the FUSE mountpoint, the overlay, if any, the stats socket (`<run
//! dir>/<pid>.sock`, see `daemon::stats`; served by the worker), the worker's pid, its
//! generation and the restarts. A file whose process is gone (or whose pid was reused:
//! the process start time is recorded) is stale: ignored and removed by readers.
//! mountinfo stays the truth about what is mounted; this adds what mountinfo cannot say
//! (which flist, which cache). Overlays made over a shared daemon's mount are recorded
//! too (`<run dir>/users/*.json`), so they stay attributed to it even after the path of
//! their lower directory was unmounted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};

/// The environment variable that overrides the run directory.
pub const RUN_DIR_ENV: &str = "ZVFS_RUN_DIR";
/// The run directory when [`RUN_DIR_ENV`] is unset or empty.
pub const DEFAULT_RUN_DIR: &str = "/run/zvfs";

/// One running mount daemon.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// The daemon's process id (also the state file's name).
    pub pid: u32,
    /// Start time of the process (clock ticks since boot), against pid reuse.
    pub start: u64,
    /// Where the FUSE filesystem is mounted.
    pub fuse_target: PathBuf,
    /// The overlay mounted over it, in writable mode.
    pub overlay: Option<Overlay>,
    /// The local flist file (downloaded ones live in the cache's `flist/`).
    pub flist: PathBuf,
    /// The URL it was downloaded from, if any.
    pub url: Option<String>,
    /// MD5 of the flist file, hex: a later mount of the same content (with the same cache
    /// and stores) shares this daemon.
    pub md5: String,
    /// The cache directory the daemon uses.
    pub cache: PathBuf,
    /// The cache's size limit, in bytes.
    pub cache_size: u64,
    /// Store overrides (`-s`), passwords redacted.
    pub stores: Vec<String>,
    /// The daemon's stats socket (`<run dir>/<pid>.sock`); absent in entries of daemons
    /// older than `zvfs mounts --stats`.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The worker process serving the mount for this supervisor (`pid`); absent in
    /// entries of daemons older than the supervisor, which serve themselves.
    #[serde(default)]
    pub worker: Option<u32>,
    /// How many times the supervisor started a new worker on the same connection (after
    /// a worker died or an upgrade).
    #[serde(default)]
    pub restarts: u32,
    /// The binary the supervisor was started from (recorded at its start; an upgrade
    /// executes the file now at this path).
    #[serde(default)]
    pub started_exe: Option<PathBuf>,
    /// The serving worker's generation: 0 for the first, one more for each new worker.
    #[serde(default)]
    pub generation: u64,
}

/// The writable overlay of a daemon's mount.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Overlay {
    /// Where the overlay is mounted (the path the user asked for).
    pub target: PathBuf,
    /// Its upper directory, where writes land (`UPPER/rw`).
    pub upper: PathBuf,
}

/// The directory of the state files: `$ZVFS_RUN_DIR`, else `/run/zvfs`.
pub fn run_dir() -> PathBuf {
    std::env::var_os(RUN_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR))
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), `None` when there is
/// no such live process (a zombie counts as gone).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state), so field 22 is f[19].
    if f.first() == Some(&"Z") || f.first() == Some(&"X") {
        return None;
    }
    f.get(19)?.parse().ok()
}

/// Whether process `pid` is running (not a zombie).
pub fn alive(pid: u32) -> bool {
    start_time(pid).is_some()
}

impl State {
    /// Whether the daemon is still running: its pid is alive with the recorded start
    /// time (so a reused pid does not count).
    pub fn is_live(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }
}

/// Removes the state file when dropped (the daemon's exit path).
pub struct Registered {
    path: PathBuf,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Publish `state` (atomically: temp file + rename); the file goes when the guard is
/// dropped.
pub fn register(state: &State) -> Result<Registered> {
    let path = update(state)?;
    Ok(Registered { path })
}

/// Publish `state` again (a registered daemon's new worker), atomically; returns the
/// file's path.
pub fn update(state: &State) -> Result<PathBuf> {
    let dir = run_dir();
    std::fs::create_dir_all(&dir).with_ctx(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.json", state.pid));
    let text = serde_json::to_vec_pretty(state)
        .map_err(|e| crate::error::Error::invalid(format!("encoding mount state: {e}")))?;
    super::atomic::write_file(&path, &text, None)?;
    Ok(path)
}

/// The state of every live daemon; stale files are removed on the way.
pub fn list() -> Vec<State> {
    let dir = run_dir();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let path = ent.path();
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_suffix(".json")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let state: Option<State> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match state {
            Some(s) if s.pid == pid && s.is_live() => out.push(s),
            _ => {
                log::debug!("removing stale mount state {}", path.display());
                let _ = std::fs::remove_file(&path);
                // The stats socket of a daemon that died without cleaning up (a new
                // daemon with this pid may be between binding it and registering).
                if !alive(pid) {
                    let _ = std::fs::remove_file(dir.join(format!("{pid}.sock")));
                }
            }
        }
    }
    out.sort_by_key(|s| s.pid);
    out
}

/// The live daemon with this pid, if it registered.
pub fn get(pid: u32) -> Option<State> {
    list().into_iter().find(|s| s.pid == pid)
}

/// An overlay over a daemon's mount, made by another `zvfs mount`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// The pid of the daemon whose mount is the overlay's lower directory.
    pub daemon: u32,
    /// That daemon's start time (clock ticks since boot), against pid reuse.
    pub start: u64,
    /// Where the overlay is mounted.
    pub target: PathBuf,
}

fn user_path(target: &Path) -> PathBuf {
    use md5::{Digest, Md5};
    let h = hex::encode(Md5::digest(target.as_os_str().as_encoded_bytes()));
    run_dir().join("users").join(format!("{h}.json"))
}

/// Record that the overlay on `target` uses daemon `daemon`.
pub fn add_user(daemon: &State, target: &Path) -> Result<()> {
    let path = user_path(target);
    let dir = run_dir().join("users");
    std::fs::create_dir_all(&dir).with_ctx(|| format!("creating {}", dir.display()))?;
    let u = User {
        daemon: daemon.pid,
        start: daemon.start,
        target: target.to_path_buf(),
    };
    let text = serde_json::to_vec(&u)
        .map_err(|e| crate::error::Error::invalid(format!("encoding mount user: {e}")))?;
    super::atomic::write_file(&path, &text, None)
}

/// Forget the overlay record of `target` (nothing happens when there is none).
pub fn remove_user(target: &Path) {
    let _ = std::fs::remove_file(user_path(target));
}

/// Recorded overlays of live daemons on paths that are still mountpoints (`mounted`);
/// other records are removed.
pub fn users(mounted: &dyn Fn(&Path) -> bool) -> Vec<User> {
    let Ok(rd) = std::fs::read_dir(run_dir().join("users")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let path = ent.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let u: Option<User> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match u {
            Some(u) if start_time(u.daemon) == Some(u.start) && mounted(&u.target) => out.push(u),
            _ => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    out
}

/// Serialises "is this flist already mounted? if not, mount it" between concurrent
/// `zvfs mount` commands (an exclusive lock on `<run dir>/.lock`, released on drop).
pub struct MountLock {
    _file: std::fs::File,
}

/// Take the mount lock, waiting while another `zvfs mount` holds it; errors name the
/// lock file.
pub fn lock() -> Result<MountLock> {
    let dir = run_dir();
    std::fs::create_dir_all(&dir).with_ctx(|| format!("creating {}", dir.display()))?;
    let path: &Path = &dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_ctx(|| format!("opening {}", path.display()))?;
    file.lock()
        .with_ctx(|| format!("locking {}", path.display()))?;
    Ok(MountLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_stable_and_dead_pids_have_none() {
        let me = std::process::id();
        let a = start_time(me).unwrap();
        assert_eq!(start_time(me), Some(a));
        // pid_max is at most 2^22: this pid cannot exist.
        assert_eq!(start_time(u32::MAX - 1), None);
    }

    #[test]
    fn entries_of_older_daemons_parse_without_a_socket() {
        let old = r#"{"pid":7,"start":1,"fuse_target":"/mnt","overlay":null,
            "flist":"/a.fl","url":null,"md5":"00","cache":"/c","cache_size":1,"stores":[]}"#;
        let s: State = serde_json::from_str(old).unwrap();
        assert_eq!(s.socket, None);
        assert_eq!((s.worker, s.restarts, s.generation), (None, 0, 0));
        assert_eq!(s.started_exe, None);
        let mut new = s.clone();
        new.socket = Some(PathBuf::from("/run/zvfs/7.sock"));
        new.worker = Some(8);
        new.restarts = 3;
        new.generation = 4;
        new.started_exe = Some(PathBuf::from("/usr/bin/zvfs"));
        let back: State = serde_json::from_slice(&serde_json::to_vec(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }
}
