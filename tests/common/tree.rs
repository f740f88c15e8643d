//! Directory trees for the tests: the one tree comparison (`snapshot`, `assert_same_tree`,
//! `assert_same_entries`:
//! every path with its type, mode, owners, size, device, mtime, link count, content hash,
//! symlink target and xattrs; `hardlink_groups` for which paths share an inode), copies of read-only fixture trees, and a generated tree with
//! every file type.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::noise;

/// `cp -a` (fixtures are read-only: tests work on copies).
pub fn copy_tree(src: &Path, dst: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("chmod")
        .arg("-R")
        .arg("u+w")
        .arg(dst)
        .status()
        .unwrap();
    assert!(st.success());
}

pub fn copy_file(src: &Path, dst: &Path) {
    std::fs::copy(src, dst).unwrap();
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o644)).unwrap();
}

pub fn xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 65536];
    let n = match rustix::fs::llistxattr(p, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Vec::new(),
        Err(e) => panic!("llistxattr {}: {e}", p.display()),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut v = vec![0u8; 65536];
        let len = rustix::fs::lgetxattr(p, OsStr::from_bytes(name), &mut v[..]).unwrap();
        v.truncate(len);
        out.push((name.to_vec(), v));
    }
    out.sort();
    out
}

/// What must survive a round trip, per path (relative, raw bytes).
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Node {
    pub mode: u32,
    uid: u32,
    gid: u32,
    /// Not for directories (file system dependent).
    pub size: Option<u64>,
    rdev: u64,
    mtime: i64,
    nlink: u64,
    sha256: Option<[u8; 32]>,
    target: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub fn node(p: &Path) -> Node {
    let m = std::fs::symlink_metadata(p).unwrap();
    let ft = m.file_type();
    Node {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        size: if ft.is_dir() { None } else { Some(m.size()) },
        rdev: m.rdev(),
        mtime: m.mtime(),
        nlink: m.nlink(),
        sha256: if ft.is_file() {
            Some(Sha256::digest(std::fs::read(p).unwrap()).into())
        } else {
            None
        },
        target: if ft.is_symlink() {
            Some(
                std::fs::read_link(p)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        } else {
            None
        },
        xattrs: xattrs(p),
    }
}

/// Every path below `root` (root itself as the empty path) with its lstat fields.
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), Vec::new())];
    while let Some((p, rel)) = stack.pop() {
        let n = node(&p);
        let is_dir = n.mode & 0o170000 == 0o040000;
        out.insert(rel.clone(), n);
        if is_dir {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                let mut r = rel.clone();
                if !r.is_empty() {
                    r.push(b'/');
                }
                r.extend_from_slice(e.file_name().as_bytes());
                stack.push((e.path(), r));
            }
        }
    }
    out
}

/// `expected` and `actual` hold the same tree, their roots included.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    assert_same_nodes(snapshot(expected), snapshot(actual));
}

/// The same below the roots (for a root directory made elsewhere: a fixture flist packed
/// from another copy, an unpack or mount target the test created).
pub fn assert_same_entries(expected: &Path, actual: &Path) {
    let below = |root: &Path| {
        let mut s = snapshot(root);
        s.remove(&Vec::new());
        s
    };
    assert_same_nodes(below(expected), below(actual));
}

/// Two snapshots hold the same paths with the same fields (for trees a test adjusted
/// first, e.g. a mount snapshot without a file the flist adds).
pub fn assert_same_snapshots(expected: BTreeMap<Vec<u8>, Node>, actual: BTreeMap<Vec<u8>, Node>) {
    assert_same_nodes(expected, actual)
}

impl Node {
    /// Forgets the mtime (for entries whose reference time is not reproducible, such as
    /// the directories `umoci unpack` creates implicitly at the time of the unpack).
    pub fn clear_mtime(&mut self) {
        self.mtime = 0;
    }
}

/// The hardlink groups below `root`: every set of two or more non-directory paths that
/// share one inode (device and inode number), each group sorted.
pub fn hardlink_groups(root: &Path) -> std::collections::BTreeSet<Vec<Vec<u8>>> {
    let mut by_inode: BTreeMap<(u64, u64), Vec<Vec<u8>>> = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), Vec::new())];
    while let Some((p, rel)) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                let mut r = rel.clone();
                if !r.is_empty() {
                    r.push(b'/');
                }
                r.extend_from_slice(e.file_name().as_bytes());
                stack.push((e.path(), r));
            }
        } else {
            by_inode.entry((m.dev(), m.ino())).or_default().push(rel);
        }
    }
    by_inode
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect()
}

