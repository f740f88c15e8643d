//! Warming a chunk cache: the unique chunks of whole files (or of the whole flist),
//! fetched into the cache ahead of use by a bounded pipeline, so a container starts hot.
//! Nothing is held in memory beyond the chunks being fetched. It writes only into the
//! cache, through [`Chunks`]; progress reporting is the caller's.

use std::collections::HashSet;

use crate::codec::ChunkRef;
use crate::error::{Context, Result};
use crate::flist::{self, Flist, Kind};
use crate::pipeline;

use super::Chunks;

/// The unique chunks of the regular files at or under `paths` (everything when empty),
/// in tree order, and how many files they belong to.
pub fn collect(fl: &dyn Flist, paths: &[String]) -> Result<(u64, Vec<ChunkRef>)> {
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

/// Fetch every chunk of `list` missing from the cache with `jobs` workers, calling
/// `progress(done, fetched)` on the calling thread after each chunk; returns how many
/// were fetched. The first error stops the work and is returned.
pub fn warm(
    chunks: &Chunks,
    list: &[ChunkRef],
    jobs: usize,
    mut progress: impl FnMut(usize, u64),
) -> Result<u64> {
    let (mut done, mut fetched) = (0usize, 0u64);
    pipeline::each(
        jobs.min(list.len()).max(1),
        list,
        |chunk| chunks.warm(chunk),
        |was_fetched| {
            done += 1;
            fetched += u64::from(was_fetched);
            progress(done, fetched);
            Ok(())
        },
    )?;
    Ok(fetched)
}
