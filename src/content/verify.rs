//! Verifying an flist's chunks: each unique chunk is present in at least one of its
//! routed stores (deep: fetched and fully verified, both hashes), checked by a bounded
//! pipeline; every problem is reported with the paths that use the chunk. Read-only: it
//! never writes to stores nor to the flist.

use std::collections::HashSet;

use crate::codec::ChunkRef;
use crate::error::{ErrorKind, Result};
use crate::flist::Flist;
use crate::pipeline;
use crate::store::router::Router;

use super::chunkset;

/// What is wrong with a chunk, and the details (store messages).
#[derive(Clone, Debug)]
pub enum Problem {
    /// No store has it.
    Missing(String),
    /// A store has it, but its bytes fail verification.
    Corrupt(String),
    /// No store that answered has it, and some could not be asked.
    Unreachable(String),
}

/// One bad chunk and the paths that use it (as [`chunkset::describe_paths`] puts them).
#[derive(Clone, Debug)]
pub struct Bad {
    /// The chunk.
    pub chunk: ChunkRef,
    /// What is wrong.
    pub problem: Problem,
    /// The paths using it.
    pub used_by: String,
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Unique chunks checked.
    pub checked: usize,
    /// The ones with a problem, in chunk order.
    pub bad: Vec<Bad>,
}

/// Check one chunk (see the module documentation).
pub fn check(router: &Router, chunk: &ChunkRef, deep: bool) -> Option<Problem> {
    // Deep: a failed fetch is either missing everywhere or unreachable; the presence
    // check below tells which.
    let fetch_err = if deep {
        match router.fetch(chunk) {
            Ok(_) => return None,
            Err(e) if e.kind == ErrorKind::Corrupt => return Some(Problem::Corrupt(e.msg)),
            Err(e) if e.kind == ErrorKind::Timeout => return Some(Problem::Unreachable(e.msg)),
            Err(e) => Some(e.msg),
        }
    } else {
        None
    };
    let mut errors = Vec::new();
    for (name, present) in router.presence(chunk.id()) {
        match present {
            Ok(true) => return fetch_err.map(Problem::Unreachable),
            Ok(false) => {}
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    if errors.is_empty() {
        Some(Problem::Missing("in no store".into()))
    } else {
        Some(Problem::Unreachable(errors.join("; ")))
    }
}

/// Check every unique chunk of `fl` with `jobs` workers.
pub fn verify(fl: &dyn Flist, router: &Router, deep: bool, jobs: usize) -> Result<Report> {
    let chunks = chunkset::unique_chunks(fl)?;
    let mut found = Vec::new();
    pipeline::each(
        jobs,
        chunks.iter().enumerate(),
        |(i, c)| Ok((i, check(router, c, deep))),
        |(i, p)| {
            if let Some(p) = p {
                found.push((i, p));
            }
            Ok(())
        },
    )?;
    found.sort_by_key(|(i, _)| *i);
    let wanted: HashSet<ChunkRef> = found.iter().map(|(i, _)| chunks[*i]).collect();
    let paths = chunkset::paths_using(fl, &wanted, 5)?;
    let bad = found
        .into_iter()
        .map(|(i, problem)| Bad {
            chunk: chunks[i],
            problem,
            used_by: chunkset::describe_paths(paths.get(&chunks[i])),
        })
        .collect();
    Ok(Report {
        checked: chunks.len(),
        bad,
    })
}
