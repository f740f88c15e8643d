//! The mount daemon's life cycle, as a library: serve an flist read-only over FUSE (in
//! the foreground with [`mount`], or as a background daemon with [`start`]), optionally
//! writable through an overlay, and shared between targets; list the zvfs mounts of the
//! host ([`list`]), probe one's health ([`check`]) and take one down ([`umount`]).
//!
//! `flist` may be an http(s) URL: it is downloaded into `CACHE/flist/<md5>` first
//! (`flist::download`). With `upper` set the FUSE mount goes on `UPPER/ro` and an overlay
//! (`upperdir=UPPER/rw`, `workdir=UPPER/wd`) on the target; `reset` empties `UPPER/rw`
//! first. A mount of an flist that a live daemon already serves (same md5, cache and
//! store overrides, per the registry in `sys::registry`) starts no second daemon: the
//! target becomes a read-only bind of the existing mount (or, when writable, an overlay
//! over it); `new_daemon` opts out. [`start`] then returns; [`mount`] stays as the
//! target's holder until signalled. A target that already holds a healthy zvfs mount is
//! refused; a stale one (daemon gone) is detached first.
//!
//! A mount's daemon is two processes: the supervisor (the mount's source pid, the
//! registry entry) keeps the FUSE connection and starts a worker (this binary
//! re-executed) that serves it; a worker that dies is replaced on the same connection,
//! and SIGHUP makes the supervisor execute the binary now on disk (upgrade in place).
//! SIGTERM or SIGINT to the supervisor takes the mount down. See docs/supervisor.md.
//!
//! Files: `supervisor` (the connection, workers and their restarts, upgrade, overlay,
//! registry entry and readiness), `serve` (the worker: the filesystem and its FUSE
//! session), `control` (the supervisor-worker channel and the upgrade handoff), `spawn`
//! (the background daemon: re-exec, options and report pipes), `share` (preflight of the
//! target, a second target of a running daemon, the holder), `mounts` (what is mounted,
//! health probe), `umount` (unmount, release and stop of daemons, stale detach),
//! `upgrade` (asking a supervisor to upgrade), `stats` (the worker's stats socket and its
//! client).
//!
//! This module sits above `fs` (it drives a [`crate::fs::ZvfsFs`]) and below `node` and
//! `cmd`: it parses no command line and prints nothing to stdout; it logs.

mod control;
mod mounts;
mod serve;
mod share;
mod spawn;
pub mod stats;
mod supervisor;
mod umount;
mod upgrade;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::mounts::{check, list, zvfs_mounts, Health, Kind, Mounted};
pub use self::spawn::{child_main, Started};
pub use self::stats::{stats, MountStatsReport};
pub use self::umount::{detach_stale, release, umount};
pub use self::upgrade::{upgradable, upgrade, Upgraded, UPGRADE_WAIT};

use crate::error::{Context, Result};
use crate::fs::mount::MountOpts;
use crate::store::StoreConfig;
use crate::sys::mounts::Layer;
use crate::sys::{mountinfo, registry};

/// What to mount and how: everything `zvfs mount` takes, as a plain value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountOptions {
    /// The flist: a file, or an http(s) URL (downloaded into `CACHE/flist/<md5>`, checked
    /// against `<URL>.md5` when the server has one, reused while it is unchanged).
    pub flist: PathBuf,
    /// Mountpoint (a directory, created when missing).
    pub target: PathBuf,
    /// Chunk cache directory (rfs layout, shareable between mounts).
    pub cache: PathBuf,
    /// Bound of the cache directory in bytes, shared by every process using it.
    pub cache_size: u64,
    /// Store URLs overriding the flist's routes (`[xx-xx=]URL`).
    pub stores: Vec<String>,
    /// Store timeouts (also bounds the download of a URL flist: its I/O timeout, at
    /// least 1 s).
    #[serde(with = "spawn::store_config")]
    pub store_config: StoreConfig,
    /// Worker threads serving reads (clamped to 1..=64).
    pub threads: usize,
    /// Chunks fetched ahead of sequential readers.
    pub readahead: usize,
    /// Files of at most this many chunks are fetched whole at their first read (0: never).
    #[serde(default = "default_whole_file")]
    pub whole_file: usize,
    /// Chunks of the flist's prefetch list fetched at once (0: no prefetch).
    #[serde(default = "default_prefetch_parallel")]
    pub prefetch_parallel: usize,
    /// The most read-ahead and whole-file fetches in flight (sized from the measured link
    /// below that).
    #[serde(default = "default_max_inflight")]
    pub max_inflight: usize,
    /// Record the first read of each (file, chunk) into this file (`--record-trace`).
    #[serde(default)]
    pub record_trace: Option<PathBuf>,
    /// Writable: the backend directory of the overlay's upper layer (created).
    pub upper: Option<PathBuf>,
    /// Empty the writable layer (`UPPER/rw`) before mounting.
    pub reset: bool,
    /// Start a daemon of its own even when a live daemon already serves this flist.
    pub new_daemon: bool,
    /// Log file (appended); the daemon's log lines go there instead of stderr.
    pub log: Option<PathBuf>,
    /// Let device nodes of the flist open the host devices they name (no `nodev`).
    pub dev: bool,
    /// Ignore setuid and setgid bits (a `nosuid` mount).
    pub nosuid: bool,
}

fn default_whole_file() -> usize {
    crate::fs::DEFAULT_WHOLE_FILE_CHUNKS
}

