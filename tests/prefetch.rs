//! Trace-driven prefetch: `zvfs mount --record-trace` over a real FUSE mount, the
//! `zvfs_prefetch` table written by `zvfs prefetch add|clear` and `pack --prefetch`, and
//! a damaged table that must not stop a mount.

use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use zvfs::codec::CHUNK_SIZE;
use zvfs::flist::trace::{self, TraceLine};

/// A source tree: `a.txt`, `big.bin` (6 chunks), `d/with space.bin`; packed into
/// `dir/t.fl` with its chunks in `dir/store`. Returns (flist, store URL, source).
fn packed(dir: &Path) -> (PathBuf, String, PathBuf) {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("a.txt"), b"hello\n").unwrap();
    std::fs::write(src.join("big.bin"), noise(7, 6 * CHUNK_SIZE)).unwrap();
    std::fs::write(src.join("d/with space.bin"), noise(8, 1000)).unwrap();
    let fl = dir.join("t.fl");
    let store = dir_url(&dir.join("store"));
    std::fs::create_dir_all(dir.join("store")).unwrap();
    pack(&fl, &store, &[], &src);
    (fl, store, src)
}

/// Read `len` bytes at `off` of `path` with the kernel's read-ahead off (FADV_RANDOM),
/// so the mount sees only this read.
fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: a valid open descriptor; posix_fadvise only sets a hint on it.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    assert_eq!(r, 0);
    let mut buf = vec![0u8; len];
    let n = f.read_at(&mut buf, off).unwrap();
    buf.truncate(n);
    buf
}

