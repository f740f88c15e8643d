//! Taking mounts down: `umount` of a target (FUSE mount, bind or overlay), the release
//! of a daemon once its last user is gone (SIGTERM, then a bounded wait, then SIGKILL)
//! and the detach of stale mounts (daemon gone) with whatever that daemon left mounted.
//! It never starts or serves a mount.

use std::path::Path;
use std::time::{Duration, Instant};

use super::mounts::{zvfs_mounts, Mounted};
use crate::error::{Error, Result};
use crate::sys::{mountinfo, registry};

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
        Err(e) => Err(Error::from(e).context(format!("detaching {}", target.display()))),
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

/// Unmount `target` (a zvfs FUSE mount, bind or overlay; a stale one is detached) and
/// stop its daemon, waiting up to `timeout` for it to exit, when nothing else uses it.
pub fn umount(target: &Path, timeout: Duration) -> Result<()> {
    let t = mountinfo::absolute(target);
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
            release(pid, timeout)?;
        }
        return Ok(());
    }
    crate::fs::mount::unmount_path(&t)?;
    registry::remove_user(&t);
    log::info!("unmounted {} ({})", t.display(), m.kind.name());
    if let Some(pid) = m.pid {
        release(pid, timeout)?;
    }
    Ok(())
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
