//! `zvfs unpack` against the real rfs fixtures and generated trees: byte-exact trees with
//! owners, modes and times, partial extraction, hostile and broken flists, failed and
//! repeated unpacks. Runs as root (devices, owners, security.capability).

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::common::*;

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
    let err = run_fails(
        75,
        &[
            "unpack",
            "-m",
            s(&rfs("sharded.fl")),
            "-s",
            &format!("00-7f={}", dir_url(&a)),
            s(&target2),
        ],
    );
    assert!(err.contains("no store is routed"), "{err}");
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
            noise(1000 + i, 10_000_000),
        )
        .unwrap();
    }
    let wanted = noise(4242, 2_000_000);
    std::fs::write(src.join("a/b/wanted.bin"), &wanted).unwrap();
    std::fs::write(src.join("a/b/other.bin"), noise(5, 700_000)).unwrap();
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

    /// Unpack must fail with exit code 1; returns stderr after checking nothing escaped
    /// the target.
    fn unpack_fails(&self) -> String {
        self.unpack_fails_with(1)
    }

    /// [`Arena::unpack_fails`] with exit code `code` (75: a store failure).
    fn unpack_fails_with(&self, code: i32) -> String {
        let target = self.base.join("target");
        let err = run_fails(
            code,
            &[
                "unpack",
                "-m",
                s(&self.fl),
                "-s",
                &dir_url(&self.store),
                s(&target),
            ],
        );
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
    // A chunk missing from every store: a store failure (exit code 75).
    let err = a.unpack_fails_with(75);
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
    std::fs::write(src.join("big.bin"), noise(77, 3 * 1024 * 1024 + 100)).unwrap();
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
    let err = run_fails(75, &args);
    assert!(err.contains("/big.bin") && err.contains(&id), "{err}");
    assert!(
        std::fs::symlink_metadata(target.join("big.bin"))
            .err()
            .map(|e| e.kind())
            == Some(std::io::ErrorKind::NotFound),
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
    let err = run_fails(2, &args);
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
    std::fs::write(src.join("big.bin"), noise(31, 8 * 1024 * 1024)).unwrap();
    std::fs::write(src.join("other.bin"), noise(33, 600_000)).unwrap();
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
