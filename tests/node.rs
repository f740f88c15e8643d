//! Zero-OS node integration over real FUSE mounts (root): the rfs and g8ufs command lines
//! of formats.md section 5 through symlinks named `rfs` and `g8ufs`, flists by URL from a
//! real HTTP server on loopback, the writable overlay, mount management (`zvfs mounts`,
//! `zvfs umount`, stale mounts, shared daemons), readiness on a real notify socket and
//! the zinit/systemd service files run against a fixture.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

// ---------- helpers ----------

/// One mountinfo line, the fields the node looks at.
#[derive(Debug, Clone)]
struct Mi {
    opts: String,
    fstype: String,
    source: String,
    super_opts: String,
}

fn mountinfo_at(target: &Path) -> Option<Mi> {
    let t = abs(target);
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        if Path::new(f[4]) == t {
            Some(Mi {
                opts: f[5].to_string(),
                fstype: f[sep + 1].to_string(),
                source: f[sep + 2].to_string(),
                super_opts: f.get(sep + 3).unwrap_or(&"").to_string(),
            })
        } else {
            None
        }
    })
}

/// Absolute path; a stale mountpoint cannot be canonicalised itself, its parent can.
fn abs(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| {
        p.parent()
            .unwrap()
            .canonicalize()
            .unwrap()
            .join(p.file_name().unwrap())
    })
}

/// The node's test: type fuse.g8ufs and source = a live pid. Returns the pid.
fn node_sees_mount(target: &Path) -> u32 {
    let mi = mountinfo_at(target).unwrap_or_else(|| panic!("{} not mounted", target.display()));
    assert_eq!(mi.fstype, "fuse.g8ufs", "{mi:?}");
    let pid: u32 = mi.source.parse().expect("source is the daemon pid");
    assert!(alive(pid), "daemon {pid} is not running");
    for o in ["ro", "allow_other", "default_permissions"] {
        assert!(
            mi.opts.split(',').any(|x| x == o) || mi.super_opts.split(',').any(|x| x == o),
            "option {o} missing: {mi:?}"
        );
    }
    pid
}

