//! Issue 2 (foundation): `zvfs pack`, `zvfs unpack` and the debug commands against the
//! real rfs fixtures, generated trees with every file type, real dir stores and hostile
//! flists. Runs as root (devices, owners, security.capability).

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{dir_url, fixture, untar, zvfs, zvfs_ok};
use rusqlite::Connection;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- helpers

fn rfs(name: &str) -> PathBuf {
    fixture("rfs-v2").join(name)
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("zvfs-foundation-")
        .tempdir()
        .unwrap()
}

/// `cp -a` (fixtures are read-only: tests work on copies).
fn copy_tree(src: &Path, dst: &Path) {
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

fn copy_file(src: &Path, dst: &Path) {
    std::fs::copy(src, dst).unwrap();
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
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
struct Node {
    mode: u32,
    uid: u32,
    gid: u32,
    /// Not for directories (file system dependent).
    size: Option<u64>,
    rdev: u64,
    mtime: i64,
    nlink: u64,
    sha256: Option<[u8; 32]>,
    target: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn node(p: &Path) -> Node {
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
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
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

fn assert_same_tree(expected: &Path, actual: &Path) {
    let a = snapshot(expected);
    let b = snapshot(actual);
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

/// Extract tree.tar (the source of the rfs fixtures).
fn fixture_tree(dir: &Path) -> PathBuf {
    let t = dir.join("tree");
    untar(&rfs("tree.tar"), &t);
    t
}

/// A writable copy of the rfs fixture store in `dir/store`.
fn store_copy(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    copy_tree(&rfs("store"), &store);
    store
}

/// `pack -m <fl> -s dir://<store> <extra..> <src>`, for `run_ok` or `run_err`.
fn pack_args(fl: &Path, store: &Path, extra: &[&str], src: &Path) -> Vec<String> {
    let mut args = vec!["pack".into(), "-m".into(), s(fl).into(), "-s".into()];
    args.push(dir_url(store));
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(s(src).into());
    args
}

/// `unpack -m <rfs sample.fl> -s dir://<store> <args..>` must succeed; returns stderr.
fn unpack_sample(store: &Path, args: &[&str]) -> String {
    let fl = rfs("sample.fl");
    let url = dir_url(store);
    let mut all = vec!["unpack", "-m", s(&fl), "-s", &url];
    all.extend_from_slice(args);
    run_ok(&all).1
}

fn run_ok<A: AsRef<str>>(args: &[A]) -> (String, String) {
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let out = zvfs(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "zvfs {args:?} failed: {stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn run_err<A: AsRef<str>>(args: &[A]) -> String {
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let out = zvfs(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "zvfs {args:?} should have failed:\n{stderr}"
    );
    stderr
}

/// Block rows (hex id, hex key) per path of an flist.
fn blocks_by_path(fl: &Path) -> BTreeMap<String, Vec<(String, String)>> {
    let c = Connection::open(fl).unwrap();
    let mut rows: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    let mut st = c.prepare("SELECT ino, parent, name FROM inode").unwrap();
    for r in st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
    {
        let (i, p, n): (i64, i64, String) = r.unwrap();
        rows.insert(i, (p, n));
    }
    let path = |mut i: i64| {
        let mut parts = Vec::new();
        while i != 1 {
            let (p, n) = &rows[&i];
            parts.push(n.clone());
            i = *p;
        }
        parts.reverse();
        parts.join("/")
    };
    let mut out = BTreeMap::new();
    for &ino in rows.keys() {
        let mut st = c
            .prepare("SELECT id, key FROM block WHERE ino = ?1 ORDER BY rowid")
            .unwrap();
        let b: Vec<(String, String)> = st
            .query_map([ino], |r| {
                Ok((
                    hex::encode(r.get::<_, Vec<u8>>(0)?),
                    hex::encode(r.get::<_, Vec<u8>>(1)?),
                ))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        out.insert(path(ino), b);
    }
    out
}

/// Parse `fetched N chunks` from unpack's report.
fn fetched_chunks(stderr: &str) -> u64 {
    let i = stderr.find("fetched ").expect("no fetch report") + "fetched ".len();
    stderr[i..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------- fixtures come back exactly

#[test]
fn sample_fl_unpacks_byte_exact_with_owners_modes_times() {
    let d = tmp();
    let reference = fixture_tree(d.path());
    let store = store_copy(d.path());
    let target = d.path().join("out");
    let err = unpack_sample(&store, &["-p", s(&target)]);
    assert_same_tree(&reference, &target);
    // the points the fixture README calls out, explicitly
    let owned = std::fs::symlink_metadata(target.join("owned.txt")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1000, 2000));
    let hello = std::fs::symlink_metadata(target.join("hello.txt")).unwrap();
    assert_eq!(hello.mtime(), 1577934245);
    assert_eq!(
        std::fs::symlink_metadata(target.join("setuid-bin"))
            .unwrap()
            .mode(),
        0o104755
    );
    assert!(std::fs::symlink_metadata(target.join("fifo1"))
        .unwrap()
        .file_type()
        .is_fifo_like());
    assert_eq!(
        std::fs::read_link(target.join("abs-link")).unwrap(),
        Path::new("/etc/hostname")
    );
    // 58 block rows, 56 distinct objects: each fetched once per row
    assert_eq!(fetched_chunks(&err), 58, "{err}");
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo()
    }
}

#[test]
fn sharded_fl_unpacks_from_two_overridden_stores() {
    let d = tmp();
    let reference = fixture_tree(d.path());
    let a = d.path().join("shard-a");
    let b = d.path().join("shard-b");
    copy_tree(&rfs("shard-a"), &a);
    copy_tree(&rfs("shard-b"), &b);
    let target = d.path().join("out");
    run_ok(&[
        "unpack",
        "-m",
        s(&rfs("sharded.fl")),
        "-s",
        &format!("00-7f={}", dir_url(&a)),
        "-s",
        &format!("80-ff={}", dir_url(&b)),
        "-p",
        s(&target),
    ]);
    assert_same_tree(&reference, &target);
    // each shard really served part of it: without shard-b it fails naming a chunk
    let target2 = d.path().join("out2");
    let err = run_err(&[
        "unpack",
        "-m",
        s(&rfs("sharded.fl")),
        "-s",
        &format!("00-7f={}", dir_url(&a)),
        s(&target2),
    ]);
    assert!(err.contains("no store is routed"), "{err}");
}

// ---------------------------------------------------------------- rfs compatibility of pack

#[test]
fn pack_of_fixture_tree_gives_rfs_chunk_ids_and_objects() {
    let d = tmp();
    let tree = fixture_tree(d.path());
    let store = d.path().join("store");
    let fl = d.path().join("mine.fl");
    let (out, _) = run_ok(&pack_args(&fl, &store, &["-j", "2"], &tree));
    assert!(
        out.contains("58 chunks, 56 unique chunks uploaded"),
        "summary: {out}"
    );
    let ours = blocks_by_path(&fl);
    let theirs = blocks_by_path(&rfs("sample.fl"));
    assert_eq!(ours, theirs);
    // stored objects are byte-identical to what rfs stored, in a new store's default
    // flat layout (the only one released rfs reads), where the fixture has them sharded
    let mut n = 0;
    for (_, blocks) in ours {
        for (id, _) in blocks {
            assert_eq!(
                std::fs::read(store.join(&id)).unwrap(),
                std::fs::read(rfs("store").join(&id[..2]).join(&id)).unwrap(),
                "object {id}"
            );
            n += 1;
        }
    }
    assert_eq!(n, 58);
    // and it unpacks to the same tree (owners, modes, times)
    let target = d.path().join("out");
    run_ok(&["unpack", "-m", s(&fl), "-p", s(&target)]);
    assert_same_tree(&tree, &target);
}

// ---------------------------------------------------------------- dir store layouts

/// Objects of a dir store: (directly at its top: flat, in `<hh>` directories: sharded).
fn objects_by_layout(store: &Path) -> (usize, usize) {
    let (mut flat, mut sharded) = (0, 0);
    for e in std::fs::read_dir(store).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if e.file_type().unwrap().is_dir() {
            assert_eq!(name.len(), 2, "{name} in {}", store.display());
            for o in std::fs::read_dir(e.path()).unwrap() {
                let o = o.unwrap().file_name().into_string().unwrap();
                if o.len() == 64 && o.starts_with(&name) {
                    sharded += 1;
                }
            }
        } else if name.len() == 64 {
            flat += 1;
        }
    }
    (flat, sharded)
}

/// Copy the objects of a sharded store into `dst` flat, as released rfs writes them.
fn flat_copy(sharded: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(sharded).unwrap() {
        for o in std::fs::read_dir(e.unwrap().path()).unwrap() {
            let o = o.unwrap();
            std::fs::copy(o.path(), dst.join(o.file_name())).unwrap();
        }
    }
}

#[test]
fn new_dir_stores_are_flat_unless_asked_and_both_layouts_read_back() {
    let d = tmp();
    let tree = fixture_tree(d.path());
    for (i, (query, want)) in [
        ("", (56, 0)),
        ("?layout=flat", (56, 0)),
        ("?layout=sharded", (0, 56)),
    ]
    .into_iter()
    .enumerate()
    {
        let store = d.path().join(format!("store{i}"));
        let url = format!("{}{query}", dir_url(&store));
        let fl = d.path().join(format!("t{i}.fl"));
        run_ok(&["pack", "-m", s(&fl), "-s", &url, s(&tree)]);
        assert_eq!(objects_by_layout(&store), want, "{url}");
        // The route recorded in the flist keeps the layout, and reads back through it.
        let (inspect, _) = run_ok(&["inspect", "-m", s(&fl)]);
        assert!(inspect.contains(&url), "{url} not in {inspect}");
        let target = d.path().join(format!("out{i}"));
        run_ok(&["unpack", "-m", s(&fl), "-p", s(&target)]);
        assert_same_tree(&tree, &target);
        let (hello, _) = run_ok(&["cat", "-m", s(&fl), "hello.txt"]);
        assert_eq!(hello, "hello world\n");
    }
    let err = run_err(&pack_args(
        &d.path().join("bad.fl"),
        Path::new("/nonexistent/s?layout=nested"),
        &[],
        &tree,
    ));
    assert!(err.contains("layout") && err.contains("nested"), "{err}");
}

#[test]
fn an_existing_store_keeps_its_layout_and_rfs_stores_of_both_layouts_read() {
    let d = tmp();
    let reference = fixture_tree(d.path());
    // The fixture store is sharded (`<hh>/<hex>`): it reads, and a pack into it without
    // `?layout` adds sharded objects.
    let sharded = store_copy(d.path());
    assert_eq!(objects_by_layout(&sharded), (0, 56));
    let out = d.path().join("out");
    unpack_sample(&sharded, &["-p", s(&out)]);
    assert_same_tree(&reference, &out);
    let tree = fixture_tree(&d.path().join("b"));
    std::fs::write(tree.join("new.txt"), b"content no fixture has\n").unwrap();
    let fl = d.path().join("more.fl");
    run_ok(&pack_args(&fl, &sharded, &[], &tree));
    assert_eq!(objects_by_layout(&sharded), (0, 57));
    let out2 = d.path().join("out2");
    run_ok(&["unpack", "-m", s(&fl), "-p", s(&out2)]);
    assert_same_tree(&tree, &out2);

    // The same objects flat, as released rfs writes them: they read, and the store stays
    // flat.
    let flat = d.path().join("flat");
    flat_copy(&rfs("store"), &flat);
    let out3 = d.path().join("out3");
    unpack_sample(&flat, &["-p", s(&out3)]);
    assert_same_tree(&reference, &out3);
    run_ok(&pack_args(&d.path().join("more2.fl"), &flat, &[], &tree));
    assert_eq!(objects_by_layout(&flat), (57, 0));
}

#[test]
fn packed_flist_schema_equals_rfs_schema() {
    let d = tmp();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let fl = d.path().join("x.fl");
    run_ok(&pack_args(&fl, &d.path().join("store"), &[], &src));
    let schema = |p: &Path| -> BTreeMap<String, Option<String>> {
        let c = Connection::open(p).unwrap();
        let mut st = c
            .prepare("SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'zvfs_%'")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    let rfs_schema = schema(&rfs("sample.fl"));
    assert!(rfs_schema.contains_key("inode") && rfs_schema.contains_key("block_ino"));
    assert_eq!(schema(&fl), rfs_schema);
    let c = Connection::open(&fl).unwrap();
    let root: (i64, i64, String) = c
        .query_row(
            "SELECT ino, parent, name FROM inode WHERE ino = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(root, (1, 0, "/".to_string()));
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 0);
}

// ---------------------------------------------------------------- every file type round trip

fn mknod(p: &Path, kind: rustix::fs::FileType, mode: u32, dev: u64) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        kind,
        rustix::fs::Mode::from_raw_mode(mode),
        dev,
    )
    .unwrap();
}

fn set_mtime(p: &Path, secs: i64) {
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

/// Deterministic pseudo-random bytes (xorshift); seeds 2k and 2k+1 give the same bytes.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    common::xorshift_words(seed | 1, len)
}

/// A tree with every file type, xattrs, hardlinks, odd names, special modes and the
/// chunk-boundary sizes.
fn every_type_tree(root: &Path) {
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
        std::fs::write(root.join(name), pseudo_random(size, size as u64 + 7)).unwrap();
    }
    std::fs::write(root.join("sub/deeper/text"), b"deep text\n").unwrap();
    // hardlinks: three paths, one of them in another directory
    std::fs::write(root.join("sub/linked"), pseudo_random(600_000, 99)).unwrap();
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

#[test]
fn pack_unpack_round_trip_of_every_file_type() {
    let d = tmp();
    let src = d.path().join("src");
    every_type_tree(&src);
    let before = snapshot(&src);
    let store = d.path().join("store");
    let fl = d.path().join("every.fl");
    let (out, _) = run_ok(&pack_args(&fl, &store, &["--tag", "author=tests"], &src));
    assert!(out.contains("unique chunks uploaded"), "{out}");
    assert_eq!(snapshot(&src), before, "pack modified its source");
    let target = d.path().join("out");
    run_ok(&["unpack", "-m", s(&fl), "-p", s(&target)]);
    assert_same_tree(&src, &target);
    // hardlinks come back as hardlinks
    let ino = |p: &str| std::fs::symlink_metadata(target.join(p)).unwrap().ino();
    assert_eq!(ino("sub/linked"), ino("a-link"));
    assert_eq!(ino("sub/linked"), ino("sub/deeper/z-link"));
    assert_eq!(
        std::fs::symlink_metadata(target.join("a-link"))
            .unwrap()
            .nlink(),
        3
    );
    // the flist records the hardlinks and duplicates the blocks (rfs reads each path)
    let c = Connection::open(&fl).unwrap();
    let links: i64 = c
        .query_row("SELECT count(*) FROM zvfs_hardlink", [], |r| r.get(0))
        .unwrap();
    assert_eq!(links, 2);
    let by_path = blocks_by_path(&fl);
    assert_eq!(by_path["sub/linked"].len(), 2);
    assert_eq!(by_path["sub/linked"], by_path["a-link"]);
    assert_eq!(by_path["sub/linked"], by_path["sub/deeper/z-link"]);
    // chunk boundaries
    assert_eq!(by_path["chunk-minus-1"].len(), 1);
    assert_eq!(by_path["chunk"].len(), 1);
    assert_eq!(by_path["chunk-plus-1"].len(), 2);
    assert_eq!(by_path["zero"].len(), 0);
    // tags: ours plus the reserved version marker
    let tags: BTreeMap<String, String> = c
        .prepare("SELECT key, value FROM tag")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(tags["author"], "tests");
    assert_eq!(tags["version"], "zvfs-1");
    // identity: full checksum = SHA-256 of the content, for every regular file
    let stat = zvfs_ok(&["stat", "-m", s(&fl), "several-mib"]);
    let want = hex::encode(Sha256::digest(
        std::fs::read(src.join("several-mib")).unwrap(),
    ));
    assert!(stat.contains(&format!("checksum: {want}")), "{stat}");
    let files: i64 = c
        .query_row(
            "SELECT count(*) FROM inode WHERE (mode & 61440) = 32768",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let idents: i64 = c
        .query_row("SELECT count(*) FROM zvfs_identity", [], |r| r.get(0))
        .unwrap();
    assert_eq!(files, idents);
}

#[test]
fn unpack_without_p_leaves_owners_to_the_caller() {
    let d = tmp();
    let store = store_copy(d.path());
    let target = d.path().join("out");
    unpack_sample(&store, &[s(&target)]);
    let m = std::fs::symlink_metadata(target.join("owned.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
}

// ---------------------------------------------------------------- partial extraction

#[test]
fn unpacking_one_file_of_a_big_tree_fetches_only_its_chunks() {
    let d = tempfile::Builder::new()
        .prefix("zvfs-foundation-big-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    // ~300 MB of incompressible data in 30 files, plus the 2 MB file we want
    for i in 0..30 {
        std::fs::write(
            src.join(format!("blob-{i:02}.bin")),
            pseudo_random(10_000_000, 1000 + i),
        )
        .unwrap();
    }
    let wanted = pseudo_random(2_000_000, 4242);
    std::fs::write(src.join("a/b/wanted.bin"), &wanted).unwrap();
    std::fs::write(src.join("a/b/other.bin"), pseudo_random(700_000, 5)).unwrap();
    let store = d.path().join("store");
    let fl = d.path().join("big.fl");
    run_ok(&pack_args(&fl, &store, &[], &src));
    std::fs::remove_dir_all(&src).unwrap(); // free the space early

    let target = d.path().join("out");
    let (_, err) = run_ok(&["unpack", "-m", s(&fl), s(&target), "a/b/wanted.bin"]);
    assert_eq!(fetched_chunks(&err), 4, "{err}");
    assert_eq!(
        std::fs::read(target.join("a/b/wanted.bin")).unwrap(),
        wanted
    );
    let got: Vec<_> = snapshot(&target).into_keys().collect();
    assert_eq!(
        got,
        vec![
            b"".to_vec(),
            b"a".to_vec(),
            b"a/b".to_vec(),
            b"a/b/wanted.bin".to_vec()
        ]
    );

    // proof by starvation: a store holding only these 4 objects is enough
    let only = d.path().join("only");
    for (id, _) in &blocks_by_path(&fl)["a/b/wanted.bin"] {
        std::fs::create_dir_all(&only).unwrap();
        std::fs::copy(store.join(id), only.join(id)).unwrap();
    }
    std::fs::remove_dir_all(&store).unwrap();
    let target2 = d.path().join("out2");
    let (_, err) = run_ok(&[
        "unpack",
        "-m",
        s(&fl),
        "-s",
        &dir_url(&only),
        s(&target2),
        "/a/b/wanted.bin",
    ]);
    assert_eq!(fetched_chunks(&err), 4, "{err}");
    assert_eq!(
        std::fs::read(target2.join("a/b/wanted.bin")).unwrap(),
        wanted
    );
}

#[test]
fn unpacking_a_subdirectory_restores_it_whole() {
    let d = tmp();
    let reference = fixture_tree(d.path());
    let store = store_copy(d.path());
    let target = d.path().join("out");
    let err = unpack_sample(&store, &["-p", s(&target), "private"]);
    assert_same_tree(&reference.join("private"), &target.join("private"));
    let top: Vec<_> = std::fs::read_dir(&target).unwrap().collect();
    assert_eq!(top.len(), 1);
    // mid.bin (600000 bytes: 2 chunks) and deep.txt (1 chunk)
    assert_eq!(fetched_chunks(&err), 3, "{err}");
}

// ---------------------------------------------------------------- hostile and broken input

/// A target next to a sentinel directory; both must be checked after a failure.
struct Arena {
    _d: tempfile::TempDir,
    base: PathBuf,
    store: PathBuf,
    fl: PathBuf,
}

impl Arena {
    fn new() -> Arena {
        let d = tmp();
        let base = d.path().to_path_buf();
        let store = store_copy(&base);
        let fl = base.join("copy.fl");
        copy_file(&rfs("sample.fl"), &fl);
        std::fs::create_dir(base.join("sentinel")).unwrap();
        Arena {
            _d: d,
            base,
            store,
            fl,
        }
    }

    fn sql(&self, sql: &str) {
        Connection::open(&self.fl)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }

    /// Unpack must fail; returns stderr after checking nothing escaped the target.
    fn unpack_fails(&self) -> String {
        let target = self.base.join("target");
        let err = run_err(&[
            "unpack",
            "-m",
            s(&self.fl),
            "-s",
            &dir_url(&self.store),
            s(&target),
        ]);
        assert!(err.contains("error"), "{err}");
        assert_eq!(
            std::fs::read_dir(self.base.join("sentinel"))
                .unwrap()
                .count(),
            0,
            "something was written next to the target"
        );
        let mut names: Vec<_> = std::fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names.retain(|n| n != "target");
        assert_eq!(names, vec!["copy.fl", "sentinel", "store"]);
        err
    }

    fn hello_object(&self) -> PathBuf {
        let id = "d139c46e6cc65acfa2eef1d0cd7abf014667fdc9a5ca75d9184671f97301a0db";
        self.store.join(&id[..2]).join(id)
    }
}

#[test]
fn truncated_flist_is_refused() {
    let a = Arena::new();
    let data = std::fs::read(rfs("sample.fl")).unwrap();
    std::fs::write(&a.fl, &data[..data.len() / 2]).unwrap();
    let err = a.unpack_fails();
    assert!(
        err.contains("truncated") && err.contains("copy.fl"),
        "{err}"
    );
}

#[test]
fn non_sqlite_file_is_refused() {
    let a = Arena::new();
    std::fs::write(&a.fl, b"this is not an flist at all, just some text\n").unwrap();
    let err = a.unpack_fails();
    assert!(
        err.contains("not an flist") && err.contains("copy.fl"),
        "{err}"
    );
}

#[test]
fn entry_named_dot_dot_escape_is_refused() {
    let a = Arena::new();
    a.sql("UPDATE inode SET name = '../escape' WHERE name = 'hello.txt'");
    let err = a.unpack_fails();
    assert!(err.contains("../escape"), "{err}");
    assert!(!a.base.join("escape").exists());
}

#[test]
fn entry_name_with_a_slash_or_dot_dot_is_refused() {
    for bad in ["a/../../../slash-escape", "..", "."] {
        let a = Arena::new();
        a.sql(&format!(
            "UPDATE inode SET name = '{bad}' WHERE name = 'run.sh'"
        ));
        let err = a.unpack_fails();
        assert!(err.contains("unsafe name"), "{bad}: {err}");
    }
}

#[test]
fn parent_cycle_is_refused() {
    let a = Arena::new();
    // the root becomes a child of /deep/x: a cycle reachable from the root
    a.sql("UPDATE inode SET parent = 18 WHERE ino = 1");
    let err = a.unpack_fails();
    assert!(err.contains("cycle"), "{err}");
}

#[test]
fn detached_parent_cycle_is_refused() {
    let a = Arena::new();
    // /private becomes a child of /private/a/b/c: unreachable, looping
    a.sql("UPDATE inode SET parent = 65 WHERE ino = 61");
    let err = a.unpack_fails();
    assert!(
        err.contains("parent cycle") && err.contains("not reachable"),
        "{err}"
    );
}

#[test]
fn child_of_a_symlink_is_refused() {
    let a = Arena::new();
    // abs-link (ino 11) -> /etc/hostname; a hostile child `abs-link/zvfs-evil`
    a.sql(
        "INSERT INTO inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) \
         VALUES (11, 'zvfs-evil', 0, 0, 0, 33188, 0, 0, 0)",
    );
    let err = a.unpack_fails();
    assert!(err.contains("symlink") && err.contains("abs-link"), "{err}");
    assert!(!Path::new("/etc/zvfs-evil").exists());
    assert!(!Path::new("/etc/hostname/zvfs-evil").exists());
}

#[test]
fn existing_symlink_in_target_is_not_followed() {
    // a target that already holds `private -> <outside>`: unpack must not write through
    // it; the symlink is replaced by the flist's directory
    let a = Arena::new();
    let target = a.base.join("target");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(a.base.join("sentinel"), target.join("private")).unwrap();
    run_ok(&[
        "unpack",
        "-m",
        s(&a.fl),
        "-s",
        &dir_url(&a.store),
        "-p",
        s(&target),
    ]);
    assert_eq!(
        std::fs::read_dir(a.base.join("sentinel")).unwrap().count(),
        0,
        "written through the planted symlink"
    );
    assert!(std::fs::symlink_metadata(target.join("private"))
        .unwrap()
        .is_dir());
    let reference = fixture_tree(&a.base.join("ref"));
    assert_same_tree(&reference.join("private"), &target.join("private"));
}

#[test]
fn block_row_pointing_to_a_missing_chunk_is_reported() {
    let a = Arena::new();
    a.sql("UPDATE block SET id = X'00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff' WHERE ino = 12");
    let err = a.unpack_fails();
    assert!(
        err.contains("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
            && err.contains("hello.txt")
            && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn corrupted_chunk_is_reported() {
    let a = Arena::new();
    let p = a.hello_object();
    let mut data = std::fs::read(&p).unwrap();
    data[5] ^= 0x40;
    std::fs::write(&p, data).unwrap();
    let err = a.unpack_fails();
    assert!(
        err.contains("d139c46e6cc65acfa2eef1d0cd7abf014667fdc9a5ca75d9184671f97301a0db")
            && err.contains("corrupt")
            // the same content is in hello.txt and setuid-bin: either is named
            && (err.contains("hello.txt") || err.contains("setuid-bin")),
        "{err}"
    );
}

// ---------------------------------------------------------------- failed and repeated unpacks

/// The path of the object stored under hex `id` anywhere below `store` (whatever layout).
fn object_path(store: &Path, id: &str) -> PathBuf {
    let mut stack = vec![store.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name() == OsStr::new(id) {
                return e.path();
            }
        }
    }
    panic!("object {id} not found in {}", store.display());
}

/// Paths below `root` whose name holds the temporary marker of unpack.
fn unpack_temporaries(root: &Path) -> Vec<String> {
    snapshot(root)
        .into_keys()
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .filter(|k| k.contains(".zvfs-unpack-"))
        .collect()
}

#[test]
fn failed_unpack_leaves_no_partial_file_and_the_rerun_completes_it() {
    let d = tmp();
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(
        src.join("big.bin"),
        pseudo_random(3 * 1024 * 1024 + 100, 77),
    )
    .unwrap();
    std::fs::write(src.join("sub/small.txt"), b"small\n").unwrap();
    std::fs::write(src.join("top.txt"), b"top\n").unwrap();
    let store = d.path().join("store");
    let fl = d.path().join("t.fl");
    run_ok(&pack_args(&fl, &store, &[], &src));
    // one chunk of big.bin (7 chunks) goes missing from the store
    let (id, _) = blocks_by_path(&fl)["big.bin"][3].clone();
    let object = object_path(&store, &id);
    let aside = d.path().join("aside");
    std::fs::rename(&object, &aside).unwrap();

    let target = d.path().join("out");
    let args = ["unpack", "-m", s(&fl), "-p", s(&target)];
    let err = run_err(&args);
    assert!(err.contains("/big.bin") && err.contains(&id), "{err}");
    assert!(
        std::fs::symlink_metadata(target.join("big.bin")).is_err(),
        "a partial big.bin was left under its name"
    );
    assert_eq!(unpack_temporaries(&target), Vec::<String>::new());

    // the chunk is back, and a temporary of a killed run lies around: the re-run into the
    // same target removes it and completes the tree
    std::fs::rename(&aside, &object).unwrap();
    std::fs::write(target.join(".zvfs-unpack-7-big.bin"), b"partial").unwrap();
    let (_, err) = run_ok(&args);
    assert!(err.contains("1 leftovers removed"), "{err}");
    assert_same_tree(&src, &target);
}

#[test]
fn rerun_of_a_complete_unpack_keeps_what_is_in_place_and_repairs_the_rest() {
    let d = tmp();
    let src = d.path().join("src");
    every_type_tree(&src);
    let store = d.path().join("store");
    let fl = d.path().join("every.fl");
    run_ok(&pack_args(&fl, &store, &[], &src));
    let target = d.path().join("out");
    let args = ["unpack", "-m", s(&fl), "-p", s(&target)];
    run_ok(&args);
    let ino = |p: &str| std::fs::symlink_metadata(target.join(p)).unwrap().ino();
    let big_ino = ino("several-mib");

    // the same unpack again: nothing fetched, files kept (same inodes), same tree
    let (_, err) = run_ok(&args);
    assert_eq!(fetched_chunks(&err), 0, "{err}");
    assert_same_tree(&src, &target);
    assert_eq!(ino("several-mib"), big_ino);
    assert_eq!(ino("sub/linked"), ino("a-link"));
    assert_eq!(ino("sub/linked"), ino("sub/deeper/z-link"));

    // damage: a changed byte (same size), a symlink become a file, a file removed, a
    // hardlink broken; the re-run fetches only those files and repairs the rest
    let mut data = std::fs::read(target.join("several-mib")).unwrap();
    data[1_000_000] ^= 1;
    std::fs::write(target.join("several-mib"), &data).unwrap();
    std::fs::remove_file(target.join("rel-link")).unwrap();
    std::fs::write(target.join("rel-link"), b"not a link").unwrap();
    std::fs::remove_file(target.join("sub/deeper/text")).unwrap();
    std::fs::remove_file(target.join("a-link")).unwrap();
    std::fs::write(target.join("a-link"), b"x").unwrap();
    let (_, err) = run_ok(&args);
    // several-mib: 7 chunks, text: 1, a-link (the first path of its group, so the one
    // written with the content; the other two paths are relinked to it): 2
    assert_eq!(fetched_chunks(&err), 10, "{err}");
    assert_same_tree(&src, &target);
    assert_eq!(ino("sub/linked"), ino("a-link"));

    // an existing directory is never removed to make room for a file
    std::fs::remove_file(target.join("one")).unwrap();
    std::fs::create_dir(target.join("one")).unwrap();
    std::fs::write(target.join("one/mine"), b"keep me").unwrap();
    let err = run_err(&args);
    assert!(err.contains("/one is a directory"), "{err}");
    assert_eq!(std::fs::read(target.join("one/mine")).unwrap(), b"keep me");
}

/// A store URL whose every contact is counted (the connection is closed at once).
fn counting_store() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(c);
        }
    });
    (url, hits)
}

#[test]
fn hostile_flist_is_refused_before_anything_is_fetched_or_written() {
    let d = tmp();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("big.bin"), pseudo_random(8 * 1024 * 1024, 31)).unwrap();
    std::fs::write(src.join("other.bin"), pseudo_random(600_000, 33)).unwrap();
    std::fs::write(src.join("zz-last.txt"), b"last\n").unwrap();
    let fl = d.path().join("t.fl");
    run_ok(&pack_args(&fl, &d.path().join("store"), &[], &src));
    for (what, sql, want) in [
        (
            "entry named ..",
            "UPDATE inode SET name = '..' WHERE name = 'zz-last.txt'",
            "unsafe name",
        ),
        (
            "duplicate name",
            "UPDATE inode SET name = 'other.bin' WHERE name = 'zz-last.txt'",
            "two entries",
        ),
    ] {
        let bad = d.path().join("bad.fl");
        std::fs::copy(&fl, &bad).unwrap();
        let c = Connection::open(&bad).unwrap();
        c.execute_batch(sql).unwrap();
        // the hostile entry comes after the big file in the walk
        let ino_of = |n: &str| -> i64 {
            c.query_row("SELECT max(ino) FROM inode WHERE name = ?1", [n], |r| {
                r.get(0)
            })
            .unwrap()
        };
        let hostile = if what == "duplicate name" {
            ino_of("other.bin")
        } else {
            ino_of("..")
        };
        assert!(ino_of("big.bin") < hostile, "{what}");
        drop(c);
        let (url, hits) = counting_store();
        let target = d.path().join("target");
        let t = std::time::Instant::now();
        let err = run_err(&["unpack", "-m", s(&bad), "-s", &url, s(&target)]);
        assert!(err.contains(want), "{what}: {err}");
        assert!(!target.exists(), "{what}: the target was created");
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "{what}: the store was contacted"
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "{what}");
    }
}

// ---------------------------------------------------------------- pack failures

fn assert_no_flist_left(dir: &Path, out: &Path) {
    assert!(!out.exists(), "{} was left behind", out.display());
    let leftovers = common::names_containing(dir, ".fl");
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn pack_failing_on_the_store_leaves_no_flist() {
    let d = tmp();
    let src = fixture_tree(d.path());
    let blocker = d.path().join("not-a-dir");
    std::fs::write(&blocker, b"a file where the store should be").unwrap();
    let out = d.path().join("out.fl");
    let err = run_err(&pack_args(&out, &blocker.join("store"), &[], &src));
    assert!(err.contains("not-a-dir"), "{err}");
    assert_no_flist_left(d.path(), &out);
}

#[test]
fn pack_failing_on_an_unreadable_file_leaves_no_flist() {
    use std::os::unix::process::CommandExt;
    let d = tmp();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("readable"), b"fine").unwrap();
    std::fs::write(src.join("secret"), b"root only").unwrap();
    std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let store = d.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = d.path().join("out.fl");
    // as root every file is readable: run as nobody
    let res = Command::new(common::zvfs_bin())
        .args(["pack", "-m", s(&out), "-s", &dir_url(&store), s(&src)])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success(), "{err}");
    assert!(err.contains("secret"), "{err}");
    assert_no_flist_left(d.path(), &out);
}

// ---------------------------------------------------------------- crash leftovers

#[test]
fn pack_removes_what_dead_packs_left_and_keeps_live_writers_files() {
    let d = tmp();
    let src = fixture_tree(d.path());
    let out = d.path().join("out.fl");
    let store = d.path().join("store");
    let live = common::LiveProcess::start();
    let (dead, lp) = (common::DEAD_PID, live.pid());
    let hex = "ab".repeat(32);
    let base = d.path();
    let removed = [
        base.join(format!(".out.fl.zvfs-tmp-{dead}")),
        base.join(format!(".other.fl.zvfs-tmp-{dead}")),
        store.join(format!(".tmp.{dead}.{hex}")),
        store.join(format!("ab/.tmp.{dead}.{hex}")),
    ];
    let kept = [
        base.join(format!(".out.fl.zvfs-tmp-{lp}")),
        store.join(format!(".tmp.{lp}.{hex}")),
        store.join(format!("ab/.tmp.{lp}.{hex}")),
        // not pack's names
        base.join(format!("out.fl.zvfs-tmp-{dead}")),
        base.join(format!(".out.fl.zvfs-tmp-{dead}x")),
        store.join(format!(".tmp.{dead}.notes")),
    ];
    for p in removed.iter().chain(&kept) {
        common::plant_leftover(p);
    }
    run_ok(&pack_args(&out, &store, &[], &src));
    for p in &removed {
        assert!(!p.exists(), "{} is still there", p.display());
    }
    for p in &kept {
        assert!(p.exists(), "{} was removed", p.display());
    }
}

#[test]
fn a_pack_killed_with_sigkill_is_cleaned_up_by_the_next_one() {
    let d = tmp();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // 64 GiB of holes: far more than the pack can do before it is killed.
    std::fs::File::create(src.join("huge"))
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let out = d.path().join("out.fl");
    let store = d.path().join("store");
    let mut child = Command::new(common::zvfs_bin())
        .args(pack_args(&out, &store, &[], &src))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tmp_fl = d.path().join(format!(".out.fl.zvfs-tmp-{}", child.id()));
    common::wait_for("pack's temporary flist", || tmp_fl.exists());
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert!(!st.success(), "pack finished before it was killed");
    assert!(tmp_fl.exists(), "the killed pack left its temporary flist");
    // Older than the youngest a leftover can be.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    std::fs::remove_file(src.join("huge")).unwrap();
    std::fs::write(src.join("small"), b"small\n").unwrap();
    run_ok(&pack_args(&out, &store, &[], &src));
    assert!(
        !tmp_fl.exists(),
        "the next pack removed {}",
        tmp_fl.display()
    );
    let names = common::names_containing(d.path(), "zvfs-tmp");
    assert!(names.is_empty(), "{names:?}");
    let names = common::names_containing(&store, ".tmp.");
    assert!(names.is_empty(), "{names:?}");
    let (small, _) = run_ok(&["cat", "-m", s(&out), "small"]);
    assert_eq!(small, "small\n");
}

#[test]
fn version_tag_is_reserved() {
    let d = tmp();
    let src = fixture_tree(d.path());
    let out = d.path().join("out.fl");
    let store = d.path().join("store");
    let err = run_err(&pack_args(&out, &store, &["--tag", "version=42"], &src));
    assert!(err.contains("reserved"), "{err}");
    assert_no_flist_left(d.path(), &out);
}

// ---------------------------------------------------------------- debug commands

#[test]
fn ls_stat_inspect_cat_on_the_fixture() {
    let d = tmp();
    let store = store_copy(d.path());
    let fl = d.path().join("s.fl");
    copy_file(&rfs("sample.fl"), &fl);
    // a route with a password: inspect must not show it
    Connection::open(&fl)
        .unwrap()
        .execute_batch(
            "INSERT INTO route (start, end, url) VALUES (0, 255, 'zdb://user:hunter2@10.0.0.1:9900/ns')",
        )
        .unwrap();

    let ls = zvfs_ok(&["ls", "-m", s(&fl)]);
    let names: Vec<&str> = ls.lines().collect();
    assert_eq!(names.len(), 18);
    assert!(names.contains(&"ünïcødé-名前.txt") && names.contains(&"fifo1"));
    let long = zvfs_ok(&["ls", "-l", "-m", s(&fl), "/"]);
    let owned = long.lines().find(|l| l.ends_with(" owned.txt")).unwrap();
    assert!(owned.starts_with("-rw-r--r--"), "{owned}");
    assert!(owned.contains(" 1000  2000 "), "{owned}");
    assert!(long.contains("rel-link -> hello.txt"), "{long}");
    assert!(long
        .lines()
        .any(|l| l.starts_with("-rwsr-xr-x") && l.ends_with("setuid-bin")));
    let sub = zvfs_ok(&["ls", "-m", s(&fl), "private/a/b"]);
    assert_eq!(sub, "c\nmid.bin\n");

    let st = zvfs_ok(&["stat", "-m", s(&fl), "/hello.txt"]);
    for want in [
        "ino: 12",
        "type: file",
        "mode: 100644",
        "uid: 0",
        "size: 12",
        "mtime: 1577934245 (2020-01-02 03:04:05 UTC)",
        "nlink: 1",
        "blocks: 1",
    ] {
        assert!(st.contains(want), "{want} missing in {st}");
    }
    let st = zvfs_ok(&["stat", "-m", s(&fl), "dir-link"]);
    assert!(
        st.contains("target: private/a/b/c") && st.contains("type: symlink"),
        "{st}"
    );
    let st = zvfs_ok(&["stat", "-m", s(&fl), "owned.txt"]);
    assert!(st.contains("uid: 1000\ngid: 2000"), "{st}");
    let err = run_err(&["stat", "-m", s(&fl), "nope"]);
    assert!(err.contains("nope"), "{err}");

    let info = zvfs_ok(&["inspect", "-m", s(&fl)]);
    for want in [
        "format: rfs-v2",
        "entries: 67",
        "file: 53",
        "dir: 10",
        "symlink: 3",
        "fifo: 1",
        "bytes: 4948951",
        "chunks: 58",
        "unique chunks: 56",
        "dedup ratio: 1.04",
        "00-ff dir:///srv/zvfs-fixture/store",
        "zdb://user:***@10.0.0.1:9900/ns",
    ] {
        assert!(info.contains(want), "{want} missing in {info}");
    }
    assert!(!info.contains("hunter2"));

    let out = zvfs(&[
        "cat",
        "-m",
        s(&fl),
        "-s",
        &dir_url(&store),
        "random-1300000.bin",
    ]);
    assert!(out.status.success());
    let tree = fixture_tree(d.path());
    assert_eq!(
        out.stdout,
        std::fs::read(tree.join("random-1300000.bin")).unwrap()
    );
    let err = run_err(&["cat", "-m", s(&fl), "-s", &dir_url(&store), "deep"]);
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn ls_prints_non_utf8_names_raw() {
    let d = tmp();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join(OsStr::from_bytes(b"caf\xe9")), b"x").unwrap();
    let fl = d.path().join("n.fl");
    run_ok(&pack_args(&fl, &d.path().join("store"), &[], &src));
    let out = zvfs(&["ls", "-m", s(&fl)]);
    assert_eq!(out.stdout, b"caf\xe9\n");
    let target = d.path().join("t");
    zvfs_ok(&["unpack", "-m", s(&fl), s(&target)]);
    assert_eq!(
        std::fs::read(target.join(OsStr::from_bytes(b"caf\xe9"))).unwrap(),
        b"x"
    );
}
