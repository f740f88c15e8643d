//! Answers to kernel requests. Each request gets one reply object that may move to any
//! thread and is used once: it writes the answer (header and payload in one `writev`) to
//! the connection. A reply dropped unanswered answers EIO, so a forgotten or failed path
//! never leaves a process hanging on the mount. It knows no filesystem.

use std::ffi::OsStr;
use std::io::IoSlice;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use libc::c_int;

use super::abi::{self, FileAttr, FileType, Out};

/// Writes answers to the connection; shared by every reply of a session.
#[derive(Clone)]
pub struct Sender {
    fd: Arc<OwnedFd>,
}

impl Sender {
    pub(super) fn new(fd: Arc<OwnedFd>) -> Sender {
        Sender { fd }
    }

    /// Write one message: the header (`error`, `unique`) followed by `parts`.
    pub(super) fn send(&self, unique: u64, error: c_int, parts: &[&[u8]]) {
        let len = abi::OUT_HEADER + parts.iter().map(|p| p.len()).sum::<usize>();
        let header = abi::out_header(len, -error, unique);
        let mut iov = Vec::with_capacity(parts.len() + 1);
        iov.push(IoSlice::new(&header));
        iov.extend(parts.iter().map(|p| IoSlice::new(p)));
        match rustix::io::writev(&*self.fd, &iov) {
            Ok(_) => {}
            // The request was interrupted and is gone: nothing to answer any more.
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => log::debug!("FUSE reply to request {unique}: {e}"),
        }
    }

    /// Ask the kernel to queue again what it sent and has no answer to. `Err` when the
    /// kernel does not know the notification (before Linux 6.9).
    pub(super) fn notify_resend(&self) -> std::io::Result<()> {
        let header = abi::out_header(abi::OUT_HEADER, abi::NOTIFY_RESEND, 0);
        rustix::io::write(&*self.fd, &header)
            .map(|_| ())
            .map_err(std::io::Error::from)
    }
}

/// The part every reply shares: where to write, and whether it was answered.
struct Reply {
    unique: u64,
    sender: Option<Sender>,
}

impl Reply {
    fn new(unique: u64, sender: Sender) -> Reply {
        Reply {
            unique,
            sender: Some(sender),
        }
    }

    fn send(mut self, error: c_int, parts: &[&[u8]]) {
        if let Some(s) = self.sender.take() {
            s.send(self.unique, error, parts);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(s) = self.sender.take() {
            log::debug!("FUSE request {} dropped unanswered: EIO", self.unique);
            s.send(self.unique, libc::EIO, &[]);
        }
    }
}

macro_rules! reply_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        pub struct $name(Reply);

        impl $name {
            pub(super) fn new(unique: u64, sender: Sender) -> $name {
                $name(Reply::new(unique, sender))
            }

            /// Answer with an error number.
            pub fn error(self, errno: c_int) {
                self.0.send(errno, &[])
            }
        }
    };
}

reply_type!(
    /// An answer without payload.
    ReplyEmpty
);
reply_type!(
    /// The answer to a lookup.
    ReplyEntry
);
reply_type!(
    /// Attributes.
    ReplyAttr
);
reply_type!(
    /// Bytes (a read, a symlink's target).
    ReplyData
);
reply_type!(
    /// A file or directory handle.
    ReplyOpen
);
reply_type!(
    /// Filesystem totals.
    ReplyStatfs
);
reply_type!(
    /// An xattr value or list, or its size.
    ReplyXattr
);

impl ReplyEmpty {
    /// Answer success.
    pub fn ok(self) {
        self.0.send(0, &[])
    }
}

impl ReplyEntry {
    /// The entry found, valid for `ttl`.
    pub fn entry(self, ttl: &Duration, attr: &FileAttr, generation: u64) {
        let mut o = Out::with_capacity(abi::ENTRY_OUT);
        abi::entry_out(&mut o, ttl, attr, generation);
        self.0.send(0, &[&o.0])
    }
}

