//! The FUSE wire format as the kernel's `linux/fuse.h` defines it (protocol 7.31, plus the
//! 7.40 resend notification): opcodes, flags, the decoding of what the kernel sends and
//! the encoding of what the filesystem answers. Plain native-endian byte layouts built
//! and read field by field (no `unsafe`, no transmutes); every read is bounds-checked, so
//! a short or odd message decodes to `None`, never to a panic. It knows no filesystem.
// The constants, fields and builders mirror linux/fuse.h one for one, under its names;
// that header is their documentation.
#![allow(missing_docs)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

/// The protocol major version spoken.
pub const KERNEL_VERSION: u32 = 7;
/// The protocol minor version announced in the INIT reply.
pub const KERNEL_MINOR_VERSION: u32 = 31;

/// Opcodes (`enum fuse_opcode`).
pub mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
    pub const COPY_FILE_RANGE: u32 = 47;
    pub const TMPFILE: u32 = 51;
}

/// INIT flags (`FUSE_*`), the low 32 bits in `flags`, the high ones in `flags2`.
pub mod flags {
    pub const ASYNC_READ: u64 = 1 << 0;
    pub const BIG_WRITES: u64 = 1 << 5;
    pub const DO_READDIRPLUS: u64 = 1 << 13;
    pub const READDIRPLUS_AUTO: u64 = 1 << 14;
    pub const PARALLEL_DIROPS: u64 = 1 << 18;
    pub const MAX_PAGES: u64 = 1 << 22;
    pub const CACHE_SYMLINKS: u64 = 1 << 23;
    pub const INIT_EXT: u64 = 1 << 30;
    /// The kernel can resend the requests in flight (`FUSE_NOTIFY_RESEND`, Linux 6.9).
    pub const HAS_RESEND: u64 = 1 << 39;
}

/// Open reply flags (`FOPEN_*`).
pub mod fopen {
    pub const KEEP_CACHE: u32 = 1 << 1;
    pub const CACHE_DIR: u32 = 1 << 3;
}

/// Notification code asking the kernel to queue again every request it sent and has not
/// had an answer to (`FUSE_NOTIFY_RESEND`).
pub const NOTIFY_RESEND: i32 = 7;

/// `sizeof(struct fuse_in_header)`.
pub const IN_HEADER: usize = 40;
/// `sizeof(struct fuse_out_header)`.
pub const OUT_HEADER: usize = 16;
/// `sizeof(struct fuse_attr)`.
const ATTR: usize = 88;
/// `sizeof(struct fuse_entry_out)`.
pub const ENTRY_OUT: usize = 40 + ATTR;

/// One request's header.
#[derive(Clone, Copy, Debug)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// A bounds-checked reader over a request's bytes.
pub struct Args<'a>(&'a [u8]);

impl<'a> Args<'a> {
    pub fn new(b: &'a [u8]) -> Args<'a> {
        Args(b)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_ne_bytes(self.take(2)?.try_into().ok()?))
    }

    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.take(4)?.try_into().ok()?))
    }

    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A NUL-terminated name (the NUL consumed, not returned).
    pub fn name(&mut self) -> Option<&'a OsStr> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let s = self.take(end)?;
        self.take(1)?;
        Some(OsStr::from_bytes(s))
    }

    /// What is left.
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }
}

/// Decode a request header; `None` when the message is shorter than a header or than
/// the length it claims.
pub fn in_header(msg: &[u8]) -> Option<(InHeader, Args<'_>)> {
    let mut a = Args::new(msg);
    let h = InHeader {
        len: a.u32()?,
        opcode: a.u32()?,
        unique: a.u64()?,
        nodeid: a.u64()?,
        uid: a.u32()?,
        gid: a.u32()?,
        pid: a.u32()?,
    };
    a.take(4)?; // total_extlen, padding
    if (h.len as usize) < IN_HEADER || h.len as usize > msg.len() {
        return None;
    }
    let body = msg.get(IN_HEADER..h.len as usize)?;
    Some((h, Args::new(body)))
}

/// A growable little builder of native-endian structures.
#[derive(Default)]
pub struct Out(pub Vec<u8>);

