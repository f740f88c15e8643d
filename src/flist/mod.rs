//! The flist model every command uses, whatever the file's generation: entries (the tree,
//! names as raw bytes, modes, owners, times), chunk lists, symlink targets, xattrs,
//! hardlinks, content identity, tags and routes. `open` detects the format by content.
//! This layer reads metadata only: it never fetches chunks nor touches stores.

pub mod download;
pub mod legacy;
pub mod trace;
pub mod v2;

use std::path::Path;

use crate::codec::ChunkRef;
use crate::error::{Context, Error, Result};

/// An entry's inode number inside one flist (also the FUSE inode of a mount).
pub type Ino = u64;
/// The inode of the tree's root directory.
pub const ROOT_INO: Ino = 1;

/// Mask of the file-type bits of `st_mode` (as in `stat(2)`).
pub const S_IFMT: u32 = 0o170000;
/// File-type bits of a regular file.
pub const S_IFREG: u32 = 0o100000;
/// File-type bits of a directory.
pub const S_IFDIR: u32 = 0o040000;
/// File-type bits of a symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// File-type bits of a named pipe.
pub const S_IFIFO: u32 = 0o010000;
/// File-type bits of a character device.
pub const S_IFCHR: u32 = 0o020000;
/// File-type bits of a block device.
pub const S_IFBLK: u32 = 0o060000;
/// File-type bits of a Unix socket.
pub const S_IFSOCK: u32 = 0o140000;

/// The type of an entry, from the `S_IFMT` bits of its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Regular file (`S_IFREG`), the only kind with chunks.
    File,
    /// Directory (`S_IFDIR`).
    Dir,
    /// Symbolic link (`S_IFLNK`); its target is [`Flist::link_target`].
    Symlink,
    /// Named pipe (`S_IFIFO`).
    Fifo,
    /// Character device (`S_IFCHR`); its number is [`Entry::rdev`].
    CharDev,
    /// Block device (`S_IFBLK`); its number is [`Entry::rdev`].
    BlockDev,
    /// Unix socket (`S_IFSOCK`).
    Socket,
}

impl Kind {
    /// The kind of a full `st_mode`; `None` for an unknown file type.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & S_IFMT {
            S_IFREG => Kind::File,
            S_IFDIR => Kind::Dir,
            S_IFLNK => Kind::Symlink,
            S_IFIFO => Kind::Fifo,
            S_IFCHR => Kind::CharDev,
            S_IFBLK => Kind::BlockDev,
            S_IFSOCK => Kind::Socket,
            _ => return None,
        })
    }

    /// The kind's name as printed by `ls` and `inspect` ("file", "dir", "chardev"...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Fifo => "fifo",
            Kind::CharDev => "chardev",
            Kind::BlockDev => "blockdev",
            Kind::Socket => "socket",
        }
    }
}

/// One path of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry's inode ([`ROOT_INO`] for the root).
    pub ino: Ino,
    /// The inode of the directory holding it (0 for the root).
    pub parent: Ino,
    /// The name exactly as packed (not necessarily UTF-8).
    pub name: Vec<u8>,
    /// Full `st_mode`: type and permission bits.
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Size in bytes (`st_size`): the content length of a regular file.
    pub size: u64,
    /// Device number of a character or block device (0 otherwise).
    pub rdev: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// Status-change time, seconds since the Unix epoch.
    pub ctime: i64,
    /// Link count: 2 + subdirectories for a directory, the hardlink count for a file.
    pub nlink: u32,
    /// For the second and later paths of a hardlinked file: the inode of the first path,
    /// which owns the content. `None` otherwise.
    pub link_of: Option<Ino>,
}

impl Entry {
    /// The entry's type; an unknown type is reported as a format error by readers, so
    /// this falls back to `File` only for entries a reader already accepted.
    pub fn kind(&self) -> Kind {
        Kind::from_mode(self.mode).unwrap_or(Kind::File)
    }

    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
    /// The inode that owns this entry's content (itself unless it is a hardlink).
    pub fn content_ino(&self) -> Ino {
        self.link_of.unwrap_or(self.ino)
    }
}

/// Content identity of a regular file (formats.md section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// SHA-256 of the size and five sampled 4 KiB windows (`identity::partial_checksum`):
    /// cheap to compute, used to find candidate duplicates.
    pub partial: [u8; 32],
    /// SHA-256 of the whole content, which settles any partial collision.
    pub checksum: [u8; 32],
}

/// An inclusive range of first id bytes mapped to a store URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// First id byte of the range (0 for an unranged store).
    pub start: u8,
    /// Last id byte of the range, inclusive (255 for an unranged store).
    pub end: u8,
    /// The store's URL (may hold credentials: print it through `store::redact`).
    pub url: String,
}

