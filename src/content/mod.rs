//! File content read from flists: where chunk plaintext comes from ([`Chunks`]: the
//! shared chunk cache or straight from the stores, always verified), the reader of one
//! file's content with its size checks, the set of chunks an flist uses, and warming a
//! cache. It reads flists and stores; it never writes an flist nor anything outside a
//! cache directory.

pub mod chunkset;
pub mod file;
pub mod local;
pub mod verify;
pub mod warm;

pub use file::{FileContent, Layout, Source};

use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::ChunkCache;
use crate::codec::ChunkRef;
use crate::error::{Error, Result};
use crate::flist::Flist;
use crate::store::router::{Router, RouterStats};
use crate::store::StoreConfig;

/// A chunk cache directory and its bound (shared by every process using it).
#[derive(Clone, Debug)]
pub struct CacheSpec {
    /// The directory (rfs layout, shared with mounts).
    pub dir: PathBuf,
    /// Its bound in bytes.
    pub size: u64,
}

/// Where commands get chunk plaintext: the single door every content read goes through.
/// With a cache directory chunks come from the shared, bounded chunk cache (the
/// one mounts use), which fetches and keeps what it misses; without one, straight from
/// the router. Either way what is served was verified. Built from the flist's routes
/// unless overriding routes are given; a missing route is reported only when a chunk is actually
/// needed.
pub struct Chunks {
    router: std::result::Result<Router, String>,
    cache: Option<ChunkCache>,
}

impl Chunks {
    /// `parallel` is how many chunks the caller fetches at once (the cache's fetch bound).
    pub fn open(
        fl: &dyn Flist,
        overrides: &[String],
        cache: Option<&CacheSpec>,
        parallel: usize,
        cfg: &StoreConfig,
    ) -> Result<Chunks> {
        let cache = match cache {
            Some(c) => Some(ChunkCache::open(&c.dir, c.size, parallel.max(1))?),
            None => None,
        };
        let routes = fl.routes()?;
        let router = match Router::for_flist(&routes, overrides, cfg) {
            Ok(r) => Ok(r),
            // No routes at all is fine for an flist without content.
            Err(e) if routes.is_empty() && overrides.is_empty() => Err(e.msg),
            Err(e) => return Err(e),
        };
        Ok(Chunks { router, cache })
    }

    /// The verified plaintext of a chunk.
    pub fn fetch(&self, chunk: &ChunkRef) -> Result<Arc<Vec<u8>>> {
        match (&self.router, &self.cache) {
            (Ok(r), Some(c)) => c.get(chunk, r),
            (Ok(r), None) => r.fetch(chunk).map(Arc::new),
            (Err(why), _) => Err(Error::invalid(format!("chunk {chunk}: {why}"))),
        }
    }

    /// Make sure a chunk is in the cache without keeping it in memory; true when it had
    /// to be fetched. Without a cache this is an error.
    pub fn warm(&self, chunk: &ChunkRef) -> Result<bool> {
        match (&self.router, &self.cache) {
            (Ok(r), Some(c)) => c.warm(chunk, r),
            (_, None) => Err(Error::invalid("no cache directory given")),
            (Err(why), _) => Err(Error::invalid(format!("chunk {chunk}: {why}"))),
        }
    }

    /// The chunk cache, when a cache directory was given.
    pub fn cache(&self) -> Option<&ChunkCache> {
        self.cache.as_ref()
    }

    /// What was fetched from stores so far (objects, bytes).
    pub fn fetched(&self) -> (u64, u64) {
        match &self.router {
            Ok(r) => stats_pair(&r.stats),
            Err(_) => (0, 0),
        }
    }
}

fn stats_pair(s: &RouterStats) -> (u64, u64) {
    use std::sync::atomic::Ordering;
    (
        s.gets.load(Ordering::Relaxed),
        s.bytes_fetched.load(Ordering::Relaxed),
    )
}
