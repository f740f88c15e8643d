//! The FUSE protocol, as a small library of our own: reading requests from a `/dev/fuse`
//! connection, handing them to a [`Filesystem`] with a reply object each, and writing the
//! answers. It serves a read-only filesystem: every request that would change something
//! is answered EROFS here, never reaching the filesystem.
//!
//! Why not a crate (README, "Choices"): a mount must survive its daemon (issue 20). The
//! connection outlives a dead worker, and a new worker takes it over without the INIT
//! handshake (the kernel sends INIT once per connection), after asking the kernel to
//! resend what the dead one had read (`FUSE_NOTIFY_RESEND`). `fuser` refuses every request
//! of a session that has not seen INIT; `fuse-backend-rs` can take a connection over but
//! answers each request synchronously on the thread that read it, through a per-thread
//! buffer that every read's data is copied into. Here replies are objects that move to the
//! worker pools and are written straight from the cache's buffers, as before.
//!
//! Files: `abi` (the wire format), `reply` (the answers), `session` (the request loop),
//! `fusermount` (mounting without root). This module knows nothing of flists or chunks.

pub mod abi;
pub mod fusermount;
mod reply;
mod session;

use std::ffi::OsStr;

use libc::c_int;

pub use abi::{FileAttr, FileType};
pub use reply::{
    ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyXattr,
};
pub use session::{InitInfo, Session};

/// What the filesystem asks of the kernel in the INIT handshake.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    /// What the kernel offers (`FUSE_*` flags, flags2 in the high half).
    pub capable: u64,
    /// What the filesystem asks for (only what the kernel offers is sent).
    pub requested: u64,
    /// Largest read-ahead (the kernel's offer caps it).
    pub max_readahead: u32,
    /// Background requests (read-ahead, async reads) the kernel may have in flight.
    pub max_background: u16,
    /// Background requests at which the kernel considers the connection congested.
    pub congestion_threshold: u16,
    /// Largest request payload in 4 KiB pages (reads up to this size).
    pub max_pages: u16,
}

/// The filesystem side of a session: one call per request, each with its reply, which
/// may be answered later from another thread. Called from the session's thread only.
pub trait Filesystem: Send + 'static {
    /// The handshake (or, on a taken-over connection, the start of serving): adjust
    /// `config`; an error refuses the mount.
    fn init(&mut self, config: &mut KernelConfig) -> Result<(), c_int>;
    /// The connection ends.
    fn destroy(&mut self);
    /// The entry `name` in directory `parent`.
    fn lookup(&mut self, parent: u64, name: &OsStr, reply: ReplyEntry);
    /// An inode's attributes.
    fn getattr(&mut self, ino: u64, reply: ReplyAttr);
    /// A symlink's target.
    fn readlink(&mut self, ino: u64, reply: ReplyData);
    /// Open a file; `flags` are the open(2) flags.
    fn open(&mut self, ino: u64, flags: i32, reply: ReplyOpen);
    /// `size` bytes of open file `fh` from `offset`.
    fn read(&mut self, ino: u64, fh: u64, offset: i64, size: u32, reply: ReplyData);
    /// The last close of open file `fh`.
    fn release(&mut self, ino: u64, fh: u64, reply: ReplyEmpty);
    /// Open a directory.
    fn opendir(&mut self, ino: u64, reply: ReplyOpen);
    /// Directory entries from `offset` (a cookie an earlier entry gave).
    fn readdir(&mut self, ino: u64, fh: u64, offset: i64, reply: ReplyDirectory);
    /// Directory entries with their attributes, from `offset`.
    fn readdirplus(&mut self, ino: u64, fh: u64, offset: i64, reply: ReplyDirectoryPlus);
    /// Close directory handle `fh`.
    fn releasedir(&mut self, ino: u64, fh: u64, reply: ReplyEmpty);
    /// Filesystem totals.
    fn statfs(&mut self, ino: u64, reply: ReplyStatfs);
    /// One xattr: its value, or its size when `size` is 0.
    fn getxattr(&mut self, ino: u64, name: &OsStr, size: u32, reply: ReplyXattr);
    /// The xattr names, or their size when `size` is 0.
    fn listxattr(&mut self, ino: u64, size: u32, reply: ReplyXattr);
    /// Whether `mask` (`R_OK`, `W_OK`, `X_OK`) is allowed.
    fn access(&mut self, ino: u64, mask: i32, reply: ReplyEmpty);
}
