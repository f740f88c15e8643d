//! `zvfs convert`: the command line of the convert engine ([`crate::convert`]): its
//! arguments, the routers they name, the call, and the summary line.

use std::path::PathBuf;

use crate::convert::convert_to;
use crate::error::{Context, ExitCode, Result};
use crate::flist::Route;
use crate::store::router::Router;

/// Arguments of `zvfs convert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The flist to convert (v2 or legacy).
    #[command(flatten)]
    pub flist: super::FlistArg,
    /// The new `.fl` to write (replaced atomically; nothing is written on failure).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Destination stores (the new flist's routes).
    #[command(flatten)]
    pub stores: super::DestStores,
    /// Store to read the old chunks from, overriding the flist's own routes or legacy
    /// `backend` (repeatable, `[xx-xx=]URL`).
    #[arg(long = "from-store", value_name = "URL", value_parser = super::StoreSpec)]
    pub from_stores: Vec<String>,
    /// Parallelism.
    #[command(flatten)]
    pub jobs: super::Jobs,
    /// Store timeouts.
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
}

/// Convert the flist and print the summary line (entries, files, bytes, chunks read and
/// written).
pub fn run(args: Args) -> Result<ExitCode> {
    let src = args.flist.open(None)?;
    let cfg = args.store_flags.config();
    let from = Router::for_flist(&src.routes()?, &args.from_stores, &cfg)
        .ctx("source stores (give --from-store URL)")?;
    let dest_routes = args
        .stores
        .stores
        .iter()
        .map(|s| Route::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let dest = Router::new(&dest_routes, &cfg)?;
    let s = convert_to(
        &*src,
        &from,
        &dest,
        &dest_routes,
        &args.output,
        args.jobs.cpu(),
    )?;
    let mut out = super::out::Out::new();
    out.line(format_args!(
        "converted {} ({}) to {}: {} entries, {} files, {} bytes, {} chunks read, {} chunks written{}",
        args.flist.meta.display(),
        src.format(),
        args.output.display(),
        s.entries,
        s.files,
        s.bytes,
        s.chunks_read,
        s.chunks_written,
        if s.rechunked_files > 0 {
            format!(", {} files re-cut into 512 KiB chunks", s.rechunked_files)
        } else {
            String::new()
        }
    ))?;
    out.finish()?;
    Ok(ExitCode::Ok)
}
