//! `zvfs pack`: turn a directory into an flist plus chunks in stores.

use std::path::PathBuf;

use crate::error::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output flist path.
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// Store URL, optionally with a first-byte range: `[xx-xx=]URL` (repeatable).
    #[arg(short = 's', long = "store", required = true)]
    pub stores: Vec<String>,
    /// Tag to record, `key=value` (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Encoding and upload workers.
    #[arg(short = 'j', long = "jobs")]
    pub jobs: Option<usize>,
    /// Keep passwords in the routes written into the flist.
    #[arg(long)]
    pub no_strip_password: bool,
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    /// Directory to pack.
    pub source: PathBuf,
}

pub fn run(_args: Args) -> Result<i32> {
    Err(crate::error::Error::invalid("pack: not implemented yet"))
}

pub mod base;
