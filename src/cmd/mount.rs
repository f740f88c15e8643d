//! `zvfs mount`: the command line of the mount daemon ([`crate::daemon`], which owns
//! what a mount does: download, sharing, overlay, daemon, readiness). `-d` returns once
//! the mount is ready ([`crate::daemon::start`]); without it the command serves (or
//! holds a shared target) in the foreground until signalled ([`crate::daemon::mount`]).

use std::path::PathBuf;

use crate::daemon::MountOptions;
use crate::error::{Error, ExitCode, Result};

/// Arguments of `zvfs mount`.
#[derive(clap::Args, Debug)]
#[command(mut_arg("cache", |a| a.required(true)))]
pub struct Args {
    /// The flist to mount.
    #[command(flatten)]
    pub flist: super::FlistArg,
    /// The chunk cache (required; shareable between mounts).
    #[command(flatten)]
    pub cache: super::CacheFlags,
    /// Stores overriding the flist's routes.
    #[command(flatten)]
    pub stores: super::RouteOverrides,
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
    /// A file of at most N chunks (512 KiB each) has all of them fetched at its first
    /// read, in parallel (programs and libraries are paged in out of order); 0: never.
    #[arg(long = "whole-file", value_name = "N", default_value_t = crate::fs::DEFAULT_WHOLE_FILE_CHUNKS)]
    pub whole_file: usize,
    /// Chunks of the flist's prefetch list (a trace added with `zvfs prefetch add`)
    /// fetched at once from mount time on; 0 turns the prefetch off.
    #[arg(long = "prefetch-parallel", value_name = "N", default_value_t = crate::fs::prefetch::DEFAULT_PARALLEL)]
    pub prefetch_parallel: usize,
    /// The most chunk fetches read-ahead and whole-file fetches keep in flight. Below it
    /// the number is sized from the link as measured (twice its bandwidth x round trip,
    /// at least 4), and a sequential reader's read-ahead deepens to match.
    #[arg(long = "max-inflight", value_name = "N", default_value_t = crate::fs::DEFAULT_MAX_INFLIGHT)]
    pub max_inflight: usize,
    /// Record the first read of each (file, chunk) into FILE (`# zvfs trace v1`, lines
    /// `MS CHUNK PATH`), for `zvfs prefetch add`.
    #[arg(long = "record-trace", value_name = "FILE")]
    pub record_trace: Option<PathBuf>,
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
        let cache = self
            .cache
            .spec()?
            .ok_or_else(|| Error::invalid("mount needs a cache directory (-c)"))?;
        Ok(MountOptions {
            flist: self.flist.meta.clone(),
            target: self.target.clone(),
            cache: cache.dir,
            cache_size: cache.size,
            stores: self.stores.stores.clone(),
            store_config: self.store_flags.config(),
            threads: self.threads,
            readahead: self.readahead,
            whole_file: self.whole_file,
            prefetch_parallel: self.prefetch_parallel,
            max_inflight: self.max_inflight,
            record_trace: self.record_trace.clone(),
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
