//! Copying an flist's chunks to other stores, byte for byte as stored, each object
//! verified (both hashes) before it is written; a chunk already present in every
//! destination store is skipped. A local rfs-layout cache of plaintext chunks is used as a
//! source first: a cached chunk is re-encoded (the encoding is deterministic) and used only
//! if it gives back exactly the chunk's id. One chunk failing does not stop the others;
//! every failure is reported. It writes only to the destination stores; pointing the
//! flist's routes at them is the caller's (an atomic flist edit).

use std::path::Path;

use crate::codec::{self, ChunkRef, Codec};
use crate::content::chunkset;
use crate::error::{Error, Result};
use crate::flist::Flist;
use crate::pipeline;
use crate::store::router::Router;

/// What [`copy_chunks`] did.
#[derive(Debug, Default)]
pub struct Report {
    /// Unique chunks of the flist.
    pub chunks: usize,
    /// Chunks written to the destination.
    pub copied: u64,
    /// Of those, the ones rebuilt from the cache.
    pub from_cache: u64,
    /// Chunks every destination store already had.
    pub skipped: u64,
    /// Chunks that could not be copied, with why.
    pub failed: Vec<(ChunkRef, Error)>,
}

enum Outcome {
    Copied { from_cache: bool },
    Skipped,
    Failed(ChunkRef, Error),
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

/// Copy every unique chunk of `fl` from `source` to `dest` with `jobs` workers, reading
/// the plaintext cache `cache` first; flushes `dest` when nothing failed.
pub fn copy_chunks(
    fl: &dyn Flist,
    source: &Router,
    dest: &Router,
    cache: Option<&Path>,
    jobs: usize,
) -> Result<Report> {
    let chunks = chunkset::unique_chunks(fl)?;
    let mut report = Report {
        chunks: chunks.len(),
        ..Report::default()
    };
    let copy = |chunk: &ChunkRef| -> Result<Outcome> {
        let present = dest.presence(chunk.id());
        if !present.is_empty() && present.iter().all(|(_, p)| matches!(p, Ok(true))) {
            return Ok(Outcome::Skipped);
        }
        let (stored, from_cache) = match cache.and_then(|c| from_cache(c, chunk)) {
            Some(s) => (s, true),
            None => (source.fetch_stored(chunk)?, false),
        };
        dest.put(chunk.id(), &stored)?;
        Ok(Outcome::Copied { from_cache })
    };
    pipeline::each(
        jobs,
        &chunks,
        |chunk| Ok(copy(chunk).unwrap_or_else(|e| Outcome::Failed(*chunk, e))),
        |outcome| {
            match outcome {
                Outcome::Copied { from_cache } => {
                    report.copied += 1;
                    report.from_cache += u64::from(from_cache);
                }
                Outcome::Skipped => report.skipped += 1,
                Outcome::Failed(c, e) => report.failed.push((c, e)),
            }
            Ok(())
        },
    )?;
    if report.failed.is_empty() {
        dest.flush()?;
    }
    Ok(report)
}
