//! `zvfs pack`: the command line of the pack engine ([`crate::pack`]): its arguments,
//! their conversion to [`pack::Options`], the call, and the summary line.

use std::path::PathBuf;
use std::time::Instant;

use crate::error::{ExitCode, Result};
use crate::flist::Route;
use crate::pack;
use crate::store::router::Router;

/// Arguments of `zvfs pack`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output flist path (pack's `-m` names the flist it writes, unlike every other
    /// command's, which names one to read).
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// Stores receiving the chunks (recorded as the flist's routes).
    #[command(flatten)]
    pub stores: super::DestStores,
    /// Tags to record.
    #[command(flatten)]
    pub tags: super::Tags,
    /// Parallelism.
    #[command(flatten)]
    pub jobs: super::Jobs,
    /// Passwords in routes.
    #[command(flatten)]
    pub passwords: super::KeepPasswords,
    /// Store timeouts.
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    /// A trace to store as the flist's prefetch list.
    #[command(flatten)]
    pub prefetch: super::PrefetchTrace,
    /// Incremental pack: a file whose path, size, mtime and partial checksum match its
    /// entry in this earlier flist reuses that entry's chunk list and checksums; it is
    /// not read whole and nothing is uploaded for it (see `base.rs` for the risk).
    #[arg(long, value_name = "OLD.fl")]
    pub base: Option<PathBuf>,
    /// With --base: still read reused files whole and compare their full checksum
    /// (nothing is uploaded for those that match).
    #[arg(long, requires = "base")]
    pub base_verify: bool,
    /// Directory to pack.
    pub source: PathBuf,
}

/// Pack the tree and print the summary line (and the `--base` reuse report); the time
/// and rate it shows cover the whole command.
pub fn run(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let tags = args.tags.pairs()?;
    let routes = args
        .stores
        .stores
        .iter()
        .map(|s| Route::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let router = Router::new(&routes, &args.store_flags.config())?;
    let prefetch = args.prefetch.lines()?;
    let opts = pack::Options {
        source: args.source.clone(),
        output: args.meta.clone(),
        routes,
        tags,
        jobs: args.jobs.cpu(),
        keep_passwords: args.passwords.no_strip_password,
        base: args.base.clone(),
        base_verify: args.base_verify,
        prefetch,
    };
    let mut summary = pack::pack(&opts, &router)?;
    if let Some(r) = &summary.prefetch {
        super::prefetch::warn_skipped(r);
    }
    summary.seconds = started.elapsed().as_secs_f64();
    let mut out = super::out::Out::new();
    let mbs = summary.bytes as f64 / 1e6 / summary.seconds.max(1e-6);
    out.line(format_args!(
        "packed {} into {}: {} entries, {} files, {} bytes, {} chunks, {} unique chunks uploaded ({} bytes), {:.2} s, {:.1} MB/s",
        args.source.display(),
        args.meta.display(),
        summary.entries,
        summary.files,
        summary.bytes,
        summary.chunks,
        summary.uploaded,
        summary.uploaded_bytes,
        summary.seconds,
        mbs
    ))?;
    if let Some(line) = &summary.base_report {
        out.line(format_args!("{line}"))?;
    }
    if let Some(r) = &summary.prefetch {
        out.line(format_args!("{}", super::prefetch::summary_line(r)))?;
    }
    out.finish()?;
    Ok(ExitCode::Ok)
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_tag_is_refused() {
        let tags = |v: &[&str]| {
            super::super::Tags {
                tags: v.iter().map(|s| s.to_string()).collect(),
            }
            .pairs()
        };
        let err = tags(&["version=3"]).unwrap_err();
        assert!(err.msg.contains("reserved"), "{err}");
        assert!(tags(&["novalue"]).is_err());
        assert_eq!(
            tags(&["author=me=you"]).unwrap(),
            vec![("author".to_string(), "me=you".to_string())]
        );
    }
}