fn umount(mnt: &Path) {
    let out = zvfs(&["umount", s(mnt)]);
    assert!(
        out.status.success(),
        "umount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fuse_test! {
    fn record_trace_lists_first_reads_in_order() {
        let dir = tmp();
        let (fl, _store, src) = packed(dir.path());
        let mnt = dir.path().join("mnt");
        let tr = dir.path().join("run.trace");
        let m = Mount::daemon(
            &mnt,
            &["-m", s(&fl), "-c", s(&dir.path().join("cache")), "--record-trace", s(&tr)],
        );
        let cs = CHUNK_SIZE as u64;
        let big = std::fs::read(src.join("big.bin")).unwrap();
        let steps: [(&str, u64); 5] = [
            ("a.txt", 0),
            ("big.bin", 0),
            ("big.bin", 4 * cs + 10),
            ("big.bin", 2 * cs),
            ("d/with space.bin", 0),
        ];
        for (name, off) in steps {
            let got = read_at(&mnt.join(name), off, 100);
            if name == "big.bin" {
                assert_eq!(got, big[off as usize..off as usize + 100]);
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        // A repeat of a chunk read already is not recorded again.
        read_at(&mnt.join("big.bin"), 10, 100);
        umount(&mnt);
        drop(m);
        let text = std::fs::read_to_string(&tr).unwrap();
        assert!(text.starts_with("# zvfs trace v1\n"), "{text}");
        assert!(text.contains("/d/with\\x20space.bin"), "{text}");
        let lines = trace::parse(text.as_bytes(), "trace").unwrap();
        let want: Vec<(&[u8], u32)> = vec![
            (b"/a.txt", 0),
            (b"/big.bin", 0),
            (b"/big.bin", 4),
            (b"/big.bin", 2),
            (b"/d/with space.bin", 0),
        ];
        let got: Vec<(&[u8], u32)> = lines.iter().map(|l| (&l.path[..], l.chunk)).collect();
        assert_eq!(got, want, "{text}");
        for w in lines.windows(2) {
            assert!(w[1].ms >= w[0].ms + 20, "times must increase: {text}");
        }
    }
}

#[test]
fn prefetch_add_show_clear_round_trip() {
    let dir = tmp();
    let (fl, _store, _src) = packed(dir.path());
    let tr = dir.path().join("t.trace");
    std::fs::write(
        &tr,
        "# zvfs trace v1\n0 0 /a.txt\n5 3 /big.bin\n6 1 /big.bin\n7 3 /big.bin\n\
         8 0 /missing\\x20file\n9 0 /d\n10 0 /d/with\\x20space.bin\n",
    )
    .unwrap();
    let (out, err) = run_ok(&["prefetch", "add", "-m", s(&fl), s(&tr)]);
    assert!(out.contains("4 entries, 3 files, skipped 2"), "{out}");
    assert!(
        err.contains("1 trace paths not in the flist") && err.contains("/missing\\x20file"),
        "{err}"
    );
    assert!(
        err.contains("not regular files") && err.contains("/d"),
        "{err}"
    );
    let (shown, _) = run_ok(&["prefetch", "show", "-m", s(&fl)]);
    assert_eq!(
        shown,
        "0 0 /a.txt\n5 3 /big.bin\n6 1 /big.bin\n10 0 /d/with\\x20space.bin\n"
    );
    let (json, _) = run_ok(&["prefetch", "show", "-m", s(&fl), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert_eq!(v[1]["chunk"], 3);
    assert_eq!(v[1]["path"], "/big.bin");
    // The library reads it back with content inodes.
    let items = zvfs::flist::open(&fl).unwrap().prefetch().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!((items[2].chunk, items[2].ms), (1, 6));
    // `add` replaces.
    std::fs::write(&tr, "# zvfs trace v1\n1 2 /big.bin\n").unwrap();
    run_ok(&["prefetch", "add", "-m", s(&fl), s(&tr)]);
    assert_eq!(
        run_ok(&["prefetch", "show", "-m", s(&fl)]).0,
        "1 2 /big.bin\n"
    );
    run_ok(&["prefetch", "clear", "-m", s(&fl)]);
    assert_eq!(run_ok(&["prefetch", "show", "-m", s(&fl)]).0, "");
    assert!(zvfs::flist::open(&fl)
        .unwrap()
        .prefetch()
        .unwrap()
        .is_empty());
    // A file that is not a trace is refused, the flist left alone.
    std::fs::write(&tr, "0 0 /a.txt\n").unwrap();
    let err = run_err(&["prefetch", "add", "-m", s(&fl), s(&tr)]);
    assert!(err.contains("not a zvfs trace"), "{err}");
}

#[test]
fn pack_prefetch_stores_the_trace() {
    let dir = tmp();
    let (_fl, store, src) = packed(dir.path());
    let tr = dir.path().join("t.trace");
    let lines = [
        TraceLine {
            ms: 3,
            chunk: 1,
            path: b"/big.bin".to_vec(),
        },
        TraceLine {
            ms: 4,
            chunk: 0,
            path: b"/nope".to_vec(),
        },
        TraceLine {
            ms: 9,
            chunk: 0,
            path: b"/a.txt".to_vec(),
        },
    ];
    let mut text = format!("{}\n", trace::HEADER);
    for l in &lines {
        text.push_str(&trace::format_line(l));
        text.push('\n');
    }
    std::fs::write(&tr, text).unwrap();
    let fl2 = dir.path().join("p.fl");
    let mut args = pack_args(
        &fl2,
        &dir.path().join("store"),
        &["--prefetch", s(&tr)],
        &src,
    );
    args[4] = store;
    let (out, err) = run_ok(&args);
    assert!(
        out.contains("prefetch list: 2 entries, 2 files, skipped 1"),
        "{out}"
    );
    assert!(err.contains("/nope"), "{err}");
    assert_eq!(
        run_ok(&["prefetch", "show", "-m", s(&fl2)]).0,
        "3 1 /big.bin\n9 0 /a.txt\n"
    );
}

/// Replace the prefetch table of `fl` by one with the wrong shape.
fn corrupt_table(fl: &Path) {
    let c = rusqlite::Connection::open(fl).unwrap();
    c.execute_batch(
        "DROP TABLE IF EXISTS zvfs_prefetch;
         CREATE TABLE zvfs_prefetch (seq INTEGER PRIMARY KEY, ino TEXT, chunk INTEGER, ms INTEGER);
         INSERT INTO zvfs_prefetch VALUES (1, 'x', -1, 5);",
    )
    .unwrap();
}

fuse_test! {
    fn corrupt_prefetch_table_still_mounts() {
        let dir = tmp();
        let (fl, _store, src) = packed(dir.path());
        corrupt_table(&fl);
        assert!(zvfs::flist::open(&fl).unwrap().prefetch().is_err());
        let mnt = dir.path().join("mnt");
        let m = Mount::daemon(&mnt, &["-m", s(&fl), "-c", s(&dir.path().join("cache"))]);
        assert_eq!(
            std::fs::read(mnt.join("big.bin")).unwrap(),
            std::fs::read(src.join("big.bin")).unwrap()
        );
        umount(&mnt);
        drop(m);
    }
}