impl Out {
    pub fn with_capacity(n: usize) -> Out {
        Out(Vec::with_capacity(n))
    }
    pub fn u16(&mut self, v: u16) -> &mut Out {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Out {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Out {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn zeros(&mut self, n: usize) -> &mut Out {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

/// `struct fuse_out_header`.
pub fn out_header(len: usize, error: i32, unique: u64) -> [u8; OUT_HEADER] {
    let mut h = [0u8; OUT_HEADER];
    h[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    h[4..8].copy_from_slice(&error.to_ne_bytes());
    h[8..16].copy_from_slice(&unique.to_ne_bytes());
    h
}

/// The type of an inode, as the mode's format bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    NamedPipe,
    CharDevice,
    BlockDevice,
    Directory,
    RegularFile,
    Symlink,
    Socket,
}

impl FileType {
    /// The `S_IF*` bits.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::NamedPipe => libc::S_IFIFO,
            FileType::CharDevice => libc::S_IFCHR,
            FileType::BlockDevice => libc::S_IFBLK,
            FileType::Directory => libc::S_IFDIR,
            FileType::RegularFile => libc::S_IFREG,
            FileType::Symlink => libc::S_IFLNK,
            FileType::Socket => libc::S_IFSOCK,
        }
    }

    /// The `DT_*` value of a directory entry.
    pub fn dirent_type(self) -> u32 {
        self.mode_bits() >> 12
    }
}

/// The attributes of an inode (`struct fuse_attr`); times in whole seconds since the
/// epoch (negative before it).
#[derive(Clone, Copy, Debug)]
pub struct FileAttr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub kind: FileType,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
    pub flags: u32,
}

impl FileAttr {
    fn encode(&self, o: &mut Out) {
        // The kernel reads the seconds as signed 64-bit values.
        o.u64(self.ino)
            .u64(self.size)
            .u64(self.blocks)
            .u64(self.atime as u64)
            .u64(self.mtime as u64)
            .u64(self.ctime as u64)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(self.kind.mode_bits() | self.perm as u32)
            .u32(self.nlink)
            .u32(self.uid)
            .u32(self.gid)
            .u32(self.rdev)
            .u32(self.blksize)
            .u32(self.flags);
    }
}

fn ttl_parts(ttl: &Duration) -> (u64, u32) {
    (ttl.as_secs(), ttl.subsec_nanos())
}

/// `struct fuse_entry_out`.
pub fn entry_out(o: &mut Out, ttl: &Duration, attr: &FileAttr, generation: u64) {
    let (s, ns) = ttl_parts(ttl);
    o.u64(attr.ino)
        .u64(generation)
        .u64(s)
        .u64(s)
        .u32(ns)
        .u32(ns);
    attr.encode(o);
}

/// `struct fuse_attr_out`.
pub fn attr_out(o: &mut Out, ttl: &Duration, attr: &FileAttr) {
    let (s, ns) = ttl_parts(ttl);
    o.u64(s).u32(ns).u32(0);
    attr.encode(o);
}

/// `struct fuse_open_out`.
pub fn open_out(o: &mut Out, fh: u64, open_flags: u32) {
    o.u64(fh).u32(open_flags).u32(0);
}

/// `struct fuse_statfs_out`.
#[allow(clippy::too_many_arguments)]
pub fn statfs_out(
    o: &mut Out,
    blocks: u64,
    bfree: u64,
    bavail: u64,
    files: u64,
    ffree: u64,
    bsize: u32,
    namelen: u32,
    frsize: u32,
) {
    o.u64(blocks)
        .u64(bfree)
        .u64(bavail)
        .u64(files)
        .u64(ffree)
        .u32(bsize)
        .u32(namelen)
        .u32(frsize)
        .u32(0)
        .zeros(24);
}

/// The 8-byte alignment of directory records.
pub fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// One `struct fuse_dirent` with its name and padding.
pub fn dirent(o: &mut Out, ino: u64, next: i64, kind: FileType, name: &[u8]) {
    let start = o.0.len();
    o.u64(ino)
        .u64(next as u64)
        .u32(name.len() as u32)
        .u32(kind.dirent_type());
    o.0.extend_from_slice(name);
    let padded = align8(o.0.len() - start);
    o.0.resize(start + padded, 0);
}

/// The size of a plain directory record for `name`.
pub fn dirent_size(name: &[u8]) -> usize {
    align8(24 + name.len())
}

/// The size of a directory record with attributes for `name`.
pub fn direntplus_size(name: &[u8]) -> usize {
    align8(ENTRY_OUT + 24 + name.len())
}

/// The INIT request's arguments (`struct fuse_init_in`, flags2 folded into `flags`).
#[derive(Clone, Copy, Debug)]
pub struct InitIn {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    pub flags: u64,
}

pub fn init_in(a: &mut Args<'_>) -> Option<InitIn> {
    let major = a.u32()?;
    let minor = a.u32()?;
    let max_readahead = a.u32()?;
    let low = a.u32()? as u64;
    // flags2 exists from 7.36 on, when the kernel sets INIT_EXT.
    let high = if low & flags::INIT_EXT != 0 {
        a.u32().unwrap_or(0) as u64
    } else {
        0
    };
    Some(InitIn {
        major,
        minor,
        max_readahead,
        flags: low | (high << 32),
    })
}

/// `struct fuse_init_out` (64 bytes).
#[allow(clippy::too_many_arguments)]
pub fn init_out(
    o: &mut Out,
    max_readahead: u32,
    flags: u64,
    max_background: u16,
    congestion_threshold: u16,
    max_write: u32,
    max_pages: u16,
) {
    o.u32(KERNEL_VERSION)
        .u32(KERNEL_MINOR_VERSION)
        .u32(max_readahead)
        .u32(flags as u32)
        .u16(max_background)
        .u16(congestion_threshold)
        .u32(max_write)
        .u32(1) // time_gran: nanoseconds
        .u16(max_pages)
        .u16(0) // map_alignment
        .u32((flags >> 32) as u32)
        .zeros(28);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr() -> FileAttr {
        FileAttr {
            ino: 5,
            size: 10,
            blocks: 1,
            atime: -1,
            mtime: 2,
            ctime: 3,
            kind: FileType::Symlink,
            perm: 0o777,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    #[test]
    fn structures_have_the_kernels_sizes() {
        let mut o = Out::default();
        entry_out(&mut o, &Duration::from_secs(1), &attr(), 0);
        assert_eq!(o.0.len(), ENTRY_OUT);
        assert_eq!(ENTRY_OUT, 128);
        let mut o = Out::default();
        attr_out(&mut o, &Duration::from_secs(1), &attr());
        assert_eq!(o.0.len(), 104);
        let mut o = Out::default();
        init_out(&mut o, 1, 2, 3, 4, 5, 6);
        assert_eq!(o.0.len(), 64);
        let mut o = Out::default();
        statfs_out(&mut o, 1, 2, 3, 4, 5, 6, 7, 8);
        assert_eq!(o.0.len(), 80);
        let mut o = Out::default();
        dirent(&mut o, 1, 2, FileType::Directory, b"abc");
        assert_eq!(o.0.len(), 32);
        assert_eq!(dirent_size(b"abc"), 32);
        assert_eq!(u32::from_ne_bytes(o.0[20..24].try_into().unwrap()), 4);
    }

    #[test]
    fn short_or_lying_headers_decode_to_none() {
        assert!(in_header(&[0u8; 39]).is_none());
        let mut m = vec![0u8; 48];
        m[0..4].copy_from_slice(&100u32.to_ne_bytes());
        assert!(in_header(&m).is_none());
        m[0..4].copy_from_slice(&48u32.to_ne_bytes());
        m[4..8].copy_from_slice(&op::LOOKUP.to_ne_bytes());
        m[40..44].copy_from_slice(b"ab\0\0");
        let (h, mut a) = in_header(&m).unwrap();
        assert_eq!(h.opcode, op::LOOKUP);
        assert_eq!(a.name().unwrap(), "ab");
        let mut a = Args::new(b"no nul");
        assert!(a.name().is_none());
    }
}
