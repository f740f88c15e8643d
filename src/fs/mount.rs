//! Putting a [`ZvfsFs`] on a mountpoint and taking it off again.
//!
//! As root the filesystem is mounted with `mount(2)` directly, so the type can be
//! `fuse.<subtype>` and the source any name: Zero-OS nodes find their flist mounts by type
//! `fuse.g8ufs` and source = the daemon's pid (formats.md section 5). Without root, the
//! mount goes through `fusermount3` (type `fuse`, the subtype only in the options).
//! [`resume`] serves a connection an earlier process mounted and initialised (a worker
//! taking over from a dead one, `daemon::supervise`).
//!
//! Mounts are `nodev` unless asked otherwise: the mount is `allow_other`, and a device
//! node an flist carries (`c 1 5`, `b 8 0`) would otherwise open the host's device for
//! any local user. Such entries keep their type and numbers in `stat`. Setuid and setgid
//! bits are honoured by default (container root filesystems need `su`, `ping`, `sudo`);
//! `nosuid` is an option.
//! This module knows nothing of flists or chunks.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use std::sync::{Arc, OnceLock};

use crate::fuse::{InitInfo, Session};

use super::ZvfsFs;
use crate::error::{Context, Error, Result};

/// How the mount shows up in `/proc/self/mountinfo` and who may use it.
#[derive(Clone, Debug)]
pub struct MountOpts {
    /// The mount source (`fsname`); Zero-OS expects the daemon's pid.
    pub fsname: String,
    /// `fuse.<subtype>` is the filesystem type; Zero-OS expects `g8ufs`.
    pub subtype: String,
    /// Users other than the one mounting may use the mount (`allow_other`).
    pub allow_other: bool,
    /// The kernel checks permissions from the entries' modes and owners
    /// (`default_permissions`); the filesystem itself checks none.
    pub default_permissions: bool,
    /// Device nodes open the devices they name (off: the mount is `nodev`).
    pub dev: bool,
    /// Setuid/setgid bits take effect (off: the mount is `nosuid`).
    pub suid: bool,
}

impl MountOpts {
    /// The per-mount flags these options ask for, for every mount that shows the flist
    /// (the FUSE mount, binds and overlays of it): a bind or overlay gets its own flags.
    pub fn flags(&self) -> rustix::mount::MountFlags {
        let mut f = rustix::mount::MountFlags::empty();
        if !self.dev {
            f |= rustix::mount::MountFlags::NODEV;
        }
        if !self.suid {
            f |= rustix::mount::MountFlags::NOSUID;
        }
        f
    }
}

impl Default for MountOpts {
    fn default() -> Self {
        MountOpts {
            fsname: std::process::id().to_string(),
            subtype: "g8ufs".to_string(),
            allow_other: true,
            default_permissions: true,
            dev: false,
            suid: true,
        }
    }
}

/// A mounted filesystem: run its session, unmount it from any thread.
pub struct Mounted {
    /// The FUSE session: running it serves requests until the filesystem is unmounted.
    pub session: Session<ZvfsFs>,
    /// Takes this mount off again.
    pub unmounter: Unmounter,
    /// What the handshake settled, once done.
    pub init: Arc<OnceLock<InitInfo>>,
}

impl Mounted {
    /// A copy of the connection's descriptor (to keep the connection alive beyond this
    /// process, or to hand it to the next one).
    pub fn fuse_fd(&self) -> std::io::Result<OwnedFd> {
        self.session.fd().try_clone_to_owned()
    }
}

/// Takes the mount off (idempotent), from any thread.
pub enum Unmounter {
    /// Mounted as root with `mount(2)`: unmounted with `umount2(2)` on this (canonical)
    /// mountpoint.
    Direct(PathBuf),
    /// Mounted through `fusermount3`: unmounted through it, on this mountpoint.
    Fusermount(PathBuf),
}

impl Unmounter {
    /// Unmount; when the filesystem is busy, detach it (lazy unmount).
    pub fn unmount(&mut self) -> Result<()> {
        match self {
            Unmounter::Direct(target) => unmount_path(target),
            Unmounter::Fusermount(target) => crate::fuse::fusermount::unmount(target),
        }
    }
}

/// Unmount `target`, detaching it lazily when busy. Not mounted is not an error.
pub fn unmount_path(target: &Path) -> Result<()> {
    use rustix::mount::{unmount, UnmountFlags};
    match unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => io(unmount(target, UnmountFlags::DETACH))
            .with_ctx(|| format!("detaching {}", target.display())),
        Err(rustix::io::Errno::INVAL) => Ok(()), // not a mountpoint (any more)
        Err(e) => Err(Error::from(e).context(format!("unmounting {}", target.display()))),
    }
}

