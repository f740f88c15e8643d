//! The request loop of one FUSE connection: read a request, decode it, hand it to the
//! filesystem with its reply object, until the filesystem is unmounted. A fresh connection
//! starts with the INIT handshake; a taken-over one (its INIT answered by an earlier
//! process) starts by asking the kernel to resend what was in flight. Malformed requests
//! are answered EINVAL, unknown ones ENOSYS, changes EROFS. It owns the connection's
//! descriptor and its one request buffer; it knows nothing of flists.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock};

use super::abi::{self, op, Args, Out};
use super::reply::*;
use super::{Filesystem, KernelConfig};

/// Largest write payload announced. Nothing is ever written (the mount is read-only),
/// but the kernel wants a read buffer of at least this plus the headers.
const MAX_WRITE: u32 = 128 * 1024;
/// The request buffer: the largest request the kernel may send with `MAX_WRITE`.
const BUFFER: usize = MAX_WRITE as usize + 4096;

/// What the handshake of the connection settled.
#[derive(Clone, Copy, Debug)]
pub struct InitInfo {
    /// The kernel's protocol version, major.
    pub major: u32,
    /// The kernel's protocol version, minor.
    pub minor: u32,
    /// What the kernel offered (`FUSE_*` flags, flags2 in the high half).
    pub capable: u64,
    /// This process took the connection over (no handshake of its own).
    pub resumed: bool,
}

impl InitInfo {
    /// The kernel can resend requests in flight (Linux 6.9 and later).
    pub fn can_resend(&self) -> bool {
        self.capable & abi::flags::HAS_RESEND != 0
    }
}

/// One connection and the filesystem that serves it.
pub struct Session<FS: Filesystem> {
    fs: FS,
    fd: Arc<OwnedFd>,
    sender: Sender,
    resume: bool,
    initialized: bool,
    destroyed: bool,
    init: Arc<OnceLock<InitInfo>>,
}

impl<FS: Filesystem> Session<FS> {
    /// A session over a new connection (`fd` from opening `/dev/fuse` and mounting).
    pub fn new(fs: FS, fd: OwnedFd) -> Session<FS> {
        Self::with(fs, fd, false)
    }

    /// A session over a connection whose handshake an earlier process did: running it
    /// asks the kernel to resend the requests that process read and did not answer.
    pub fn resume(fs: FS, fd: OwnedFd) -> Session<FS> {
        Self::with(fs, fd, true)
    }

    fn with(fs: FS, fd: OwnedFd, resume: bool) -> Session<FS> {
        let fd = Arc::new(fd);
        Session {
            fs,
            sender: Sender::new(fd.clone()),
            fd,
            resume,
            initialized: false,
            destroyed: false,
            init: Arc::new(OnceLock::new()),
        }
    }

    /// The connection's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Filled once the handshake is done (or, resumed, once serving started).
    pub fn init_info(&self) -> Arc<OnceLock<InitInfo>> {
        self.init.clone()
    }

