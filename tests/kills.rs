//! `kill -9` at random points: pack, import, convert, clone, `config` edits, cache writes
//! under a mount and `cache gc`, each killed [`RUNS`] times at a moment drawn uniformly
//! over the operation's own duration (measured by a clean run first). After each kill the
//! output flist is absent or complete (SQLite integrity check and `zvfs verify --deep`),
//! a clone's destination holds only right objects, the cache passes `zvfs cache fsck`;
//! after the last kill a re-run succeeds and leaves no temporary file anywhere. The counts
//! (killed mid-way / finished before the kill) are printed for the README.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Kills per operation.
const RUNS: usize = 100;

/// A deterministic sequence of kill times (xorshift), in [0, 1).
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Run `args` to the end; how long it took.
fn timed(args: &[String]) -> Duration {
    let t = Instant::now();
    let out = Command::new(zvfs_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "zvfs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// Start `args`, SIGKILL it after `after`; whether it had finished already.
fn kill_after(args: &[String], after: Duration) -> bool {
    let mut c = Command::new(zvfs_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let done = c.try_wait().unwrap().is_some();
    let _ = c.kill();
    let _ = c.wait();
    done
}

/// Kill `args` [`RUNS`] times, each after `reset` put back its starting state, calling
/// `check` after each kill; returns (killed, finished).
fn kill_runs(
    name: &str,
    seed: u64,
    args: &[String],
    mut reset: impl FnMut(),
    mut check: impl FnMut(usize),
) -> (usize, usize) {
    // The shortest of three clean runs: the first one warms caches up.
    let took = (0..3)
        .map(|_| {
            reset();
            timed(args)
        })
        .min()
        .unwrap_or_default();
    let mut draw = Draw(seed | 1);
    let (mut killed, mut finished) = (0, 0);
    for i in 0..RUNS {
        reset();
        let at = took.mul_f64(draw.next() * 1.1);
        if kill_after(args, at) {
            finished += 1;
        } else {
            killed += 1;
        }
        check(i);
    }
    println!(
        "kills: {name}: {killed} killed mid-way, {finished} finished first (run takes {took:?})"
    );
    (killed, finished)
}

/// The flist at `fl` is absent, or whole: SQLite finds it intact and every chunk of it
/// is in `store`, verified.
fn absent_or_complete(fl: &Path, store: &str) {
    if !fl.exists() {
        return;
    }
    let db = rusqlite::Connection::open(fl).unwrap();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "{}", fl.display());
    zvfs_ok(&["verify", "--deep", "-m", s(fl), "-s", store]);
}

/// After the kills: wait out the leftovers' minimum age, re-run, and find no temporary
/// file under `roots`.
fn rerun_cleans(args: &[String], roots: &[&Path]) {
    std::thread::sleep(Duration::from_millis(2100));
    timed(args);
    for r in roots {
        let t = temp_files(r);
        assert!(t.is_empty(), "zvfs {args:?} left {t:?}");
    }
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|x| x.to_string()).collect()
}

/// A tree of 24 files (a few of several chunks) to write.
fn source_tree(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    for i in 0..24u64 {
        let sub = src.join(format!("d{}", i % 4));
        std::fs::create_dir_all(&sub).unwrap();
        let len = if i % 6 == 0 {
            1_200_000
        } else {
            20_000 + 3_000 * i as usize
        };
        std::fs::write(sub.join(format!("f{i}")), noise(1000 + 2 * i, len)).unwrap();
    }
    src
}

#[test]
fn kill_nine_at_random_points_leaves_nothing_half_done() {
    let tmp = tmp();
    let d = tmp.path();
    let src = source_tree(d);

    // pack
    let store = d.join("store");
    let store_url = dir_url(&store);
    let fl = d.join("out.fl");
    let pack = strings(&["pack", "-m", s(&fl), "-s", &store_url, s(&src)]);
    let fresh = |p: &Path| {
        let _ = std::fs::remove_dir_all(p);
        let _ = std::fs::remove_file(p);
    };
    kill_runs(
        "pack",
        1,
        &pack,
        || {
            fresh(&store);
            fresh(&fl);
        },
        |_| absent_or_complete(&fl, &store_url),
    );
    rerun_cleans(&pack, &[d]);
    absent_or_complete(&fl, &store_url);
    assert!(fl.exists());

    // clone (dir store -> dir store): every object that reached the destination is right
    let dest = d.join("dest");
    let dest_url = dir_url(&dest);
    let clone = strings(&["clone", "-m", s(&fl), "-s", &dest_url]);
    kill_runs(
        "clone",
        2,
        &clone,
        || fresh(&dest),
        |_| {
            for f in files_under(&dest) {
                let n = f.file_name().unwrap().to_string_lossy().into_owned();
                if n.starts_with('.') {
                    continue;
                }
                let rel = f.strip_prefix(&dest).unwrap();
                assert!(
                    std::fs::read(&f).unwrap() == std::fs::read(store.join(rel)).unwrap(),
                    "clone left a wrong object {rel:?}"
                );
            }
        },
    );
    rerun_cleans(&clone, &[&dest]);
    zvfs_ok(&["verify", "--deep", "-m", s(&fl), "-s", &dest_url]);

    // config edits: the flist stays whole, each tag is there or not
    let edit = strings(&["config", "-m", s(&fl), "tag", "add", "-t", "kill=test"]);
    let untag = || {
        drop(zvfs(&[
            "config",
            "-m",
            s(&fl),
            "tag",
            "delete",
            "-k",
            "kill",
        ]))
    };
    kill_runs("config tag add", 3, &edit, untag, |_| {
        absent_or_complete(&fl, &store_url);
        assert!(fl.exists(), "an edit removed the flist");
    });
    rerun_cleans(&edit, &[d]);
    assert!(zvfs_ok(&["config", "-m", s(&fl), "tag", "list"]).contains("kill"));

    // convert (legacy fixture -> v2)
    let legacy = fixture("legacy-flist");
    let conv_store = d.join("conv-store");
    let conv_url = dir_url(&conv_store);
    let conv = d.join("conv.fl");
    let convert = strings(&[
        "convert",
        "-m",
        s(&legacy.join("sample.flist")),
        "-o",
        s(&conv),
        "-s",
        &conv_url,
        "--from-store",
        &dir_url(&legacy.join("chunks")),
    ]);
    kill_runs(
        "convert",
        4,
        &convert,
        || {
            fresh(&conv_store);
            fresh(&conv);
        },
        |_| absent_or_complete(&conv, &conv_url),
    );
    rerun_cleans(&convert, &[d]);
    absent_or_complete(&conv, &conv_url);

    // import (an OCI layout of the source tree)
    let layout = d.join("layout");
    crate::common::image::new_layout(&layout, "base");
    let entries: Vec<_> = files_under(&src)
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            crate::common::image::file(rel, &std::fs::read(f).unwrap())
        })
        .collect();
    crate::common::image::add_tar_layer(&layout, "base", "img", &entries);
    let imp_store = d.join("imp-store");
    let imp_url = dir_url(&imp_store);
    let imp = d.join("imp.fl");
    let import = strings(&[
        "import",
        &crate::common::image::oci_ref(&layout, "img"),
        "-m",
        s(&imp),
        "-s",
        &imp_url,
        "-c",
        s(&d.join("imp-cache")),
    ]);
    let imp_cache = d.join("imp-cache");
    kill_runs(
        "import",
        5,
        &import,
        || {
            fresh(&imp_store);
            fresh(&imp);
            fresh(&imp_cache);
        },
        |_| absent_or_complete(&imp, &imp_url),
    );
    rerun_cleans(&import, &[d]);
    absent_or_complete(&imp, &imp_url);

    // cache gc: fill a cache, then gc it down to a quarter
    let cache = d.join("cache");
    let warm = strings(&["warm", "-m", s(&fl), "-c", s(&cache), "-s", &store_url]);
    let gc = strings(&["cache", "gc", "-c", s(&cache), "--cache-size", "1M"]);
    let fsck = || zvfs_ok(&["cache", "fsck", "-c", s(&cache)]);
    kill_runs(
        "cache gc",
        6,
        &gc,
        || {
            timed(&warm);
        },
        |_| drop(fsck()),
    );
    rerun_cleans(&gc, &[&cache]);
    fsck();
}

