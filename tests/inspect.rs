//! The debug commands `zvfs ls`, `stat`, `inspect` and `cat` on the rfs fixture and on
//! awkward names.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rusqlite::Connection;

use crate::common::*;

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
