//! Content identity at work: `zvfs dedup`, `zvfs diff`, `zvfs identity` and the
//! incremental `zvfs pack --base`, on the real rfs fixtures and on generated trees.

use std::path::{Path, PathBuf};

use crate::common::{self, fixture, noise, pack, s, zvfs, zvfs_ok};
use serde_json::Value;

fn sample_fl() -> PathBuf {
    fixture("rfs-v2").join("sample.fl")
}

/// Run zvfs, returning (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = zvfs(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(args: &[&str]) -> Value {
    let out = zvfs_ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"))
}

/// The paths of each dedup group, as `input:path` strings.
fn groups(report: &Value) -> Vec<Vec<String>> {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            g["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    format!(
                        "{}:{}",
                        f["input"].as_str().unwrap(),
                        f["path"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------- dedup

#[test]
fn dedup_rfs_flist_groups_by_chunk_lists() {
    let fl = sample_fl();
    let r = json(&["dedup", "--json", s(&fl)]);
    let g = groups(&r);
    let want = vec![
        format!("{}:/dup-of-512k.bin", fl.display()),
        format!("{}:/exact-512k.bin", fl.display()),
    ];
    assert!(g.contains(&want), "no group of the two 512k files: {g:?}");
    // The rfs flist has no identity table: the grouping came from chunk lists alone,
    // without reading anything.
    assert_eq!(r["files_read_whole"], 0);
    assert_eq!(r["files_sampled"], 0);
    // Chunk level: 58 block rows (formats.md), two of them the duplicate 512 KiB chunk
    // and the 12-byte chunk shared by hello.txt and setuid-bin.
    let ch = &r["chunk_level"];
    assert_eq!(ch["references"], 58);
    assert_eq!(ch["unique"], 56);
    assert_eq!(ch["saves"], 524_288 + 12);
    assert_eq!(
        ch["reference_bytes"].as_u64().unwrap() - ch["unique_bytes"].as_u64().unwrap(),
        524_300
    );
    assert_eq!(r["file_level_saves"], 524_300);

    let text = zvfs_ok(&["dedup", s(&fl)]);
    assert!(
        text.contains("group 1: 2 copies of 524288 bytes, saves 524288 bytes"),
        "{text}"
    );
    assert!(text.contains("files read whole: 0"), "{text}");
}

/// A tree where only some files could be duplicates:
/// - five files of 200,000 bytes: `a.bin` and `copy/a.bin` (equal), `b.bin` and
///   `b-twin.bin` (differ in one byte outside the samples: same partial checksum),
///   `c.bin` (different samples);
/// - `a-link.bin`, a hardlink of `a.bin` (one content, not a duplicate);
/// - `d.txt` of a size no other file has (never even sampled), two empty files.
fn dedup_tree(root: &Path) {
    std::fs::create_dir_all(root.join("copy")).unwrap();
    let a = noise(1, 200_000);
    std::fs::write(root.join("a.bin"), &a).unwrap();
    std::fs::write(root.join("copy/a.bin"), &a).unwrap();
    std::fs::hard_link(root.join("a.bin"), root.join("a-link.bin")).unwrap();
    let b = noise(2, 200_000);
    let mut b2 = b.clone();
    b2[20_000] ^= 1; // outside [0,10000) [50000,60000) [100000,110000) ... [190000,200000)
    std::fs::write(root.join("b.bin"), &b).unwrap();
    std::fs::write(root.join("b-twin.bin"), &b2).unwrap();
    std::fs::write(root.join("c.bin"), noise(3, 200_000)).unwrap();
    std::fs::write(root.join("d.txt"), b"unique size").unwrap();
    std::fs::write(root.join("empty1"), b"").unwrap();
    std::fs::write(root.join("empty2"), b"").unwrap();
}

#[test]
fn dedup_directory_reads_only_colliding_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    dedup_tree(&root);
    // The premise: b and b-twin share size and partial checksum, c does not.
    let ids = zvfs_ok(&[
        "identity",
        "--partial",
        s(&root.join("b.bin")),
        s(&root.join("b-twin.bin")),
        s(&root.join("c.bin")),
    ]);
    let partials: Vec<&str> = ids.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(partials[0], partials[1]);
    assert_ne!(partials[0], partials[2]);

    let r = json(&["dedup", "--json", s(&root)]);
    let g = groups(&r);
    let p = |x: &str| format!("{}:/{x}", root.display());
    // The hardlinked file is listed once, under its first path in sorted order.
    assert_eq!(g, vec![vec![p("a-link.bin"), p("copy/a.bin")]], "{r}");
    let first = &r["groups"][0]["files"][0];
    assert_eq!(first["hardlinks"], serde_json::json!(["/a.bin"]));
    assert_eq!(r["file_level_saves"], 200_000);
    // Sampled: the five 200,000-byte files (the unique size and empty files are not).
    assert_eq!(r["files_sampled"], 5);
    // Read whole: only a, copy/a, b and b-twin (colliding partial checksums).
    assert_eq!(r["files_read_whole"], 4);
    assert_eq!(r["hardlinked_paths"], 1);
    assert_eq!(
        r["chunk_level"]["references"], 0,
        "directories need --chunks"
    );

    let text = zvfs_ok(&["dedup", s(&root)]);
    assert!(text.contains("files read whole: 4"), "{text}");
    assert!(
        text.contains(&format!("  {} (hardlinked as /a.bin)", p("a-link.bin"))),
        "{text}"
    );

    // --chunks reads every content (8: the hardlink once) and counts chunks: one chunk
    // for each of the six non-empty contents; the copy of a is the only shared chunk.
    let r = json(&["dedup", "--json", "--chunks", s(&root)]);
    assert_eq!(r["files_read_whole"], 8);
    assert_eq!(r["chunk_level"]["references"], 5 + 1);
    assert_eq!(r["chunk_level"]["unique"], 5);
    assert_eq!(r["chunk_level"]["saves"], 200_000);
}

#[test]
fn dedup_directory_against_rfs_flist_of_the_same_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    common::untar(&fixture("rfs-v2").join("tree.tar"), &tree);
    let fl = sample_fl();
    let r = json(&["dedup", "--json", s(&tree), s(&fl)]);
    let g = groups(&r);
    // Every non-empty file of the tree equals its path in the flist (an rfs flist has no
    // partial checksums, so each such local file had to be read whole).
    let hello = vec![
        format!("{}:/hello.txt", tree.display()),
        format!("{}:/setuid-bin", tree.display()),
        format!("{}:/hello.txt", fl.display()),
        format!("{}:/setuid-bin", fl.display()),
    ];
    assert!(g.contains(&hello), "{g:?}");
    let random = vec![
        format!("{}:/random-1300000.bin", tree.display()),
        format!("{}:/random-1300000.bin", fl.display()),
    ];
    assert!(g.contains(&random), "{g:?}");
    // The chunk keys computed from the local tree are exactly rfs's: same figures.
    let d = json(&["dedup", "--json", "--chunks", s(&tree)]);
    let f = json(&["dedup", "--json", s(&fl)]);
    for k in [
        "references",
        "unique",
        "reference_bytes",
        "unique_bytes",
        "saves",
    ] {
        assert_eq!(d["chunk_level"][k], f["chunk_level"][k], "{k}");
    }
}

#[test]
fn dedup_refuses_what_is_neither() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, b"not an flist").unwrap();
    let (code, _, err) = run(&["dedup", s(&junk)]);
    assert_ne!(code, 0);
    assert!(err.contains("not an flist"), "{err}");
    let (code, _, err) = run(&["dedup", s(&tmp.path().join("missing"))]);
    assert_ne!(code, 0);
    assert!(err.contains("missing"), "{err}");
}

