//! The mount supervisor: a worker that dies is replaced on the same FUSE connection, a
//! killed supervisor leaves a stale mount the next mount recovers, SIGTERM unmounts,
//! `zvfs mounts --upgrade` executes the binary now on disk in the same process, and reads
//! go on through worker kills.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use zvfs::codec::CHUNK_SIZE;

/// Files of several chunks each (and a directory tree for walkers), packed into
/// `dir/t.fl` with a `dir://` store: (flist, the source tree).
fn multi_chunk_flist(dir: &Path) -> (PathBuf, PathBuf) {
    let src = dir.join("src");
    for d in 0..4 {
        let sub = src.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..3 {
            let seed = (d * 10 + f) as u64;
            let len = CHUNK_SIZE * 3 + 1000 * (f + 1);
            std::fs::write(sub.join(format!("f{f}.bin")), noise(seed, len)).unwrap();
        }
    }
    let fl = dir.join("t.fl");
    pack(&fl, &dir_url(&dir.join("store")), &[], &src);
    (fl, src)
}

/// `-m <fl> -c <dir>/cache`.
fn args(dir: &Path, fl: &Path) -> Vec<String> {
    vec![
        "-m".into(),
        s(fl).into(),
        "-c".into(),
        s(&dir.join("cache")).into(),
    ]
}