/// A mountpoint whose FUSE daemon died answers ENOTCONN (ECONNABORTED for a request that
/// was in flight when the connection went): detach it so it can be reused.
pub fn clear_stale(target: &Path) -> Result<()> {
    let dead =
        |errno: Option<i32>| matches!(errno, Some(libc::ENOTCONN) | Some(libc::ECONNABORTED));
    // stat may be answered from cached attributes; statfs always asks the daemon.
    let stale = std::fs::metadata(target)
        .err()
        .is_some_and(|e| dead(e.raw_os_error()))
        || rustix::fs::statfs(target)
            .err()
            .is_some_and(|e| dead(Some(e.raw_os_error())));
    if stale {
        log::warn!(
            "{}: stale FUSE mount (its daemon is gone); detaching it",
            target.display()
        );
        io(rustix::mount::unmount(
            target,
            rustix::mount::UnmountFlags::DETACH,
        ))
        .with_ctx(|| format!("detaching stale mount {}", target.display()))?;
    }
    Ok(())
}

/// Mount `fs` read-only on `target`.
pub fn mount(fs: ZvfsFs, target: &Path, opts: &MountOpts) -> Result<Mounted> {
    clear_stale(target)?;
    let md = std::fs::metadata(target).with_ctx(|| format!("mountpoint {}", target.display()))?;
    if !md.is_dir() {
        return Err(Error::invalid(format!(
            "mountpoint {} is not a directory",
            target.display()
        )));
    }
    let target = target
        .canonicalize()
        .with_ctx(|| format!("mountpoint {}", target.display()))?;
    let (fd, unmounter) = if rustix::process::geteuid().is_root() {
        (mount_direct(&target, opts)?, Unmounter::Direct(target))
    } else {
        let mut o = format!("ro,fsname={},subtype={}", opts.fsname, opts.subtype);
        for (on, name) in [
            (opts.allow_other, ",allow_other"),
            (opts.default_permissions, ",default_permissions"),
            (!opts.dev, ",nodev"),
            (!opts.suid, ",nosuid"),
        ] {
            if on {
                o.push_str(name);
            }
        }
        let fd = crate::fuse::fusermount::mount(&target, &o)
            .map_err(|e| e.context(format!("mounting on {}", target.display())))?;
        (fd, Unmounter::Fusermount(target))
    };
    let session = Session::new(fs, fd);
    Ok(Mounted {
        init: session.init_info(),
        session,
        unmounter,
    })
}

/// Serve `fs` on the connection `fd`, mounted on `target` and initialised by an earlier
/// process: running the session asks the kernel to resend what that process had read and
/// not answered, then serves as usual.
pub fn resume(fs: ZvfsFs, fd: OwnedFd, target: &Path) -> Result<Mounted> {
    let unmounter = if rustix::process::geteuid().is_root() {
        Unmounter::Direct(target.to_path_buf())
    } else {
        Unmounter::Fusermount(target.to_path_buf())
    };
    let session = Session::resume(fs, fd);
    Ok(Mounted {
        init: session.init_info(),
        session,
        unmounter,
    })
}

/// A FUSE mount's read-ahead window is its backing device's (`/sys/class/bdi/<dev>/
/// read_ahead_kb`, 128 KiB by default), and the max_readahead a daemon answers in the
/// handshake can only lower it: sequential reads would arrive as 128 KiB requests.
/// Raising the knob once the handshake is done (root only) makes them 1 MiB requests, a
/// fraction of the round trips through the daemon. Failing only costs speed.
pub fn raise_readahead(target: &Path) {
    // A getattr of the root waits until the kernel has processed the handshake's
    // answer, which would otherwise set the window back.
    if std::fs::metadata(target).is_err() {
        return;
    }
    let dev = match crate::sys::mountinfo::read() {
        Ok(all) => crate::sys::mountinfo::at(&all, target).map(|m| m.dev.clone()),
        Err(_) => None,
    };
    let Some(dev) = dev else {
        log::debug!(
            "{}: not in mountinfo; read-ahead left as is",
            target.display()
        );
        return;
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    match std::fs::write(&knob, (super::MAX_READAHEAD / 1024).to_string()) {
        Ok(()) => log::debug!("{knob}: {} KiB", super::MAX_READAHEAD / 1024),
        Err(e) => log::debug!("{knob}: {e}; read-ahead left as is"),
    }
}

fn mount_direct(target: &Path, opts: &MountOpts) -> Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    use rustix::mount::MountFlags;
    let fd = io(rustix::fs::open(
        "/dev/fuse",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    ))
    .ctx("opening /dev/fuse")?;
    let mut data = format!(
        "fd={},rootmode=40000,user_id={},group_id={}",
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    if opts.allow_other {
        data.push_str(",allow_other");
    }
    if opts.default_permissions {
        data.push_str(",default_permissions");
    }
    let fstype = if opts.subtype.is_empty() {
        "fuse".to_string()
    } else {
        format!("fuse.{}", opts.subtype)
    };
    let cdata = std::ffi::CString::new(data)
        .map_err(|_| Error::invalid("mount options contain a NUL byte"))?;
    io(rustix::mount::mount(
        opts.fsname.as_str(),
        target,
        fstype.as_str(),
        MountFlags::RDONLY | MountFlags::NOATIME | opts.flags(),
        Some(cdata.as_c_str()),
    ))
    .with_ctx(|| format!("mounting {fstype} on {}", target.display()))?;
    Ok(fd)
}

fn io<T>(r: rustix::io::Result<T>) -> std::io::Result<T> {
    r.map_err(std::io::Error::from)
}