fn wait_gone(pid: u32) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > Duration::from_secs(20) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn kill(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// Unmounts every target (lazily, repeatedly) and kills the daemons on drop, so a
/// failed assertion leaves nothing mounted.
#[derive(Default)]
struct Cleanup {
    targets: Vec<PathBuf>,
    pids: Vec<u32>,
    children: Vec<Child>,
}

impl Cleanup {
    fn target(&mut self, t: &Path) -> PathBuf {
        self.targets.push(t.to_path_buf());
        t.to_path_buf()
    }

    /// `node_sees_mount(t)`, the daemon's pid kept to be killed on drop.
    fn daemon_of(&mut self, t: &Path) -> u32 {
        let pid = node_sees_mount(t);
        self.pids.push(pid);
        pid
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for t in self.targets.iter().rev() {
            for _ in 0..4 {
                if mountinfo_at(t).is_none() {
                    break;
                }
                let _ = rustix::mount::unmount(t, rustix::mount::UnmountFlags::DETACH);
            }
        }
        for c in self.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for p in &self.pids {
            if alive(*p) {
                kill(*p, "-9");
            }
        }
    }
}

/// A symlink called `name` to the zvfs binary (the drop-in installation).
fn tool(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::os::unix::fs::symlink(zvfs_bin(), &p).unwrap();
    p
}

fn run(cmd: &Path, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().expect("running")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `zvfs mount -m <fl> -c <cache> -d <extra..> <target>`.
fn mount_d(fl: &Path, cache: &Path, extra: &[&str], target: &Path) -> Output {
    let mut a = vec!["mount", "-m", s(fl), "-c", s(cache), "-d"];
    a.extend_from_slice(extra);
    a.push(s(target));
    zvfs(&a)
}

/// `zvfs umount <target>` must succeed.
fn umount(target: &Path) {
    ok(
        &zvfs(&["umount", s(target)]),
        &format!("umount {}", target.display()),
    );
}

/// hello.txt of the rfs-v2 tree.
const HELLO: &[u8] = b"hello world\n";

/// `<dir>/hello.txt` reads as the fixture's hello.txt.
fn assert_hello(dir: &Path) {
    let got = std::fs::read(dir.join("hello.txt")).unwrap();
    assert_eq!(got, HELLO, "{}/hello.txt", dir.display());
}

/// A copy of the rfs-v2 `sample.fl` whose route points at the fixture store (read only
/// from), edited with `zvfs config store`.
fn sample_fl(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::copy(fixture("rfs-v2/sample.fl"), &p).unwrap();
    zvfs_ok(&["config", "-m", s(&p), "store", "delete", "--all"]);
    let url = dir_url(&fixture("rfs-v2/store"));
    zvfs_ok(&["config", "-m", s(&p), "store", "add", "-s", &url]);
    p
}

/// A FUSE test's start: a temp dir holding `src/sample.fl` (see `sample_fl`).
fn sample_world() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let fl = sample_fl(&d.path().join("src"), "sample.fl");
    (d, fl)
}

/// A file of the rfs-v2 tree, from tree.tar.
fn tree_file(tar: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(tar)
        .arg(name)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar -xOf {name}");
    out.stdout
}

fn md5_of(p: &Path) -> String {
    zvfs::flist::download::md5_of_file(p).unwrap()
}

fn mounts_json() -> Vec<serde_json::Value> {
    let out = zvfs_ok(&["mounts", "--json"]);
    serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap()
}

fn row_of(rows: &[serde_json::Value], target: &Path) -> Option<serde_json::Value> {
    let t = abs(target);
    rows.iter()
        .find(|r| r["target"].as_str() == Some(t.to_str().unwrap()))
        .cloned()
}

fn check(target: &Path) -> bool {
    zvfs(&["mounts", "--check", s(target)]).status.success()
}

// ---------- drop-in command lines ----------

fuse_test! {
    /// `rfs mount --cache <root>/cache --meta <root>/flist/<md5> --daemon --log
    /// <root>/log/<md5>.log <root>/ro/<md5>` exactly as the node runs it, through a symlink
    /// named `rfs`; the node finds it by type and pid, reads through it; `zvfs umount`.
    fn rfs_node_command_line_mounts_the_v2_fixture() {
        let (d, fl) = sample_world();
        let root = d.path();
        let md5 = md5_of(&fl);
        std::fs::create_dir_all(root.join("flist")).unwrap();
        std::fs::create_dir_all(root.join("log")).unwrap();
        std::fs::create_dir_all(root.join("ro").join(&md5)).unwrap();
        std::fs::copy(&fl, root.join("flist").join(&md5)).unwrap();
        let rfs = tool(root, "rfs");
        let mut c = Cleanup::default();
        let target = c.target(&root.join("ro").join(&md5));
        let cache = root.join("cache");
        let meta = root.join("flist").join(&md5);
        let log = root.join("log").join(format!("{md5}.log"));
        let out = run(
            &rfs,
            &[
                "mount",
                "--cache",
                s(&cache),
                "--meta",
                s(&meta),
                "--daemon",
                "--log",
                s(&log),
                s(&target),
            ],
        );
        ok(&out, "rfs mount");
        let pid = c.daemon_of(&target);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        assert!(
            argv[0].ends_with(b"/rfs") && argv[1] == b"mount",
            "daemon argv kept: {cmdline:?}"
        );
        assert_hello(&target);
        let tar = fixture("rfs-v2/tree.tar");
        assert_eq!(
            std::fs::read(target.join("random-1300000.bin")).unwrap(),
            tree_file(&tar, "./random-1300000.bin")
        );
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains("ready"), "log: {logged}");
        assert!(check(&target));
        // A second rfs mount on the same target is refused, like rfs does.
        let again = run(
            &rfs,
            &["mount", "-c", s(&cache), "-m", s(&meta), "-d", s(&target)],
        );
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("already a mount point"));
        // rfs's other subcommands through the same symlink.
        let unpacked = root.join("unpacked");
        ok(
            &run(
                &rfs,
                &[
                    "unpack",
                    "--meta",
                    s(&meta),
                    "--cache",
                    s(&cache),
                    "--preserve-ownership",
                    s(&unpacked),
                ],
            ),
            "rfs unpack",
        );
        assert_eq!(
            std::fs::metadata(unpacked.join("owned.txt")).unwrap().uid(),
            1000
        );
        let tags = ok(
            &run(&rfs, &["config", "--meta", s(&meta), "store", "list"]),
            "rfs config",
        );
        assert!(tags.contains("dir://"), "{tags}");

        umount(&target);
        assert!(mountinfo_at(&target).is_none());
        assert!(wait_gone(pid), "the daemon exits after umount");
        assert!(!check(&target));
    }
}

