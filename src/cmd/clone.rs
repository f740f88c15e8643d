//! `zvfs clone`: copy every chunk of an flist from its routed stores to other stores,
//! byte for byte as stored, each object verified (both hashes) before it is written.
//! Optionally points the flist's routes at the new stores (atomic edit). A chunk already
//! present in every destination store is skipped. A local rfs-layout cache of plaintext
//! chunks (`-c`) is used as a source first: a cached chunk is re-encoded (the encoding is
//! deterministic) and used only if it gives back exactly the chunk's id.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::chunkset::{self, DEFAULT_JOBS};
use crate::codec::{self, ChunkRef, Codec};
use crate::error::{Error, ExitCode, Result};
use crate::flist;
use crate::store::router::Router;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The flist whose chunks to copy.
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// Destination store, `[xx-xx=]URL` (repeatable).
    #[arg(short = 's', long = "store", required = true, value_parser = super::StoreSpec)]
    pub stores: Vec<String>,
    /// Cache of plaintext chunks (`<cache>/<hh>/<hh>/<hex id>`) to read before the stores.
    #[arg(short = 'c', long = "cache")]
    pub cache: Option<PathBuf>,
    /// Rewrite the flist's routes to the destination stores once every chunk is copied.
    #[arg(long)]
    pub update_routes: bool,
    /// Keep passwords in the routes written by `--update-routes`.
    #[arg(long)]
    pub no_strip_password: bool,
    /// Chunks copied in parallel.
    #[arg(short = 'j', long = "jobs", default_value_t = DEFAULT_JOBS)]
    pub jobs: usize,
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
}

/// The stored object for `chunk` rebuilt from a cached plaintext, if the cache has a
/// plaintext that encodes to exactly this chunk.
fn from_cache(cache: &Path, chunk: &ChunkRef) -> Option<Vec<u8>> {
    let hex = chunk.hex_id();
    let path = cache.join(&hex[..2]).join(&hex[2..4]).join(hex.as_str());
    let plain = std::fs::read(path).ok()?;
    if !chunk.plaintext_matches(&plain) {
        return None;
    }
    let (again, stored) = match chunk.codec {
        Codec::V2 => codec::v2::encode(&plain).ok()?,
        Codec::Legacy => codec::legacy::encode(&plain).ok()?,
    };
    (again.id() == chunk.id() && again.key() == chunk.key()).then_some(stored)
}

pub fn run(args: Args) -> Result<ExitCode> {
    let fl = flist::open(&args.meta)?;
    let cfg = args.store_flags.config();
    let source = Router::for_flist(&fl.routes()?, &[], &cfg)?;
    let dest = Router::for_flist(&[], &args.stores, &cfg)?;
    // fail early, before copying anything, if routes cannot be written
    let new_routes = if args.update_routes {
        Some(super::config::routes_to_write(
            &args.stores,
            args.no_strip_password,
        )?)
    } else {
        None
    };
    let chunks = chunkset::unique_chunks(fl.as_ref())?;
    let (copied, skipped, from_cache_n) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let results = chunkset::parallel_map(&chunks, args.jobs, |chunk| -> Result<()> {
        let present = dest.presence(chunk.id());
        if !present.is_empty() && present.iter().all(|(_, p)| matches!(p, Ok(true))) {
            skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let stored = match args.cache.as_deref().and_then(|c| from_cache(c, chunk)) {
            Some(s) => {
                from_cache_n.fetch_add(1, Ordering::Relaxed);
                s
            }
            None => source.fetch_stored(chunk)?,
        };
        dest.put(chunk.id(), &stored)?;
        copied.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    let mut failed = 0;
    for (chunk, r) in chunks.iter().zip(&results) {
        if let Err(e) = r {
            failed += 1;
            eprintln!("zvfs: clone: chunk {chunk}: {e}");
        }
    }
    eprintln!(
        "clone: {} chunks: {} copied ({} from the cache), {} already present, {failed} failed",
        chunks.len(),
        copied.load(Ordering::Relaxed),
        from_cache_n.load(Ordering::Relaxed),
        skipped.load(Ordering::Relaxed)
    );
    if failed > 0 {
        return Err(Error::store(format!(
            "clone: {failed} chunks could not be copied{}",
            if new_routes.is_some() {
                "; routes left unchanged"
            } else {
                ""
            }
        )));
    }
    dest.flush()?;
    if let Some(routes) = new_routes {
        drop(fl);
        super::config::edit_flist(&args.meta, |ed| {
            ed.delete_all_routes()?;
            routes.iter().try_for_each(|r| ed.add_route(r))
        })?;
        eprintln!(
            "clone: routes of {} now point to the new stores",
            args.meta.display()
        );
    }
    Ok(ExitCode::Ok)
}