// ---------------------------------------------------------------------------- diff

/// A writable copy of sample.fl.
fn copy_sample(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(sample_fl(), &p).unwrap();
    let mut perm = std::fs::metadata(&p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&p, perm).unwrap();
    p
}

#[test]
fn diff_identical_flists() {
    let tmp = tempfile::tempdir().unwrap();
    let a = copy_sample(tmp.path(), "a.fl");
    let (code, out, err) = run(&["diff", s(&sample_fl()), s(&a)]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    // Same tree packed into other stores (routes differ, content does not).
    let sharded = fixture("rfs-v2").join("sharded.fl");
    let (code, out, _) = run(&["diff", "--mtime", s(&sample_fl()), s(&sharded)]);
    assert_eq!((code, out.as_str()), (0, ""));
    let r = json(&["diff", "--json", s(&sample_fl()), s(&a)]);
    assert_eq!(r["identical"], true);
}

#[test]
fn diff_reports_each_kind_of_change() {
    let tmp = tempfile::tempdir().unwrap();
    let b = copy_sample(tmp.path(), "b.fl");
    {
        let c = rusqlite::Connection::open(&b).unwrap();
        let ino = |name: &str| -> i64 {
            c.query_row("SELECT ino FROM inode WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .unwrap()
        };
        // Content: another chunk key for the first block of random-1300000.bin.
        let random = ino("random-1300000.bin");
        c.execute(
            "UPDATE block SET key = zeroblob(32) WHERE rowid = (SELECT min(rowid) FROM block WHERE ino = ?1)",
            [random],
        )
        .unwrap();
        // Content: one more byte (size).
        c.execute(
            "UPDATE inode SET size = 13 WHERE ino = ?1",
            [ino("hello.txt")],
        )
        .unwrap();
        c.execute(
            "UPDATE inode SET mode = 33261 WHERE ino = ?1",
            [ino("name with spaces.txt")],
        )
        .unwrap(); // 0o100755
        c.execute(
            "UPDATE inode SET gid = 3000 WHERE ino = ?1",
            [ino("owned.txt")],
        )
        .unwrap();
        c.execute(
            "UPDATE extra SET data = X'6f74686572' WHERE ino = ?1",
            [ino("rel-link")],
        )
        .unwrap(); // "other"
        c.execute(
            "UPDATE inode SET mode = 33188 WHERE ino = ?1",
            [ino("fifo1")],
        )
        .unwrap(); // file
        c.execute("UPDATE inode SET mtime = 1 WHERE ino = ?1", [ino("run.sh")])
            .unwrap();
        // Removed: empty.txt; the whole `deep` directory (and what it holds).
        c.execute("DELETE FROM inode WHERE ino = ?1", [ino("empty.txt")])
            .unwrap();
        c.execute(
            "UPDATE inode SET parent = 999999 WHERE ino = ?1",
            [ino("deep")],
        )
        .unwrap();
        // Links: dup-of-512k.bin becomes a hardlink of exact-512k.bin (same content).
        c.execute_batch("CREATE TABLE zvfs_hardlink (ino INTEGER PRIMARY KEY, target INTEGER)")
            .unwrap();
        c.execute(
            "INSERT INTO zvfs_hardlink (ino, target) VALUES (?1, ?2)",
            [ino("dup-of-512k.bin"), ino("exact-512k.bin")],
        )
        .unwrap();
        // Added: new.txt at the root.
        c.execute(
            "INSERT INTO inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) VALUES (1, 'new.txt', 0, 0, 0, 33188, 0, 0, 0)",
            [],
        )
        .unwrap();
    }
    let (code, out, err) = run(&["diff", s(&sample_fl()), s(&b)]);
    assert_eq!(code, 1, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    // Paths in order; `deep` and everything below it deleted.
    let not_deep: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with("D /deep"))
        .collect();
    assert_eq!(
        not_deep,
        vec![
            "M links /dup-of-512k.bin",
            "D /empty.txt",
            "M links /exact-512k.bin",
            "M type /fifo1",
            "M content /hello.txt",
            "M mode /name with spaces.txt",
            "A /new.txt",
            "M owner /owned.txt",
            "M content /random-1300000.bin",
            "M target /rel-link",
        ],
        "{out}"
    );
    let deep_lines: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("D /deep"))
        .collect();
    assert_eq!(deep_lines.first(), Some(&"D /deep"), "{out}");
    assert!(
        deep_lines.len() > 1,
        "the contents of /deep are listed too: {out}"
    );
    let pos = |l: &str| lines.iter().position(|x| *x == l).unwrap();
    assert!(pos("D /deep") < pos("D /empty.txt"), "path order: {out}");

    // --mtime adds the changed mtime.
    let (code, out, _) = run(&["diff", "--mtime", s(&sample_fl()), s(&b)]);
    assert_eq!(code, 1);
    assert!(out.lines().any(|l| l == "M mtime /run.sh"), "{out}");
    // -q: the status only.
    let (code, out, _) = run(&["diff", "-q", s(&sample_fl()), s(&b)]);
    assert_eq!((code, out.as_str()), (1, ""));
    // JSON.
    let r: Value =
        serde_json::from_str(&run(&["diff", "--json", s(&sample_fl()), s(&b)]).1).unwrap();
    assert_eq!(r["identical"], false);
    assert_eq!(r["added"], 1);
    assert_eq!(r["modified"], 8);
    assert_eq!(
        r["removed"].as_u64().unwrap() as usize,
        1 + deep_lines.len()
    );
    assert!(r["changes"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!({"change": "M", "what": "content", "path": "/hello.txt"})));
    // Swapped: additions become deletions.
    let (code, out, _) = run(&["diff", s(&b), s(&sample_fl())]);
    assert_eq!(code, 1);
    assert!(out.lines().any(|l| l == "D /new.txt"), "{out}");
    assert!(out.lines().any(|l| l == "A /empty.txt"), "{out}");
}

#[test]
fn diff_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.fl");
    std::fs::write(&junk, b"not an flist at all").unwrap();
    for args in [
        vec!["diff", s(&sample_fl()), s(&junk)],
        vec!["diff", s(&sample_fl()), "/nonexistent/x.fl"],
        vec!["diff", s(&sample_fl())],
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(!err.is_empty());
    }
}