fn assert_same_nodes(a: BTreeMap<Vec<u8>, Node>, b: BTreeMap<Vec<u8>, Node>) {
    let ka: Vec<_> = a.keys().map(|k| String::from_utf8_lossy(k)).collect();
    let kb: Vec<_> = b.keys().map(|k| String::from_utf8_lossy(k)).collect();
    assert_eq!(ka, kb, "different paths");
    for (k, na) in &a {
        assert_eq!(
            Some(na),
            b.get(k),
            "entry {:?} differs",
            String::from_utf8_lossy(k)
        );
    }
}

pub fn mknod(p: &Path, kind: rustix::fs::FileType, mode: u32, dev: u64) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        kind,
        rustix::fs::Mode::from_raw_mode(mode),
        dev,
    )
    .unwrap();
}

pub fn set_mtime(p: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// A tree with every file type, xattrs, hardlinks, odd names, special modes and the
/// chunk-boundary sizes.
pub fn every_type_tree(root: &Path) {
    use rustix::fs::FileType;
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    for (name, size) in [
        ("zero", 0usize),
        ("one", 1),
        ("chunk-minus-1", 524287),
        ("chunk", 524288),
        ("chunk-plus-1", 524289),
        ("several-mib", 3 * 1024 * 1024 + 17),
    ] {
        std::fs::write(root.join(name), noise(size as u64 + 7, size)).unwrap();
    }
    std::fs::write(root.join("sub/deeper/text"), b"deep text\n").unwrap();
    // hardlinks: three paths, one of them in another directory
    std::fs::write(root.join("sub/linked"), noise(99, 600_000)).unwrap();
    std::fs::hard_link(root.join("sub/linked"), root.join("a-link")).unwrap();
    std::fs::hard_link(root.join("sub/linked"), root.join("sub/deeper/z-link")).unwrap();
    // symlinks: relative, absolute, dangling, to a directory
    std::os::unix::fs::symlink("one", root.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("sub/deeper", root.join("dir-link")).unwrap();
    // specials
    mknod(&root.join("fifo"), FileType::Fifo, 0o640, 0);
    mknod(
        &root.join("chardev"),
        FileType::CharacterDevice,
        0o620,
        rustix::fs::makedev(1, 3),
    );
    mknod(
        &root.join("blockdev"),
        FileType::BlockDevice,
        0o660,
        rustix::fs::makedev(7, 42),
    );
    let sock = std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap();
    drop(sock);
    // a name that is not UTF-8
    std::fs::write(root.join(OsStr::from_bytes(b"caf\xe9-latin1")), b"latin1\n").unwrap();
    std::fs::write(root.join("name with spaces"), b"spaces").unwrap();
    // special modes
    std::fs::write(root.join("setuid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(root.join("setuid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::write(root.join("setgid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(root.join("setgid"), std::fs::Permissions::from_mode(0o2711)).unwrap();
    std::fs::create_dir(root.join("sticky")).unwrap();
    std::fs::set_permissions(root.join("sticky"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    // a read-only directory that still holds a file
    std::fs::create_dir(root.join("ro")).unwrap();
    std::fs::write(root.join("ro/inside"), b"inside a 0500 dir").unwrap();
    std::fs::set_permissions(root.join("ro"), std::fs::Permissions::from_mode(0o500)).unwrap();
    // owners
    std::os::unix::fs::lchown(root.join("one"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(root.join("rel-link"), Some(42), Some(43)).unwrap();
    std::os::unix::fs::lchown(root.join("sub"), Some(7), Some(8)).unwrap();
    // xattrs: user.* on a file and a dir, security.capability (cap_net_bind_service=ep)
    let set = |p: &Path, k: &str, v: &[u8]| {
        rustix::fs::lsetxattr(p, k, v, rustix::fs::XattrFlags::empty()).unwrap()
    };
    set(&root.join("zero"), "user.color", b"blue");
    set(&root.join("zero"), "user.empty", b"");
    set(&root.join("sub"), "user.dir", b"\x00\x01binary");
    let mut cap = Vec::new();
    cap.extend_from_slice(&0x0200_0001u32.to_le_bytes()); // v2, effective
    cap.extend_from_slice(&(1u32 << 10).to_le_bytes()); // permitted: net_bind_service
    cap.extend_from_slice(&0u32.to_le_bytes()); // inheritable
    cap.extend_from_slice(&0u32.to_le_bytes());
    cap.extend_from_slice(&0u32.to_le_bytes());
    set(&root.join("chunk"), "security.capability", &cap);
    // deterministic times, deepest first so directory times stick
    let mut all: Vec<_> = snapshot(root).into_keys().collect();
    all.sort_by_key(|k| std::cmp::Reverse(k.len()));
    for (i, rel) in all.iter().enumerate() {
        let p = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(OsStr::from_bytes(rel))
        };
        set_mtime(&p, 1_600_000_000 + i as i64 * 1000);
    }
}
