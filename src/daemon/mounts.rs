//! What is mounted: every zvfs (or rfs/g8ufs) mount of the host and its health.
//! Mounts come from mountinfo (type `fuse.g8ufs`, source = daemon pid; binds of such a
//! mount; overlays whose lower directory is one), what they serve from the daemons'
//! registry (`sys::registry`). A daemon's users are its FUSE mount (unless that is only
//! the lower layer of its own writable overlay), the binds of it and the overlays over
//! either. This file only looks; it unmounts and signals nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::error::Result;
use crate::sys::mountinfo::{self, MountEntry};
use crate::sys::registry::{self, State};

/// What a zvfs mount is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The daemon's FUSE mount.
    Fuse,
    /// A bind of it (shared mount).
    Bind,
    /// An overlay over one of the above.
    Overlay,
}

impl Kind {
    /// Its name in listings and logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fuse => "fuse",
            Kind::Bind => "bind",
            Kind::Overlay => "overlay",
        }
    }
}

/// One zvfs mount as seen in mountinfo, with its daemon's registry state.
#[derive(Clone, Debug)]
pub struct Mounted {
    /// The mountpoint.
    pub target: PathBuf,
    /// What it is.
    pub kind: Kind,
    /// The daemon serving it.
    pub pid: Option<u32>,
    /// Overlays: the lower (flist) directory.
    pub lower: Option<PathBuf>,
    /// Overlays: the upper directory.
    pub upper: Option<PathBuf>,
    /// The registry entry of its daemon, when it has one.
    pub state: Option<State>,
}

impl Mounted {
    /// Whether this mount needs its daemon's FUSE mount as a user would: everything but
    /// the FUSE mount that only serves as the lower layer of the daemon's own overlay.
    pub(super) fn is_user(&self) -> bool {
        !(self.kind == Kind::Fuse
            && self
                .state
                .as_ref()
                .is_some_and(|s| s.overlay.is_some() && s.fuse_target == self.target))
    }

    /// `Ok` when the daemon is alive and the mount answers stat, statfs, opendir and
    /// readdir of its root within [`PROBE_WAIT`].
    pub fn health(&self) -> std::result::Result<(), String> {
        let pid = self.pid.ok_or("no daemon known for it")?;
        if !registry::alive(pid) {
            return Err(format!("its daemon {pid} is gone"));
        }
        let mut paths = vec![self.target.clone()];
        if let Some(l) = &self.lower {
            paths.push(l.clone());
        }
        // The probe runs in a thread: a daemon that no longer answers (stopped, or every
        // worker stuck) would hold the caller forever. A thread still waiting when we give
        // up is left behind; it ends with the process.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("zvfs-probe".into())
            .spawn(move || {
                let _ = tx.send(probe(&paths));
            })
            .map_err(|e| format!("starting the probe thread: {e}"))?;
        match rx.recv_timeout(PROBE_WAIT) {
            Ok(r) => r,
            Err(_) => Err(format!(
                "it does not answer (statfs, opendir and readdir of its root got no reply \
                 within {} s)",
                PROBE_WAIT.as_secs()
            )),
        }
    }
}

/// How long a mount may take to answer the health probe.
const PROBE_WAIT: Duration = Duration::from_secs(10);

/// Requests the daemon itself must answer (the kernel caches none of them: statfs, the
/// open of a directory), plus an attribute lookup and a listing of the root.
fn probe(paths: &[PathBuf]) -> std::result::Result<(), String> {
    for p in paths {
        std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        rustix::fs::statfs(p).map_err(|e| format!("statfs {}: {e}", p.display()))?;
        let mut list = std::fs::read_dir(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if let Some(Err(e)) = list.next() {
            return Err(format!("listing {}: {e}", p.display()));
        }
    }
    Ok(())
}

/// Every zvfs mount (FUSE, binds, overlays) in `all` (mountinfo), with the registry
/// entries in `states`, in mount order.
pub fn zvfs_mounts(all: &[MountEntry], states: &[State]) -> Vec<Mounted> {
    let state_of = |pid: u32| states.iter().find(|s| s.pid == pid).cloned();
    let users = registry::users(&|t| all.iter().any(|m| m.target == t));
    let mut out: Vec<Mounted> = Vec::new();
    for e in all {
        if let Some(pid) = e.daemon_pid() {
            let state = state_of(pid);
            let home = match &state {
                Some(s) => s.fuse_target == e.target,
                None => !out
                    .iter()
                    .any(|m| m.pid == Some(pid) && m.kind != Kind::Overlay),
            };
            out.push(Mounted {
                target: e.target.clone(),
                kind: if home { Kind::Fuse } else { Kind::Bind },
                pid: Some(pid),
                lower: None,
                upper: None,
                state,
            });
        } else if e.is_overlay() {
            let lower = e.lowerdirs().into_iter().next();
            let by_lower = lower.as_ref().and_then(|l| {
                all.iter()
                    .rev()
                    .find(|x| &x.target == l && x.daemon_pid().is_some())
                    .and_then(|x| x.daemon_pid())
            });
            let by_state = states
                .iter()
                .find(|s| s.overlay.as_ref().is_some_and(|o| o.target == e.target))
                .map(|s| s.pid);
            let by_user = users
                .iter()
                .find(|u| u.target == e.target)
                .map(|u| u.daemon);
            let Some(pid) = by_lower.or(by_state).or(by_user) else {
                continue;
            };
            out.push(Mounted {
                target: e.target.clone(),
                kind: Kind::Overlay,
                pid: Some(pid),
                lower,
                upper: e.super_opt("upperdir").map(PathBuf::from),
                state: state_of(pid),
            });
        }
    }
    out
}

/// Every zvfs mount of the host (FUSE, binds, overlays), in mount order.
pub fn list() -> Result<Vec<Mounted>> {
    let all = mountinfo::read()?;
    Ok(zvfs_mounts(&all, &registry::list()))
}

/// The health of a target, as [`check`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Mounted, its daemon alive, answering.
    Healthy,
    /// No zvfs mount is there.
    NotZvfs,
    /// A zvfs mount that fails the probe, and why.
    Unhealthy(String),
}

/// Whether `target` is a healthy zvfs mount (a supervisor's readiness/health test; the
/// probe is bounded by 10 s).
pub fn check(target: &Path) -> Result<Health> {
    let t = mountinfo::absolute(target);
    let mounts = list()?;
    let Some(m) = mounts.iter().rev().find(|m| m.target == t) else {
        return Ok(Health::NotZvfs);
    };
    Ok(match m.health() {
        Ok(()) => Health::Healthy,
        Err(why) => Health::Unhealthy(why),
    })
}
