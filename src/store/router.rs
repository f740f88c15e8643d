//! Routing of chunks to stores by the first byte of their id. Writes go to every store
//! whose range holds that byte (replicas); reads try the matching stores in a stable
//! order, skip stores that failed recently, move on when an object is missing or fails
//! verification, and give up past a per-chunk deadline with an error naming the chunk and
//! the stores tried. The router decodes (through the codec) only to verify what it serves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::latency::Histogram;
use super::link::{Link, LinkFigures};
use super::{Store, StoreConfig};
use crate::codec::ChunkRef;
use crate::error::{Error, ErrorKind, Result};
use crate::flist::Route;

struct Routed {
    start: u8,
    end: u8,
    store: Arc<dyn Store>,
    failed_at: Mutex<Option<Instant>>,
    attempts: AtomicU64,
    failures: AtomicU64,
    /// Objects received that decoded and verified (chunks served).
    served: AtomicU64,
    /// Bytes of objects received, as stored.
    bytes: AtomicU64,
    /// Objects received that failed decoding or verification.
    corrupt: AtomicU64,
    /// Time of each answered read (an object or "missing").
    latency: Histogram,
}

/// Counters of what crossed the wire, for reports and tests.
#[derive(Default, Debug)]
pub struct RouterStats {
    /// Reads sent to a store (each attempt on each replica).
    pub gets: AtomicU64,
    /// Bytes of stored objects received, as stored (compressed and encrypted).
    pub bytes_fetched: AtomicU64,
    /// Objects written (once per replica).
    pub puts: AtomicU64,
    /// Bytes of objects written, as stored, summed over replicas.
    pub bytes_stored: AtomicU64,
    /// Reads that gave up because the per-chunk deadline passed.
    pub deadlines: AtomicU64,
}

/// Per-store counters: reads attempted and reads that failed (unreachable, error or
/// timeout; a missing or corrupt object is not a store failure), what it served and how
/// fast it answered.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreStat {
    /// The store's URL, passwords redacted.
    pub name: String,
    /// Reads sent to it.
    pub attempts: u64,
    /// Of those, the ones that failed.
    pub failures: u64,
    /// Objects it served that verified (chunks served).
    pub chunks: u64,
    /// Bytes of the objects it sent, as stored (corrupt ones included).
    pub bytes: u64,
    /// Objects it sent that failed verification.
    pub corrupt: u64,
    /// Median time of an answered read, in milliseconds (bucket resolution, ~19%);
    /// `None` before the first answer.
    pub latency_ms_p50: Option<f64>,
    /// 99th percentile of the same.
    pub latency_ms_p99: Option<f64>,
}

impl StoreStat {
    /// Failed reads plus corrupt objects.
    pub fn errors(&self) -> u64 {
        self.failures + self.corrupt
    }
}

/// The stores of an flist, each with its range of first id bytes: what reads and writes
/// of chunks go through.
pub struct Router {
    routes: Vec<Routed>,
    cfg: StoreConfig,
    /// What crossed the wire so far.
    pub stats: RouterStats,
    /// The round trip and bandwidth its reads measured.
    link: Link,
}

impl Router {
    /// Open the store of each route (see `store::open`); an `Invalid` error when
    /// `routes` is empty or a URL is bad.
    pub fn new(routes: &[Route], cfg: &StoreConfig) -> Result<Router> {
        if routes.is_empty() {
            return Err(Error::invalid(
                "no store given and the flist has no routes (use -s URL)",
            ));
        }
        let mut out = Vec::new();
        for r in routes {
            out.push(Routed {
                start: r.start,
                end: r.end,
                store: super::open(&r.url, cfg)?,
                failed_at: Mutex::new(None),
                attempts: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                served: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                corrupt: AtomicU64::new(0),
                latency: Histogram::default(),
            });
        }
        Ok(Router {
            routes: out,
            cfg: cfg.clone(),
            stats: RouterStats::default(),
            link: Link::default(),
        })
    }

    /// The routes of an flist, unless `overrides` (`-s` arguments) are given.
    pub fn for_flist(
        flist_routes: &[Route],
        overrides: &[String],
        cfg: &StoreConfig,
    ) -> Result<Router> {
        if overrides.is_empty() {
            Router::new(flist_routes, cfg)
        } else {
            let parsed = overrides
                .iter()
                .map(|s| Route::parse(s))
                .collect::<Result<Vec<_>>>()?;
            Router::new(&parsed, cfg)
        }
    }

    /// The timeouts and retry settings the stores were opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// Per-store read counters, in route order. Reads only atomics: never waits for a
    /// fetch in flight.
    pub fn store_stats(&self) -> Vec<StoreStat> {
        self.routes
            .iter()
            .map(|r| StoreStat {
                name: r.store.name().to_string(),
                attempts: r.attempts.load(Ordering::Relaxed),
                failures: r.failures.load(Ordering::Relaxed),
                chunks: r.served.load(Ordering::Relaxed),
                bytes: r.bytes.load(Ordering::Relaxed),
                corrupt: r.corrupt.load(Ordering::Relaxed),
                latency_ms_p50: r.latency.quantile_ms(0.5),
                latency_ms_p99: r.latency.quantile_ms(0.99),
            })
            .collect()
    }