/// The registry entry of supervisor `pid` (`/run/zvfs/<pid>.json`), if any.
fn state(pid: u32) -> Option<serde_json::Value> {
    let text = std::fs::read(format!("/run/zvfs/{pid}.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The `zvfs mounts --json` row of `target`.
fn row(target: &Path) -> serde_json::Value {
    let out = zvfs_ok(&["mounts", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let t = target.canonicalize().unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"].as_str() == Some(s(&t)))
        .unwrap_or_else(|| panic!("{} not in {out}", t.display()))
        .clone()
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// The parent of process `pid`.
fn ppid(pid: u32) -> u32 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &st[st.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(1).unwrap().parse().unwrap()
}

fn kill(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

fn wait_gone(pid: u32, within: Duration) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Wait (up to `within`) until supervisor `pid`'s registry entry names a worker other
/// than `old`; returns that entry and how long it took.
fn new_worker(pid: u32, old: u64, within: Duration) -> (serde_json::Value, Duration) {
    let start = Instant::now();
    loop {
        if let Some(st) = state(pid) {
            if st["worker"].as_u64().is_some_and(|w| w != old) {
                return (st, start.elapsed());
            }
        }
        assert!(
            start.elapsed() < within,
            "no new worker for daemon {pid} within {within:?}: {:?}",
            state(pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fuse_test! {
    fn a_killed_worker_is_replaced_on_the_same_connection_within_a_second() {
        let tmp = tmp();
        let (fl, src) = multi_chunk_flist(tmp.path());
        let mnt = tmp.path().join("mnt");
        let m = Mount::daemon(&mnt, &args(tmp.path(), &fl));
        assert_eq!(
            std::fs::read(mnt.join("d1/f2.bin")).unwrap(),
            std::fs::read(src.join("d1/f2.bin")).unwrap()
        );
        let r = row(&mnt);
        let w0 = num(&r, "worker");
        assert_eq!((num(&r, "restarts"), num(&r, "generation")), (0, 0), "{r}");
        assert_ne!(w0 as u32, m.pid);
        assert_eq!(ppid(w0 as u32), m.pid, "the worker is the supervisor's child");

        kill(w0 as u32, "-KILL");
        let (st, took) = new_worker(m.pid, w0, Duration::from_secs(5));
        assert!(took < Duration::from_secs(1), "new worker after {took:?}");
        let w1 = num(&st, "worker");
        assert!(alive(w1 as u32));
        assert_eq!(ppid(w1 as u32), m.pid);
        let r = row(&mnt);
        assert_eq!(num(&r, "worker"), w1, "{r}");
        assert_eq!((num(&r, "restarts"), num(&r, "generation")), (1, 1), "{r}");
        assert_eq!(num(&r, "pid"), m.pid as u64);
        // The same mount: its source is still the supervisor, the connection alive.
        let (source, fstype) = mount_of(&mnt).unwrap();
        assert_eq!((source, fstype.as_str()), (m.pid.to_string(), "fuse.g8ufs"));
        assert!(std::fs::metadata(&mnt).is_ok());
        assert!(alive(m.pid));
        // The new worker serves: reads, and the health probe (statfs, readdir) passes.
        assert_eq!(
            std::fs::read(mnt.join("d2/f1.bin")).unwrap(),
            std::fs::read(src.join("d2/f1.bin")).unwrap()
        );
        assert_eq!(row(&mnt)["healthy"], true);
    }
}

fuse_test! {
    fn a_killed_supervisor_takes_its_worker_and_the_next_mount_recovers_the_target() {
        let tmp = tmp();
        let (fl, src) = multi_chunk_flist(tmp.path());
        let mnt = tmp.path().join("mnt");
        let a = args(tmp.path(), &fl);
        let m = Mount::daemon(&mnt, &a);
        let w0 = num(&row(&mnt), "worker") as u32;
        kill(m.pid, "-KILL");
        assert!(wait_gone(m.pid, Duration::from_secs(5)));
        assert!(wait_gone(w0, Duration::from_secs(2)), "the worker dies with its supervisor");
        let err = rustix::fs::statfs(&mnt).unwrap_err();
        assert!(
            matches!(err, rustix::io::Errno::NOTCONN | rustix::io::Errno::CONNABORTED),
            "a stale mount: {err}"
        );
        // A new mount on the same target detaches the stale one and serves.
        let m2 = Mount::daemon(&mnt, &a);
        assert_ne!(m2.pid, m.pid);
        assert_eq!(
            std::fs::read(mnt.join("d3/f0.bin")).unwrap(),
            std::fs::read(src.join("d3/f0.bin")).unwrap()
        );
        drop(m);
    }
}

fuse_test! {
    fn sigterm_to_the_supervisor_unmounts_and_ends_the_worker() {
        let tmp = tmp();
        let (fl, _) = multi_chunk_flist(tmp.path());
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let a = args(tmp.path(), &fl);
        // Foreground: the command is the supervisor.
        let mut m = Mount::foreground(&mnt, &a);
        let w = num(&new_worker(m.pid, 0, Duration::from_secs(10)).0, "worker") as u32;
        assert_eq!(ppid(w), m.pid);
        kill(m.pid, "-TERM");
        let status = m.child.as_mut().unwrap().wait().unwrap();
        assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
        assert!(!is_mounted(&mnt), "SIGTERM unmounts");
        assert!(wait_gone(w, Duration::from_secs(2)), "the worker is gone");
        assert!(state(m.pid).is_none(), "the registry entry is gone");
        assert!(!Path::new(&format!("/run/zvfs/{}.sock", m.pid)).exists());

        // A daemon (-d) too.
        let m = Mount::daemon(&mnt, &a);
        let w = num(&row(&mnt), "worker") as u32;
        kill(m.pid, "-TERM");
        assert!(wait_gone(m.pid, Duration::from_secs(10)));
        assert!(wait_gone(w, Duration::from_secs(2)));
        assert!(!is_mounted(&mnt));
    }
}

fuse_test! {
    fn upgrade_executes_the_new_binary_in_the_same_supervisor() {
        let tmp = tmp();
        let (fl, src) = multi_chunk_flist(tmp.path());
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        // A binary of our own, replaced on disk (a package upgrade) while it serves.
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let exe = bin.join("zvfs");
        std::fs::copy(zvfs_bin(), &exe).unwrap();
        let mut cmd = Command::new(&exe);
        cmd.arg("mount").arg("-d").args(args(tmp.path(), &fl)).arg(&mnt);
        // A copy just written may still be open in a child another test thread forked
        // meanwhile (ETXTBSY until that child execs): try again briefly.
        let out = (0..50)
            .find_map(|_| match cmd.output() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(100));
                    None
                }
                r => Some(r.unwrap()),
            })
            .expect("the copied binary stayed busy");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let (source, _) = mount_of(&mnt).unwrap();
        let pid: u32 = source.parse().unwrap();
        let m = Mount { target: mnt.clone(), pid, child: None };
        let before = row(&mnt);
        let w0 = num(&before, "worker");
        let old_ino = std::fs::metadata(&exe).unwrap().ino();
        let next = bin.join("zvfs.new");
        std::fs::copy(zvfs_bin(), &next).unwrap();
        std::fs::rename(&next, &exe).unwrap();
        let new_ino = std::fs::metadata(&exe).unwrap().ino();
        assert_ne!(old_ino, new_ino);

        let out = zvfs_ok(&["mounts", "--upgrade", s(&mnt)]);
        assert!(out.contains(&format!("{}: upgraded", mnt.canonicalize().unwrap().display())), "{out}");
        let after = row(&mnt);
        assert_eq!(num(&after, "pid"), pid as u64, "the same supervisor");
        assert_ne!(num(&after, "worker"), w0, "a new worker");
        assert_eq!(num(&after, "generation"), 1, "{after}");
        assert_eq!(num(&after, "restarts"), 0, "an upgrade is no crash");
        assert!(!alive(w0 as u32));
        // The supervisor now runs the file on disk, not the deleted one.
        let running = std::fs::metadata(format!("/proc/{pid}/exe")).unwrap().ino();
        assert_eq!(running, new_ino);
        let w1 = num(&after, "worker") as u32;
        assert_eq!(std::fs::metadata(format!("/proc/{w1}/exe")).unwrap().ino(), new_ino);
        let (source, fstype) = mount_of(&mnt).unwrap();
        assert_eq!((source, fstype.as_str()), (pid.to_string(), "fuse.g8ufs"));
        assert!(std::fs::metadata(&mnt).is_ok());
        assert_eq!(
            std::fs::read(mnt.join("d0/f1.bin")).unwrap(),
            std::fs::read(src.join("d0/f1.bin")).unwrap()
        );
        assert_eq!(after["healthy"], true, "{after}");

        // Errors name the target.
        let bad = tmp.path().join("not-a-mount");
        std::fs::create_dir(&bad).unwrap();
        let o = zvfs(&["mounts", "--upgrade", s(&bad)]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(s(&bad)) && err.contains("not a zvfs mount"), "{err}");

        // SIGTERM still takes it down after the upgrade.
        kill(pid, "-TERM");
        assert!(wait_gone(pid, Duration::from_secs(10)));
        assert!(!is_mounted(&mnt));
        drop(m);
    }
}

fuse_test! {

    fn reads_survive_worker_kills() {
        let tmp = tmp();
        let (fl, src) = multi_chunk_flist(tmp.path());
        let mnt = tmp.path().join("mnt");
        let m = Mount::daemon(&mnt, &args(tmp.path(), &fl));
        let files: Vec<String> = (0..4)
            .flat_map(|d| (0..3).map(move |f| format!("d{d}/f{f}.bin")))
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        for t in 0..8 {
            let (mnt, src, files, stop) = (mnt.clone(), src.clone(), files.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut longest = Duration::ZERO;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let f = &files[(t + reads as usize) % files.len()];
                    let t0 = Instant::now();
                    let got = Command::new("cat").arg(mnt.join(f)).output().unwrap();
                    longest = longest.max(t0.elapsed());
                    assert!(got.status.success(), "cat {f}: {}", String::from_utf8_lossy(&got.stderr));
                    assert!(got.stdout == std::fs::read(src.join(f)).unwrap(), "{f}: wrong bytes");
                    reads += 1;
                }
                (reads, longest)
            }));
        }
        let walker = {
            let (mnt, stop) = (mnt.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut walks = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let out = Command::new("find").arg(&mnt).arg("-ls").output().unwrap();
                    assert!(out.status.success(), "find: {}", String::from_utf8_lossy(&out.stderr));
                    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1 + 4 + 12);
                    walks += 1;
                }
                walks
            })
        };
        let start = Instant::now();
        let mut kills = 0;
        let mut worker = num(&state(m.pid).unwrap(), "worker");
        while start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(300));
            kill(worker as u32, "-KILL");
            kills += 1;
            worker = num(&new_worker(m.pid, worker, Duration::from_secs(2)).0, "worker");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let done: Vec<(u64, Duration)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let reads: u64 = done.iter().map(|d| d.0).sum();
        let longest = done.iter().map(|d| d.1).max().unwrap_or_default();
        let walks = walker.join().unwrap();
        // The figure for the README: the longest a reader waited for one whole file.
        eprintln!("{reads} reads and {walks} walks across {kills} worker kills; longest cat {longest:?}");
        assert!(reads > 0 && walks > 0 && kills >= 20, "{reads} reads, {walks} walks, {kills} kills");
        assert_eq!(num(&state(m.pid).unwrap(), "restarts"), kills);
        // The cache the killed workers wrote is consistent.
        drop(m);
        zvfs_ok(&["cache", "fsck", "-c", s(&tmp.path().join("cache"))]);
    }
}

fuse_test! {
    fn five_quick_worker_deaths_in_a_row_make_the_supervisor_give_up() {
        let tmp = tmp();
        let (fl, _) = multi_chunk_flist(tmp.path());
        // A copy of the flist that goes away: every new worker fails to open it at once.
        let gone = tmp.path().join("gone.fl");
        std::fs::copy(&fl, &gone).unwrap();
        let mnt = tmp.path().join("mnt");
        let log = tmp.path().join("log");
        let mut a = args(tmp.path(), &gone);
        a.extend(["-l".to_string(), s(&log).to_string()]);
        let m = Mount::daemon(&mnt, &a);
        let w0 = num(&row(&mnt), "worker") as u32;
        std::fs::remove_file(&gone).unwrap();
        // Not a quick death itself: the five that count are the new workers'.
        std::thread::sleep(Duration::from_millis(1100));
        kill(w0, "-KILL");
        assert!(wait_gone(m.pid, Duration::from_secs(10)), "the supervisor gives up");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("5 workers in a row died within 1 s"), "{text}");
        assert_eq!(text.matches("resumes").count(), 5, "{text}");
        let err = rustix::fs::statfs(&mnt).unwrap_err();
        assert!(
            matches!(err, rustix::io::Errno::NOTCONN | rustix::io::Errno::CONNABORTED),
            "a stale mount: {err}"
        );
        drop(m);
    }
}

