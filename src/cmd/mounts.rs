//! Mount management: `zvfs mounts [--json]` lists every zvfs (or rfs/g8ufs) mount of the
//! host, `zvfs mounts --check TARGET` tells a supervisor whether one is healthy, and
//! `zvfs umount TARGET` takes one down and stops its daemon once nothing uses it.
//!
//! What is mounted comes from mountinfo (type `fuse.g8ufs`, source = daemon pid; binds of
//! such a mount; overlays whose lower directory is one), what it serves from the daemons'
//! registry (`sys::registry`). A daemon's users are its FUSE mount (unless that is only
//! the lower layer of its own `--rw` overlay), the binds of it and the overlays over
//! either; `umount` stops the daemon (SIGTERM, then waits, bounded) when the last user is
//! gone. A mount whose daemon died is stale: `umount` detaches it and whatever else that
//! daemon left mounted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, ExitCode, Result};
use crate::sys::mountinfo::{self, MountEntry};
use crate::sys::registry::{self, State};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON (one array of objects) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when TARGET is a healthy zvfs mount (mounted, daemon alive, answering),
    /// 1 otherwise (a supervisor's readiness/health test).
    #[arg(long, value_name = "TARGET", conflicts_with = "json")]
    pub check: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    /// Seconds to wait for the daemon to exit before killing it.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// The mountpoint (FUSE mount, bind or overlay).
    pub target: PathBuf,
}

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
    pub target: PathBuf,
    pub kind: Kind,
    /// The daemon serving it.
    pub pid: Option<u32>,
    /// Overlays: the lower (flist) and upper directories.
    pub lower: Option<PathBuf>,
    pub upper: Option<PathBuf>,
    pub state: Option<State>,
}

impl Mounted {
    /// Whether this mount needs its daemon's FUSE mount as a user would: everything but
    /// the FUSE mount that only serves as the lower layer of the daemon's own overlay.
    fn is_user(&self) -> bool {
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

/// Every zvfs mount (FUSE, binds, overlays) in `all`, in mount order.
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

/// Detach a mount that failed its health check and, when its daemon is gone, whatever
/// else that daemon left mounted.
pub fn detach_stale(m: &Mounted) -> Result<()> {
    detach(&m.target)?;
    registry::remove_user(&m.target);
    if let Some(pid) = m.pid {
        if !registry::alive(pid) {
            detach_all_of(pid);
        }
    }
    Ok(())
}

fn detach(target: &Path) -> Result<()> {
    match rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) => Ok(()),
        Err(e) => Err(Error::io(format!("detaching {}: {e}", target.display()))),
    }
}

/// Detach every mount of daemon `pid` (overlays first). For dead daemons.
fn detach_all_of(pid: u32) {
    let Ok(all) = mountinfo::read() else {
        return;
    };
    for m in zvfs_mounts(&all, &[]).iter().rev() {
        if m.pid == Some(pid) {
            log::info!("detaching {} left by daemon {pid}", m.target.display());
            if let Err(e) = detach(&m.target) {
                log::warn!("{e}");
            }
        }
    }
}

/// Bytes recorded in a cache directory's usage file.
fn cache_used(dir: &Path) -> Option<u64> {
    crate::cache::quota::recorded_usage(dir)
}

