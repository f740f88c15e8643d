//! `zvfs unpack`: the command line of the unpack engine ([`crate::unpack`]): its
//! arguments, the two passes called in order, and the summary line on stderr.

use std::path::PathBuf;
use std::time::Instant;

use crate::content::Chunks;
use crate::error::{Context, ExitCode, Result};
use crate::unpack::{self, Selection};

/// Arguments of `zvfs unpack`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The flist.
    #[command(flatten)]
    pub flist: super::FlistArg,
    /// Chunk cache to read through.
    #[command(flatten)]
    pub cache: super::CacheFlags,
    /// Stores overriding the flist's routes.
    #[command(flatten)]
    pub stores: super::RouteOverrides,
    /// Restore owners (uid/gid).
    #[arg(short = 'p', long = "preserve-ownership")]
    pub preserve: bool,
    /// Parallelism.
    #[command(flatten)]
    pub jobs: super::Jobs,
    /// Store timeouts.
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    /// Target directory (created if missing).
    pub target: PathBuf,
    /// Only these paths of the flist (and the directories leading to them).
    pub paths: Vec<String>,
}

/// Check the whole selection, then restore it and print the summary line on stderr (also
/// on failure: what was fetched before it).
pub fn run(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let fl = args.flist.open(args.cache.cache.as_deref())?;
    let sel = Selection::new(&*fl, &args.paths)?;
    // Pass 1: the whole tree to restore is checked before anything is fetched or written.
    let checked = unpack::check(&*fl, &sel).with_ctx(|| {
        format!(
            "{}: refused, nothing was unpacked into {}",
            args.flist.meta.display(),
            args.target.display()
        )
    })?;
    let chunks = Chunks::open(
        &*fl,
        &args.stores.stores,
        args.cache.spec()?.as_ref(),
        args.jobs.io(),
        &args.store_flags.config(),
    )?;
    let opts = unpack::Options {
        target: args.target.clone(),
        preserve: args.preserve,
        jobs: args.jobs.io(),
    };
    let result = unpack::unpack(&checked, &chunks, &opts);
    let (gets, fetched) = chunks.fetched();
    match &result {
        Ok(r) => eprintln!(
            "unpacked {} entries ({} files, {} bytes; {} files already in place, {} leftovers removed) into {} in {:.2} s; fetched {gets} chunks ({fetched} bytes) from stores",
            r.entries,
            r.files,
            r.bytes,
            r.kept,
            r.leftovers,
            args.target.display(),
            started.elapsed().as_secs_f64()
        ),
        Err(_) => eprintln!(
            "fetched {gets} chunks ({fetched} bytes) from stores before failing; files not complete were not left under their names"
        ),
    }
    result.map(|_| ExitCode::Ok)
}
