//! The mount-time prefetch of a recorded trace (`zvfs prefetch add`): once the mount is
//! ready, the chunks the flist's prefetch list names are fetched into the cache in the
//! order the traced run first read them, a bounded number at once. On-demand reads come
//! first: a prefetch takes none of the fetch slots reads wait for, half of its fetchers
//! hold back while a read waits for a store, and a read of a chunk being prefetched joins
//! that fetch. It stops at the cache's bound (it never evicts, so nothing it fetched is
//! evicted by it before being read) and when the filesystem is taken down. A prefetch
//! list that cannot be read is logged and ignored: the mount serves as without one.
//!
//! This module owns the prefetch threads and their progress counters; it reads the list
//! through the flist and fetches through the cache only, never a store directly.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::cache::Prefetched;
use crate::codec::ChunkRef;
use crate::flist::{Ino, Kind, PrefetchItem};

/// Chunks a prefetch fetches at once by default.
pub const DEFAULT_PARALLEL: usize = 8;
/// The most a mount may ask for.
pub const MAX_PARALLEL: usize = 32;

/// Start prefetching the flist's list with `parallel` fetchers (clamped to
/// 1..=[`MAX_PARALLEL`]); nothing when the flist has no list (or an unreadable one, which
/// is logged) or `parallel` is 0.
pub(super) fn start(shared: Arc<Shared>, parallel: usize) {
    if parallel == 0 {
        return;
    }
    let items = match shared.flist.prefetch() {
        Ok(items) if items.is_empty() => return,
        Ok(items) => items,
        Err(e) => {
            log::warn!("the flist's prefetch list is ignored: {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("zvfs-prefetch".into())
        .stack_size(256 * 1024)
        .spawn(move || run(&shared, &items, parallel.clamp(1, MAX_PARALLEL)));
    if let Err(e) = spawned {
        log::warn!("prefetch not started: {e}");
    }
}

fn run(shared: &Shared, items: &[PrefetchItem], parallel: usize) {
    let started = Instant::now();
    let progress = &shared.prefetch;
    let chunks = resolve(shared, items);
    progress
        .planned
        .store(chunks.len() as u64, Ordering::Relaxed);
    let next = AtomicUsize::new(0);
    let full = AtomicBool::new(false);
    std::thread::scope(|s| {
        for i in 0..parallel.min(chunks.len()) {
            let (next, full, chunks) = (&next, &full, &chunks);
            // The second half of the fetchers yields to reads waiting for a store.
            let polite = i >= parallel.div_ceil(2);
            let worker = move || fetcher(shared, chunks, next, full, polite);
            let spawned = std::thread::Builder::new()
                .name(format!("zvfs-prefetch-{i}"))
                .stack_size(256 * 1024)
                .spawn_scoped(s, worker);
            if let Err(e) = spawned {
                log::warn!("prefetch: starting fetcher {i}: {e}");
                break;
            }
        }
    });
    progress.finished.store(true, Ordering::Relaxed);
    let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
    log::info!(
        "prefetch {}: {} of {} chunks fetched, {} were cached, {} failed, {} list entries skipped, in {:.2} s{}",
        if shared.stopping.load(Ordering::Relaxed) {
            "stopped by the unmount"
        } else if full.load(Ordering::Relaxed) {
            "stopped at the cache's bound"
        } else {
            "done"
        },
        count(&progress.fetched),
        chunks.len(),
        count(&progress.cached),
        count(&progress.failed),
        count(&progress.skipped),
        started.elapsed().as_secs_f64(),
        if full.load(Ordering::Relaxed) {
            " (a larger cache would hold more of the list)"
        } else {
            ""
        }
    );
}

/// One fetcher: takes the next chunk of the list until it is done, the cache is full or
/// the mount goes away.
fn fetcher(
    shared: &Shared,
    chunks: &[ChunkRef],
    next: &AtomicUsize,
    full: &AtomicBool,
    polite: bool,
) {
    let progress = &shared.prefetch;
    loop {
        if polite {
            while shared.cache.demand_fetches() > 0 && !shared.stopping.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if shared.stopping.load(Ordering::Relaxed) || full.load(Ordering::Relaxed) {
            return;
        }
        let Some(chunk) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) else {
            return;
        };
        match shared.cache.prefetch_within_bound(chunk, &shared.router) {
            Ok(Prefetched::Cached) => progress.cached.fetch_add(1, Ordering::Relaxed),
            Ok(Prefetched::Fetched) => progress.fetched.fetch_add(1, Ordering::Relaxed),
            Ok(Prefetched::Full) => {
                full.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                log::warn!("prefetch: {e}");
                progress.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// The list's chunks in order, each once; entries naming no chunk of a regular file are
/// counted as skipped.
fn resolve(shared: &Shared, items: &[PrefetchItem]) -> Vec<ChunkRef> {
    let mut files: HashMap<Ino, Option<Vec<ChunkRef>>> = HashMap::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut skipped = 0u64;
    for item in items {
        let blocks = files
            .entry(item.ino)
            .or_insert_with(|| match shared.flist.get(item.ino) {
                Ok(e) if e.kind() == Kind::File => shared.flist.blocks(e.content_ino()).ok(),
                _ => None,
            });
        match blocks.as_ref().and_then(|b| b.get(item.chunk as usize)) {
            Some(c) if seen.insert(*c) => out.push(*c),
            Some(_) => {}
            None => skipped += 1,
        }
    }
    if skipped > 0 {
        log::warn!(
            "prefetch: {skipped} list entries name no chunk of a file of the flist; skipped"
        );
    }
    shared.prefetch.skipped.store(skipped, Ordering::Relaxed);
    out
}