    /// Serve until the filesystem is unmounted (`Ok`) or the connection fails.
    pub fn run(&mut self) -> std::io::Result<()> {
        if self.resume {
            self.start_resumed()?;
        }
        let mut buf = vec![0u8; BUFFER];
        loop {
            let n = match rustix::io::read(&*self.fd, &mut buf) {
                Ok(n) => n,
                // The request was interrupted before it was read; or a signal.
                Err(rustix::io::Errno::NOENT)
                | Err(rustix::io::Errno::INTR)
                | Err(rustix::io::Errno::AGAIN) => continue,
                // Unmounted (or the connection aborted).
                Err(rustix::io::Errno::NODEV) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let Some(msg) = buf.get(..n) else { continue };
            self.dispatch(msg);
        }
    }

    fn start_resumed(&mut self) -> std::io::Result<()> {
        let mut cfg = KernelConfig {
            capable: 0,
            requested: 0,
            max_readahead: 0,
            max_background: 0,
            congestion_threshold: 0,
            max_pages: 0,
        };
        if let Err(e) = self.fs.init(&mut cfg) {
            return Err(std::io::Error::from_raw_os_error(e));
        }
        self.initialized = true;
        let _ = self.init.set(InitInfo {
            major: abi::KERNEL_VERSION,
            minor: abi::KERNEL_MINOR_VERSION,
            capable: 0,
            resumed: true,
        });
        match self.sender.notify_resend() {
            Ok(()) => {
                log::info!("took the FUSE connection over; the kernel resends what was in flight")
            }
            Err(e) => log::warn!(
                "took the FUSE connection over, but the kernel cannot resend the requests in \
                 flight ({e}; FUSE_NOTIFY_RESEND needs Linux 6.9): readers of those wait forever"
            ),
        }
        Ok(())
    }

    fn dispatch(&mut self, msg: &[u8]) {
        let Some((h, mut a)) = abi::in_header(msg) else {
            log::warn!("FUSE: malformed request of {} bytes ignored", msg.len());
            return;
        };
        let s = self.sender.clone();
        let u = h.unique;
        let ino = h.nodeid;
        if h.opcode == op::INIT {
            return self.init(u, &mut a);
        }
        if !self.initialized {
            log::warn!("FUSE: request {} before INIT", h.opcode);
            return s.send(u, libc::EIO, &[]);
        }
        let fs = &mut self.fs;
        macro_rules! args {
            ($e:expr) => {
                match $e {
                    Some(v) => v,
                    None => return s.send(u, libc::EINVAL, &[]),
                }
            };
        }
        match h.opcode {
            op::LOOKUP => {
                let name = args!(a.name());
                fs.lookup(ino, name, ReplyEntry::new(u, s))
            }
            op::FORGET | op::BATCH_FORGET => {} // no reply; inodes live as long as the flist
            op::GETATTR => fs.getattr(ino, ReplyAttr::new(u, s)),
            op::READLINK => fs.readlink(ino, ReplyData::new(u, s)),
            op::OPEN => {
                let flags = args!(a.u32());
                fs.open(ino, flags as i32, ReplyOpen::new(u, s))
            }
            op::READ => {
                let (fh, off, size) = args!(read_in(&mut a));
                fs.read(ino, fh, off as i64, size, ReplyData::new(u, s))
            }
            op::RELEASE => {
                let fh = args!(a.u64());
                fs.release(ino, fh, ReplyEmpty::new(u, s))
            }
            op::OPENDIR => fs.opendir(ino, ReplyOpen::new(u, s)),
            op::READDIR => {
                let (fh, off, size) = args!(read_in(&mut a));
                let r = ReplyDirectory::new(u, s, size as usize);
                fs.readdir(ino, fh, off as i64, r)
            }
            op::READDIRPLUS => {
                let (fh, off, size) = args!(read_in(&mut a));
                let r = ReplyDirectoryPlus::new(u, s, size as usize);
                fs.readdirplus(ino, fh, off as i64, r)
            }
            op::RELEASEDIR => {
                let fh = args!(a.u64());
                fs.releasedir(ino, fh, ReplyEmpty::new(u, s))
            }
            op::STATFS => fs.statfs(ino, ReplyStatfs::new(u, s)),
            op::GETXATTR => {
                let size = args!(a.u32());
                let _padding = args!(a.u32());
                let name = args!(a.name());
                fs.getxattr(ino, name, size, ReplyXattr::new(u, s))
            }
            op::LISTXATTR => {
                let size = args!(a.u32());
                fs.listxattr(ino, size, ReplyXattr::new(u, s))
            }
            op::ACCESS => {
                let mask = args!(a.u32());
                fs.access(ino, mask as i32, ReplyEmpty::new(u, s))
            }
            op::FLUSH => s.send(u, 0, &[]),
            op::DESTROY => {
                if !self.destroyed {
                    self.destroyed = true;
                    self.fs.destroy();
                }
                s.send(u, 0, &[])
            }
            op::SETATTR
            | op::SYMLINK
            | op::MKNOD
            | op::MKDIR
            | op::UNLINK
            | op::RMDIR
            | op::RENAME
            | op::RENAME2
            | op::LINK
            | op::WRITE
            | op::CREATE
            | op::TMPFILE
            | op::SETXATTR
            | op::REMOVEXATTR
            | op::FALLOCATE
            | op::COPY_FILE_RANGE => s.send(u, libc::EROFS, &[]),
            // Interrupts (answered ENOSYS: the kernel then stops sending them), fsync,
            // locks (the kernel then keeps them locally), ioctl, poll, lseek, bmap, ...
            _ => s.send(u, libc::ENOSYS, &[]),
        }
    }

    fn init(&mut self, unique: u64, a: &mut Args<'_>) {
        let s = &self.sender;
        let Some(init) = abi::init_in(a) else {
            return s.send(unique, libc::EINVAL, &[]);
        };
        if init.major != abi::KERNEL_VERSION || init.minor < 6 {
            log::error!(
                "FUSE protocol {}.{} is not supported (7.6 or later 7.x)",
                init.major,
                init.minor
            );
            return s.send(unique, libc::EPROTO, &[]);
        }
        use abi::flags::*;
        let mut cfg = KernelConfig {
            capable: init.flags,
            requested: ASYNC_READ | BIG_WRITES | MAX_PAGES,
            max_readahead: init.max_readahead,
            max_background: 16,
            congestion_threshold: 12,
            max_pages: 256,
        };
        // Known before the filesystem's init runs (which may signal readiness).
        let _ = self.init.set(InitInfo {
            major: init.major,
            minor: init.minor,
            capable: init.flags,
            resumed: false,
        });
        if let Err(e) = self.fs.init(&mut cfg) {
            return s.send(unique, e, &[]);
        }
        // Only what the kernel offered, and no flags2 (INIT_EXT is not asked for).
        let flags = init.flags & cfg.requested & 0xffff_ffff;
        let mut o = Out::with_capacity(64);
        abi::init_out(
            &mut o,
            cfg.max_readahead.min(init.max_readahead),
            flags,
            cfg.max_background,
            cfg.congestion_threshold.min(cfg.max_background),
            MAX_WRITE,
            cfg.max_pages,
        );
        self.initialized = true;
        log::debug!(
            "FUSE INIT: kernel {}.{}, flags {:#x} of {:#x}",
            init.major,
            init.minor,
            flags,
            init.flags
        );
        s.send(unique, 0, &[&o.0])
    }
}

impl<FS: Filesystem> Drop for Session<FS> {
    fn drop(&mut self) {
        if !self.destroyed {
            self.destroyed = true;
            self.fs.destroy();
        }
    }
}

/// `struct fuse_read_in`: handle, offset, size.
fn read_in(a: &mut Args<'_>) -> Option<(u64, u64, u32)> {
    Some((a.u64()?, a.u64()?, a.u32()?))
}
