//! `zvfs mount`: the command line of the mount daemon ([`crate::daemon`], which owns
//! what a mount does: download, sharing, overlay, daemon, readiness). `-d` returns once
//! the mount is ready ([`crate::daemon::start`]); without it the command serves (or
//! holds a shared target) in the foreground until signalled ([`crate::daemon::mount`]).

use std::path::PathBuf;

use crate::cache::parse_size;
use crate::daemon::MountOptions;
use crate::error::{ExitCode, Result};

/// Arguments of `zvfs mount`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Flist to mount: a file, or an http(s) URL (downloaded into CACHE/flist/<md5>,
    /// checked against <URL>.md5 when the server has one, reused while it is unchanged).
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// Chunk cache directory (rfs layout, shareable between mounts).
    #[arg(short = 'c', long = "cache")]
    pub cache: PathBuf,
    /// Bound of the cache directory (K, M, G suffixes), shared by every process using it.
    #[arg(long = "cache-size", default_value = "4G")]
    pub cache_size: String,
    /// Store URL overriding the flist's routes (`[xx-xx=]URL`, repeatable).
    #[arg(short = 's', long = "store", value_parser = super::StoreSpec)]
    pub stores: Vec<String>,
    /// Run as a daemon: return once the mount is ready.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Log file (appended).
    #[arg(short = 'l', long = "log")]
    pub log: Option<PathBuf>,
    /// Worker threads serving reads.
    #[arg(short = 't', long = "threads", default_value_t = 8)]
    pub threads: usize,
    /// Chunks fetched ahead of sequential readers (cached ones are paged in ahead).
    #[arg(long = "readahead", default_value_t = 2)]
    pub readahead: usize,
    /// Writable: the flist is mounted on UPPER/ro and an overlay with upperdir UPPER/rw
    /// and workdir UPPER/wd on the target; writes land in UPPER/rw.
    #[arg(long, requires = "upper")]
    pub rw: bool,
    /// Backend directory of the writable layer (created).
    #[arg(long, value_name = "DIR", requires = "rw")]
    pub upper: Option<PathBuf>,
    /// Empty the writable layer (UPPER/rw) before mounting.
    #[arg(long, requires = "rw")]
    pub reset: bool,
    /// Start a daemon of its own even when a live daemon already serves this flist.
    #[arg(long)]
    pub new_daemon: bool,
    /// Let device nodes of the flist open the host devices they name. By default the
    /// mount is `nodev`: they keep their type and numbers in `stat` but cannot be opened.
    #[arg(long)]
    pub dev: bool,
    /// Ignore setuid and setgid bits (a `nosuid` mount). By default they take effect, as
    /// container root filesystems need (`su`, `ping`, `sudo`).
    #[arg(long)]
    pub nosuid: bool,
    /// Store timeouts.
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    /// Mountpoint (a directory, created when missing).
    pub target: PathBuf,
}

impl Args {
    /// The library's options for these arguments.
    pub fn options(&self) -> Result<MountOptions> {
        Ok(MountOptions {
            flist: self.meta.clone(),
            target: self.target.clone(),
            cache: self.cache.clone(),
            cache_size: parse_size(&self.cache_size)?,
            stores: self.stores.clone(),
            store_config: self.store_flags.config(),
            threads: self.threads,
            readahead: self.readahead,
            upper: self.upper.clone().filter(|_| self.rw),
            reset: self.reset,
            new_daemon: self.new_daemon,
            log: self.log.clone(),
            dev: self.dev,
            nosuid: self.nosuid,
        })
    }
}

/// Run `zvfs mount`.
pub fn run(args: Args) -> Result<ExitCode> {
    let opts = args.options()?;
    if args.daemon {
        crate::daemon::start(&opts)?;
    } else {
        crate::daemon::mount(&opts)?;
    }
    Ok(ExitCode::Ok)
}