fuse_test! {
    /// `g8ufs --storage-url <url> --ro --cache <dir> --meta <file> --daemon --log <file>
    /// <target>` with the legacy fixture, double- and single-dash forms.
    fn g8ufs_node_command_line_mounts_the_legacy_fixture() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let chunks = root.join("chunks");
        std::fs::create_dir_all(&chunks).unwrap();
        for e in std::fs::read_dir(fixture("legacy-flist/chunks")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), chunks.join(e.file_name())).unwrap();
        }
        let meta = root.join("sample.flist");
        std::fs::copy(fixture("legacy-flist/sample.flist"), &meta).unwrap();
        let g8ufs = tool(root, "g8ufs");
        let mut c = Cleanup::default();
        let t1 = c.target(&root.join("t1"));
        let t2 = c.target(&root.join("t2"));
        std::fs::create_dir_all(&t1).unwrap();
        std::fs::create_dir_all(&t2).unwrap();
        let url = dir_url(&chunks);
        let log = root.join("g8ufs.log");
        ok(
            &run(
                &g8ufs,
                &[
                    "--storage-url",
                    &url,
                    "--ro",
                    "--cache",
                    s(&root.join("cache1")),
                    "--meta",
                    s(&meta),
                    "--daemon",
                    "--log",
                    s(&log),
                    s(&t1),
                ],
            ),
            "g8ufs --ro",
        );
        let p1 = c.daemon_of(&t1);
        // Go flag syntax: single dash, -name=value.
        ok(
            &run(
                &g8ufs,
                &[
                    &format!("-storage-url={url}"),
                    "-ro",
                    "-cache",
                    s(&root.join("cache2")),
                    "-meta",
                    s(&meta),
                    "-daemon",
                    s(&t2),
                ],
            ),
            "g8ufs -ro",
        );
        let p2 = c.daemon_of(&t2);
        assert_ne!(p1, p2, "another cache directory: another daemon");
        let tar = fixture("legacy-flist/tree.tar");
        for t in [&t1, &t2] {
            assert_hello(t);
            assert_eq!(
                std::fs::read(t.join("random-1300000.bin")).unwrap(),
                tree_file(&tar, "./random-1300000.bin")
            );
        }
        assert!(std::fs::read_to_string(&log).unwrap().contains("ready"));
        // SIGTERM (what the node does) unmounts and ends the daemon.
        kill(p2, "-TERM");
        assert!(wait_gone(p2));
        assert!(mountinfo_at(&t2).is_none());
        umount(&t1);
        assert!(wait_gone(p1));
    }
}

// ---------- writable layer ----------

