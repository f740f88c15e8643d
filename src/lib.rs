//! zvfs: the virtual filesystem of Zero-OS nodes, as a library; the `zvfs` binary is a
//! thin command line over it (`cli`, `cmd`).
//!
//! Layers, bottom up (a module only uses the ones listed before it; README "Code map"):
//! `error` (errors, errno, exit codes); `pipeline` (the bounded worker pipeline); `sys`
//! (host facilities: atomic file replacement, crash leftovers, logging, mountinfo,
//! overlay and bind mounts, mount registry, readiness; it knows nothing of flists or
//! chunks); `codec` (chunk pipelines); `flist` (formats) and `store` (chunk locations and
//! routing); `image` (container images: registry, OCI layout, docker-archive; verified
//! layer streams); `cache` (bounded chunk cache) and `identity` (content checksums); `content`
//! (reading the content of flist files: chunk source, file reader, verify, warm); `fs`
//! (FUSE); `diff`, `clone`, `pack`, `unpack` and `convert` (the engines that compare,
//! copy, write, restore and re-encode flists); `daemon` (the mount daemon's life cycle:
//! serve, background start, share, list, health, umount); `node` (Zero-OS and OCI
//! integration); `cmd` (the subcommands: arguments, a call into the library, printing);
//! `cli` (parsing, dispatch, exit codes). `fuse` (the FUSE protocol: requests, replies,
//! the session loop, connection takeover) sits beside `sys`, below `fs`.

pub mod cache;
pub mod cli;
pub mod clone;
pub mod cmd;
pub mod codec;
pub mod content;
pub mod convert;
pub mod daemon;
pub mod diff;
pub mod error;
pub mod flist;
pub mod fs;
pub mod fuse;
pub mod identity;
pub mod image;
pub mod import;
pub mod node;
pub mod pack;
pub mod pipeline;
pub mod store;
pub mod sys;
pub mod unpack;
