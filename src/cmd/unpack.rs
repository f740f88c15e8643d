//! `zvfs unpack`: restore a tree, or some paths of it, from an flist.

use std::path::PathBuf;

use crate::error::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Flist to read.
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// Chunk cache directory.
    #[arg(short = 'c', long = "cache")]
    pub cache: Option<PathBuf>,
    /// Store URL overriding the flist's routes (repeatable).
    #[arg(short = 's', long = "store")]
    pub stores: Vec<String>,
    /// Restore owners (uid/gid).
    #[arg(short = 'p', long = "preserve-ownership")]
    pub preserve: bool,
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    /// Target directory.
    pub target: PathBuf,
    /// Only these paths of the flist.
    pub paths: Vec<String>,
}

pub fn run(_args: Args) -> Result<i32> {
    Err(crate::error::Error::invalid("unpack: not implemented yet"))
}