fn default_max_inflight() -> usize {
    crate::fs::DEFAULT_MAX_INFLIGHT
}

fn default_prefetch_parallel() -> usize {
    crate::fs::prefetch::DEFAULT_PARALLEL
}

impl MountOptions {
    /// Options with the defaults of `zvfs mount` (4 GiB cache, 8 threads, readahead 2,
    /// read-only, `nodev`) for `flist` on `target` with the cache in `cache`.
    pub fn new(flist: &Path, target: &Path, cache: &Path) -> MountOptions {
        MountOptions {
            flist: flist.to_path_buf(),
            target: target.to_path_buf(),
            cache: cache.to_path_buf(),
            cache_size: 4 << 30,
            stores: Vec::new(),
            store_config: StoreConfig::default(),
            threads: 8,
            readahead: 2,
            whole_file: crate::fs::DEFAULT_WHOLE_FILE_CHUNKS,
            prefetch_parallel: crate::fs::prefetch::DEFAULT_PARALLEL,
            max_inflight: crate::fs::DEFAULT_MAX_INFLIGHT,
            record_trace: None,
            upper: None,
            reset: false,
            new_daemon: false,
            log: None,
            dev: false,
            nosuid: false,
        }
    }

    /// The writable layer, when `upper` is set.
    fn layer(&self) -> Option<Layer> {
        self.upper
            .as_ref()
            .map(|u| Layer::new(&mountinfo::absolute(u)))
    }

    /// Where the FUSE filesystem goes: the target, or `UPPER/ro` when writable.
    fn fuse_target(&self) -> PathBuf {
        match self.layer() {
            Some(l) => l.ro,
            None => self.target.clone(),
        }
    }

    /// Mount options: the defaults plus `dev` / `nosuid`.
    fn mount_opts(&self) -> MountOpts {
        MountOpts {
            dev: self.dev,
            suid: !self.nosuid,
            ..MountOpts::default()
        }
    }

    fn redacted_stores(&self) -> Vec<String> {
        self.stores
            .iter()
            .map(|s| crate::store::redact(s))
            .collect()
    }
}

/// Where [`prepare`] got to: a mount to make (the flist now a local file, with the URL
/// it came from), or a running daemon that already serves the target.
enum Prepared {
    /// Mount `opts` (whose `flist` is local).
    Serve {
        opts: MountOptions,
        url: Option<String>,
    },
    /// The target is a bind (or overlay) of daemon `pid`'s mount.
    Shared { opts: MountOptions, pid: u32 },
}

/// What [`mount`] and [`start`] do first: download a URL flist, create a missing
/// mountpoint, check the target (refuse a healthy mount, detach a stale one) and share
/// a live daemon's mount unless `new_daemon`.
fn prepare(opts: &MountOptions) -> Result<Prepared> {
    let mut opts = opts.clone();
    let mut url = None;
    if let Some(u) = opts
        .flist
        .to_str()
        .filter(|m| crate::flist::download::is_url(m))
    {
        let u = u.to_string();
        let timeout = opts.store_config.io_timeout.max(Duration::from_secs(1));
        opts.flist = crate::flist::download::fetch(&u, &opts.cache.join("flist"), timeout)?;
        url = Some(u);
    }
    let missing = std::fs::symlink_metadata(&opts.target)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
    if missing {
        std::fs::create_dir_all(&opts.target)
            .with_ctx(|| format!("creating mountpoint {}", opts.target.display()))?;
    }
    // Without a writable run directory (not root) there is no registry to share by.
    let lock = registry::lock()
        .map_err(|e| log::debug!("{e}; mounting without the registry lock"))
        .ok();
    share::preflight(&opts.target)?;
    // A traced mount records its own reads: it never shares another daemon's mount.
    let shared = if opts.new_daemon || opts.record_trace.is_some() {
        None
    } else {
        share::share(&opts)?
    };
    drop(lock);
    Ok(match shared {
        Some(pid) => Prepared::Shared { opts, pid },
        None => Prepared::Serve { opts, url },
    })
}

/// Mount in the foreground: supervise the serving of the flist (this process is the
/// supervisor) until SIGTERM or SIGINT (or an external unmount), then take down what uses
/// the mount and return; SIGHUP upgrades in place (this process executes the binary now
/// on disk and carries on as the new version). When a live daemon
/// already serves the flist, hold the shared target instead (ready at once; on a signal
/// it unmounts the target and lets that daemon go when it was its last user).
pub fn mount(opts: &MountOptions) -> Result<()> {
    match prepare(opts)? {
        Prepared::Shared { opts, pid } => {
            if let Some(l) = &opts.log {
                crate::sys::logger::log_to_file(l)?;
            }
            share::hold(&opts.target, pid)
        }
        Prepared::Serve { opts, url } => {
            if let Some(l) = &opts.log {
                crate::sys::logger::log_to_file(l)?;
            }
            supervisor::run(&opts, url, None)
        }
    }
}

/// Mount in the background: start a daemon (or share a live one's mount) and return once
/// the target is ready, with the serving daemon's pid. When the daemon fails, exits or
/// is not ready within 60 s, no daemon is left behind and the error carries its reason
/// (and its kind) as the daemon reported it.
pub fn start(opts: &MountOptions) -> Result<Started> {
    match prepare(opts)? {
        Prepared::Shared { opts, pid } => Ok(Started {
            pid,
            target: mountinfo::absolute(&opts.target),
            shared: true,
        }),
        Prepared::Serve { opts, url } => spawn::spawn(&opts, url.as_deref()),
    }
}