fuse_test! {
    fn a_worker_that_panics_is_replaced() {
        let tmp = tmp();
        let (fl, src) = multi_chunk_flist(tmp.path());
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let out = Command::new(zvfs_bin())
            .env("ZVFS_FAILPOINTS", "panic-on-lookup=boom")
            .arg("mount")
            .arg("-d")
            .args(args(tmp.path(), &fl))
            .arg(&mnt)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let (source, _) = mount_of(&mnt).unwrap();
        let pid: u32 = source.parse().unwrap();
        let m = Mount { target: mnt.clone(), pid, child: None };
        let w0 = num(&state(pid).unwrap(), "worker");
        // The lookup panics in the worker: this request fails, the worker is replaced.
        let err = std::fs::metadata(mnt.join("boom")).unwrap_err();
        assert!(err.raw_os_error().is_some(), "{err}");
        let (st, _) = new_worker(pid, w0, Duration::from_secs(5));
        assert_eq!(num(&st, "restarts"), 1, "{st}");
        assert!(!alive(w0 as u32));
        assert_eq!(
            std::fs::read(mnt.join("d3/f2.bin")).unwrap(),
            std::fs::read(src.join("d3/f2.bin")).unwrap()
        );
        assert!(alive(pid));
        drop(m);
    }
}

