//! `zvfs warm`: fill a chunk cache with the chunks of whole files (or of the whole flist)
//! before they are needed, so a container starts hot: the arguments, a call to
//! [`crate::content::warm`] with `-j` workers, progress on stderr when it is a terminal,
//! and the summary.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::codec::{ChunkRef, CHUNK_SIZE};
use crate::content::warm::{collect, warm};
use crate::content::Chunks;
use crate::error::{Error, ExitCode, Result};

/// Arguments of `zvfs warm`.
#[derive(clap::Args, Debug)]
#[command(mut_arg("cache", |a| a.required(true)))]
pub struct Args {
    /// The flist.
    #[command(flatten)]
    pub flist: super::FlistArg,
    /// The cache to fill (required).
    #[command(flatten)]
    pub cache: super::CacheFlags,
    /// Stores overriding the flist's routes.
    #[command(flatten)]
    pub stores: super::RouteOverrides,
    /// Parallelism.
    #[command(flatten)]
    pub jobs: super::Jobs,
    /// Store timeouts.
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    /// Files or directories of the flist to warm (default: everything).
    pub paths: Vec<String>,
}

/// Fetch the chunks of the chosen files into the cache and print on stderr how many were
/// fetched or already cached; a chunk that cannot be fetched is an error.
pub fn run(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let cache = args
        .cache
        .spec()?
        .ok_or_else(|| Error::invalid("warm needs a cache directory (-c)"))?;
    let fl = args.flist.open(Some(&cache.dir))?;
    let jobs = args.jobs.io();
    let chunks = Chunks::open(
        &*fl,
        &args.stores.stores,
        Some(&cache),
        jobs,
        &args.store_flags.config(),
    )?;
    let (files, list) = collect(&*fl, &args.paths)?;
    let bytes: u64 = list.len() as u64 * CHUNK_SIZE as u64;
    let max = cache.size;
    if bytes > max {
        log::warn!(
            "warm: {} chunks (up to {bytes} bytes) do not fit in a cache bounded to {max} bytes; the first ones will be evicted",
            list.len()
        );
    }
    let fetched = warm_with_progress(&chunks, &list, jobs)?;
    let (gets, got_bytes) = chunks.fetched();
    eprintln!(
        "warmed {files} files: {} unique chunks, {fetched} fetched ({gets} store reads, {got_bytes} bytes), {} already cached, in {:.2} s",
        list.len(),
        list.len() as u64 - fetched,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::Ok)
}

/// [`warm`], with a progress line on stderr when it is a terminal (at most 4 a second).
fn warm_with_progress(chunks: &Chunks, list: &[ChunkRef], jobs: usize) -> Result<u64> {
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last = started;
    let mut shown = false;
    let r = warm(chunks, list, jobs, |done, _| {
        if !tty || last.elapsed() < Duration::from_millis(250) {
            return;
        }
        last = Instant::now();
        let (_, bytes) = chunks.fetched();
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let _ = write!(
            std::io::stderr(),
            "\r{done}/{} chunks, {:.1} MB fetched, {:.1} MB/s   ",
            list.len(),
            bytes as f64 / 1e6,
            bytes as f64 / 1e6 / secs
        );
        shown = true;
    });
    if shown {
        let _ = write!(std::io::stderr(), "\r{:60}\r", "");
    }
    r
}
