//! Kernel mounts other than FUSE: the overlay that makes a read-only flist writable
//! (`lowerdir` = the flist mount, `upperdir`/`workdir` in the backend directory) and the
//! read-only bind that lets several targets share one flist mount, each with the caller's
//! `nodev`/`nosuid` flags. Root only. Unmounting
//! lives with the FUSE mount code (`fs::mount::unmount_path`).

use std::path::{Path, PathBuf};

use rustix::mount::MountFlags;

use crate::error::{Context, Error, Result};

/// The directories of a writable layer under its backend directory `DIR`: the flist's
/// read-only mount goes on `DIR/ro` (when zvfs mounts it there), writes land in `DIR/rw`,
/// and overlayfs needs an empty work directory `DIR/wd` on the same filesystem.
#[derive(Clone, Debug)]
pub struct Layer {
    /// `DIR/ro`: the read-only flist mount, the overlay's lower directory.
    pub ro: PathBuf,
    /// `DIR/rw`: the overlay's upper directory, where writes land.
    pub rw: PathBuf,
    /// `DIR/wd`: the overlay's work directory.
    pub wd: PathBuf,
}

impl Layer {
    /// The layer under `backend` (nothing is created: see [`Layer::prepare`]).
    pub fn new(backend: &Path) -> Layer {
        Layer {
            ro: backend.join("ro"),
            rw: backend.join("rw"),
            wd: backend.join("wd"),
        }
    }

    /// Create the directories; with `reset`, empty the upper layer (and the work
    /// directory) first, dropping every change made through the overlay.
    pub fn prepare(&self, reset: bool) -> Result<()> {
        if reset {
            for d in [&self.rw, &self.wd] {
                match std::fs::remove_dir_all(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::from(e).context(format!("resetting {}", d.display())))
                    }
                }
            }
            log::info!("reset the writable layer {}", self.rw.display());
        }
        for d in [&self.ro, &self.rw, &self.wd] {
            std::fs::create_dir_all(d).with_ctx(|| format!("creating {}", d.display()))?;
        }
        Ok(())
    }
}

/// A path usable inside overlayfs options (which use `,` and `:` as separators).
fn opt_path(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| Error::invalid(format!("{}: overlay paths must be UTF-8", p.display())))?;
    if s.contains([',', ':', '\\']) {
        return Err(Error::invalid(format!(
            "{s}: overlay paths cannot contain ',', ':' or '\\'"
        )));
    }
    Ok(s.to_string())
}

fn io<T>(r: rustix::io::Result<T>) -> std::io::Result<T> {
    r.map_err(std::io::Error::from)
}

/// Mount an overlay of `lower` (read-only) and `layer.rw` on `target`, with `flags`
/// (`NODEV`, `NOSUID`: a device node opened through the overlay is checked against the
/// overlay's own mount flags, not the lower mount's).
pub fn mount_overlay(lower: &Path, layer: &Layer, target: &Path, flags: MountFlags) -> Result<()> {
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        opt_path(lower)?,
        opt_path(&layer.rw)?,
        opt_path(&layer.wd)?
    );
    let cdata = std::ffi::CString::new(data)
        .map_err(|_| Error::invalid("overlay options contain a NUL byte"))?;
    io(rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        flags,
        Some(cdata.as_c_str()),
    ))
    .with_ctx(|| {
        format!(
            "mounting an overlay of {} and {} on {}",
            lower.display(),
            layer.rw.display(),
            target.display()
        )
    })
}

/// Bind `source` read-only on `target`, with `flags` (`NODEV`, `NOSUID`) of its own: the
/// remount sets the bind's flags to exactly these, whatever the source's.
pub fn bind_ro(source: &Path, target: &Path, flags: MountFlags) -> Result<()> {
    use rustix::mount::{mount_bind, mount_remount};
    io(mount_bind(source, target))
        .with_ctx(|| format!("binding {} on {}", source.display(), target.display()))?;
    if let Err(e) = io(mount_remount(
        target,
        MountFlags::BIND | MountFlags::RDONLY | flags,
        c"",
    )) {
        let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
        return Err(Error::from(e).context(format!("making {} read-only", target.display())));
    }
    Ok(())
}