fuse_test! {
    /// The mount's daemon killed while it writes fetched chunks into its cache.
    fn kill_nine_of_a_mount_writing_its_cache_leaves_it_consistent() {
        let tmp = tmp();
        let d = tmp.path();
        let src = source_tree(d);
        let store = d.join("store");
        let store_url = dir_url(&store);
        let fl = d.join("m.fl");
        pack(&fl, &store_url, &[], &src);
        let files: Vec<(PathBuf, Vec<u8>)> = files_under(&src)
            .into_iter()
            .map(|f| {
                let rel = f.strip_prefix(&src).unwrap().to_path_buf();
                let data = std::fs::read(&f).unwrap();
                (rel, data)
            })
            .collect();
        let cache = d.join("cache");
        let mnt = d.join("mnt");
        let args = strings(&["-m", s(&fl), "-c", s(&cache), "-s", &store_url]);
        let read_all = |mnt: &Path| {
            for (rel, data) in &files {
                if let Ok(got) = std::fs::read(mnt.join(rel)) {
                    assert!(&got == data, "wrong bytes in {rel:?}");
                }
            }
        };
        // How long reading everything cold takes.
        let took = {
            let m = Mount::daemon(&mnt, &args);
            let t = Instant::now();
            read_all(&mnt);
            let took = t.elapsed();
            drop(m);
            took
        };
        let mut draw = Draw(7);
        let mut killed = 0;
        for _ in 0..RUNS {
            zvfs_ok(&["cache", "clear", "-c", s(&cache)]);
            let m = Mount::daemon(&mnt, &args);
            let pid = m.pid;
            let at = took.mul_f64(draw.next());
            let killer = std::thread::spawn(move || {
                std::thread::sleep(at);
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            });
            read_all(&mnt); // right bytes or an error once the daemon is gone
            killer.join().unwrap();
            killed += 1;
            drop(m);
            zvfs_ok(&["cache", "fsck", "-c", s(&cache)]);
        }
        // A new mount over the cache the dead ones wrote reads every file right.
        std::thread::sleep(Duration::from_millis(2100));
        let m = Mount::daemon(&mnt, &args);
        for (rel, data) in &files {
            assert!(&std::fs::read(mnt.join(rel)).unwrap() == data, "{rel:?}");
        }
        drop(m);
        zvfs_ok(&["cache", "fsck", "-c", s(&cache)]);
        let t = temp_files(&cache);
        assert!(t.is_empty(), "{t:?}");
        println!("kills: mount cache writes: {killed} daemons killed while reading (cold read takes {took:?})");
    }
}
