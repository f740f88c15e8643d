//! The shared read-only mount of an flist, one per flist md5, used as the lower layer of
//! every container made from that flist. `acquire` finds or makes it and counts the
//! container as a user; `release` uncounts it and unmounts when the last user is gone.
//!
//! A live zvfs daemon serving the same flist (by md5, from the mount registry), started
//! by someone else, is borrowed: its mount is used and never unmounted by us. Otherwise
//! a daemon of our own (`daemon::start`) puts one under the state directory and we own
//! it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::mounted_at;
use super::state::{read_json, write_json, State};
use crate::cache::parse_size;
use crate::daemon;
use crate::error::{Context, Error, Result};
use crate::sys::{mountinfo, registry};

/// How the shared mount is made when there is none yet.
#[derive(Clone, Debug)]
pub struct MountConfig {
    /// Chunk cache directory of the mount.
    pub cache: PathBuf,
    /// Bound of the cache directory (K, M, G suffixes, as `zvfs mount --cache-size`).
    pub cache_size: String,
    /// Store URLs overriding the flist's routes.
    pub stores: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Shared {
    /// The mountpoint.
    lower: PathBuf,
    /// The daemon serving it (the mount's source).
    pid: u32,
    /// Mounted by us (unmounted with its last user) or borrowed (left alone).
    owned: bool,
    /// The flist file it serves.
    flist: PathBuf,
}

fn shared_file(state: &State, md5: &str) -> PathBuf {
    state.flist_dir(md5).join("shared.json")
}

fn users_dir(state: &State, md5: &str) -> PathBuf {
    state.flist_dir(md5).join("users")
}

/// Whether `lower` is still a working zvfs mount served by `pid`.
fn live(lower: &Path, pid: u32) -> Result<bool> {
    let Some(m) = mounted_at(lower)? else {
        return Ok(false);
    };
    if !m.fstype.starts_with("fuse") || m.source != pid.to_string() || !registry::alive(pid) {
        return Ok(false);
    }
    Ok(std::fs::metadata(lower).is_ok())
}

/// A live zvfs mount (made by anyone) of the flist whose md5 is `md5`: a registered
/// daemon serving it, on its own mountpoint.
pub fn find_mount_of(md5: &str) -> Result<Option<(PathBuf, u32, PathBuf)>> {
    for s in registry::list() {
        if s.md5 == md5 && live(&s.fuse_target, s.pid)? {
            return Ok(Some((s.fuse_target, s.pid, s.flist)));
        }
    }
    Ok(None)
}

/// Mount the flist on `<state>/flists/<md5>/ro` with a daemon of its own
/// ([`daemon::start`]), logging to `<state>/flists/<md5>/log`.
fn mount_own(state: &State, md5: &str, flist: &Path, cfg: &MountConfig) -> Result<Shared> {
    let dir = state.flist_dir(md5);
    let ro = dir.join("ro");
    let log = dir.join("log");
    crate::fs::mount::clear_stale(&ro)?;
    std::fs::create_dir_all(&ro).with_ctx(|| format!("creating {}", ro.display()))?;
    let mut opts = daemon::MountOptions::new(flist, &ro, &cfg.cache);
    opts.cache_size = parse_size(&cfg.cache_size)?;
    opts.stores = cfg.stores.clone();
    opts.log = Some(log.clone());
    let started = daemon::start(&opts).map_err(|e| {
        Error::new(
            e.kind,
            format!(
                "mounting flist {} on {}: {e} (log: {})",
                flist.display(),
                ro.display(),
                log.display()
            ),
        )
    })?;
    let ro = ro
        .canonicalize()
        .with_ctx(|| format!("mountpoint {}", ro.display()))?;
    if mounted_at(&ro)?.is_none() {
        return Err(Error::io(format!(
            "the zvfs daemon {} reported ready but {} is not mounted",
            started.pid,
            ro.display()
        )));
    }
    let pid = started.pid;
    log::info!(
        "mounted flist {} (md5 {md5}) read-only on {} (daemon {pid})",
        flist.display(),
        ro.display()
    );
    Ok(Shared {
        lower: ro,
        pid,
        owned: true,
        flist: flist.to_path_buf(),
    })
}

/// The read-only mount of the flist `md5` (stored at `flist`), made or found, with `user`
/// counted. The caller holds the state lock.
pub fn acquire(
    state: &State,
    md5: &str,
    flist: &Path,
    cfg: &MountConfig,
    user: &str,
) -> Result<PathBuf> {
    let users = users_dir(state, md5);
    std::fs::create_dir_all(&users).with_ctx(|| format!("creating {}", users.display()))?;
    let file = shared_file(state, md5);
    let current: Option<Shared> = read_json(&file)?;
    let shared = match current {
        Some(s) if live(&s.lower, s.pid)? => s,
        _ => {
            let s = match find_mount_of(md5)? {
                Some((lower, pid, found)) => {
                    log::info!(
                        "reusing the zvfs mount of {} on {} (daemon {pid})",
                        found.display(),
                        lower.display()
                    );
                    Shared {
                        lower,
                        pid,
                        owned: false,
                        flist: found,
                    }
                }
                None => mount_own(state, md5, flist, cfg)?,
            };
            write_json(&file, &s)?;
            s
        }
    };
    let mark = users.join(user);
    std::fs::write(&mark, b"").with_ctx(|| format!("creating {}", mark.display()))?;
    Ok(shared.lower)
}

/// Stop counting `user`; the last user unmounts an owned mount (waiting for its daemon
/// to exit) and removes the flist's state. The caller holds the state lock.
pub fn release(state: &State, md5: &str, user: &str) -> Result<()> {
    let users = users_dir(state, md5);
    match std::fs::remove_file(users.join(user)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::from(e).context(format!("removing {}", users.join(user).display())))
        }
    }
    let remaining = match std::fs::read_dir(&users) {
        Ok(rd) => rd.count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::from(e).context(format!("listing {}", users.display()))),
    };
    if remaining > 0 {
        log::info!("flist {md5} still used by {remaining} container(s)");
        return Ok(());
    }
    let dir = state.flist_dir(md5);
    let shared: Option<Shared> = read_json(&shared_file(state, md5))?;
    if let Some(s) = &shared {
        if s.owned {
            if mounted_at(&s.lower)?.is_some() {
                crate::fs::mount::unmount_path(&s.lower)?;
            }
            // A daemon whose filesystem is still mounted elsewhere stays.
            let source = s.pid.to_string();
            if !mountinfo::read()?.iter().any(|m| m.source == source) {
                wait_gone(s.pid, Duration::from_secs(10));
            }
            log::info!(
                "unmounted the shared mount of flist {md5} ({})",
                s.lower.display()
            );
        }
    }
    std::fs::remove_dir_all(&dir).with_ctx(|| format!("removing {}", dir.display()))?;
    let meta = state.meta_dir().join(md5);
    if meta.exists() {
        std::fs::remove_file(&meta).with_ctx(|| format!("removing {}", meta.display()))?;
    }
    Ok(())
}

/// Wait for an unmounted daemon to exit (it is not our child: poll /proc).
fn wait_gone(pid: u32, limit: Duration) {
    let start = Instant::now();
    while registry::alive(pid) {
        if start.elapsed() > limit {
            log::warn!(
                "zvfs daemon {pid} still running {} s after its unmount",
                limit.as_secs()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
