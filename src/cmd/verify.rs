//! `zvfs verify`: check that every chunk of an flist is available from at least one of its
//! routed stores (`--deep`: fetched and fully verified, both hashes). Reports each missing
//! or corrupt chunk with the file paths that use it and exits non-zero if there is any.
//! Read-only: it never writes to stores nor to the flist.

use std::collections::HashSet;
use std::path::PathBuf;

use super::chunkset::{self, DEFAULT_JOBS};
use crate::codec::ChunkRef;
use crate::error::{ErrorKind, ExitCode, Result};
use crate::flist;
use crate::store::router::Router;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The flist to check.
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// Store to check instead of the flist's routes, `[xx-xx=]URL` (repeatable).
    #[arg(short = 's', long = "store", value_parser = super::StoreSpec)]
    pub stores: Vec<String>,
    /// Fetch every chunk and check it decrypts to the right content (both hashes).
    #[arg(long)]
    pub deep: bool,
    /// Chunks checked in parallel.
    #[arg(short = 'j', long = "jobs", default_value_t = DEFAULT_JOBS)]
    pub jobs: usize,
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
}

/// What is wrong with one chunk.
enum Problem {
    Missing(String),
    Corrupt(String),
    Unreachable(String),
}

fn check(router: &Router, chunk: &ChunkRef, deep: bool) -> Option<Problem> {
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

pub fn run(args: Args) -> Result<ExitCode> {
    let fl = flist::open(&args.meta)?;
    let router = Router::for_flist(&fl.routes()?, &args.stores, &args.store_flags.config())?;
    let chunks = chunkset::unique_chunks(fl.as_ref())?;
    let results = chunkset::parallel_map(&chunks, args.jobs, |c| check(&router, c, args.deep));
    let bad: Vec<(ChunkRef, Problem)> = chunks
        .iter()
        .zip(results)
        .filter_map(|(c, p)| p.map(|p| (*c, p)))
        .collect();
    let wanted: HashSet<ChunkRef> = bad.iter().map(|(c, _)| *c).collect();
    let paths = chunkset::paths_using(fl.as_ref(), &wanted, 5)?;
    let (mut missing, mut corrupt, mut unreachable) = (0, 0, 0);
    for (chunk, problem) in &bad {
        let used_by = chunkset::describe_paths(paths.get(chunk));
        let (what, detail) = match problem {
            Problem::Missing(d) => {
                missing += 1;
                ("missing", d)
            }
            Problem::Corrupt(d) => {
                corrupt += 1;
                ("corrupt", d)
            }
            Problem::Unreachable(d) => {
                unreachable += 1;
                ("unreachable", d)
            }
        };
        println!("{what} {chunk} used by {used_by}");
        log::debug!("{what} {chunk}: {detail}");
        if !matches!(problem, Problem::Missing(_)) {
            eprintln!("  {detail}");
        }
    }
    let verb = if args.deep {
        "fetched and verified"
    } else {
        "checked for presence"
    };
    eprintln!(
        "verify: {} chunks {verb}: {} ok, {missing} missing, {corrupt} corrupt, {unreachable} unreachable",
        chunks.len(),
        chunks.len() - bad.len()
    );
    Ok(if bad.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::PROBLEMS
    })
}