impl Route {
    /// Parse `[xx-xx=]URL` as given on command lines (`-s`). An `=` before the URL's
    /// `://` starts a range, which must be two hex digits, `-`, two hex digits. Only the
    /// syntax of the range is checked here (`store::check_url` checks URLs).
    pub fn parse(spec: &str) -> Result<Route> {
        let range_end = match (spec.find('='), spec.find("://")) {
            (Some(eq), Some(scheme)) if eq < scheme => Some(eq),
            (Some(eq), None) => Some(eq),
            _ => None,
        };
        let Some(eq) = range_end else {
            return Ok(Route {
                start: 0,
                end: 255,
                url: spec.to_string(),
            });
        };
        let (range, url) = (&spec[..eq], &spec[eq + 1..]);
        let bad = |why: &str| Error::invalid(format!("bad store {range}={}: {why}", redact(url)));
        let hex = |h: &str| {
            (h.len() == 2 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u8::from_str_radix(h, 16).ok())
                .flatten()
        };
        let (start, end) = range
            .split_once('-')
            .and_then(|(a, b)| Some((hex(a)?, hex(b)?)))
            .ok_or_else(|| {
                bad("the route range must be xx-xx, two hex digits each (e.g. 00-7f=URL)")
            })?;
        if start > end {
            return Err(bad("empty route range (start after end)"));
        }
        Ok(Route {
            start,
            end,
            url: url.to_string(),
        })
    }
}

/// Totals for `statfs` and `inspect`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// All entries, of every kind (the root included).
    pub entries: u64,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Devices, fifos and sockets.
    pub specials: u64,
    /// Sum of the regular files' sizes, in bytes.
    pub bytes: u64,
    /// Chunk references of all files (a chunk used twice counts twice).
    pub blocks: u64,
    /// Distinct chunk ids among them.
    pub unique_blocks: u64,
}

/// Read access to an flist, whatever its generation. Implementations are shared across
/// threads (the FUSE workers).
pub trait Flist: Send + Sync {
    /// A short name of the format ("rfs-v2", "zvfs-1", "legacy").
    fn format(&self) -> String;
    /// The entry of an inode; a `NotFound` error when there is none.
    fn get(&self, ino: Ino) -> Result<Entry>;
    /// The child of directory `parent` named `name` (raw bytes), if any.
    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Option<Entry>>;
    /// All children of a directory, in inode order.
    fn children(&self, parent: Ino) -> Result<Vec<Entry>>;
    /// At most `limit` children of a directory with an inode number above `after`, in
    /// inode order: a listing read page by page, in memory bounded by the page whatever
    /// the directory's size (`after` = 0 starts at the first child).
    fn children_after(&self, parent: Ino, after: Ino, limit: usize) -> Result<Vec<Entry>>;
    /// The chunks of a regular file, in file order.
    fn blocks(&self, ino: Ino) -> Result<Vec<ChunkRef>>;
    /// The target of a symlink, as raw bytes.
    fn link_target(&self, ino: Ino) -> Result<Vec<u8>>;
    /// The extended attributes of an entry, as (name, value) pairs.
    fn xattrs(&self, ino: Ino) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Whether any entry has an extended attribute (when not, a mount tells the kernel
    /// once that it has none, and stops being asked).
    fn has_xattrs(&self) -> bool;
    /// The content identity of a regular file, when the flist records one.
    fn identity(&self, ino: Ino) -> Result<Option<Identity>>;
    /// The flist's tags, as (key, value) pairs.
    fn tags(&self) -> Result<Vec<(String, String)>>;
    /// The stores the flist names for its chunks, with their id ranges.
    fn routes(&self) -> Result<Vec<Route>>;
    /// Counts of entries, bytes and chunks over the whole tree.
    fn totals(&self) -> Result<Totals>;
    /// The prefetch list a recorded trace put in the flist (`zvfs prefetch add`), in the
    /// order the chunks were first read; empty when there is none. An error when the
    /// table is there but unreadable (a mount then logs it and prefetches nothing).
    fn prefetch(&self) -> Result<Vec<PrefetchItem>> {
        Ok(Vec::new())
    }
}

/// One chunk of a recorded first-read order: chunk `chunk` of the file whose content
/// inode is `ino`, first read `ms` milliseconds after the mount was ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefetchItem {
    /// The content inode of the file (the first path of a hardlinked file).
    pub ino: Ino,
    /// The chunk's index in the file.
    pub chunk: u32,
    /// When the traced run first read it, in milliseconds since the mount was ready.
    pub ms: u64,
}

/// Open an flist, detecting its generation by content.
pub fn open(path: &Path) -> Result<Box<dyn Flist>> {
    let mut magic = [0u8; 16];
    let n = {
        use std::io::Read;
        let mut f =
            std::fs::File::open(path).with_ctx(|| format!("opening flist {}", path.display()))?;
        let mut n = 0;
        while n < magic.len() {
            let r = f
                .read(&mut magic[n..])
                .with_ctx(|| format!("reading {}", path.display()))?;
            if r == 0 {
                break;
            }
            n += r;
        }
        n
    };
    if n == 16 && &magic == b"SQLite format 3\0" {
        return Ok(Box::new(v2::V2Reader::open(path)?));
    }
    if legacy::is_gzip(&magic[..n]) {
        return Ok(Box::new(legacy::LegacyReader::open(path)?));
    }
    Err(Error::format(format!(
        "{}: not an flist (neither an SQLite .fl nor a gzip legacy .flist{})",
        path.display(),
        if n == 0 { "; the file is empty" } else { "" }
    )))
}

