//! `zvfs warm`: fill a chunk cache with the chunks of whole files (or of the whole flist)
//! before they are needed, so a container starts hot. Chunks are collected from the flist
//! (each unique chunk once), then `-j` workers fetch the missing ones into the cache
//! through [`super::Chunks`]; nothing is held in memory beyond the chunks being fetched.
//! Progress goes to stderr when it is a terminal. It never writes outside the cache.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Chunks;
use crate::cache::parse_size;
use crate::codec::{ChunkRef, CHUNK_SIZE};
use crate::error::{Context, Error, ExitCode, Result};
use crate::flist::{self, Flist, Kind};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Flist whose chunks to cache (a path, or an http(s) URL downloaded into the cache).
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// Chunk cache directory to fill (rfs layout, shared with mounts).
    #[arg(short = 'c', long = "cache", required = true)]
    pub cache: PathBuf,
    /// Bound of the cache directory (K, M, G suffixes), shared by every process using it.
    #[arg(long = "cache-size", default_value = "4G")]
    pub cache_size: String,
    /// Store URL overriding the flist's routes (repeatable, `[xx-xx=]URL`).
    #[arg(short = 's', long = "store", value_parser = super::StoreSpec)]
    pub stores: Vec<String>,
    /// Chunks fetched in parallel.
    #[arg(short = 'j', long = "jobs", default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    /// Files or directories of the flist to warm (default: everything).
    pub paths: Vec<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let fl = super::open_flist(&args.meta, Some(&args.cache))?;
    let jobs = args.jobs.clamp(1, 64);
    let flags = super::CacheFlags {
        cache: Some(args.cache.clone()),
        cache_size: args.cache_size.clone(),
    };
    let chunks = Chunks::open(&*fl, &args.stores, &flags, jobs, &args.store_flags)?;
    let (files, list) = collect(&*fl, &args.paths)?;
    let bytes: u64 = list.len() as u64 * CHUNK_SIZE as u64;
    let max = parse_size(&args.cache_size)?;
    if bytes > max {
        log::warn!(
            "warm: {} chunks (up to {bytes} bytes) do not fit in a cache bounded to {max} bytes; the first ones will be evicted",
            list.len()
        );
    }
    let fetched = warm_all(&chunks, &list, jobs)?;
    let (gets, got_bytes) = chunks.fetched();
    eprintln!(
        "warmed {files} files: {} unique chunks, {fetched} fetched ({gets} store reads, {got_bytes} bytes), {} already cached, in {:.2} s",
        list.len(),
        list.len() as u64 - fetched,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::Ok)
}

/// The unique chunks of the regular files at or under `paths` (everything when empty),
/// in tree order, and how many files they belong to.
fn collect(fl: &dyn Flist, paths: &[String]) -> Result<(u64, Vec<ChunkRef>)> {
    let roots = if paths.is_empty() {
        vec![fl.get(flist::ROOT_INO)?]
    } else {
        paths
            .iter()
            .map(|p| flist::resolve(fl, p.as_bytes()))
            .collect::<Result<Vec<_>>>()?
    };
    let mut seen_content = HashSet::new();
    let mut seen_chunks = HashSet::new();
    let mut list = Vec::new();
    let mut files = 0u64;
    for root in roots {
        flist::walk(fl, &root, Vec::new(), &mut |e, path| {
            if e.kind() != Kind::File || !seen_content.insert(e.content_ino()) {
                return Ok(());
            }
            files += 1;
            let blocks = fl
                .blocks(e.content_ino())
                .with_ctx(|| format!("chunk list of {}", String::from_utf8_lossy(path)))?;
            for b in blocks {
                if seen_chunks.insert(b) {
                    list.push(b);
                }
            }
            Ok(())
        })?;
    }
    Ok((files, list))
}

/// Fetch every chunk of `list` missing from the cache with `jobs` workers; returns how
/// many were fetched. The first error stops the work and is returned.
fn warm_all(chunks: &Chunks, list: &[ChunkRef], jobs: usize) -> Result<u64> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let fetched = AtomicU64::new(0);
    let abort = AtomicBool::new(false);
    let error: Mutex<Option<Error>> = Mutex::new(None);
    let progress = std::io::stderr().is_terminal();
    std::thread::scope(|s| {
        for _ in 0..jobs.min(list.len().max(1)) {
            s.spawn(|| {
                while !abort.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chunk) = list.get(i) else { break };
                    match chunks.warm(chunk) {
                        Ok(true) => {
                            fetched.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            abort.store(true, Ordering::SeqCst);
                            if let Ok(mut g) = error.lock() {
                                g.get_or_insert(e);
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        if progress {
            let started = Instant::now();
            let mut shown = false;
            while done.load(Ordering::Relaxed) < list.len() && !abort.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let (_, bytes) = chunks.fetched();
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let _ = write!(
                    std::io::stderr(),
                    "\r{}/{} chunks, {:.1} MB fetched, {:.1} MB/s   ",
                    done.load(Ordering::Relaxed),
                    list.len(),
                    bytes as f64 / 1e6,
                    bytes as f64 / 1e6 / secs
                );
                shown = true;
            }
            if shown {
                let _ = write!(std::io::stderr(), "\r{:60}\r", "");
            }
        }
    });
    if let Ok(mut g) = error.lock() {
        if let Some(e) = g.take() {
            return Err(e.context("warming the cache"));
        }
    }
    Ok(fetched.load(Ordering::Relaxed))
}
