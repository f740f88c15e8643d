//! `zvfs cache stats|gc|fsck|clear`: maintenance of a chunk cache directory.
//!
//! The cache layout (`<hh>/<hh>/<hex id>`, shared with rfs) holds only chunk ids, so
//! `fsck` can verify a file's content only when its key is known: pass the flists whose
//! chunks should be checked with `-m`. Without them it still removes temporary files of
//! dead writers, empty files, empty directories and files out of place (anywhere in the
//! `<hh>/<hh>` tree that a chunk does not belong, and chunk-named files at the top), and
//! reports how many it could not verify. It exits 2 when it removed a bad, empty or
//! misplaced file. Mounts verify every file on first use anyway.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::cache::quota::Quota;
use crate::error::{ExitCode, Result};
use crate::flist;

/// Arguments of `zvfs cache`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to do with the cache.
    #[command(subcommand)]
    pub action: Action,
}

/// The `zvfs cache` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Files, bytes and the bound of a cache directory.
    Stats(Common),
    /// Evict least recently used chunks until the cache is under its bound.
    Gc(Common),
    /// Check the files of a cache (verifying chunks of the flists given with -m).
    Fsck(FsckArgs),
    /// Remove every cached chunk.
    Clear(Common),
}

/// The cache directory and its bound, taken by every `zvfs cache` subcommand.
#[derive(clap::Args, Debug)]
#[command(mut_arg("cache", |a| a.required(true)))]
pub struct Common {
    /// The cache directory (required) and its bound.
    #[command(flatten)]
    pub cache: super::CacheFlags,
}

/// Arguments of `zvfs cache fsck`.
#[derive(clap::Args, Debug)]
pub struct FsckArgs {
    /// The cache.
    #[command(flatten)]
    pub common: Common,
    /// Flists whose chunks are verified against their keys (repeatable).
    #[arg(short = 'm', long = "meta")]
    pub metas: Vec<PathBuf>,
}

fn open(c: &Common) -> Result<Quota> {
    let spec = c
        .cache
        .spec()?
        .ok_or_else(|| crate::error::Error::invalid("no cache directory given (-c)"))?;
    if !spec.dir.is_dir() {
        return Err(crate::error::Error::not_found(format!(
            "cache directory {} does not exist",
            spec.dir.display()
        )));
    }
    Quota::open(&spec.dir, spec.size)
}

/// Run the subcommand and print its report; `fsck` returns [`ExitCode::REPAIRED`] when
/// it removed a bad, empty or misplaced file.
pub fn run(args: Args) -> Result<ExitCode> {
    let mut out = super::out::Out::new();
    match args.action {
        Action::Stats(c) => {
            let q = open(&c)?;
            let s = q.scan()?;
            if let Some(dir) = &c.cache.cache {
                out.line(format_args!("directory {}", dir.display()))?;
            }
            out.line(format_args!("chunks {}", s.chunks.len()))?;
            out.line(format_args!("bytes {}", s.chunk_bytes))?;
            out.line(format_args!("bound {}", q.max()))?;
            out.line(format_args!("in_progress {}", s.live_tmp))?;
            out.line(format_args!("strays {}", s.strays.len()))?;
            out.line(format_args!("dirs {}", s.dirs))?;
            out.line(format_args!("dir_bytes {}", s.dir_bytes))?;
            out.line(format_args!("empty_dirs {}", s.empty_dirs.len()))?;
            out.line(format_args!("disk_bytes {}", s.total()))?;
            out.line(format_args!(
                "usage_pct {:.1}",
                100.0 * s.total() as f64 / q.max().max(1) as f64
            ))?;
        }
        Action::Gc(c) => {
            let r = open(&c)?.gc()?;
            out.line(format_args!("bytes_before {}", r.bytes_before))?;
            out.line(format_args!("bytes_after {}", r.bytes_after))?;
            out.line(format_args!("removed {}", r.files_removed))?;
            out.line(format_args!("stale_tmp_removed {}", r.stale_tmp_removed))?;
            out.line(format_args!("empty_dirs_removed {}", r.empty_dirs_removed))?;
        }
        Action::Clear(c) => {
            let n = open(&c)?.clear()?;
            out.line(format_args!("removed {n}"))?;
        }
        Action::Fsck(a) => {
            let q = open(&a.common)?;
            let mut known = HashMap::new();
            for m in &a.metas {
                let fl = flist::open(m)?;
                let root = fl.get(flist::ROOT_INO)?;
                flist::walk(fl.as_ref(), &root, Vec::new(), &mut |e, _| {
                    if e.kind() == flist::Kind::File && e.link_of.is_none() {
                        for c in fl.blocks(e.ino)? {
                            known.insert(c.hex_id().to_string(), c);
                        }
                    }
                    Ok(())
                })?;
            }
            let r = q.fsck(&known)?;
            out.line(format_args!("files {}", r.files))?;
            out.line(format_args!("verified {}", r.verified))?;
            out.line(format_args!("unverifiable {}", r.unknown))?;
            out.line(format_args!("bad_removed {}", r.bad_removed))?;
            out.line(format_args!("empty_removed {}", r.empty_removed))?;
            out.line(format_args!("strays_removed {}", r.strays_removed))?;
            out.line(format_args!("stale_tmp_removed {}", r.stale_tmp_removed))?;
            out.line(format_args!("empty_dirs_removed {}", r.empty_dirs_removed))?;
            // 2: something had to be repaired (as fsck(8) says "errors corrected").
            let bad = r.bad_removed + r.empty_removed + r.strays_removed;
            out.finish()?;
            return Ok(if bad > 0 {
                ExitCode::REPAIRED
            } else {
                ExitCode::Ok
            });
        }
    }
    out.finish()?;
    Ok(ExitCode::Ok)
}