fuse_test! {
    /// g8ufs without --ro, with --backend: FUSE on BACKEND/ro, overlay on the target with
    /// BACKEND/rw and BACKEND/wd; writes and whiteouts in the upper dir, the flist untouched;
    /// remount keeps them, --reset drops them; umount and SIGTERM take the overlay down
    /// first, then the FUSE mount.
    fn writable_overlay_with_backend_and_reset() {
        let (d, fl) = sample_world();
        let root = d.path();
        let g8ufs = tool(root, "g8ufs");
        let backend = root.join("backend");
        let mut c = Cleanup::default();
        let target = c.target(&root.join("rootfs"));
        c.targets.push(backend.join("ro"));
        std::fs::create_dir_all(&target).unwrap();
        let cache = root.join("cache");
        ok(
            &run(
                &g8ufs,
                &[
                    "--meta",
                    s(&fl),
                    "--cache",
                    s(&cache),
                    "--backend",
                    s(&backend),
                    "--daemon",
                    s(&target),
                ],
            ),
            "g8ufs rw",
        );
        let ov = mountinfo_at(&target).expect("overlay on the target");
        assert_eq!(ov.fstype, "overlay");
        let ro = abs(&backend.join("ro"));
        assert!(
            ov.super_opts
                .contains(&format!("lowerdir={}", ro.display())),
            "{ov:?}"
        );
        assert!(ov
            .super_opts
            .contains(&format!("upperdir={}", abs(&backend.join("rw")).display())));
        assert!(ov
            .super_opts
            .contains(&format!("workdir={}", abs(&backend.join("wd")).display())));
        let pid = c.daemon_of(&ro);

        // Write, modify, delete.
        std::fs::write(target.join("new.txt"), b"written\n").unwrap();
        std::fs::write(target.join("run.sh"), b"#!/bin/sh\necho changed\n").unwrap();
        std::fs::remove_file(target.join("hello.txt")).unwrap();
        assert!(!target.join("hello.txt").exists());
        let rw = backend.join("rw");
        assert_eq!(std::fs::read(rw.join("new.txt")).unwrap(), b"written\n");
        assert_eq!(
            std::fs::read(rw.join("run.sh")).unwrap(),
            b"#!/bin/sh\necho changed\n"
        );
        let wh = std::fs::symlink_metadata(rw.join("hello.txt")).unwrap();
        assert!(
            wh.file_type().is_char_device() && wh.rdev() == 0,
            "whiteout"
        );
        // The flist is untouched.
        assert_hello(&ro);
        assert!(!ro.join("new.txt").exists());
        let err = std::fs::write(ro.join("x"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        let row = row_of(&mounts_json(), &target).expect("overlay listed");
        assert_eq!(row["kind"], "overlay");
        assert_eq!(row["pid"], pid);
        assert!(check(&target));

        // zvfs umount: overlay, then FUSE; the daemon exits.
        umount(&target);
        assert!(mountinfo_at(&target).is_none());
        assert!(mountinfo_at(&ro).is_none());
        assert!(wait_gone(pid));
        assert!(rw.join("new.txt").exists(), "the upper layer stays on disk");

        // Remount without --reset (zvfs syntax): the changes are back.
        ok(
            &zvfs(&[
                "mount",
                "-m",
                s(&fl),
                "-c",
                s(&cache),
                "--rw",
                "--upper",
                s(&backend),
                "-d",
                s(&target),
            ]),
            "remount",
        );
        let pid = c.daemon_of(&ro);
        assert_eq!(std::fs::read(target.join("new.txt")).unwrap(), b"written\n");
        assert!(!target.join("hello.txt").exists());
        // SIGTERM takes both down.
        kill(pid, "-TERM");
        assert!(wait_gone(pid));
        assert!(mountinfo_at(&target).is_none());
        assert!(mountinfo_at(&ro).is_none());

        // Remount with --reset (g8ufs -reset): pristine flist again.
        ok(
            &run(
                &g8ufs,
                &[
                    "-meta",
                    s(&fl),
                    "-cache",
                    s(&cache),
                    "-backend",
                    s(&backend),
                    "-reset",
                    "-daemon",
                    s(&target),
                ],
            ),
            "g8ufs -reset",
        );
        let pid = c.daemon_of(&ro);
        assert!(!target.join("new.txt").exists());
        assert_hello(&target);
        assert_eq!(std::fs::read_dir(&rw).unwrap().count(), 0);
        umount(&target);
        assert!(wait_gone(pid));
    }
}

// ---------- flists by URL ----------

fuse_test! {
    /// `-m http://...`: downloaded into CACHE/flist/<md5>, checked against <url>.md5,
    /// reused (not downloaded again) while the md5 is unchanged; a wrong .md5 is a clear
    /// error with nothing mounted; a server without .md5 works too.
    fn flist_by_url_md5_check_and_reuse() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let www = root.join("www");
        let fl = sample_fl(&www, "sample.fl");
        let md5 = md5_of(&fl);
        std::fs::write(www.join("sample.fl.md5"), format!("{md5}\n")).unwrap();
        std::fs::copy(&fl, www.join("bad.fl")).unwrap();
        std::fs::write(www.join("bad.fl.md5"), "0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::copy(&fl, www.join("nomd5.fl")).unwrap();
        let server = http_server(&www);
        let cache = root.join("cache");
        let mut c = Cleanup::default();
        let t = c.target(&root.join("t"));

        let mount = |url: &str| zvfs(&["mount", "-m", url, "-c", s(&cache), "-d", s(&t)]);
        ok(&mount(&server.url("sample.fl")), "mount by URL");
        let pid = c.daemon_of(&t);
        assert_hello(&t);
        let local = cache.join("flist").join(&md5);
        assert_eq!(std::fs::read(&local).unwrap(), std::fs::read(&fl).unwrap());
        let mtime = std::fs::metadata(&local).unwrap().modified().unwrap();
        let row = row_of(&mounts_json(), &t).unwrap();
        assert_eq!(row["url"], server.url("sample.fl"));
        assert_eq!(row["md5"], md5.as_str());
        assert_eq!(server.gets("sample.fl", 200), 1);
        umount(&t);
        assert!(wait_gone(pid));

        // Unchanged md5: the flist is not downloaded again.
        ok(&mount(&server.url("sample.fl")), "second mount by URL");
        let pid = c.daemon_of(&t);
        assert_eq!(server.gets("sample.fl.md5", 200), 2);
        assert_eq!(server.gets("sample.fl", 200), 1, "downloaded once");
        assert_eq!(
            std::fs::metadata(&local).unwrap().modified().unwrap(),
            mtime
        );
        umount(&t);
        assert!(wait_gone(pid));

        // A wrong .md5: a clear error, nothing mounted, nothing kept.
        let out = mount(&server.url("bad.fl"));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("md5 mismatch") && err.contains("bad.fl"),
            "{err}"
        );
        assert!(mountinfo_at(&t).is_none());
        let names: Vec<String> = std::fs::read_dir(cache.join("flist"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![md5.clone()], "no partial download left");

        // No .md5 on the server: downloaded and mounted.
        ok(&mount(&server.url("nomd5.fl")), "mount without .md5");
        assert_eq!(server.gets("nomd5.fl.md5", 404), 1);
        let pid = c.daemon_of(&t);
        assert_hello(&t);
        umount(&t);
        assert!(wait_gone(pid));

        // The debug commands take a URL too.
        let cat = zvfs_ok(&["cat", "-m", &server.url("sample.fl"), "hello.txt"]);
        assert_eq!(cat, "hello world\n");
    }
}

// ---------- mount management ----------

fuse_test! {
    /// `zvfs mounts` lists target, pid, flist, cache and usage; `--check` is 0 only while
    /// mounted and healthy; after kill -9 of the daemon both `zvfs umount` and a new
    /// `zvfs mount` on the same target clean the stale mount (read-only and writable).
    fn mounts_check_umount_and_stale_mounts() {
        let (d, fl) = sample_world();
        let root = d.path();
        let cache = root.join("cache");
        let mut c = Cleanup::default();
        let t = c.target(&root.join("t"));
        let mount = |extra: &[&str]| mount_d(&fl, &cache, extra, &t);
        assert!(!check(&t), "nothing mounted yet");
        ok(&mount(&[]), "mount");
        let pid = c.daemon_of(&t);
        assert!(check(&t));
        std::fs::read(t.join("random-1300000.bin")).unwrap();
        let row = row_of(&mounts_json(), &t).expect("listed");
        assert_eq!(row["pid"], pid);
        assert_eq!(row["kind"], "fuse");
        assert_eq!(row["healthy"], true);
        assert_eq!(row["flist"], s(&abs(&fl)));
        assert_eq!(row["cache"], s(&abs(&cache)));
        assert!(row["cache_used"].as_u64().unwrap() >= 1_300_000, "{row}");
        let table = zvfs_ok(&["mounts"]);
        assert!(table
            .lines()
            .any(|l| l.starts_with(s(&abs(&t))) && l.contains(&pid.to_string())));
        let state = PathBuf::from(format!("/run/zvfs/{pid}.json"));
        assert!(state.exists(), "registry state");

        // kill -9: stale; zvfs umount cleans it.
        kill(pid, "-9");
        assert!(wait_gone(pid));
        let err = std::fs::read_dir(&t).unwrap_err();
        assert!(
            matches!(
                err.raw_os_error(),
                Some(libc::ENOTCONN) | Some(libc::ECONNABORTED)
            ),
            "{err}"
        );
        assert!(!check(&t));
        umount(&t);
        assert!(mountinfo_at(&t).is_none());
        assert!(std::fs::metadata(&t).unwrap().is_dir());
        let _ = zvfs_ok(&["mounts"]);
        assert!(!state.exists(), "stale state removed");

        // kill -9 again: a new mount on the same target detaches the stale one.
        ok(&mount(&[]), "mount");
        let pid = c.daemon_of(&t);
        kill(pid, "-9");
        assert!(wait_gone(pid));
        ok(&mount(&[]), "mount over a stale mount");
        let pid2 = c.daemon_of(&t);
        assert_ne!(pid, pid2);
        assert_hello(&t);
        umount(&t);
        assert!(wait_gone(pid2));

        // The same with a writable mount: overlay + FUSE left behind by kill -9.
        let upper = root.join("upper");
        c.targets.push(upper.join("ro"));
        let rw = ["--rw", "--upper", s(&upper)];
        ok(&mount(&rw), "rw mount");
        let pid = c.daemon_of(&upper.join("ro"));
        std::fs::write(t.join("kept.txt"), b"k").unwrap();
        kill(pid, "-9");
        assert!(wait_gone(pid));
        assert!(!check(&t));
        ok(&mount(&rw), "rw mount over a stale one");
        let pid2 = c.daemon_of(&upper.join("ro"));
        assert!(check(&t));
        assert_eq!(std::fs::read(t.join("kept.txt")).unwrap(), b"k");
        kill(pid2, "-9");
        assert!(wait_gone(pid2));
        umount(&t);
        assert!(mountinfo_at(&t).is_none());
        assert!(mountinfo_at(&upper.join("ro")).is_none());
        assert!(!zvfs(&["umount", s(&t)]).status.success(), "not mounted");
    }
}

fuse_test! {
    /// Two targets of one flist (same cache) share one daemon: the second is a bind of the
    /// first; a --rw one is an overlay over it; --new-daemon starts another. The daemon
    /// exits with its last user.
    fn same_flist_twice_shares_one_daemon() {
        let (d, fl) = sample_world();
        let root = d.path();
        let cache = root.join("cache");
        let mut c = Cleanup::default();
        let t1 = c.target(&root.join("t1"));
        let t2 = c.target(&root.join("t2"));
        let t3 = c.target(&root.join("t3"));
        let t4 = c.target(&root.join("t4"));
        let mount = |t: &Path, extra: &[&str]| ok(&mount_d(&fl, &cache, extra, t), "mount");
        mount(&t1, &[]);
        let p1 = c.daemon_of(&t1);
        mount(&t2, &[]);
        let p2 = node_sees_mount(&t2);
        assert_eq!(p1, p2, "one daemon for both targets");
        let upper = root.join("upper");
        mount(&t4, &["--rw", "--upper", s(&upper)]);
        let ov = mountinfo_at(&t4).unwrap();
        assert_eq!(ov.fstype, "overlay");
        assert!(ov
            .super_opts
            .contains(&format!("lowerdir={}", abs(&t1).display())));
        mount(&t3, &["--new-daemon"]);
        let p3 = c.daemon_of(&t3);
        assert_ne!(p1, p3, "--new-daemon");
        // Daemons serving these targets, as the node counts them: distinct pids.
        let mut pids: Vec<u32> = [&t1, &t2, &t3]
            .iter()
            .map(|t| mountinfo_at(t).unwrap().source.parse().unwrap())
            .collect();
        pids.sort();
        pids.dedup();
        assert_eq!(pids.len(), 2);
        for t in [&t1, &t2, &t3, &t4] {
            assert_hello(t);
            assert!(check(t), "{}", t.display());
        }
        std::fs::write(t4.join("w.txt"), b"w").unwrap();
        assert!(upper.join("rw/w.txt").exists());
        let rows = mounts_json();
        assert_eq!(row_of(&rows, &t2).unwrap()["kind"], "bind");
        assert_eq!(row_of(&rows, &t4).unwrap()["pid"], p1);

        // The shared daemon stays while it has users, in any order.
        umount(&t1);
        assert!(alive(p1));
        assert_hello(&t2);
        assert_hello(&t4);
        umount(&t2);
        assert!(alive(p1), "the overlay on t4 still uses it");
        assert!(check(&t4));
        umount(&t4);
        assert!(wait_gone(p1), "last user gone: the daemon exits");
        assert!(alive(p3), "the other daemon is not affected");
        umount(&t3);
        assert!(wait_gone(p3));
    }
}

// ---------- services ----------

fn recv_ready(sock: &UnixDatagram, child: &mut Child) -> String {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(_) => {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!("mount exited before READY=1: {st}");
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "no READY=1 within 60 s"
                );
            }
        }
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fuse_test! {
    /// A foreground mount sends READY=1 on NOTIFY_SOCKET once mounted; a second foreground
    /// mount of the same flist shares its daemon and holds its target until SIGTERM.
    fn foreground_mount_notifies_readiness() {
        let (d, fl) = sample_world();
        let root = d.path();
        let sock_path = root.join("notify.sock");
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        let mut c = Cleanup::default();
        // `zvfs mount` in the foreground, notifying readiness on the socket.
        let foreground = |t: &Path| {
            Command::new(zvfs_bin())
                .args(["mount", "-m", s(&fl), "-c", s(&root.join("cache")), s(t)])
                .env("NOTIFY_SOCKET", &sock_path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let t = c.target(&root.join("t"));
        c.children.push(foreground(&t));
        let msg = recv_ready(&sock, c.children.last_mut().unwrap());
        assert_eq!(msg, "READY=1");
        let pid = node_sees_mount(&t);
        assert_eq!(pid, c.children[0].id(), "the foreground process serves it");
        assert_hello(&t);

        // A second foreground mount of the same flist shares the daemon: it binds the mount,
        // reports ready and holds the target until signalled.
        let t2 = c.target(&root.join("t2"));
        c.children.push(foreground(&t2));
        assert_eq!(recv_ready(&sock, &mut c.children[1]), "READY=1");
        assert_eq!(node_sees_mount(&t2), pid, "no second daemon");
        assert_hello(&t2);
        kill(c.children[1].id(), "-TERM");
        assert!(wait_exit(&mut c.children[1]).success());
        assert!(mountinfo_at(&t2).is_none());
        assert!(alive(pid), "the first target still uses the daemon");

        kill(pid, "-TERM");
        let st = wait_exit(&mut c.children[0]);
        assert!(st.success(), "{st}");
        assert!(mountinfo_at(&t).is_none());
    }
}

/// The value of a top-level `key: value` line of a flat YAML file.
fn yaml_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        Some(v.trim().to_string())
    })
}