#[derive(Serialize)]
struct Row<'a> {
    target: &'a Path,
    kind: Kind,
    pid: Option<u32>,
    healthy: bool,
    problem: Option<String>,
    flist: Option<&'a Path>,
    url: Option<&'a str>,
    md5: Option<&'a str>,
    cache: Option<&'a Path>,
    cache_size: Option<u64>,
    cache_used: Option<u64>,
    lower: Option<&'a Path>,
    upper: Option<&'a Path>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let all = mountinfo::read()?;
    let states = registry::list();
    let mounts = zvfs_mounts(&all, &states);
    if let Some(t) = &args.check {
        let t = mountinfo::absolute(t);
        let Some(m) = mounts.iter().rev().find(|m| m.target == t) else {
            eprintln!("zvfs: {} is not a zvfs mount", t.display());
            return Ok(ExitCode::UNHEALTHY);
        };
        return Ok(match m.health() {
            Ok(()) => ExitCode::Ok,
            Err(why) => {
                eprintln!("zvfs: {} is not healthy: {why}", t.display());
                ExitCode::UNHEALTHY
            }
        });
    }
    let rows: Vec<Row> = mounts
        .iter()
        .map(|m| {
            let health = m.health();
            let s = m.state.as_ref();
            Row {
                target: &m.target,
                kind: m.kind,
                pid: m.pid,
                healthy: health.is_ok(),
                problem: health.err(),
                flist: s.map(|s| s.flist.as_path()),
                url: s.and_then(|s| s.url.as_deref()),
                md5: s.map(|s| s.md5.as_str()),
                cache: s.map(|s| s.cache.as_path()),
                cache_size: s.map(|s| s.cache_size),
                cache_used: s.and_then(|s| cache_used(&s.cache)),
                lower: m.lower.as_deref(),
                upper: m.upper.as_deref(),
            }
        })
        .collect();
    if args.json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| Error::invalid(format!("encoding JSON: {e}")))?;
        println!("{text}");
        return Ok(ExitCode::Ok);
    }
    println!("TARGET\tKIND\tPID\tHEALTHY\tFLIST\tCACHE\tCACHE_USED");
    let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    for r in &rows {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.target.display(),
            r.kind.name(),
            opt(r.pid.map(|p| p.to_string())),
            if r.healthy { "yes" } else { "no" },
            opt(r.flist.map(|p| p.display().to_string())),
            opt(r.cache.map(|p| p.display().to_string())),
            opt(r.cache_used.map(|u| u.to_string())),
        );
    }
    Ok(ExitCode::Ok)
}

/// `zvfs umount TARGET`.
pub fn umount(args: UmountArgs) -> Result<ExitCode> {
    let t = mountinfo::absolute(&args.target);
    let all = mountinfo::read()?;
    let mounts = zvfs_mounts(&all, &registry::list());
    let Some(m) = mounts.iter().rev().find(|m| m.target == t) else {
        return Err(match mountinfo::at(&all, &t) {
            Some(e) => Error::invalid(format!(
                "{} is not a zvfs mount (type {}, source {})",
                t.display(),
                e.fstype,
                e.source
            )),
            None => Error::not_found(format!("{} is not mounted", t.display())),
        });
    };
    if let Err(why) = m.health() {
        log::warn!("{}: stale mount ({why}); detaching it", t.display());
        detach_stale(m)?;
        if let Some(pid) = m.pid.filter(|p| registry::alive(*p)) {
            release(pid, Duration::from_secs_f64(args.timeout.max(0.1)))?;
        }
        return Ok(ExitCode::Ok);
    }
    crate::fs::mount::unmount_path(&t)?;
    registry::remove_user(&t);
    log::info!("unmounted {} ({})", t.display(), m.kind.name());
    if let Some(pid) = m.pid {
        release(pid, Duration::from_secs_f64(args.timeout.max(0.1)))?;
    }
    Ok(ExitCode::Ok)
}

/// After one of its mounts went away: stop daemon `pid` when nothing uses it any more.
pub fn release(pid: u32, timeout: Duration) -> Result<()> {
    let all = mountinfo::read()?;
    let users = zvfs_mounts(&all, &registry::list())
        .into_iter()
        .filter(|m| m.pid == Some(pid) && m.is_user())
        .count();
    if users > 0 {
        log::info!("daemon {pid} still serves {users} mount(s); leaving it running");
        return Ok(());
    }
    stop_daemon(pid, timeout)
}

/// SIGTERM, wait (bounded), then SIGKILL and detach what it left.
fn stop_daemon(pid: u32, timeout: Duration) -> Result<()> {
    use rustix::process::{kill_process, Pid, Signal};
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(());
    };
    if kill_process(p, Signal::TERM).is_err() {
        detach_all_of(pid);
        return Ok(());
    }
    let start = Instant::now();
    while registry::alive(pid) {
        if start.elapsed() > timeout {
            log::warn!(
                "daemon {pid} did not exit within {:.1} s; killing it",
                timeout.as_secs_f64()
            );
            let _ = kill_process(p, Signal::KILL);
            let t = Instant::now();
            while registry::alive(pid) && t.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            detach_all_of(pid);
            return Err(Error::timeout(format!(
                "daemon {pid} did not exit within {:.1} s; killed it",
                timeout.as_secs_f64()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    log::info!("daemon {pid} exited");
    Ok(())
}
