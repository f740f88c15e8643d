//! `zvfs warm` and the chunk cache of `unpack`/`cat` (`-c`): after warming, or after a
//! first unpack with the same cache, reading the content through a mount, `cat -c` or
//! `unpack -c` fetches nothing from the store. The proof is strong: the store directory
//! is removed, so any fetch would fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{dir_url, fuse_available, xorshift_bytes, zvfs, zvfs_bin, Foreground};

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    xorshift_bytes(state, 24, len)
}

/// A tree with multi-chunk files, a small file, a duplicate and a nested directory,
/// packed into a dir store. Returns (source, flist, store).
fn packed(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("big.bin"), pseudo_random(1_300_000, 1)).unwrap();
    std::fs::write(src.join("sub/other.bin"), pseudo_random(700_000, 2)).unwrap();
    std::fs::write(src.join("sub/deeper/copy.bin"), pseudo_random(1_300_000, 1)).unwrap();
    std::fs::write(src.join("small.txt"), b"hello\n").unwrap();
    let fl = dir.join("t.fl");
    let store = dir.join("store");
    common::pack(&fl, &dir_url(&store), &[], &src);
    (src, fl, store)
}

fn stderr_of(args: &[&str]) -> String {
    let out = zvfs(args);
    assert!(
        out.status.success(),
        "zvfs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn cat(fl: &Path, cache: &Path, path: &str) -> std::process::Output {
    zvfs(&[
        "cat",
        "-m",
        fl.to_str().unwrap(),
        "-c",
        cache.to_str().unwrap(),
        path,
    ])
}

#[test]
fn warm_everything_then_read_without_the_store() {
    let d = tempfile::tempdir().unwrap();
    let (src, fl, store) = packed(d.path());
    let cache = d.path().join("cache");
    let fls = fl.to_str().unwrap();
    let cs = cache.to_str().unwrap();
    let first = stderr_of(&["warm", "-m", fls, "-c", cs, "-j", "3"]);
    // big.bin and its copy share their 3 chunks; other.bin has 2, small.txt 1.
    assert!(
        first.contains("warmed 4 files: 6 unique chunks, 6 fetched"),
        "{first}"
    );
    let again = stderr_of(&["warm", "-m", fls, "-c", cs]);
    assert!(again.contains("0 fetched (0 store reads"), "{again}");

    std::fs::remove_dir_all(&store).unwrap();
    for p in [
        "big.bin",
        "sub/other.bin",
        "sub/deeper/copy.bin",
        "small.txt",
    ] {
        let out = cat(&fl, &cache, p);
        assert!(
            out.status.success(),
            "cat {p}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, std::fs::read(src.join(p)).unwrap(), "{p}");
    }
    // Without the cache the store is really needed (and gone).
    assert!(!zvfs(&["cat", "-m", fls, "small.txt"]).status.success());

    let target = d.path().join("restored");
    let report = stderr_of(&["unpack", "-m", fls, "-c", cs, target.to_str().unwrap()]);
    assert!(
        report.contains("fetched 0 chunks (0 bytes) from stores"),
        "{report}"
    );
    assert_eq!(
        std::fs::read(target.join("sub/other.bin")).unwrap(),
        std::fs::read(src.join("sub/other.bin")).unwrap()
    );

    if !fuse_available() {
        return;
    }
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = foreground_mount(&[
        "-m",
        fls,
        "-c",
        cs,
        "-l",
        d.path().join("log").to_str().unwrap(),
        mnt.to_str().unwrap(),
    ]);
    for p in [
        "big.bin",
        "sub/other.bin",
        "sub/deeper/copy.bin",
        "small.txt",
    ] {
        assert_eq!(
            std::fs::read(mnt.join(p)).unwrap(),
            std::fs::read(src.join(p)).unwrap(),
            "{p} through the mount"
        );
    }
    drop(m);
}

#[test]
fn warm_only_the_named_paths() {
    let d = tempfile::tempdir().unwrap();
    let (src, fl, store) = packed(d.path());
    let cache = d.path().join("cache");
    let fls = fl.to_str().unwrap();
    let report = stderr_of(&[
        "warm",
        "-m",
        fls,
        "-c",
        cache.to_str().unwrap(),
        "/sub/other.bin",
        "small.txt",
    ]);
    assert!(
        report.contains("warmed 2 files: 3 unique chunks, 3 fetched"),
        "{report}"
    );
    std::fs::remove_dir_all(&store).unwrap();
    let out = cat(&fl, &cache, "sub/other.bin");
    assert!(out.status.success());
    assert_eq!(
        out.stdout,
        std::fs::read(src.join("sub/other.bin")).unwrap()
    );
    let out = cat(&fl, &cache, "big.bin");
    assert!(!out.status.success(), "big.bin was not warmed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("big.bin"), "{err}");

    // A missing path is an error naming it.
    let out = zvfs(&["warm", "-m", fls, "-c", cache.to_str().unwrap(), "/nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn second_unpack_with_the_same_cache_fetches_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (src, fl, store) = packed(d.path());
    let cache = d.path().join("cache");
    let fls = fl.to_str().unwrap();
    let cs = cache.to_str().unwrap();
    let one = d.path().join("one");
    let first = stderr_of(&["unpack", "-m", fls, "-c", cs, one.to_str().unwrap()]);
    assert!(first.contains("fetched 6 chunks"), "{first}");
    let two = d.path().join("two");
    let second = stderr_of(&["unpack", "-m", fls, "-c", cs, two.to_str().unwrap()]);
    assert!(
        second.contains("fetched 0 chunks (0 bytes) from stores"),
        "{second}"
    );
    std::fs::remove_dir_all(&store).unwrap();
    let three = d.path().join("three");
    stderr_of(&["unpack", "-m", fls, "-c", cs, three.to_str().unwrap()]);
    for p in ["big.bin", "sub/deeper/copy.bin", "small.txt"] {
        let want = std::fs::read(src.join(p)).unwrap();
        assert_eq!(std::fs::read(two.join(p)).unwrap(), want, "{p}");
        assert_eq!(std::fs::read(three.join(p)).unwrap(), want, "{p}");
    }
    // A tiny bound still works: chunks are evicted, never a reason to fail.
    let four = d.path().join("four");
    let small = d.path().join("small-cache");
    let out = zvfs(&[
        "unpack",
        "-m",
        fls,
        "-c",
        small.to_str().unwrap(),
        "--cache-size",
        "600K",
        "-s",
        &dir_url(&d.path().join("nowhere")),
        four.to_str().unwrap(),
    ]);
    assert!(
        !out.status.success(),
        "the store is gone and the cache is new"
    );
}

/// A foreground `zvfs mount <args..>` (the target last), unmounted and killed on drop.
fn foreground_mount(args: &[&str]) -> Foreground {
    let target = Path::new(args[args.len() - 1]);
    let mut cmd = Command::new(zvfs_bin());
    cmd.arg("mount")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Foreground::spawn(&mut cmd, target)
}
