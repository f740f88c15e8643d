//! `zvfs verify`: check that every chunk of an flist is available from at least one of its
//! routed stores (`--deep`: fetched and fully verified, both hashes). Reports each missing
//! or corrupt chunk with the file paths that use it and exits non-zero if there is any.
//! The checking is [`crate::content::verify`]; this is its arguments and report.

use crate::content::verify::{verify, Problem};
use crate::error::{ExitCode, Result};
use crate::store::router::Router;

/// Arguments of `zvfs verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The flist.
    #[command(flatten)]
    pub flist: super::FlistArg,
    /// Stores overriding the flist's routes.
    #[command(flatten)]
    pub stores: super::RouteOverrides,
    /// Fetch every chunk and check it decrypts to the right content (both hashes).
    #[arg(long)]
    pub deep: bool,
    /// Parallelism.
    #[command(flatten)]
    pub jobs: super::Jobs,
    /// Store timeouts.
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
}

/// Check the chunks and report every problem; [`ExitCode::PROBLEMS`] when there is any.
pub fn run(args: Args) -> Result<ExitCode> {
    let fl = args.flist.open(None)?;
    let router = Router::for_flist(
        &fl.routes()?,
        &args.stores.stores,
        &args.store_flags.config(),
    )?;
    let report = verify(fl.as_ref(), &router, args.deep, args.jobs.io())?;
    let mut out = super::out::Out::new();
    let (mut missing, mut corrupt, mut unreachable) = (0, 0, 0);
    for bad in &report.bad {
        let (what, detail) = match &bad.problem {
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
        out.line(format_args!("{what} {} used by {}", bad.chunk, bad.used_by))?;
        log::debug!("{what} {}: {detail}", bad.chunk);
        if !matches!(bad.problem, Problem::Missing(_)) {
            eprintln!("  {detail}");
        }
    }
    out.finish()?;
    let verb = if args.deep {
        "fetched and verified"
    } else {
        "checked for presence"
    };
    eprintln!(
        "verify: {} chunks {verb}: {} ok, {missing} missing, {corrupt} corrupt, {unreachable} unreachable",
        report.checked,
        report.checked - report.bad.len()
    );
    Ok(if report.bad.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::PROBLEMS
    })
}