impl ReplyAttr {
    /// The attributes, valid for `ttl`.
    pub fn attr(self, ttl: &Duration, attr: &FileAttr) {
        let mut o = Out::with_capacity(104);
        abi::attr_out(&mut o, ttl, attr);
        self.0.send(0, &[&o.0])
    }
}

impl ReplyData {
    /// The bytes.
    pub fn data(self, data: &[u8]) {
        self.0.send(0, &[data])
    }
}

impl ReplyOpen {
    /// The handle and its `FOPEN_*` flags.
    pub fn opened(self, fh: u64, flags: u32) {
        let mut o = Out::with_capacity(16);
        abi::open_out(&mut o, fh, flags);
        self.0.send(0, &[&o.0])
    }
}

impl ReplyStatfs {
    #[allow(clippy::too_many_arguments)]
    /// The totals, as `statfs(2)` gives them.
    pub fn statfs(
        self,
        blocks: u64,
        bfree: u64,
        bavail: u64,
        files: u64,
        ffree: u64,
        bsize: u32,
        namelen: u32,
        frsize: u32,
    ) {
        let mut o = Out::with_capacity(80);
        abi::statfs_out(
            &mut o, blocks, bfree, bavail, files, ffree, bsize, namelen, frsize,
        );
        self.0.send(0, &[&o.0])
    }
}

impl ReplyXattr {
    /// The size a buffer needs (the answer to a request of size 0).
    pub fn size(self, size: u32) {
        let mut o = Out::with_capacity(8);
        o.u32(size).u32(0);
        self.0.send(0, &[&o.0])
    }

    /// The value or the list.
    pub fn data(self, data: &[u8]) {
        self.0.send(0, &[data])
    }
}

/// A directory listing, filled entry by entry up to the size the kernel asked for.
pub struct ReplyDirectory {
    reply: Reply,
    max: usize,
    buf: Out,
}

impl ReplyDirectory {
    pub(super) fn new(unique: u64, sender: Sender, max: usize) -> ReplyDirectory {
        ReplyDirectory {
            reply: Reply::new(unique, sender),
            max,
            buf: Out::with_capacity(max.min(64 * 1024)),
        }
    }

    /// Add an entry; `true` when it did not fit (the listing is full).
    pub fn add(&mut self, ino: u64, next: i64, kind: FileType, name: &OsStr) -> bool {
        let name = name.as_bytes();
        if self.buf.0.len() + abi::dirent_size(name) > self.max {
            return true;
        }
        abi::dirent(&mut self.buf, ino, next, kind, name);
        false
    }

    /// Send the entries added.
    pub fn ok(self) {
        self.reply.send(0, &[&self.buf.0])
    }

    /// Answer with an error number.
    pub fn error(self, errno: c_int) {
        self.reply.send(errno, &[])
    }
}

/// A directory listing with each entry's attributes (readdirplus).
pub struct ReplyDirectoryPlus {
    reply: Reply,
    max: usize,
    buf: Out,
}

impl ReplyDirectoryPlus {
    pub(super) fn new(unique: u64, sender: Sender, max: usize) -> ReplyDirectoryPlus {
        ReplyDirectoryPlus {
            reply: Reply::new(unique, sender),
            max,
            buf: Out::with_capacity(max.min(64 * 1024)),
        }
    }

    /// Add an entry; `true` when it did not fit (the listing is full).
    pub fn add(
        &mut self,
        ino: u64,
        next: i64,
        name: &OsStr,
        ttl: &Duration,
        attr: &FileAttr,
        generation: u64,
    ) -> bool {
        let name = name.as_bytes();
        if self.buf.0.len() + abi::direntplus_size(name) > self.max {
            return true;
        }
        abi::entry_out(&mut self.buf, ttl, attr, generation);
        abi::dirent(&mut self.buf, ino, next, attr.kind, name);
        false
    }

    /// Send the entries added.
    pub fn ok(self) {
        self.reply.send(0, &[&self.buf.0])
    }

    /// Answer with an error number.
    pub fn error(self, errno: c_int) {
        self.reply.send(errno, &[])
    }
}
