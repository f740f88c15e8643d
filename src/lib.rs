//! zvfs: the virtual filesystem of Zero-OS nodes.
//!
//! Layers, bottom up (a module only uses the ones listed before it):
//! `error`; `pipeline` (the bounded worker pipeline); `sys` (host facilities: mountinfo, overlay and bind mounts, mount registry,
//! readiness, crash leftovers; it knows nothing of flists or chunks); `codec` (chunk
//! pipelines); `flist` (formats) and `store` (chunk locations and routing); `cache`
//! (bounded chunk cache) and `identity` (content checksums); `fs` (FUSE); `daemon` (the
//! mount daemon's life cycle: serve, background start, share, list, health, umount);
//! `cmd` (pack, unpack, inspect, mount management and the other subcommands); `node`
//! (Zero-OS and OCI integration); `cli` (argument parsing and dispatch).

pub mod cache;
pub mod cli;
pub mod clone;
pub mod cmd;
pub mod codec;
pub mod content;
pub mod daemon;
pub mod diff;
pub mod error;
pub mod flist;
pub mod fs;
pub mod identity;
pub mod node;
pub mod pipeline;
pub mod store;
pub mod sys;
