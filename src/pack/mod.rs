//! The pack engine: turn a directory into an flist plus chunks in stores.
//!
//! One thread walks the tree (lstat only, never following symlinks; [`walk`]), writes
//! the metadata rows and reads file contents sequentially into a small pool of 512 KiB
//! buffers; `jobs` workers of the [`crate::pipeline`] encode chunks (codec v2, up to
//! four side by side) and upload them through the router ([`encode`]). Results come back
//! out of order and a file's block rows are written, in file order, once all its chunks
//! are stored. Memory is bounded by the buffer pool (a few chunks per worker); no file
//! is ever held whole. The flist is written to a temporary file next to the output and
//! renamed into place only when everything succeeded ([`crate::sys::atomic`]). An
//! incremental pack reuses unchanged files of an earlier flist ([`base`]).
//!
//! This module does not decide formats (flist::v2, codec), does not talk to stores
//! directly (the [`Router`] does), parses no command line and prints nothing but the
//! progress line on a terminal's stderr.

use std::path::PathBuf;
use std::time::Instant;

use crate::error::{Context, Error, Result};
use crate::flist::v2::V2Writer;
use crate::flist::Route;
use crate::store::router::Router;
use crate::store::{redact, strip_password};
use crate::sys::atomic::AtomicFile;

pub mod base;
pub mod chunker;
mod encode;
mod walk;
pub mod xattrs;

pub use xattrs::read_xattrs;

/// What to pack, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory to pack.
    pub source: PathBuf,
    /// The flist to write (replaced atomically; nothing is written on failure).
    pub output: PathBuf,
    /// The stores, recorded as the flist's routes (the [`Router`] given to [`pack`]
    /// must write to them).
    pub routes: Vec<Route>,
    /// Tags to record, `(key, value)` (`version` is reserved for the schema marker).
    pub tags: Vec<(String, String)>,
    /// Encoding and upload workers (at least 1).
    pub jobs: usize,
    /// Keep passwords in the routes written into the flist.
    pub keep_passwords: bool,
    /// Incremental pack: an earlier flist whose unchanged files are reused (see [`base`]).
    pub base: Option<PathBuf>,
    /// With `base`: still read reused files whole and compare their full checksum.
    pub base_verify: bool,
    /// A parsed trace stored as the flist's prefetch table before it is published
    /// (`--prefetch`, as `zvfs prefetch add`).
    pub prefetch: Option<Vec<crate::flist::trace::TraceLine>>,
}

impl Options {
    /// Pack `source` into `output` for `routes`, with one worker per available core and
    /// no tags, base or kept passwords.
    pub fn new(source: PathBuf, output: PathBuf, routes: Vec<Route>) -> Options {
        Options {
            source,
            output,
            routes,
            tags: Vec::new(),
            jobs: default_jobs(),
            keep_passwords: false,
            base: None,
            base_verify: false,
            prefetch: None,
        }
    }
}

/// The default number of workers: the available parallelism (2 when unknown).
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// What a pack did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// What `--prefetch` stored (the trace resolved against the new flist).
    pub prefetch: Option<crate::flist::v2::prefetch::Resolved>,
    /// Entries written (every path, the root included).
    pub entries: u64,
    /// Regular files (every path of a hardlinked file counts).
    pub files: u64,
    /// Content bytes read (or reused from the base).
    pub bytes: u64,
    /// Block rows written.
    pub chunks: u64,
    /// Unique chunks uploaded by this pack.
    pub uploaded: u64,
    /// Their stored (encoded) bytes.
    pub uploaded_bytes: u64,
    /// Wall-clock time of the whole pack.
    pub seconds: f64,
    /// The reuse report of an incremental pack: one line, for the output.
    pub base_report: Option<String>,
    /// The reuse figures of an incremental pack.
    pub base: Option<base::BaseStats>,
}

/// Pack `opts.source` into `opts.output`, uploading chunks through `router`. Objects are
/// flushed before the flist that refers to them is published.
pub fn pack(opts: &Options, router: &Router) -> Result<Summary> {
    let started = Instant::now();
    let src = &opts.source;
    let src_meta = std::fs::symlink_metadata(src)
        .with_ctx(|| format!("source directory {}", src.display()))?;
    if !src_meta.is_dir() {
        return Err(Error::invalid(format!(
            "source {} is not a directory",
            src.display()
        )));
    }
    let mut base = match &opts.base {
        Some(p) => Some(base::BaseIndex::open(p, opts.base_verify, &opts.routes)?),
        None => None,
    };
    let tmp = AtomicFile::new(&opts.output)?;
    let writer = V2Writer::create(tmp.path())?;
    for (k, v) in &opts.tags {
        writer.set_tag(k, v)?;
    }
    for r in route_rows(&opts.routes, opts.keep_passwords) {
        writer.add_route(&r)?;
    }
    let mut summary = walk::pack_tree(
        &writer,
        src,
        &src_meta,
        router,
        opts.jobs.max(1),
        base.as_mut(),
    )?;
    // Objects are synced once, here, before the flist that refers to them is published.
    router.flush()?;
    writer.finish()?;
    if let Some(lines) = &opts.prefetch {
        summary.prefetch = Some(crate::flist::v2::prefetch::add_trace_unpublished(
            tmp.path(),
            lines,
        )?);
    }
    tmp.commit()?;
    summary.seconds = started.elapsed().as_secs_f64();
    if let (Some(b), Some(p)) = (&base, &opts.base) {
        summary.base_report = Some(b.report(p));
        summary.base = Some(b.stats.clone());
    }
    log::debug!(
        "stores: {}",
        opts.routes
            .iter()
            .map(|r| redact(&r.url))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(summary)
}

/// The routes as recorded in the flist: passwords stripped unless asked to keep them.
pub fn route_rows(routes: &[Route], keep_passwords: bool) -> Vec<Route> {
    routes
        .iter()
        .map(|r| Route {
            start: r.start,
            end: r.end,
            url: if keep_passwords {
                r.url.clone()
            } else {
                strip_password(&r.url)
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_rows_strip_passwords_unless_kept() {
        let routes = vec![
            Route::parse("00-7f=zdb://u:secret@h:9900/ns").unwrap(),
            Route::parse("dir:///srv/store").unwrap(),
        ];
        let rows = route_rows(&routes, false);
        assert_eq!(rows[0].url, "zdb://u@h:9900/ns");
        assert_eq!((rows[0].start, rows[0].end), (0, 0x7f));
        assert_eq!(rows[1].url, "dir:///srv/store");
        assert_eq!((rows[1].start, rows[1].end), (0, 255));
        assert_eq!(route_rows(&routes, true)[0].url, "zdb://u:secret@h:9900/ns");
    }
}
