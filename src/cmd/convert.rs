//! `zvfs convert`: the command line of the convert engine ([`crate::convert`]): its
//! arguments, the routers they name, the call, and the summary line.

use std::path::PathBuf;

use crate::convert::convert_to;
use crate::error::{Context, Result};
use crate::flist::{self, Route};
use crate::store::router::Router;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Flist to convert (a legacy `.flist`; any flist is accepted).
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// The new `.fl` to write (replaced atomically; nothing is written on failure).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Store receiving the re-encoded chunks, `[xx-xx=]URL` (repeatable; recorded as the
    /// new flist's routes, without passwords).
    #[arg(short = 's', long = "store", required = true, value_parser = super::StoreSpec)]
    pub stores: Vec<String>,
    /// Store to read the old chunks from, overriding the flist's own routes or legacy
    /// `backend` (repeatable, `[xx-xx=]URL`).
    #[arg(long = "from-store")]
    pub from_stores: Vec<String>,
    /// Files converted in parallel.
    #[arg(short = 'j', long = "jobs", default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
}

pub fn run(args: Args) -> Result<i32> {
    let src = flist::open(&args.meta)?;
    let cfg = args.store_flags.config();
    let from = Router::for_flist(&src.routes()?, &args.from_stores, &cfg)
        .ctx("source stores (give --from-store URL)")?;
    let dest_routes = args
        .stores
        .iter()
        .map(|s| Route::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let dest = Router::new(&dest_routes, &cfg)?;
    let s = convert_to(&*src, &from, &dest, &dest_routes, &args.output, args.jobs)?;
    println!(
        "converted {} ({}) to {}: {} entries, {} files, {} bytes, {} chunks read, {} chunks written{}",
        args.meta.display(),
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
    );
    Ok(0)
}
