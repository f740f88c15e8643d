//! `zvfs unpack`: the command line of the unpack engine ([`crate::unpack`]): its
//! arguments, the two passes called in order, and the summary line on stderr.

use std::path::PathBuf;
use std::time::Instant;

use crate::content::Chunks;
use crate::error::{Context, Result};
use crate::unpack::{self, Selection};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Flist to read.
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    #[command(flatten)]
    pub cache: super::CacheFlags,
    /// Store URL overriding the flist's routes (repeatable, `[xx-xx=]URL`).
    #[arg(short = 's', long = "store", value_parser = super::StoreSpec)]
    pub stores: Vec<String>,
    /// Restore owners (uid/gid).
    #[arg(short = 'p', long = "preserve-ownership")]
    pub preserve: bool,
    /// Parallel chunk fetches.
    #[arg(short = 'j', long = "jobs", default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    /// Target directory (created if missing).
    pub target: PathBuf,
    /// Only these paths of the flist (and the directories leading to them).
    pub paths: Vec<String>,
}

pub fn run(args: Args) -> Result<i32> {
    let started = Instant::now();
    let fl = crate::flist::download::open_flist(&args.meta, args.cache.cache.as_deref())?;
    let sel = Selection::new(&*fl, &args.paths)?;
    // Pass 1: the whole tree to restore is checked before anything is fetched or written.
    let checked = unpack::check(&*fl, &sel).with_ctx(|| {
        format!(
            "{}: refused, nothing was unpacked into {}",
            args.meta.display(),
            args.target.display()
        )
    })?;
    let chunks = Chunks::open(
        &*fl,
        &args.stores,
        args.cache.spec()?.as_ref(),
        args.jobs,
        &args.store_flags.config(),
    )?;
    let opts = unpack::Options {
        target: args.target.clone(),
        preserve: args.preserve,
        jobs: args.jobs.max(1),
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
    result.map(|_| 0)
}
