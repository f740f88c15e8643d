//! `zvfs import`: the command line of the import engine ([`crate::import`]): its
//! arguments, their conversion to [`import::Options`], the call, and the summary lines.

use std::path::PathBuf;

use crate::error::{ExitCode, Result};
use crate::flist::Route;
use crate::import;
use crate::store::router::Router;

/// Arguments of `zvfs import`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output flist path.
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// Stores receiving the chunks (recorded as the flist's routes).
    #[command(flatten)]
    pub stores: super::DestStores,
    /// How to reach the image.
    #[command(flatten)]
    pub image_flags: super::ImageFlags,
    /// Tags to record (besides the `image.*` tags).
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
    /// Do not write `/.startup.toml` (the image config's start command, as rfs writes it).
    #[arg(long)]
    pub no_startup_file: bool,
    /// Cache directory holding the layer index (`layers/index.db`), shared with mounts.
    #[arg(short = 'c', long = "cache", default_value = crate::node::oci::DEFAULT_CACHE)]
    pub cache: PathBuf,
    /// Do not use or update the layer index.
    #[arg(long)]
    pub no_layer_index: bool,
    /// The image: `docker://HOST[:PORT]/NAME[:TAG|@DIGEST]`, `NAME[:TAG]` (Docker Hub),
    /// `oci:DIR[:TAG]` or `docker-archive:FILE`.
    pub image: String,
}

/// Import the image and print the summary line (and the reuse line).
pub fn run(args: Args) -> Result<ExitCode> {
    let routes = args
        .stores
        .stores
        .iter()
        .map(|s| Route::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let router = Router::new(&routes, &args.store_flags.config())?;
    let prefetch = args.prefetch.lines()?;
    let opts = import::Options {
        image: args.image.clone(),
        fetch: args.image_flags.options()?,
        output: args.meta.clone(),
        routes,
        tags: args.tags.pairs()?,
        jobs: args.jobs.cpu(),
        keep_passwords: args.passwords.no_strip_password,
        startup_file: !args.no_startup_file,
        prefetch,
        index_dir: (!args.no_layer_index).then(|| args.cache.clone()),
    };
    let s = import::import(&opts, &router)?;
    if let Some(r) = &s.prefetch {
        super::prefetch::warn_skipped(r);
    }
    let mut out = super::out::Out::new();
    out.line(format_args!(
        "imported {} into {}: {} layers ({} reused), {} entries, {} files, {} bytes, {} chunks, {} unique chunks uploaded ({} bytes), {:.2} s, {:.1} MB/s",
        s.image,
        args.meta.display(),
        s.layers,
        s.reused_layers,
        s.entries,
        s.files,
        s.bytes,
        s.chunks,
        s.uploaded,
        s.uploaded_bytes,
        s.seconds,
        s.bytes as f64 / 1e6 / s.seconds.max(1e-6)
    ))?;
    if let Some(line) = s.reuse_report() {
        out.line(format_args!("{line}"))?;
    }
    if let Some(r) = &s.prefetch {
        out.line(format_args!("{}", super::prefetch::summary_line(r)))?;
    }
    out.finish()?;
    Ok(ExitCode::Ok)
}