/// Resolve a slash-separated path inside the flist ("/" or "" is the root).
pub fn resolve(fl: &dyn Flist, path: &[u8]) -> Result<Entry> {
    let mut cur = fl.get(ROOT_INO)?;
    for comp in path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
    {
        if !cur.is_dir() {
            return Err(Error::not_found(format!(
                "{}: not a directory in the flist",
                String::from_utf8_lossy(path)
            )));
        }
        cur = fl.lookup(cur.ino, comp)?.ok_or_else(|| {
            Error::not_found(format!(
                "{}: no such path in the flist",
                String::from_utf8_lossy(path)
            ))
        })?;
    }
    Ok(cur)
}

/// The absolute path of inode `ino` (`/a/b`; `/` for the root), walking its parents.
/// A hardlink's other paths are distinct inodes: a content inode gives its first path.
pub fn path_of(fl: &dyn Flist, ino: Ino) -> Result<Vec<u8>> {
    path_by(ino, |i| fl.get(i).map(|e| (e.parent, e.name)))
}

/// [`path_of`] with the entries' (parent, name) from `parent_and_name` (a caller with an
/// entry cache of its own).
pub fn path_by(
    ino: Ino,
    mut parent_and_name: impl FnMut(Ino) -> Result<(Ino, Vec<u8>)>,
) -> Result<Vec<u8>> {
    let mut names = Vec::new();
    let mut cur = ino;
    while cur != ROOT_INO {
        let (parent, name) = parent_and_name(cur)?;
        if parent == 0 || names.len() > 4096 {
            return Err(Error::format(format!(
                "inode {ino}: its parents do not lead to the root"
            )));
        }
        names.push(name);
        cur = parent;
    }
    let mut path = Vec::new();
    for n in names.iter().rev() {
        path.push(b'/');
        path.extend_from_slice(n);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    Ok(path)
}

/// Visit every entry below `start` depth-first (parents before children), with its path
/// relative to the root as raw bytes. Refuses hostile trees: cycles and bad names.
pub fn walk(
    fl: &dyn Flist,
    start: &Entry,
    start_path: Vec<u8>,
    visit: &mut dyn FnMut(&Entry, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut seen_dirs = std::collections::HashSet::new();
    let mut stack = vec![(start.clone(), start_path)];
    while let Some((entry, path)) = stack.pop() {
        visit(&entry, &path)?;
        if entry.is_dir() {
            if !seen_dirs.insert(entry.ino) {
                return Err(Error::format(format!(
                    "directory cycle at {:?} (inode {})",
                    String::from_utf8_lossy(&path),
                    entry.ino
                )));
            }
            let mut kids = fl.children(entry.ino)?;
            kids.reverse();
            for kid in kids {
                check_name(&kid.name).with_ctx(|| {
                    format!(
                        "entry {} under {:?}",
                        kid.ino,
                        String::from_utf8_lossy(&path)
                    )
                })?;
                let mut p = path.clone();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(&kid.name);
                stack.push((kid, p));
            }
        }
    }
    Ok(())
}

/// A name is safe to create in a directory: not empty, not `.`/`..`, no `/` nor NUL.
pub fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        // A name in an flist: a malformed (or hostile) flist, not a bad request.
        return Err(Error::format(format!(
            "refusing unsafe name {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

/// The URL with any password (the part after `user:` before `@`) replaced by `***`.
pub fn redact(url: &str) -> String {
    strip_password_with(url, "***")
}

/// The URL with its password removed, as written into flists (rfs strips it too).
pub fn strip_password(url: &str) -> String {
    strip_password_with(url, "")
}

fn strip_password_with(url: &str, replacement: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // Credentials end before the path; in S3 URLs (whose bucket names never hold '/' or
    // '@') they end at the last '@' before the query, so an AWS secret with an unencoded
    // '/' is still found.
    let auth_end = if matches!(scheme, "s3" | "s3s") {
        rest.find('?').unwrap_or(rest.len())
    } else {
        rest.find('/').unwrap_or(rest.len())
    };
    let Some(at) = rest[..auth_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let user = match userinfo.split_once(':') {
        Some((u, _)) if replacement.is_empty() => u.to_string(),
        Some((u, _)) => format!("{u}:{replacement}"),
        None => return url.to_string(),
    };
    if user.is_empty() {
        format!("{scheme}://{}", &rest[at + 1..])
    } else {
        format!("{scheme}://{user}@{}", &rest[at + 1..])
    }
}