#[test]
fn diff_rfs_flist_against_zvfs_flist_of_the_same_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    common::untar(&fixture("rfs-v2").join("tree.tar"), &tree);
    let fl = tmp.path().join("zvfs.fl");
    let store = tmp.path().join("store");
    pack(&fl, &common::dir_url(&store), &[], &tree);
    // Content by chunk keys (rfs has no checksums), types, modes, owners (rfs's flist holds
    // 1000:2000 for owned.txt, like the tree), targets: all equal. Nothing was fetched:
    // the rfs fixture's stores are not even reachable at the routes it names.
    let (code, out, err) = run(&["diff", s(&sample_fl()), s(&fl)]);
    assert_eq!((code, out.as_str()), (0, ""), "stderr: {err}");
    let (code, out, _) = run(&["diff", s(&fl), s(&sample_fl())]);
    assert_eq!((code, out.as_str()), (0, ""));
    // tar restores every mtime (the root's too), so even mtimes agree.
    let (code, out, _) = run(&["diff", "--mtime", s(&sample_fl()), s(&fl)]);
    assert_eq!((code, out.as_str()), (0, ""));
    // And dedup sees each file of one in the other, by chunk keys.
    let r = json(&["dedup", "--json", s(&sample_fl()), s(&fl)]);
    assert!(groups(&r).contains(&vec![
        format!("{}:/random-1300000.bin", sample_fl().display()),
        format!("{}:/random-1300000.bin", fl.display()),
    ]));
}