/// Replace the installation paths of the service files by the test's.
fn localise(cmd: &str, map: &[(&str, String)]) -> String {
    let mut out = cmd.to_string();
    for (from, to) in map {
        out = out.replace(from, to);
    }
    out
}

fn spawn_words(cmd: &str) -> Command {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let mut c = Command::new(words[0]);
    c.args(&words[1..]);
    c
}

fuse_test! {
    /// initramfs/zinit/*.yaml: the mount service's `exec` mounts, its `test` is false before
    /// and true once mounted, SIGTERM (zinit's stop) unmounts; the gc service's command runs.
    fn zinit_service_files_run_against_a_fixture() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("initramfs/zinit");
        let mount_yaml = std::fs::read_to_string(dir.join("zvfs-mount.yaml")).unwrap();
        let gc_yaml = std::fs::read_to_string(dir.join("zvfs-cache-gc.yaml")).unwrap();
        let exec = yaml_value(&mount_yaml, "exec").expect("exec:");
        let test = yaml_value(&mount_yaml, "test").expect("test:");
        assert!(test.contains("zvfs mounts --check"), "{test}");
        let cache = root.join("cache");
        let target = root.join("mnt/flist/root");
        std::fs::create_dir_all(&target).unwrap();
        let fl = sample_fl(&cache.join("flist"), "root.fl");
        let map = [
            ("/sbin/zvfs", zvfs_bin().display().to_string()),
            ("/var/cache/zvfs", cache.display().to_string()),
            ("/mnt/flist/root", target.display().to_string()),
        ];
        let exec = localise(&exec, &map);
        let test = localise(&test, &map);
        assert!(exec.contains(s(&fl)), "{exec}");
        let run_test = || spawn_words(&test).output().unwrap().status.success();
        assert!(!run_test(), "test fails before the mount");
        let mut c = Cleanup::default();
        c.target(&target);
        let child = spawn_words(&exec)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        c.children.push(child);
        let start = Instant::now();
        while !run_test() {
            if let Ok(Some(st)) = c.children[0].try_wait() {
                panic!("exec exited: {st}");
            }
            assert!(start.elapsed() < Duration::from_secs(60), "never ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_hello(&target);
        kill(c.children[0].id(), "-TERM");
        assert!(wait_exit(&mut c.children[0]).success());
        assert!(!run_test(), "test fails once stopped");

        // The gc service: the zvfs command inside its loop.
        let gc_exec = yaml_value(&gc_yaml, "exec").expect("exec:");
        let start = gc_exec.find("/sbin/zvfs").expect("names zvfs");
        let gc = gc_exec[start..].split(';').next().unwrap();
        let gc = localise(gc, &map);
        let out = spawn_words(&gc).output().unwrap();
        let text = ok(&out, &gc);
        assert!(text.contains("bytes_after"), "{text}");
    }
}

fuse_test! {
    /// initramfs/systemd/zvfs@.service: ExecStartPre/ExecStart/ExecStop with the
    /// EnvironmentFile variables substituted; ExecStart (Type=notify) sends READY=1,
    /// ExecStop unmounts and the main process exits 0.
    fn systemd_unit_runs_against_a_fixture() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let unit = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("initramfs/systemd/zvfs@.service"),
        )
        .unwrap();
        let key = |k: &str| -> String {
            unit.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k}= missing"))
                .to_string()
        };
        assert_eq!(key("Type"), "notify");
        assert_eq!(key("EnvironmentFile"), "/etc/zvfs/%i.env");
        let fl = root.join("root.fl");
        std::fs::copy(fixture("rfs-v2/sample.fl"), &fl).unwrap();
        let target = root.join("mnt/root");
        let cache = root.join("cache");
        // The instance's environment file, as an admin would write it.
        let env_text = format!(
            "FLIST={}\nCACHE={}\nCACHE_SIZE=1G\nTARGET={}\nZVFS_ARGS=\"-s {}\"\n",
            fl.display(),
            cache.display(),
            target.display(),
            dir_url(&fixture("rfs-v2/store"))
        );
        let env: Vec<(String, String)> = env_text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        // systemd: ${VAR} is one word, $VAR splits on whitespace; both substituted here.
        let expand = |line: &str| -> Vec<String> {
            let mut words = Vec::new();
            for w in line.split_whitespace() {
                let mut w = w.to_string();
                for (k, v) in &env {
                    w = w.replace(&format!("${{{k}}}"), v);
                }
                if let Some(name) = w.strip_prefix('$') {
                    let v = env
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    words.extend(v.split_whitespace().map(String::from));
                    continue;
                }
                let w = w.replace("/usr/sbin/zvfs", &zvfs_bin().display().to_string());
                words.push(w);
            }
            words
        };
        let cmd = |words: &[String]| {
            let mut c = Command::new(&words[0]);
            c.args(&words[1..]);
            c
        };
        let pre = expand(&key("ExecStartPre"));
        assert!(cmd(&pre).status().unwrap().success(), "{pre:?}");
        assert!(target.is_dir() && cache.is_dir());
        let start = expand(&key("ExecStart"));
        assert!(start.contains(&"-s".to_string()), "{start:?}");
        let sock_path = root.join("notify.sock");
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        let mut c = Cleanup::default();
        c.target(&target);
        let child = cmd(&start)
            .env("NOTIFY_SOCKET", &sock_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        c.children.push(child);
        assert_eq!(recv_ready(&sock, &mut c.children[0]), "READY=1");
        node_sees_mount(&target);
        assert_hello(&target);
        let stop = expand(&key("ExecStop"));
        let out = cmd(&stop).output().unwrap();
        ok(&out, "ExecStop");
        assert!(wait_exit(&mut c.children[0]).success());
        assert!(mountinfo_at(&target).is_none());
    }
}
