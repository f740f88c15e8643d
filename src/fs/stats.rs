//! Live statistics of a mount: what each store served (chunks, bytes, errors, latency),
//! the chunk cache's hits and misses, and the progress of the prefetcher, as one
//! serializable snapshot ([`MountStats`]). A [`StatsHandle`] takes snapshots from any
//! thread while the filesystem serves: it reads only atomic counters (and the store
//! names), so it never waits for, nor holds up, a read. This module only reports; it
//! counts nothing itself (the router, the cache and the prefetcher do).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Shared;

/// Progress of the prefetcher of a mount, filled in by the prefetcher as it goes.
#[derive(Debug, Default)]
pub struct PrefetchProgress {
    /// Chunks it plans to fetch.
    pub planned: AtomicU64,
    /// Of those, the ones fetched from the stores.
    pub fetched: AtomicU64,
    /// The ones already in the cache.
    pub cached: AtomicU64,
    /// The ones left out (the cache bound, a reader got there first...).
    pub skipped: AtomicU64,
    /// The ones that could not be fetched.
    pub failed: AtomicU64,
    /// Whether it is done.
    pub finished: AtomicBool,
}

/// One store's counters in a [`MountStats`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreCounters {
    /// The store's URL, passwords redacted.
    pub name: String,
    /// Chunks it served (objects received that verified).
    pub chunks: u64,
    /// Bytes of the objects received, as stored.
    pub bytes: u64,
    /// Reads sent to it.
    pub attempts: u64,
    /// Reads that failed (unreachable, error, timeout).
    pub failures: u64,
    /// Failures plus objects that failed verification.
    pub errors: u64,
    /// Median time of an answered read, ms; `None` before the first.
    pub latency_ms_p50: Option<f64>,
    /// 99th percentile of the same, ms.
    pub latency_ms_p99: Option<f64>,
}

/// The chunk cache's counters in a [`MountStats`] (see [`crate::cache::CacheStats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheCounters {
    /// Reads served from a verified cache file.
    pub hits: u64,
    /// Reads that found no good cache file.
    pub misses: u64,
    /// Chunks fetched from the stores.
    pub fetches: u64,
    /// Misses that waited for a fetch already under way.
    pub merged: u64,
    /// Cache files found truncated or corrupt.
    pub bad_files: u64,
    /// Chunks that could not be written to the cache.
    pub write_errors: u64,
}

/// The prefetcher's progress in a [`MountStats`] (see [`PrefetchProgress`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefetchCounters {
    /// Chunks planned.
    pub planned: u64,
    /// Fetched from the stores.
    pub fetched: u64,
    /// Already cached.
    pub cached: u64,
    /// Left out.
    pub skipped: u64,
    /// Could not be fetched.
    pub failed: u64,
    /// Whether the prefetcher is done.
    pub finished: bool,
}

/// The link to the stores as the mount's reads measured it, in a [`MountStats`] (see
/// [`crate::store::link`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkCounters {
    /// The round trip (the shortest recent read), ms; `None` before the first read.
    pub rtt_ms: Option<f64>,
    /// The bandwidth (the highest recent delivery rate), Mbit/s.
    pub mbit: f64,
    /// Reads in flight now.
    pub inflight: u64,
    /// The most reads in flight at once so far.
    pub peak: u64,
    /// Read-ahead and whole-file fetches the mount keeps in flight now.
    pub target: u64,
}

/// A snapshot of a mount's statistics (what `zvfs mounts --stats` shows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MountStats {
    /// Seconds since the filesystem was created.
    pub uptime_secs: u64,
    /// Per store, in route order.
    pub stores: Vec<StoreCounters>,
    /// The chunk cache.
    pub cache: CacheCounters,
    /// The prefetcher.
    pub prefetch: PrefetchCounters,
    /// The link to the stores (absent from daemons older than it).
    #[serde(default)]
    pub link: LinkCounters,
}

/// Takes [`MountStats`] snapshots of one mounted filesystem, from any thread.
#[derive(Clone)]
pub struct StatsHandle {
    pub(super) shared: Arc<Shared>,
    pub(super) max_inflight: usize,
}

impl StatsHandle {
    /// The counters now (atomics only: never blocks on reads in flight).
    pub fn snapshot(&self) -> MountStats {
        let sh = &self.shared;
        let stores = sh
            .router
            .store_stats()
            .into_iter()
            .map(|s| StoreCounters {
                errors: s.errors(),
                name: s.name,
                chunks: s.chunks,
                bytes: s.bytes,
                attempts: s.attempts,
                failures: s.failures,
                latency_ms_p50: s.latency_ms_p50,
                latency_ms_p99: s.latency_ms_p99,
            })
            .collect();
        let c = &sh.cache.stats;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let cache = CacheCounters {
            hits: ld(&c.hits),
            misses: ld(&c.misses),
            fetches: ld(&c.fetches),
            merged: ld(&c.merged),
            bad_files: ld(&c.bad_files),
            write_errors: ld(&c.write_errors),
        };
        let p = &sh.prefetch;
        let prefetch = PrefetchCounters {
            planned: ld(&p.planned),
            fetched: ld(&p.fetched),
            cached: ld(&p.cached),
            skipped: ld(&p.skipped),
            failed: ld(&p.failed),
            finished: p.finished.load(Ordering::Relaxed),
        };
        let l = sh.router.link();
        let link = LinkCounters {
            rtt_ms: l.rtt.map(|d| d.as_secs_f64() * 1e3),
            mbit: l.bandwidth as f64 * 8.0 / 1e6,
            inflight: l.inflight,
            peak: l.peak,
            target: l.target(super::MIN_INFLIGHT, self.max_inflight) as u64,
        };
        MountStats {
            uptime_secs: sh.started.elapsed().as_secs(),
            stores,
            cache,
            prefetch,
            link,
        }
    }
}
