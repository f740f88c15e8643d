//! Full disks: a store, an output directory or a cache on a small tmpfs that fills up
//! during pack, unpack, clone, import and a mount. Each gives a clear error naming the
//! path and the lack of space ("No space left on device", or SQLite's "database or disk
//! is full"), leaves nothing partial (no output flist, no file
//! under its final name that is not complete, no temporary file), and a mount whose cache
//! is full keeps serving from the store.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// A tmpfs of `kib` KiB mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(kib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full");
        std::fs::create_dir(&path).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs on {}", path.display());
        Tmpfs { path, _dir: dir }
    }
}

impl Tmpfs {
    /// A 16 KiB tmpfs with 14 KiB taken: room for a directory entry, not for an flist.
    fn nearly_full() -> Tmpfs {
        let t = Tmpfs::new(16);
        std::fs::write(t.path.join("filler"), vec![1u8; 14 * 1024]).unwrap_or(());
        t
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The command fails, naming a path under `full` and the lack of space.
fn fails_for_space(args: &[&str], full: &Path) -> String {
    let out = zvfs(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "zvfs {args:?} succeeded on a full disk"
    );
    assert!(
        err.contains(s(full)),
        "zvfs {args:?}: the error does not name the full path {}: {err}",
        full.display()
    );
    assert!(
        err.contains("No space left on device") || err.contains("database or disk is full"),
        "zvfs {args:?}: {err}"
    );
    let t = temp_files(full);
    assert!(t.is_empty(), "zvfs {args:?} left {t:?}");
    err
}

/// Three files of 1.2 MiB of noise (incompressible: about 3.6 MiB of chunks).
fn tree(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..3u64 {
        std::fs::write(src.join(format!("f{i}")), noise(500 + 2 * i, 1_200_000)).unwrap();
    }
    src
}

#[test]
fn pack_clone_unpack_and_import_on_full_disks_fail_clearly_and_leave_nothing_partial() {
    let tmp = tmp();
    let d = tmp.path();
    let src = tree(d);

    // pack: the store fills up
    let full = Tmpfs::new(1024);
    let fl = d.join("p.fl");
    fails_for_space(
        &["pack", "-m", s(&fl), "-s", &dir_url(&full.path), s(&src)],
        &full.path,
    );
    assert!(!fl.exists(), "pack left an flist after a failed upload");
    drop(full);

    // pack: the flist's directory fills up (the store has room)
    let store = d.join("store");
    let full = Tmpfs::nearly_full();
    let out = full.path.join("p.fl");
    fails_for_space(
        &["pack", "-m", s(&out), "-s", &dir_url(&store), s(&src)],
        &full.path,
    );
    assert!(!out.exists(), "pack left a partial flist");
    drop(full);

    // a good flist to read from
    pack(&fl, &dir_url(&store), &[], &src);

    // clone: the destination store fills up
    let full = Tmpfs::new(1024);
    fails_for_space(
        &["clone", "-m", s(&fl), "-s", &dir_url(&full.path)],
        &full.path,
    );
    drop(full);

    // unpack: the target fills up; what is left under a final name is complete
    let full = Tmpfs::new(1500);
    let target = full.path.join("out");
    fails_for_space(
        &["unpack", "-m", s(&fl), "-s", &dir_url(&store), s(&target)],
        &full.path,
    );
    for i in 0..3u64 {
        let p = target.join(format!("f{i}"));
        if let Ok(got) = std::fs::read(&p) {
            assert!(
                got == noise(500 + 2 * i, 1_200_000),
                "unpack left a partial {}",
                p.display()
            );
        }
    }
    drop(full);

    // unpack with its chunk cache on a full disk: the cache is only an extra
    let full = Tmpfs::new(64);
    let target = d.join("unpacked");
    zvfs_ok(&[
        "unpack",
        "-m",
        s(&fl),
        "-s",
        &dir_url(&store),
        "-c",
        s(&full.path),
        s(&target),
    ]);
    for i in 0..3u64 {
        assert!(
            std::fs::read(target.join(format!("f{i}"))).unwrap() == noise(500 + 2 * i, 1_200_000)
        );
    }
    drop(full);

    // import: the store fills up, then the flist's directory
    let layout = d.join("layout");
    crate::common::image::new_layout(&layout, "base");
    let entries: Vec<_> = (0..3u64)
        .map(|i| crate::common::image::file(format!("f{i}"), &noise(500 + 2 * i, 1_200_000)))
        .collect();
    crate::common::image::add_tar_layer(&layout, "base", "img", &entries);
    let image = crate::common::image::oci_ref(&layout, "img");
    let full = Tmpfs::new(1024);
    let imp = d.join("imp.fl");
    fails_for_space(
        &[
            "import",
            &image,
            "-m",
            s(&imp),
            "-s",
            &dir_url(&full.path),
            "-c",
            s(&d.join("ic")),
        ],
        &full.path,
    );
    assert!(!imp.exists());
    drop(full);
    let full = Tmpfs::nearly_full();
    let imp = full.path.join("imp.fl");
    fails_for_space(
        &[
            "import",
            &image,
            "-m",
            s(&imp),
            "-s",
            &dir_url(&store),
            "-c",
            s(&d.join("ic2")),
        ],
        &full.path,
    );
    assert!(!imp.exists());
    drop(full);

    // import with its cache (the layer index) on a full disk: the index is an extra
    let full = Tmpfs::nearly_full();
    let imp = d.join("imp-nocache.fl");
    let out = zvfs(&[
        "import",
        &image,
        "-m",
        s(&imp),
        "-s",
        &dir_url(&store),
        "-c",
        s(&full.path),
    ]);
    assert!(
        out.status.success(),
        "import with a full cache disk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    zvfs_ok(&["verify", "--deep", "-m", s(&imp), "-s", &dir_url(&store)]);
    assert!(temp_files(&full.path).is_empty());
}
