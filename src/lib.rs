//! zvfs: the virtual filesystem of Zero-OS nodes.
//!
//! Layers, bottom up (a module only uses the ones listed before it):
//! `error`; `pipeline` (the bounded worker pipeline); `sys` (host facilities: mountinfo, overlay and bind mounts, mount registry,
//! readiness, crash leftovers; it knows nothing of flists or chunks); `codec` (chunk
//! pipelines); `flist` (formats) and `store` (chunk locations and routing); `cache`
//! (bounded chunk cache) and `identity` (content checksums); `content` (reading chunks of
//! an flist); `pack`, `unpack` and `convert` (the engines that write and restore trees and
//! re-encode flists); `fs` (FUSE), `cmd` (the subcommands: arguments, a call into the
//! engines, printing); `node` (Zero-OS and OCI integration); `cli` (argument parsing
//! and dispatch).

pub mod cache;
pub mod cli;
pub mod cmd;
pub mod codec;
pub mod content;
pub mod convert;
pub mod error;
pub mod flist;
pub mod fs;
pub mod identity;
pub mod node;
pub mod pack;
pub mod pipeline;
pub mod store;
pub mod sys;
pub mod unpack;
