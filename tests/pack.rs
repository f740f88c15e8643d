//! `zvfs pack`: rfs compatibility of what it writes (chunk ids, objects, schema), the
//! round trip of a tree with every file type, and what a failed or killed pack leaves.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::common::{self, *};

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
    assert_eq!(res.status.code(), Some(1), "{err}");
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
    let err = run_fails(2, &pack_args(&out, &store, &["--tag", "version=42"], &src));
    assert!(err.contains("reserved"), "{err}");
    assert_no_flist_left(d.path(), &out);
}
