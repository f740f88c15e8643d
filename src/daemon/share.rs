//! Mounting on a target when a daemon may already be involved: the preflight (refuse a
//! healthy zvfs mount on the target, detach a stale one), sharing a live daemon's mount
//! of the same flist (a bind, or an overlay over it) and holding such a shared target in
//! the foreground. It starts no daemon and serves nothing itself.

use std::path::Path;
use std::time::Duration;

use super::MountOptions;
use crate::error::{Error, Result};
use crate::sys::{mountinfo, registry};

/// Before mounting on `target`: refuse a healthy zvfs mount there, detach a stale one.
pub(super) fn preflight(target: &Path) -> Result<()> {
    let t = mountinfo::absolute(target);
    let all = mountinfo::read()?;
    let found = super::mounts::zvfs_mounts(&all, &registry::list());
    let Some(m) = found.iter().rev().find(|m| m.target == t) else {
        return Ok(());
    };
    match m.health() {
        Ok(()) => Err(Error::invalid(format!(
            "{} is already a mount point (zvfs {}, daemon {})",
            t.display(),
            m.kind.name(),
            m.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
        ))),
        Err(why) => {
            log::warn!("{}: stale zvfs mount ({why}); detaching it", t.display());
            super::umount::detach_stale(m)
        }
    }
}

/// Unless `new_daemon`: when a live daemon serves the same flist with the same cache
/// and stores, bind its mount on the target (or overlay it when writable) instead of
/// starting another daemon. Returns that daemon's pid when it did.
pub(super) fn share(args: &MountOptions) -> Result<Option<u32>> {
    let cache = mountinfo::absolute(&args.cache);
    let stores = args.redacted_stores();
    let candidates: Vec<_> = registry::list()
        .into_iter()
        .filter(|s| s.cache == cache && s.stores == stores)
        .collect();
    if candidates.is_empty() {
        // The md5 reads the whole flist (tens of ms for a big one): only when it matters.
        return Ok(None);
    }
    let md5 = crate::flist::download::md5_of_file(&args.flist)?;
    let target = mountinfo::absolute(&args.target);
    let all = mountinfo::read()?;
    for s in candidates {
        if s.md5 != md5 {
            continue;
        }
        // A healthy mount of that daemon's filesystem, its own first.
        let mut sources: Vec<&Path> = all
            .iter()
            .filter(|e| e.daemon_pid() == Some(s.pid) && e.target != target)
            .map(|e| e.target.as_path())
            .collect();
        sources.sort_by_key(|p| *p != s.fuse_target);
        let Some(src) = sources.into_iter().find(|p| std::fs::metadata(p).is_ok()) else {
            continue;
        };
        match args.layer() {
            Some(l) => {
                l.prepare(args.reset)?;
                crate::sys::mounts::mount_overlay(src, &l, &target, args.mount_opts().flags())?;
                if let Err(e) = registry::add_user(&s, &target) {
                    log::warn!("{e}");
                }
                log::info!(
                    "{}: overlay of {} (daemon {}, flist md5 {md5}) with {}",
                    target.display(),
                    src.display(),
                    s.pid,
                    l.rw.display()
                );
            }
            None => {
                crate::sys::mounts::bind_ro(src, &target, args.mount_opts().flags())?;
                log::info!(
                    "{}: bind of {} (daemon {}, flist md5 {md5})",
                    target.display(),
                    src.display(),
                    s.pid
                );
            }
        }
        return Ok(Some(s.pid));
    }
    Ok(None)
}

/// A foreground mount that shares another daemon's mount stays in the foreground as
/// the target's holder (a supervisor tracks this process): ready at once; on SIGTERM,
/// SIGINT or SIGHUP (unlike a serving daemon's supervisor, for which SIGHUP means
/// upgrade) it unmounts the target and lets the daemon go when that was its last
/// user; it exits too when the target is unmounted by someone else.
pub(super) fn hold(target: &Path, daemon: u32) -> Result<()> {
    let set = super::supervisor::signal_set();
    // SAFETY: changes this thread's mask; no other thread runs.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let target = mountinfo::absolute(target);
    if let Err(e) = crate::sys::notify::notify("READY=1") {
        log::warn!("{e}");
    }
    log::info!(
        "holding {} (shared mount of daemon {daemon})",
        target.display()
    );
    let tick = libc::timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: waits on a valid signal set with a valid timeout; no siginfo wanted.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &tick) };
        if sig > 0 && sig != libc::SIGUSR1 {
            log::info!("signal {sig}: unmounting {}", target.display());
            break;
        }
        let mounted = mountinfo::read()
            .map(|all| mountinfo::at(&all, &target).is_some())
            .unwrap_or(true);
        if !mounted {
            log::info!("{} was unmounted; exiting", target.display());
            registry::remove_user(&target);
            return Ok(());
        }
    }
    crate::fs::mount::unmount_path(&target)?;
    registry::remove_user(&target);
    super::umount::release(daemon, Duration::from_secs(10))?;
    Ok(())
}
