//! Pack's encoder workers: the shape of the [`crate::pipeline`] they run in (workers,
//! queue bound, batch size), and the work of one batch: encode up to [`MAX_BATCH`]
//! chunks side by side with the worker's own `v2::Encoder`, upload each one this pack
//! did not store yet, and hand the plaintext buffers back to the walker's pool. It does
//! not read files nor write the flist (see `walk`).

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use crate::codec::{v2, ChunkRef, CHUNK_SIZE};
use crate::error::{Error, Result};
use crate::flist::Ino;
use crate::pipeline::Config;
use crate::store::router::Router;

/// Chunks a worker encodes together (their hashes computed side by side, AVX2: 4).
pub(super) const MAX_BATCH: usize = 4;

/// Plaintext buffers per worker: a batch being encoded, and one read ahead.
const BUFFERS_PER_WORKER: usize = MAX_BATCH + 1;

/// The plaintext buffers of a pack with `jobs` workers (also the job queue's bound).
pub(super) fn buffers(jobs: usize) -> usize {
    jobs * BUFFERS_PER_WORKER + 1
}

/// `jobs` workers, a queue as long as the buffer pool, batches of what the CPU hashes
/// side by side (at most [`MAX_BATCH`]).
pub(super) fn config(jobs: usize) -> Config {
    Config::new(jobs)
        .queue(buffers(jobs))
        .batch(v2::batch_degree().clamp(1, MAX_BATCH))
}

/// One chunk to encode and upload.
pub(super) struct Job {
    pub ino: Ino,
    pub index: usize,
    pub buf: Vec<u8>,
    pub len: usize,
    /// The file it belongs to, for an error.
    pub path: Arc<Path>,
}

/// One chunk stored.
pub(super) struct Done {
    pub ino: Ino,
    pub index: usize,
    pub chunk: ChunkRef,
}

/// What the workers count and remember together.
#[derive(Default)]
pub(super) struct Counters {
    pub uploaded: AtomicU64,
    pub uploaded_bytes: AtomicU64,
    ids: Mutex<HashSet<[u8; 32]>>,
}

/// Encode and store one batch; every buffer goes back to `pool`.
pub(super) fn encode_batch(
    enc: &mut v2::Encoder,
    batch: Vec<Job>,
    pool: &mpsc::SyncSender<Vec<u8>>,
    counters: &Counters,
    router: &Router,
) -> Vec<Result<Done>> {
    let plains: Vec<&[u8]> = batch.iter().map(|j| &j.buf[..j.len]).collect();
    let results: Vec<Result<ChunkRef>> = match enc.encode_batch(&plains) {
        Ok(encoded) => encoded
            .into_iter()
            .map(|(chunk, out)| store_chunk(counters, router, chunk, out))
            .collect(),
        Err(e) => batch
            .iter()
            .map(|_| Err(Error::new(e.kind, e.msg.clone())))
            .collect(),
    };
    batch
        .into_iter()
        .zip(results)
        .map(|(job, r)| {
            let _ = pool.send(job.buf);
            match r {
                Ok(chunk) => Ok(Done {
                    ino: job.ino,
                    index: job.index,
                    chunk,
                }),
                Err(err) => Err(err.context(format!(
                    "packing {} (chunk {} at offset {})",
                    job.path.display(),
                    job.index,
                    job.index as u64 * CHUNK_SIZE as u64
                ))),
            }
        })
        .collect()
}

/// Upload an encoded chunk unless this pack already stored one with the same id.
fn store_chunk(
    counters: &Counters,
    router: &Router,
    chunk: ChunkRef,
    out: &[u8],
) -> Result<ChunkRef> {
    let mut id = [0u8; 32];
    id.copy_from_slice(chunk.id());
    let fresh = match counters.ids.lock() {
        Ok(mut ids) => ids.insert(id),
        Err(_) => true,
    };
    if fresh {
        router.put(chunk.id(), out)?;
        counters.uploaded.fetch_add(1, Ordering::Relaxed);
        counters
            .uploaded_bytes
            .fetch_add(out.len() as u64, Ordering::Relaxed);
    }
    Ok(chunk)
}
