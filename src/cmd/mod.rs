//! The subcommands: each module is a command's arguments (clap), one call into the
//! library and the printing of its result; the flags several commands share are defined
//! once, in [`flags`]. Nothing below `cli` uses this module.

pub mod cache;
pub mod clone;
pub mod config;
pub mod convert;
pub mod dedup;
pub mod diff;
pub mod flags;
pub mod identity;
pub mod import;
pub mod inspect;
pub mod mount;
pub mod mounts;
pub mod out;
pub mod pack;
pub mod prefetch;
pub mod unpack;
pub mod verify;
pub mod warm;

pub use crate::sys::logger::{init_logging, log_to_file};
pub use flags::*;