// ------------------------------------------------------------------ incremental pack

/// The figures of pack's `base ...:` line: (reused files, read-and-packed files,
/// verified files, verify mismatches).
fn base_figures(out: &str) -> (u64, u64, u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with("base "))
        .unwrap_or_else(|| panic!("no base line in: {out}"));
    let num = |after: &str| -> u64 {
        let i = line
            .find(after)
            .unwrap_or_else(|| panic!("{after:?} not in {line}"));
        let before = line[..i].trim_end();
        let start = before
            .rfind(|c: char| !c.is_ascii_digit())
            .map_or(0, |k| k + 1);
        before[start..].parse().unwrap()
    };
    let reused = num(" files (");
    let rest = &line[line.find("reused").unwrap()..];
    let packed_i = rest.find(" files (").unwrap();
    let head = rest[..packed_i].trim_end();
    let packed: u64 = head[head.rfind(' ').unwrap() + 1..].parse().unwrap();
    let (verified, mismatched) = if line.contains("--base-verify") {
        (num("files whole"), num("did not match"))
    } else {
        (0, 0)
    };
    (reused, packed, verified, mismatched)
}

/// "N unique chunks uploaded" from pack's summary line.
fn uploaded(out: &str) -> u64 {
    let i = out.find(" unique chunks uploaded").unwrap();
    let head = &out[..i];
    head[head.rfind(' ').unwrap() + 1..].parse().unwrap()
}

/// Overwrite bytes of a file in place, keeping its size and restoring its mtime.
fn poke(path: &Path, offset: u64, bytes: &[u8], keep_mtime: bool) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let mtime = f.metadata().unwrap().modified().unwrap();
    f.write_all_at(bytes, offset).unwrap();
    if keep_mtime {
        f.set_modified(mtime).unwrap();
    } else {
        // A different second for sure (flists keep whole seconds).
        f.set_modified(mtime - std::time::Duration::from_secs(3600))
            .unwrap();
    }
}

