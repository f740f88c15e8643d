//! Operator debug commands: `inspect`, `ls`, `stat`, `cat`.

use std::path::PathBuf;

use crate::error::{Error, Result};

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// Long listing.
    #[arg(short = 'l')]
    pub long: bool,
    pub path: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct StatArgs {
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    pub path: String,
}

#[derive(clap::Args, Debug)]
pub struct CatArgs {
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    #[arg(short = 'c', long = "cache")]
    pub cache: Option<PathBuf>,
    #[arg(short = 's', long = "store")]
    pub stores: Vec<String>,
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    pub path: String,
}

pub fn inspect(_a: InspectArgs) -> Result<i32> {
    Err(Error::invalid("inspect: not implemented yet"))
}
pub fn ls(_a: LsArgs) -> Result<i32> {
    Err(Error::invalid("ls: not implemented yet"))
}
pub fn stat(_a: StatArgs) -> Result<i32> {
    Err(Error::invalid("stat: not implemented yet"))
}
pub fn cat(_a: CatArgs) -> Result<i32> {
    Err(Error::invalid("cat: not implemented yet"))
}