    /// The link to the stores as its reads measured it (round trip, bandwidth, reads in
    /// flight): what sizes the fetches kept in flight ahead of readers.
    pub fn link(&self) -> LinkFigures {
        self.link.figures()
    }

    fn matching(&self, id: &[u8]) -> impl Iterator<Item = &Routed> {
        let first = id.first().copied().unwrap_or(0);
        self.routes
            .iter()
            .filter(move |r| r.start <= first && first <= r.end)
    }

    fn cooling(&self, r: &Routed) -> bool {
        match r.failed_at.lock() {
            Ok(g) => g.map(|t| t.elapsed() < self.cfg.cooldown).unwrap_or(false),
            Err(_) => false,
        }
    }

    fn mark(&self, r: &Routed, failed: bool) {
        if let Ok(mut g) = r.failed_at.lock() {
            *g = if failed { Some(Instant::now()) } else { None };
        }
    }

    /// Fetch a chunk and return its verified plaintext, trying replicas in turn.
    pub fn fetch(&self, chunk: &ChunkRef) -> Result<Vec<u8>> {
        self.fetch_verified(chunk, false).map(|(_, plain)| plain)
    }

    /// Fetch a chunk and return the stored object as the store holds it, after checking
    /// that it decodes to the right plaintext (for `clone`).
    pub fn fetch_stored(&self, chunk: &ChunkRef) -> Result<Vec<u8>> {
        self.fetch_verified(chunk, true).map(|(stored, _)| stored)
    }

    /// Try the routed stores for `chunk`: healthy ones first in route order, then those
    /// cooling down after a recent failure (so a dead replica costs one attempt per
    /// cool-down, not one per chunk). Each attempt is bounded by an equal share of the time
    /// left before the per-chunk deadline. Returns (stored object, plaintext); the stored
    /// object only with `keep_stored` (otherwise it is decrypted in place and dropped).
    fn fetch_verified(&self, chunk: &ChunkRef, keep_stored: bool) -> Result<(Vec<u8>, Vec<u8>)> {
        let started = Instant::now();
        let deadline = started + self.cfg.deadline;
        let candidates: Vec<&Routed> = self.matching(chunk.id()).collect();
        if candidates.is_empty() {
            return Err(Error::store(format!(
                "chunk {chunk}: no store is routed for its first byte"
            )));
        }
        let cooling: Vec<bool> = candidates.iter().map(|r| self.cooling(r)).collect();
        let ordered: Vec<&Routed> = candidates
            .iter()
            .zip(&cooling)
            .filter(|(_, c)| !**c)
            .chain(candidates.iter().zip(&cooling).filter(|(_, c)| **c))
            .map(|(r, _)| *r)
            .collect();
        let mut tried = Vec::new();
        let mut corrupt = false;
        let mut timed_out = false;
        let mut missing = 0;
        // An attempt timed out within a share of the deadline shorter than the I/O timeout:
        // the deadline is what cut it.
        let mut cut_by_deadline = false;
        for (i, r) in ordered.iter().enumerate() {
            let now = Instant::now();
            if now >= deadline {
                timed_out = true;
                tried.push(format!("{} (not tried: deadline passed)", r.store.name()));
                continue;
            }
            // Each attempt gets an equal share of the time left, so a store that hangs
            // cannot use up the time the replicas after it need.
            let share = deadline.duration_since(now) / (ordered.len() - i) as u32;
            self.stats.gets.fetch_add(1, Ordering::Relaxed);
            r.attempts.fetch_add(1, Ordering::Relaxed);
            let read = self.link.begin();
            let got = r.store.get_before(chunk.id(), now + share);
            match &got {
                Ok(stored) => {
                    r.latency.record(now.elapsed());
                    read.end(stored.as_ref().map_or(0, |s| s.len() as u64));
                }
                Err(_) => drop(read),
            }
            match got {
                Ok(Some(stored)) => {
                    self.stats
                        .bytes_fetched
                        .fetch_add(stored.len() as u64, Ordering::Relaxed);
                    r.bytes.fetch_add(stored.len() as u64, Ordering::Relaxed);
                    self.mark(r, false);
                    let decoded = if keep_stored {
                        chunk.decode(&stored).map(|p| (stored, p))
                    } else {
                        chunk.decode_plain(stored).map(|p| (Vec::new(), p))
                    };
                    match decoded {
                        Ok(pair) => {
                            r.served.fetch_add(1, Ordering::Relaxed);
                            return Ok(pair);
                        }
                        Err(e) => {
                            r.corrupt.fetch_add(1, Ordering::Relaxed);
                            log::warn!("{} served a bad object: {e}", r.store.name());
                            corrupt = true;
                            tried.push(format!("{} (corrupt: {})", r.store.name(), e.msg));
                        }
                    }
                }
                Ok(None) => {
                    self.mark(r, false);
                    missing += 1;
                    tried.push(format!("{} (missing)", r.store.name()));
                }
                Err(e) => {
                    self.mark(r, true);
                    r.failures.fetch_add(1, Ordering::Relaxed);
                    timed_out |= e.kind == ErrorKind::Timeout;
                    cut_by_deadline |= e.kind == ErrorKind::Timeout && share < self.cfg.io_timeout;
                    log::debug!("chunk {chunk}: {e}");
                    if e.msg.contains(r.store.name()) {
                        tried.push(e.msg);
                    } else {
                        tried.push(format!("{} ({})", r.store.name(), e.msg));
                    }
                }
            }
        }
        if timed_out {
            self.stats.deadlines.fetch_add(1, Ordering::Relaxed);
        }
        // A chunk no store can serve is an I/O error for readers (never ENOENT), whatever
        // the cause; the kind tells which cause dominated.
        let kind = if corrupt {
            ErrorKind::Corrupt
        } else if timed_out {
            ErrorKind::Timeout
        } else {
            ErrorKind::Store
        };
        // Say what happened: the deadline is named only when it is what ran out.
        let what = if timed_out && (cut_by_deadline || Instant::now() >= deadline) {
            format!(
                "not available from any store within {:.1}s (the deadline ran out)",
                self.cfg.deadline.as_secs_f64()
            )
        } else if missing == tried.len() {
            "missing from every store".to_string()
        } else if corrupt {
            "not available from any store (no valid copy)".to_string()
        } else {
            "not available from any store".to_string()
        };
        Err(Error::new(
            kind,
            format!("chunk {chunk}: {what}; tried {}", tried.join(", ")),
        ))
    }