fuse_test! {
    /// `zvfs mounts --upgrade --all` upgrades every daemon of its run directory (two
    /// here, in a run directory of their own so that other tests' mounts are left alone).
    fn upgrade_all_upgrades_every_daemon_of_the_run_directory() {
        let tmp = tmp();
        let (fl, src) = multi_chunk_flist(tmp.path());
        let run_dir = tmp.path().join("run");
        let env = |c: &mut Command| {
            c.env("ZVFS_RUN_DIR", &run_dir);
        };
        let rows = || -> Vec<serde_json::Value> {
            let mut c = Command::new(zvfs_bin());
            c.args(["mounts", "--json"]);
            env(&mut c);
            let out = c.output().unwrap();
            assert!(out.status.success());
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["worker"].is_u64())
                .cloned()
                .collect()
        };
        let mut mounts = Vec::new();
        for i in 0..2 {
            let mnt = tmp.path().join(format!("mnt{i}"));
            std::fs::create_dir_all(&mnt).unwrap();
            let mut c = Command::new(zvfs_bin());
            c.args(["mount", "-d", "--new-daemon"])
                .args(args(&tmp.path().join(format!("c{i}")), &fl))
                .arg(&mnt);
            env(&mut c);
            let out = c.output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let pid: u32 = mount_of(&mnt).unwrap().0.parse().unwrap();
            mounts.push(Mount { target: mnt, pid, child: None });
        }
        let before = rows();
        assert_eq!(before.len(), 2, "{before:?}");
        let mut c = Command::new(zvfs_bin());
        c.args(["mounts", "--upgrade", "--all"]);
        env(&mut c);
        let out = c.output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(said.matches("upgraded").count(), 2, "{said}");
        let after = rows();
        for m in &mounts {
            let b = before.iter().find(|r| num(r, "pid") == m.pid as u64).unwrap();
            let a = after.iter().find(|r| num(r, "pid") == m.pid as u64).unwrap();
            assert_ne!(num(a, "worker"), num(b, "worker"), "{a}");
            assert_eq!(num(a, "generation"), num(b, "generation") + 1, "{a}");
            assert_eq!(
                std::fs::read(m.target.join("d1/f2.bin")).unwrap(),
                std::fs::read(src.join("d1/f2.bin")).unwrap()
            );
        }
    }
}
