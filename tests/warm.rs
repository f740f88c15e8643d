//! `zvfs warm` and the chunk cache of `unpack`/`cat` (`-c`): after warming, or after a
//! first unpack with the same cache, reading the content through a mount, `cat -c` or
//! `unpack -c` fetches nothing from the store. The proof is strong: the store directory
//! is removed, so any fetch would fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{
    self, dir_url, fuse_available, noise, plant_leftover, zvfs, zvfs_bin, zvfs_ok, LiveProcess,
    Mount, DEAD_PID,
};

/// A tree with multi-chunk files, a small file, a duplicate and a nested directory,
/// packed into a dir store. Returns (source, flist, store).
fn packed(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("big.bin"), noise(1, 1_300_000)).unwrap();
    std::fs::write(src.join("sub/other.bin"), noise(2, 700_000)).unwrap();
    std::fs::write(src.join("sub/deeper/copy.bin"), noise(1, 1_300_000)).unwrap();
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

/// What the entries under `dir` take on disk as du counts them (blocks of files and of
/// directories), without `dir` itself and the cache's usage file.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        if e.file_name() == ".zvfs-usage" {
            continue;
        }
        total += md.blocks() * 512;
        if md.is_dir() {
            total += disk_usage(&e.path());
        }
    }
    total
}

/// The directories under `dir` (which is itself left out) that hold nothing, and the
/// count of all directories.
fn empty_dirs(dir: &Path) -> (Vec<PathBuf>, usize) {
    let mut empty = Vec::new();
    let mut all = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all += 1;
            if std::fs::read_dir(&p).unwrap().next().is_none() {
                empty.push(p.clone());
            }
            let (e, a) = empty_dirs(&p);
            empty.extend(e);
            all += a;
        }
    }
    (empty, all)
}

/// `cache <action> -c <cache> <extra..>`: (exit code, stdout).
fn cache_cmd(action: &str, cache: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["cache", action, "-c", cache.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = zvfs(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn field(out: &str, k: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{k} ")))
        .unwrap_or_else(|| panic!("{k} in {out}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_small_cache_bound_holds_on_disk_directories_included() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // 600 small files, each its own chunk in (mostly) its own two directories, and 12 MiB
    // of large chunks: far more than an 8 MiB cache holds.
    for i in 0..600 {
        std::fs::write(src.join(format!("s{i}")), noise(i, 2000)).unwrap();
    }
    std::fs::write(src.join("big"), noise(9999, 12 << 20)).unwrap();
    let fl = d.path().join("t.fl");
    common::pack(&fl, &dir_url(&d.path().join("store")), &[], &src);
    let cache = d.path().join("cache");
    let (fls, cs) = (fl.to_str().unwrap(), cache.to_str().unwrap());
    zvfs_ok(&["warm", "-m", fls, "-c", cs, "--cache-size", "8M"]);
    let du = disk_usage(&cache);
    assert!(du <= 8 << 20, "warm left {du} bytes on disk (bound 8 MiB)");
    let (empty, dirs) = empty_dirs(&cache);
    assert!(dirs > 0);
    assert!(
        empty.is_empty(),
        "{} empty of {dirs} directories",
        empty.len()
    );

    // Empty shard directories (as older versions left) go on gc, and a smaller bound
    // holds on disk too.
    std::fs::create_dir_all(cache.join("0f/f0")).unwrap();
    let (code, gc) = cache_cmd("gc", &cache, &["--cache-size", "2M"]);
    assert_eq!(code, 0, "{gc}");
    assert!(field(&gc, "empty_dirs_removed") >= 1, "{gc}");
    let du = disk_usage(&cache);
    assert!(du <= 2 << 20, "gc left {du} bytes on disk (bound 2 MiB)");
    assert!(empty_dirs(&cache).0.is_empty(), "gc left empty directories");
    let (code, stats) = cache_cmd("stats", &cache, &["--cache-size", "2M"]);
    assert_eq!(code, 0);
    assert!(field(&stats, "disk_bytes") >= du, "{stats}");
    // clear leaves no directory at all
    let (code, _) = cache_cmd("clear", &cache, &[]);
    assert_eq!(code, 0);
    assert_eq!(empty_dirs(&cache).1, 0, "clear left directories");
}

#[test]
fn fsck_removes_misplaced_files_and_exits_2() {
    let d = tempfile::tempdir().unwrap();
    let (_, fl, _) = packed(d.path());
    let cache = d.path().join("cache");
    let fls = fl.to_str().unwrap();
    zvfs_ok(&["warm", "-m", fls, "-c", cache.to_str().unwrap()]);
    // A real chunk file, to copy to wrong places.
    let chunk = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && p.file_name().unwrap().len() == 2)
        .unwrap();
    let chunk = std::fs::read_dir(&chunk)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let chunk = std::fs::read_dir(&chunk)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let hex = chunk.file_name().unwrap().to_str().unwrap().to_string();
    let (l1, l2) = (&hex[..2], &hex[2..4]);
    let other = format!("{}{}", if l1 == "00" { "01" } else { "00" }, &hex[2..]);
    let bytes = std::fs::read(&chunk).unwrap();
    let misplaced = [
        cache.join(&hex),                      // at the top
        cache.join(l1).join(&hex),             // one level deep
        cache.join(l1).join("junk.txt"),       // not a chunk, in the layout
        cache.join(l1).join(l2).join(&other),  // in the wrong directory
        cache.join(l1).join(l2).join("sub/x"), // a directory where chunks go
        cache.join(l1).join("zz").join(&hex),  // a directory that is no shard
    ];
    for p in &misplaced {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, &bytes).unwrap();
    }
    let live = LiveProcess::start();
    let dead_tmp = cache
        .join(l1)
        .join(l2)
        .join(format!(".zvfs-tmp.{DEAD_PID}.{hex}"));
    let live_tmp = cache
        .join(l1)
        .join(l2)
        .join(format!(".zvfs-tmp.{}.{hex}", live.pid()));
    plant_leftover(&dead_tmp);
    plant_leftover(&live_tmp);
    // Not the cache's: left alone.
    let kept = [
        cache.join("notes.txt"),
        cache.join("flist").join("0123456789abcdef0123456789abcdef"),
        cache.join("elsewhere").join(&hex),
        chunk.clone(),
        live_tmp.clone(),
    ];
    for p in &kept[..3] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"keep").unwrap();
    }

    let (code, out) = cache_cmd("fsck", &cache, &["-m", fls]);
    assert_eq!(code, 2, "repairs exit 2: {out}");
    assert_eq!(field(&out, "strays_removed"), 6, "{out}");
    // (the dead writer's temporary file goes in any scan, even the one opening the cache)
    assert_eq!(field(&out, "bad_removed"), 0, "{out}");
    assert_eq!(field(&out, "verified"), field(&out, "files"), "{out}");
    for p in misplaced.iter().chain([&dead_tmp]) {
        assert!(!p.exists(), "{} is still there", p.display());
    }
    assert!(!cache.join(l1).join("zz").exists());
    for p in &kept {
        assert!(p.exists(), "{} was removed", p.display());
    }
    drop(live);
    let (code, out) = cache_cmd("fsck", &cache, &["-m", fls]);
    assert_eq!(code, 0, "nothing left to repair: {out}");
}

/// A foreground `zvfs mount <args..>` (the target last), unmounted and killed on drop.
fn foreground_mount(args: &[&str]) -> Mount {
    let target = Path::new(args[args.len() - 1]);
    let mut cmd = Command::new(zvfs_bin());
    cmd.arg("mount")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Mount::spawn(&mut cmd, target)
}