#[test]
fn incremental_pack_reuses_unchanged_files_without_reading_them() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let tree = t.join("tree");
    let store = common::dir_url(&t.join("store"));
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("keep-big.bin"), noise(10, 1_300_000)).unwrap();
    std::fs::write(tree.join("keep-small.txt"), b"hello\n").unwrap();
    std::fs::write(tree.join("sub/keep.bin"), noise(11, 600_000)).unwrap();
    std::fs::hard_link(tree.join("sub/keep.bin"), tree.join("sub/hard.bin")).unwrap();
    std::fs::write(tree.join("mid.bin"), noise(12, 2_000_000)).unwrap();
    std::fs::write(tree.join("grow.bin"), noise(13, 700_000)).unwrap();
    std::fs::write(tree.join("gone.txt"), b"bye\n").unwrap();
    std::os::unix::fs::symlink("keep-small.txt", tree.join("link")).unwrap();
    let old = t.join("old.fl");
    let out = pack(&old, &store, &[], &tree);
    assert!(!out.contains("base "), "{out}");

    // Change one file's middle (inside the sample at size/2; mtime moved too), append to
    // another, add and remove files.
    poke(&tree.join("mid.bin"), 1_000_000, b"CHANGED", false);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(tree.join("grow.bin"))
            .unwrap();
        f.write_all(&noise(14, 1000)).unwrap();
    }
    std::fs::write(tree.join("new.txt"), b"new file\n").unwrap();
    std::fs::write(tree.join("sub/new.bin"), noise(15, 900_000)).unwrap();
    std::fs::remove_file(tree.join("gone.txt")).unwrap();

    let new = t.join("new.fl");
    let out = pack(&new, &store, &["--base", s(&old)], &tree);
    // Reused without reading: keep-big, keep-small, sub/keep (hard.bin is its hardlink).
    // Read and packed: mid, grow, new.txt, sub/new.bin.
    assert_eq!(base_figures(&out), (3, 4, 0, 0), "{out}");
    // The old diff shows exactly the changes.
    let (code, d, _) = run(&["diff", s(&old), s(&new)]);
    assert_eq!(code, 1);
    assert_eq!(
        d.lines().collect::<Vec<_>>(),
        vec![
            "D /gone.txt",
            "M content /grow.bin",
            "M content /mid.bin",
            "A /new.txt",
            "A /sub/new.bin",
        ],
        "{d}"
    );
    // The incremental flist equals a fresh pack of the new tree, mtimes included...
    let fresh = t.join("fresh.fl");
    pack(&fresh, &store, &[], &tree);
    let (code, d, e) = run(&["diff", "--mtime", s(&fresh), s(&new)]);
    assert_eq!((code, d.as_str()), (0, ""), "{e}");
    // ...and unpacks to the new tree.
    let restored = t.join("restored");
    zvfs_ok(&["unpack", "-m", s(&new), s(&restored)]);
    crate::common::assert_same_entries(&tree, &restored);

    // Nothing changed: everything is reused, nothing read whole, nothing uploaded.
    let again = t.join("again.fl");
    let out = pack(&again, &store, &["--base", s(&new)], &tree);
    assert_eq!(base_figures(&out), (7, 0, 0, 0), "{out}");
    assert_eq!(uploaded(&out), 0, "{out}");

    // The residual risk, demonstrated: a change that keeps size and mtime and touches no
    // sampled byte (keep-big.bin: samples at 0, 325000, 650000, 975000, 1290000) passes
    // the quick check, so the stale chunk list is reused. This also proves that reused
    // files are not read.
    poke(&tree.join("keep-big.bin"), 20_000, b"SNEAKY", true);
    let quick = t.join("quick.fl");
    let out = pack(&quick, &store, &["--base", s(&new)], &tree);
    assert_eq!(base_figures(&out), (7, 0, 0, 0), "{out}");
    let (code, d, _) = run(&["diff", s(&new), s(&quick)]);
    assert_eq!((code, d.as_str()), (0, ""), "the stale content was reused");
    // --base-verify reads the candidates whole, catches it and packs that file anew.
    let verified = t.join("verified.fl");
    let out = pack(
        &verified,
        &store,
        &["--base", s(&new), "--base-verify"],
        &tree,
    );
    assert_eq!(base_figures(&out), (6, 1, 7, 1), "{out}");
    // Only the changed file's chunks (3) were uploaded.
    assert_eq!(uploaded(&out), 3, "{out}");
    let (code, d, _) = run(&["diff", s(&new), s(&verified)]);
    assert_eq!((code, d.as_str()), (1, "M content /keep-big.bin\n"));
    let restored = t.join("restored-verified");
    zvfs_ok(&["unpack", "-m", s(&verified), s(&restored)]);
    crate::common::assert_same_entries(&tree, &restored);
}

