//! Upgrade in place, the client side: [`upgrade`] finds the supervisor of a mount, sends
//! it SIGHUP (it executes the binary now on disk, keeping the connection, see
//! `supervisor`) and waits until the registry shows a new worker of a higher
//! generation and the mount answers. It serves and unmounts nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::mounts::Kind;
use crate::error::{Error, Result};
use crate::sys::{mountinfo, registry};

/// How long [`upgrade`] waits for the new worker.
pub const UPGRADE_WAIT: Duration = Duration::from_secs(10);

/// One mount upgraded in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgraded {
    /// The mountpoint asked for.
    pub target: PathBuf,
    /// The supervisor (unchanged: the mount's source).
    pub pid: u32,
    /// The worker before.
    pub old_worker: u32,
    /// The worker now serving.
    pub worker: u32,
    /// Its generation.
    pub generation: u64,
}

/// Upgrade the daemon serving `target` (a FUSE mount, bind or overlay): SIGHUP to its
/// supervisor, then wait (up to [`UPGRADE_WAIT`]) for its new worker. Errors name the
/// target.
pub fn upgrade(target: &Path) -> Result<Upgraded> {
    let t = mountinfo::absolute(target);
    let name = t.display().to_string();
    let mounts = super::list()?;
    let m = mounts
        .iter()
        .rev()
        .find(|m| m.target == t)
        .ok_or_else(|| Error::invalid(format!("{name}: not a zvfs mount")))?;
    let pid = m
        .pid
        .ok_or_else(|| Error::invalid(format!("{name}: no daemon known for it")))?;
    let before = m.state.clone().ok_or_else(|| {
        Error::invalid(format!(
            "{name}: daemon {pid} has no registry entry (not a zvfs mount daemon); cannot \
             upgrade it"
        ))
    })?;
    let Some(old_worker) = before.worker else {
        return Err(Error::invalid(format!(
            "{name}: daemon {pid} predates upgrades in place (SIGHUP would unmount it); \
             remount it instead"
        )));
    };
    let p = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| Error::invalid(format!("{name}: bad pid {pid}")))?;
    rustix::process::kill_process(p, rustix::process::Signal::HUP)
        .map_err(|e| Error::from(e).context(format!("{name}: signalling daemon {pid}")))?;
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = registry::get(pid);
        let Some(now) = now else {
            if !registry::alive(pid) {
                return Err(Error::io(format!(
                    "{name}: daemon {pid} exited during the upgrade; see its log"
                )));
            }
            continue;
        };
        if let Some(w) = now.worker {
            if now.generation > before.generation
                && w != old_worker
                && std::fs::metadata(&t).is_ok()
            {
                return Ok(Upgraded {
                    target: t,
                    pid,
                    old_worker,
                    worker: w,
                    generation: now.generation,
                });
            }
        }
        if start.elapsed() > UPGRADE_WAIT {
            return Err(Error::timeout(format!(
                "{name}: daemon {pid} showed no new serving worker within {} s; see its log",
                UPGRADE_WAIT.as_secs()
            )));
        }
    }
}

/// The FUSE mounts of the host whose daemons can be upgraded: one target per daemon
/// with an entry in this run directory's registry (`ZVFS_RUN_DIR`; a daemon without one,
/// of another run directory or no zvfs daemon at all, is left alone).
pub fn upgradable() -> Result<Vec<PathBuf>> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for m in super::list()? {
        if m.kind != Kind::Fuse {
            continue;
        }
        let Some(pid) = m.pid else { continue };
        if m.state.is_none() || seen.contains(&pid) {
            continue;
        }
        seen.push(pid);
        out.push(m.target);
    }
    Ok(out)
}
