//! `zvfs clone`: copy every chunk of an flist from its routed stores to other stores,
//! byte for byte as stored, each object verified (both hashes) before it is written.
//! Optionally points the flist's routes at the new stores (atomic edit). A chunk already
//! present in every destination store is skipped. A local rfs-layout cache of plaintext
//! chunks (`-c`) is used as a source first: a cached chunk is re-encoded (the encoding is
//! deterministic) and used only if it gives back exactly the chunk's id. The copying is
//! [`crate::clone`]; this is its arguments, the route update and the report.

use std::path::PathBuf;

use crate::clone::copy_chunks;
use crate::error::{Error, ExitCode, Result};
use crate::store::router::Router;

/// Arguments of `zvfs clone`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The flist.
    #[command(flatten)]
    pub flist: super::FlistArg,
    /// Destination stores.
    #[command(flatten)]
    pub stores: super::DestStores,
    /// Cache of plaintext chunks (`<cache>/<hh>/<hh>/<hex id>`) to read before the stores.
    #[arg(short = 'c', long = "cache")]
    pub cache: Option<PathBuf>,
    /// Rewrite the flist's routes to the destination stores once every chunk is copied.
    #[arg(long)]
    pub update_routes: bool,
    /// Passwords in the routes written by `--update-routes`.
    #[command(flatten)]
    pub passwords: super::KeepPasswords,
    /// Parallelism.
    #[command(flatten)]
    pub jobs: super::Jobs,
    /// Store timeouts.
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
}

/// Copy the chunks, update the routes if asked, print the report; any chunk that could
/// not be copied is an error.
pub fn run(args: Args) -> Result<ExitCode> {
    let fl = args.flist.open(None)?;
    let cfg = args.store_flags.config();
    let source = Router::for_flist(&fl.routes()?, &[], &cfg)?;
    let dest = Router::for_flist(&[], &args.stores.stores, &cfg)?;
    // fail early, before copying anything, if routes cannot be written
    let new_routes = if args.update_routes {
        Some(super::config::routes_to_write(
            &args.stores.stores,
            args.passwords.no_strip_password,
        )?)
    } else {
        None
    };
    let report = copy_chunks(
        fl.as_ref(),
        &source,
        &dest,
        args.cache.as_deref(),
        args.jobs.io(),
    )?;
    for (chunk, e) in &report.failed {
        eprintln!("zvfs: clone: chunk {chunk}: {e}");
    }
    let failed = report.failed.len();
    eprintln!(
        "clone: {} chunks: {} copied ({} from the cache), {} already present, {failed} failed",
        report.chunks, report.copied, report.from_cache, report.skipped
    );
    if failed > 0 {
        return Err(Error::store(format!(
            "clone: {failed} chunks could not be copied{}",
            if new_routes.is_some() {
                "; routes left unchanged"
            } else {
                ""
            }
        )));
    }
    if let Some(routes) = new_routes {
        drop(fl);
        crate::flist::v2::edit_atomically(&args.flist.meta, |ed| {
            ed.delete_all_routes()?;
            routes.iter().try_for_each(|r| ed.add_route(r))
        })?;
        eprintln!(
            "clone: routes of {} now point to the new stores",
            args.flist.meta.display()
        );
    }
    Ok(ExitCode::Ok)
}