#[test]
fn incremental_pack_from_an_rfs_flist_reuses_nothing() {
    // rfs flists record no partial checksum: the quick check cannot pass.
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    common::untar(&fixture("rfs-v2").join("tree.tar"), &tree);
    let fl = tmp.path().join("x.fl");
    let store = common::dir_url(&tmp.path().join("store"));
    let out = pack(&fl, &store, &["--base", s(&sample_fl())], &tree);
    let (reused, packed, _, _) = base_figures(&out);
    assert_eq!(reused, 0, "{out}");
    assert_eq!(packed, 53, "{out}");
    let (code, d, _) = run(&["diff", s(&sample_fl()), s(&fl)]);
    assert_eq!((code, d.as_str()), (0, ""));
}

#[test]
fn base_verify_requires_base() {
    let (code, _, err) = run(&[
        "pack",
        "-m",
        "/tmp/x.fl",
        "-s",
        "dir:///tmp/x",
        "--base-verify",
        "/tmp",
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn dedup_directory_against_zvfs_flist_uses_partial_checksums() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    dedup_tree(&root);
    let fl = tmp.path().join("z.fl");
    let store = common::dir_url(&tmp.path().join("store"));
    pack(&fl, &store, &[], &root);
    // After packing, c.bin changes in a sampled byte: its partial checksum no longer
    // matches anything, so it is not read whole; d.txt grows: no size match at all.
    poke(&root.join("c.bin"), 0, b"X", true);
    std::fs::write(root.join("d.txt"), b"unique size, longer").unwrap();
    let r = json(&["dedup", "--json", s(&root), s(&fl)]);
    // Local contents: a (+link), copy/a, b, b-twin, c, d, 2 empty. Sampled: the five
    // 200,000-byte files. Read whole: a, copy/a, b, b-twin (each equals a packed file's
    // partial checksum), not c.
    assert_eq!(r["files_sampled"], 5, "{r}");
    assert_eq!(r["files_read_whole"], 4, "{r}");
    let g = groups(&r);
    let d = |x: &str| format!("{}:/{x}", root.display());
    let f = |x: &str| format!("{}:/{x}", fl.display());
    assert!(
        g.contains(&vec![
            d("a-link.bin"),
            d("copy/a.bin"),
            f("a-link.bin"),
            f("copy/a.bin")
        ]),
        "{g:?}"
    );
    assert!(g.contains(&vec![d("b.bin"), f("b.bin")]), "{g:?}");
    assert!(g.contains(&vec![d("b-twin.bin"), f("b-twin.bin")]), "{g:?}");
    assert!(
        !g.iter()
            .flatten()
            .any(|p| p.ends_with("/c.bin") || p.ends_with("/d.txt")),
        "{g:?}"
    );
}

#[test]
fn diff_escapes_awkward_names_one_line_each() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let store = common::dir_url(&t.join("store"));
    let tree = t.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9")), b"1").unwrap();
    std::fs::write(tree.join("new\nline"), b"2").unwrap();
    std::fs::write(tree.join("back\\slash"), b"3").unwrap();
    let a = t.join("a.fl");
    pack(&a, &store, &[], &tree);
    for name in [&b"latin1-\xe9"[..], b"new\nline", b"back\\slash"] {
        std::fs::write(tree.join(std::ffi::OsStr::from_bytes(name)), b"changed").unwrap();
    }
    let b = t.join("b.fl");
    pack(&b, &store, &[], &tree);
    let (code, out, _) = run(&["diff", s(&a), s(&b)]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "M content /back\\\\slash\nM content /latin1-\\xe9\nM content /new\\nline\n"
    );
}