    /// Store an object in every store routed for its id; fails if any write fails.
    pub fn put(&self, id: &[u8], data: &[u8]) -> Result<()> {
        let mut any = false;
        for r in self.matching(id) {
            any = true;
            r.store.set(id, data).map_err(|e| {
                e.context(format!(
                    "storing chunk {} in {}",
                    crate::codec::hex_bytes(id),
                    r.store.name()
                ))
            })?;
            self.stats.puts.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_stored
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        if !any {
            return Err(Error::invalid(format!(
                "chunk {}: no store is routed for its first byte",
                crate::codec::hex_bytes(id)
            )));
        }
        Ok(())
    }

    /// Make every object put so far durable in every store (call before publishing an
    /// flist that refers to them).
    pub fn flush(&self) -> Result<()> {
        for r in &self.routes {
            r.store
                .flush()
                .map_err(|e| e.context(format!("flushing {}", r.store.name())))?;
        }
        Ok(())
    }

    /// Which routed stores hold the object (for `verify`): (store name, present or error).
    /// Each store is given the per-chunk deadline.
    pub fn presence(&self, id: &[u8]) -> Vec<(String, Result<bool>)> {
        self.matching(id)
            .map(|r| {
                let deadline = Instant::now() + self.cfg.deadline;
                (
                    r.store.name().to_string(),
                    r.store.exists_before(id, deadline),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::v2;

    fn dir_route(d: &std::path::Path, start: u8, end: u8) -> Route {
        Route {
            start,
            end,
            url: format!("dir://{}", d.display()),
        }
    }

    #[test]
    fn corrupt_replica_fails_over_to_healthy_one() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let routes = vec![dir_route(a.path(), 0, 255), dir_route(b.path(), 0, 255)];
        let router = Router::new(&routes, &StoreConfig::default()).unwrap();
        let (chunk, ct) = v2::encode(b"replicated").unwrap();
        router.put(chunk.id(), &ct).unwrap();
        // corrupt the first replica
        let hex = chunk.hex_id();
        let p = a.path().join(hex.as_str());
        let mut bad = std::fs::read(&p).unwrap();
        bad[0] ^= 1;
        std::fs::write(&p, bad).unwrap();
        assert_eq!(router.fetch(&chunk).unwrap(), b"replicated");
        let st = router.store_stats();
        assert_eq!((st[0].chunks, st[0].corrupt, st[0].errors()), (0, 1, 1));
        assert_eq!((st[1].chunks, st[1].corrupt, st[1].errors()), (1, 0, 0));
        assert_eq!(st[0].bytes, ct.len() as u64);
        assert_eq!(st[1].bytes, ct.len() as u64);
        assert!(st[1].latency_ms_p50.is_some_and(|l| l > 0.0), "{st:?}");
        assert!(st[1].latency_ms_p99 >= st[1].latency_ms_p50);
        std::fs::remove_dir_all(b.path()).unwrap();
        let err = router.fetch(&chunk).unwrap_err();
        assert!(
            err.msg.contains(hex.as_str()) && err.msg.contains("corrupt"),
            "{err}"
        );
    }
}
