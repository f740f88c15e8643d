//! `zvfs diff A B`: what changed between two flists ([`crate::diff`]), printed as lines
//! `A|D|M [what] PATH` or JSON. Exit status like diff(1): 0 identical, 1 different, 2 error.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Serialize;

use super::StoreFlags;
use crate::diff::{diff, Change, Fetch, Options};
use crate::error::{Error, ExitCode, Result};
use crate::flist;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Content is decided from metadata whenever it can be: different sizes differ; equal full \
checksums (zvfs flists) or equal chunk-key sequences (flists of one generation) are equal. \
Only files of equal size whose contents no metadata can compare (a legacy .flist against a \
v2 .fl: other chunk keys, no checksums) are fetched from their flist's stores, chunk by \
chunk, and compared by SHA-256; the number of files fetched is printed on stderr. \
--store-a/--store-b override each flist's routes for that; a fetch that fails exits 2.")]
/// Arguments of `zvfs diff`.
pub struct Args {
    /// The old flist.
    pub a: PathBuf,
    /// The new flist.
    pub b: PathBuf,
    /// Also report modification times that differ (`M mtime`).
    #[arg(long)]
    pub mtime: bool,
    /// Machine-readable output (JSON).
    #[arg(long)]
    pub json: bool,
    /// Print nothing; only the exit status tells.
    #[arg(short, long)]
    pub quiet: bool,
    /// Store for A's chunks instead of its routes, `[xx-xx=]URL` (repeatable); used only
    /// for content that must be fetched to be compared.
    #[arg(long = "store-a", value_name = "URL")]
    pub store_a: Vec<String>,
    /// Store for B's chunks instead of its routes (repeatable), like `--store-a`.
    #[arg(long = "store-b", value_name = "URL")]
    pub store_b: Vec<String>,
    /// Chunk cache for fetched content.
    #[command(flatten)]
    pub cache: super::CacheFlags,
    /// Store timeouts.
    #[command(flatten)]
    pub store_flags: StoreFlags,
}

/// Compare and print the changes; returns [`ExitCode::Ok`] when identical,
/// [`ExitCode::DIFFERENT`] when not and [`ExitCode::TROUBLE`] (diff(1)'s 2) on any error.
pub fn run(args: Args) -> Result<ExitCode> {
    match run_inner(&args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("zvfs: diff: {e}");
            Ok(ExitCode::TROUBLE)
        }
    }
}

fn run_inner(args: &Args) -> Result<ExitCode> {
    let a = flist::open(&args.a)?;
    let b = flist::open(&args.b)?;
    let opts = Options { mtime: args.mtime };
    let mut fetch = Fetch::new(
        [&args.store_a, &args.store_b],
        args.cache.spec()?,
        args.store_flags.config(),
    );
    let mut changes = Vec::new();
    let mut out = super::out::Out::new();
    let result = diff(a.as_ref(), b.as_ref(), &opts, &mut fetch, &mut |c| {
        if !args.json && !args.quiet {
            match c.what {
                Some(w) => out.line(format_args!("{} {} {}", c.change, w, c.path))?,
                None => out.line(format_args!("{} {}", c.change, c.path))?,
            }
        }
        changes.push(c);
        Ok(())
    });
    if fetch.files > 0 && !args.quiet {
        eprintln!(
            "zvfs: diff: fetched {} file{} ({} chunks, {} bytes) to compare content without common checksums",
            fetch.files,
            if fetch.files == 1 { "" } else { "s" },
            fetch.chunks_fetched,
            fetch.bytes
        );
    }
    result?;
    if args.json && !args.quiet {
        #[derive(Serialize)]
        struct Out<'a> {
            identical: bool,
            added: usize,
            removed: usize,
            modified: usize,
            changes: &'a [Change],
        }
        let count = |k: &str| changes.iter().filter(|c| c.change == k).count();
        let modified: HashSet<&str> = changes
            .iter()
            .filter(|c| c.change == "M")
            .map(|c| c.path.as_str())
            .collect();
        let report = Out {
            identical: changes.is_empty(),
            added: count("A"),
            removed: count("D"),
            modified: modified.len(),
            changes: &changes,
        };
        let s = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::io(format!("encoding JSON: {e}")))?;
        out.line(format_args!("{s}"))?;
    }
    out.finish()?;
    Ok(if changes.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::DIFFERENT
    })
}
