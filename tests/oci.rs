//! `zvfs oci prepare` / `zvfs oci hook` with the real runc, real FUSE mounts and
//! overlayfs: containers whose root filesystem is an flist (a busybox-static tree packed
//! by `zvfs pack`). Root and /dev/fuse are required; the tests fail (never skip) when
//! runc cannot run, unless `ZVFS_SKIP_FUSE_TESTS=1`.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{self, alive, dir_url, http_server, zvfs_bin};
use serde_json::{json, Value};

/// One mount line: target, fstype, source, super options.
#[derive(Debug, Clone)]
struct Mnt {
    target: String,
    fstype: String,
    source: String,
    opts: String,
}

fn mounts_under(root: &Path) -> Vec<Mnt> {
    let root = root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some(Mnt {
                target: f[4].to_string(),
                fstype: f[sep + 1].to_string(),
                source: f[sep + 2].to_string(),
                opts: f.get(sep + 3).unwrap_or(&"").to_string(),
            })
        })
        .filter(|m| m.target.starts_with(&root))
        .collect()
}

/// The fuse.g8ufs (zvfs) mounts under `root`.
fn fuse_mounts(root: &Path) -> Vec<Mnt> {
    mounts_under(root)
        .into_iter()
        .filter(|m| m.fstype == "fuse.g8ufs")
        .collect()
}

/// How many entries the directory `p` holds.
fn entries(p: &Path) -> usize {
    std::fs::read_dir(p).unwrap().count()
}

/// What /etc/hello.txt of the packed tree says.
const HELLO: &str = "hello from the flist\n";

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A test's world: the flist, its store, the state dir, the runc containers; dropping it
/// deletes the containers and detaches every mount under its directory.
struct World {
    dir: tempfile::TempDir,
    flist: PathBuf,
    store: PathBuf,
    ids: std::cell::RefCell<Vec<String>>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let tree = root.join("tree");
        for d in ["bin", "etc", "proc", "dev", "sys", "tmp"] {
            std::fs::create_dir_all(tree.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
        for l in ["sh", "cat", "echo", "sleep", "ls"] {
            std::os::unix::fs::symlink("busybox", tree.join("bin").join(l)).unwrap();
        }
        std::fs::write(tree.join("etc/hello.txt"), HELLO).unwrap();
        // A flist of its own (md5): tests running at once must not share mounts.
        std::fs::write(tree.join("etc/world"), root.to_string_lossy().as_bytes()).unwrap();
        let store = root.join("store");
        let flist = root.join("bb.fl");
        common::pack(&flist, &dir_url(&store), &[], &tree);
        World {
            dir,
            flist,
            store,
            ids: Default::default(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn state(&self) -> PathBuf {
        self.root().join("state")
    }

    /// A bundle made by `runc spec`, with `args`, a writable root "rootfs" and the
    /// annotations (the flist and a cache under the test directory unless given).
    fn bundle(&self, name: &str, args: &[&str], ann: &[(&str, &str)]) -> PathBuf {
        let b = self.root().join(name);
        std::fs::create_dir_all(&b).unwrap();
        let out = Command::new("runc")
            .arg("spec")
            .current_dir(&b)
            .output()
            .expect("running runc spec (is runc installed?)");
        assert!(out.status.success(), "runc spec: {}", text(&out));
        let cfg = b.join("config.json");
        let mut v: Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
        v["process"]["args"] = json!(args);
        v["process"]["terminal"] = json!(false);
        v["root"]["path"] = json!("rootfs");
        v["root"]["readonly"] = json!(false);
        let mut a = serde_json::Map::new();
        a.insert(
            "org.zero-os.flist.cache".into(),
            json!(self.root().join("cache")),
        );
        a.insert("org.zero-os.flist".into(), json!(self.flist));
        for (k, val) in ann {
            if val.is_empty() {
                a.remove(*k);
            } else {
                a.insert(k.to_string(), json!(val));
            }
        }
        v["annotations"] = Value::Object(a);
        std::fs::write(&cfg, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        b
    }

    fn prepare(&self, bundle: &Path) -> Output {
        Command::new(zvfs_bin())
            .args(["oci", "prepare", "--state-dir"])
            .arg(self.state())
            .arg(bundle)
            .output()
            .unwrap()
    }

    fn prepare_ok(&self, bundle: &Path) -> String {
        let out = self.prepare(bundle);
        assert!(
            out.status.success(),
            "prepare {}: {}",
            bundle.display(),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn hook(&self, stdin: &str) -> Output {
        let mut child = Command::new(zvfs_bin())
            .args(["oci", "hook", "--state-dir"])
            .arg(self.state())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn id(&self, name: &str) -> String {
        let id = format!(
            "zvfs-oci-{}-{}-{name}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        self.ids.borrow_mut().push(id.clone());
        id
    }

    fn runc(&self, args: &[&str]) -> Output {
        Command::new("runc")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running runc")
    }

    fn runc_ok(&self, args: &[&str]) -> String {
        let out = self.runc(args);
        assert!(out.status.success(), "runc {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn status(&self, id: &str) -> String {
        let out = self.runc_ok(&["state", id]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["status"].as_str().unwrap().to_string()
    }

    fn wait_status(&self, id: &str, want: &str) {
        let start = Instant::now();
        loop {
            let s = self.status(id);
            if s == want {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "container {id} still {s}, expected {want}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start `bundle` detached (stdio to /dev/null) and wait until it runs.
    fn run_detached(&self, bundle: &Path, id: &str) {
        // The container inherits runc's stdio: no pipes (they would stay open).
        let err = self.root().join(format!("{id}.err"));
        let st = Command::new("runc")
            .args(["run", "-d", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "runc run -d {id}: {st}: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        self.wait_status(id, "running");
    }

    fn stop_and_delete(&self, id: &str) {
        self.runc_ok(&["kill", id, "KILL"]);
        self.wait_status(id, "stopped");
        self.runc_ok(&["delete", id]);
    }

    /// The fuse.g8ufs mounts under the state directory (the shared flist mounts).
    fn flist_mounts(&self) -> Vec<Mnt> {
        fuse_mounts(&self.state())
    }

    /// `runc run` of `bundle` in the foreground (a new id from `name`), which must
    /// succeed; returns its stdout.
    fn run_foreground(&self, bundle: &Path, name: &str) -> String {
        let id = self.id(name);
        let out = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "runc run: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Nothing is mounted under the test directory any more.
    fn assert_no_mounts(&self) {
        let left = mounts_under(self.root());
        assert!(left.is_empty(), "{left:?}");
    }

    fn md5_dir(&self) -> PathBuf {
        let flists = self.state().join("flists");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&flists)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(dirs.len(), 1, "flist dirs: {dirs:?}");
        dirs.pop().unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = Command::new("runc")
                .args(["delete", "-f", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for m in mounts_under(self.root()).iter().rev() {
            let _ = rustix::mount::unmount(m.target.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn store_listing(store: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![store.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), md.len()));
            }
        }
    }
    out.sort();
    out
}

fn config_of(bundle: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap()
}

fuse_test! {
    fn runc_runs_a_container_from_an_flist_and_the_hook_cleans_up() {
        let w = World::new();
        let b = w.bundle(
            "one",
            &["sh", "-c", "cat /etc/hello.txt; echo new > /written.txt"],
            &[],
        );
        let store_before = store_listing(&w.store);
        w.prepare_ok(&b);
        // The hook was added once, pointing at this binary with our state dir.
        let cfg = config_of(&b);
        let post = cfg["hooks"]["poststop"].as_array().unwrap();
        assert_eq!(post.len(), 1);
        assert_eq!(post[0]["path"], json!(zvfs_bin()));
        assert_eq!(
            post[0]["args"],
            json!(["zvfs", "oci", "hook", "--state-dir", w.state()])
        );
        // A second prepare is a no-op success: same mounts, still one hook.
        let before = mounts_under(w.root()).len();
        let again = w.prepare_ok(&b);
        assert!(again.contains("already prepared"), "{again}");
        assert_eq!(mounts_under(w.root()).len(), before);
        assert_eq!(
            config_of(&b)["hooks"]["poststop"].as_array().unwrap().len(),
            1
        );

        let rootfs = b.join("rootfs");
        let flist_mounts = w.flist_mounts();
        assert_eq!(flist_mounts.len(), 1, "{flist_mounts:?}");
        let daemon: u32 = flist_mounts[0].source.parse().unwrap();
        assert!(alive(daemon));
        let ro = PathBuf::from(&flist_mounts[0].target);
        let overlay = mounts_under(&rootfs);
        assert_eq!(overlay.len(), 1);
        assert_eq!(overlay[0].fstype, "overlay");
        assert!(overlay[0]
            .opts
            .contains(&format!("lowerdir={}", ro.display())));

        // create + start: the container's stdout goes to a file; wait until it stops.
        let id = w.id("one");
        let log = w.root().join("one.out");
        let err = w.root().join("one.err");
        let st = Command::new("runc")
            .args(["create", "--bundle"])
            .arg(&b)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "runc create: {st}: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        w.runc_ok(&["start", &id]);
        w.wait_status(&id, "stopped");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), HELLO);
        // The write is in the container's upper layer only.
        let upper = w.state().join("containers/one/upper");
        assert_eq!(
            std::fs::read_to_string(upper.join("written.txt")).unwrap(),
            "new\n"
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.join("written.txt")).unwrap(),
            "new\n"
        );
        assert!(!ro.join("written.txt").exists());
        assert_eq!(store_listing(&w.store), store_before, "the store changed");

        // runc delete runs the poststop hook: no mount left, daemon gone, state empty.
        w.runc_ok(&["delete", &id]);
        w.assert_no_mounts();
        assert!(!alive(daemon), "daemon {daemon} still running");
        assert!(!upper.exists());
        assert_eq!(entries(&w.state().join("flists")), 0);
        assert_eq!(entries(&rootfs), 0);

        // Foreground `runc run` destroys the container (and so runs the hook) by itself.
        w.prepare_ok(&b);
        assert_eq!(w.run_foreground(&b, "one-again"), HELLO);
        w.assert_no_mounts();
        assert_eq!(entries(&rootfs), 0);
    }
}

fuse_test! {
    fn two_containers_share_one_flist_mount_with_separate_layers() {
        let w = World::new();
        let a = w.bundle("a", &["sleep", "1000"], &[]);
        let b = w.bundle("b", &["sleep", "1000"], &[]);
        // Both prepared at once: the state lock lets only one of them mount the flist.
        let spawn = |bundle: &Path| {
            Command::new(zvfs_bin())
                .args(["oci", "prepare", "--state-dir"])
                .arg(w.state())
                .arg(bundle)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (pa, pb) = (spawn(&a), spawn(&b));
        for p in [pa, pb] {
            let out = p.wait_with_output().unwrap();
            assert!(out.status.success(), "prepare: {}", text(&out));
        }
        let shared = w.flist_mounts();
        assert_eq!(shared.len(), 1, "one read-only mount per flist: {shared:?}");
        let daemon: u32 = shared[0].source.parse().unwrap();
        let lower = format!("lowerdir={},", shared[0].target);
        for bundle in [&a, &b] {
            let o = mounts_under(&bundle.join("rootfs"));
            assert_eq!(o.len(), 1);
            assert!(o[0].opts.contains(&lower), "{:?}", o[0]);
        }
        let (ia, ib) = (w.id("a"), w.id("b"));
        w.run_detached(&a, &ia);
        w.run_detached(&b, &ib);
        w.runc_ok(&["exec", &ia, "sh", "-c", "echo A > /mine"]);
        assert_eq!(
            std::fs::read_to_string(a.join("rootfs/mine")).unwrap(),
            "A\n"
        );
        assert!(!b.join("rootfs/mine").exists());
        let out = w.runc(&["exec", &ib, "cat", "/mine"]);
        assert!(!out.status.success(), "b sees a's file: {}", text(&out));
        assert_eq!(w.runc_ok(&["exec", &ib, "cat", "/etc/hello.txt"]), HELLO);
        let users = w.md5_dir().join("users");
        assert_eq!(entries(&users), 2);

        // The first goes: its overlay and layer go, the shared mount stays and serves b.
        w.stop_and_delete(&ia);
        assert!(mounts_under(&a.join("rootfs")).is_empty());
        assert!(!w.state().join("containers/a").exists());
        assert_eq!(w.flist_mounts().len(), 1);
        assert!(alive(daemon));
        assert_eq!(entries(&users), 1);
        assert_eq!(w.runc_ok(&["exec", &ib, "cat", "/etc/hello.txt"]), HELLO);

        // The last goes: everything goes.
        w.stop_and_delete(&ib);
        w.assert_no_mounts();
        assert!(!alive(daemon), "daemon {daemon} still running");
        assert_eq!(entries(&w.state().join("flists")), 0);
    }
}

fuse_test! {
    fn hook_refuses_bad_state_and_unknown_containers_and_unmounts_nothing() {
        let w = World::new();
        let c = w.bundle("keep", &["sleep", "1000"], &[]);
        w.prepare_ok(&c);
        let id = w.id("keep");
        w.run_detached(&c, &id);
        let before = mounts_under(w.root());
        assert_eq!(before.len(), 2, "{before:?}");

        let cases = [
            ("{not json", "not valid OCI state JSON"),
            ("", "not valid OCI state JSON"),
            (
                r#"{"ociVersion":"1.0.2","id":"ghost","status":"stopped","bundle":"/nonexistent/ghost","annotations":{}}"#,
                "unknown container ghost",
            ),
            (
                r#"{"ociVersion":"1.0.2","id":"ghost","status":"stopped"}"#,
                "unknown container ghost",
            ),
        ];
        for (input, want) in cases {
            let out = w.hook(input);
            assert!(!out.status.success(), "hook {input:?}: {}", text(&out));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(want), "hook {input:?}: {err}");
            assert_eq!(mounts_under(w.root()).len(), before.len(), "hook {input:?}");
        }
        // Same bundle name but another bundle path: not ours either.
        let other = format!(
            r#"{{"ociVersion":"1.0.2","id":"x","status":"stopped","bundle":"{}"}}"#,
            w.root().join("elsewhere/keep").display()
        );
        let out = w.hook(&other);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not the prepared bundle"));
        // A running container's state (wired as the wrong kind of hook) is refused.
        let running = format!(
            r#"{{"ociVersion":"1.0.2","id":"{id}","status":"running","pid":1,"bundle":"{}"}}"#,
            c.display()
        );
        let out = w.hook(&running);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("poststop"));
        assert_eq!(mounts_under(w.root()).len(), before.len());
        assert_eq!(w.runc_ok(&["exec", &id, "cat", "/etc/hello.txt"]), HELLO);

        // Called the way runc calls it (after the container stopped), it cleans up.
        w.runc_ok(&["kill", &id, "KILL"]);
        w.wait_status(&id, "stopped");
        let stopped = format!(
            r#"{{"ociVersion":"1.0.2","id":"{id}","status":"stopped","bundle":"{}","annotations":{{}}}}"#,
            c.display()
        );
        let out = w.hook(&stopped);
        assert!(out.status.success(), "{}", text(&out));
        assert!(mounts_under(w.root()).is_empty());
        // runc delete runs the hook again: the container is unknown by now; runc reports
        // the hook's failure and still deletes the container.
        let out = w.runc(&["delete", &id]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unknown container"),
            "{}",
            text(&out)
        );
        assert!(
            !w.runc(&["state", &id]).status.success(),
            "{id} still exists"
        );
    }
}

fuse_test! {
    fn flist_by_url_with_store_override_runs() {
        let w = World::new();
        // The flist's own route goes nowhere once the store moves: the annotation must win.
        let moved = w.root().join("moved-store");
        std::fs::rename(&w.store, &moved).unwrap();
        let http = http_server(w.root());
        let url = format!("http://127.0.0.1:{}/bb.fl", http.port);
        let store = format!(
            "{} , {}",
            dir_url(&w.root().join("nowhere")),
            dir_url(&moved)
        );
        let b = w.bundle(
            "web",
            &["cat", "/etc/hello.txt"],
            &[
                ("org.zero-os.flist", &url),
                ("org.zero-os.flist.store", &store),
                ("org.zero-os.container-id", "web-1"),
            ],
        );
        w.prepare_ok(&b);
        assert!(w.state().join("containers/web-1/record.json").exists());
        assert_eq!(w.run_foreground(&b, "web"), HELLO);
        w.assert_no_mounts();
        // The downloaded flist went with its last user.
        assert_eq!(entries(&w.state().join("meta")), 0);
    }
}

fuse_test! {
    fn prepare_errors_are_clear_and_leave_nothing_behind() {
        let w = World::new();
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{closed}/bb.fl");
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            (
                "noann",
                vec![("org.zero-os.flist", "")],
                "annotation org.zero-os.flist is missing",
            ),
            (
                "badurl",
                vec![("org.zero-os.flist", &url)],
                "is unreachable",
            ),
            (
                "badpath",
                vec![("org.zero-os.flist", "/nonexistent/x.fl")],
                "flist /nonexistent/x.fl (annotation org.zero-os.flist) is unreachable",
            ),
            (
                "badid",
                vec![("org.zero-os.container-id", "../escape")],
                "may only hold",
            ),
        ];
        for (name, ann, want) in cases {
            let b = w.bundle(name, &["true"], &ann);
            let cfg = std::fs::read(b.join("config.json")).unwrap();
            let out = w.prepare(&b);
            assert!(!out.status.success(), "{name}: {}", text(&out));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(want), "{name}: {err}");
            assert_eq!(std::fs::read(b.join("config.json")).unwrap(), cfg, "{name}");
            assert!(mounts_under(w.root()).is_empty(), "{name}");
        }
        // Not an flist at all.
        let junk = w.root().join("junk.fl");
        std::fs::write(&junk, "not an flist").unwrap();
        let b = w.bundle(
            "junk",
            &["true"],
            &[("org.zero-os.flist", junk.to_str().unwrap())],
        );
        let out = w.prepare(&b);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("junk.fl"),
            "{}",
            text(&out)
        );
        // A non-empty root.path.
        let b = w.bundle("full", &["true"], &[]);
        std::fs::create_dir_all(b.join("rootfs")).unwrap();
        std::fs::write(b.join("rootfs/file"), "x").unwrap();
        let out = w.prepare(&b);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("rootfs is not empty"), "{err}");
        assert!(mounts_under(w.root()).is_empty());
        assert_eq!(entries(&w.state().join("flists")), 0);
        assert_eq!(entries(&w.state().join("containers")), 0);
    }
}

fuse_test! {
    fn an_existing_zvfs_mount_of_the_same_flist_is_borrowed_and_left_alone() {
        let w = World::new();
        // Someone mounted the flist already, from another path (same md5).
        let copy = w.root().join("copy-of-bb.fl");
        std::fs::copy(&w.flist, &copy).unwrap();
        let theirs = w.root().join("theirs");
        std::fs::create_dir_all(&theirs).unwrap();
        common::zvfs_ok(&[
            "mount",
            "-d",
            "-m",
            copy.to_str().unwrap(),
            "-c",
            w.root().join("their-cache").to_str().unwrap(),
            theirs.to_str().unwrap(),
        ]);
        let before = fuse_mounts(w.root());
        assert_eq!(before.len(), 1);
        let daemon: u32 = before[0].source.parse().unwrap();

        let b = w.bundle("borrow", &["cat", "/etc/hello.txt"], &[]);
        w.prepare_ok(&b);
        assert_eq!(
            fuse_mounts(w.root()).len(),
            1,
            "no second flist mount: {:?}",
            fuse_mounts(w.root())
        );
        let o = mounts_under(&b.join("rootfs"));
        assert_eq!(o.len(), 1);
        assert!(
            o[0].opts
                .contains(&format!("lowerdir={},", theirs.display())),
            "{:?}",
            o[0]
        );
        assert_eq!(w.run_foreground(&b, "borrow"), HELLO);
        // Our overlay is gone; their mount and daemon are not.
        assert!(mounts_under(&b.join("rootfs")).is_empty());
        assert_eq!(fuse_mounts(w.root()).len(), 1);
        assert!(alive(daemon));
        assert_eq!(
            std::fs::read_to_string(theirs.join("etc/hello.txt")).unwrap(),
            HELLO
        );
    }
}

fuse_test! {
    /// `org.zero-os.image` instead of `org.zero-os.flist`: prepare imports the image (an
    /// OCI layout made by umoci: the busybox tree, then a layer deleting one file and
    /// adding another) into the cache, and runc runs it; a second container of the same
    /// image uses that import (nothing imported or uploaded again) and the same mount.
    fn runc_runs_a_container_from_an_image_reference() {
        use crate::common::image::{config, new_layout, oci_ref, repack};
        let w = World::new();
        let layout = w.root().join("layout");
        new_layout(&layout, "empty");
        let tree = w.root().join("tree");
        repack(&layout, "empty", "base", |rootfs| {
            let out = Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", tree.display()))
                .arg(rootfs)
                .output()
                .unwrap();
            assert!(out.status.success(), "cp: {}", text(&out));
            std::fs::write(rootfs.join("etc/gone.txt"), b"deleted above\n").unwrap();
        });
        repack(&layout, "base", "app", |rootfs| {
            std::fs::remove_file(rootfs.join("etc/gone.txt")).unwrap();
            std::fs::write(rootfs.join("etc/app.txt"), b"from the upper layer\n").unwrap();
        });
        config(&layout, "app", &["--config.entrypoint", "/bin/sh"]);
        let image = oci_ref(&layout, "app");
        let ann = [("org.zero-os.flist", ""), ("org.zero-os.image", image.as_str())];
        let script = "cat /etc/hello.txt /etc/app.txt; ls /etc/gone.txt 2>&1; grep -c core.system /.startup.toml";
        let b = w.bundle("img1", &["sh", "-c", script], &ann);
        w.prepare_ok(&b);
        let images = w.root().join("cache/images");
        let fls: Vec<_> = std::fs::read_dir(&images)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".fl"))
            .collect();
        assert_eq!(fls.len(), 1, "{fls:?}");
        let store = images.join("store");
        let stored = store_listing(&store);
        assert!(!stored.is_empty());
        let out = w.run_foreground(&b, "img1");
        assert!(out.starts_with(&format!("{HELLO}from the upper layer\n")), "{out}");
        assert!(out.contains("No such file"), "{out}");
        assert!(out.ends_with("1\n"), "{out}");

        let b2 = w.bundle("img2", &["cat", "/etc/app.txt"], &ann);
        let said = w.prepare_ok(&b2);
        assert!(said.contains(&fls[0]), "{said}");
        assert_eq!(store_listing(&store), stored, "nothing uploaded again");
        assert_eq!(w.run_foreground(&b2, "img2"), "from the upper layer\n");
        w.assert_no_mounts();
    }
}

/// The pid of the one child process of `pid` (a mount supervisor's worker), waiting up to
/// 5 s for it to appear.
fn worker_of(pid: u32) -> u32 {
    let start = Instant::now();
    loop {
        let out = Command::new("pgrep")
            .args(["-P", &pid.to_string()])
            .output()
            .unwrap();
        let kids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if kids.len() == 1 {
            return kids[0];
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "supervisor {pid} has workers {kids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fuse_test! {
    /// A container keeps reading its rootfs (an flist) right while the mount's worker is
    /// SIGKILLed five times and the binary is upgraded in place once: it exits 0.
    fn a_container_survives_worker_kills_and_an_upgrade() {
        let w = World::new();
        let md5 = Command::new("md5sum").arg("/bin/busybox").output().unwrap();
        let md5 = String::from_utf8_lossy(&md5.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let script = format!(
            "n=0; while [ ! -e /stop ]; do \
               [ \"$(cat /etc/hello.txt)\" = 'hello from the flist' ] || exit 11; \
               set -- $(md5sum /bin/busybox); [ \"$1\" = {md5} ] || exit 12; \
               ls -l /bin /etc >/dev/null || exit 13; n=$((n+1)); \
             done; echo \"$n rounds\""
        );
        let b = w.bundle("loop", &["sh", "-c", &script], &[]);
        w.prepare_ok(&b);
        let mounts = w.flist_mounts();
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        let supervisor: u32 = mounts[0].source.parse().unwrap();
        let target = mounts[0].target.clone();
        let id = w.id("loop");
        let run = {
            let b = b.clone();
            let id = id.clone();
            std::thread::spawn(move || {
                Command::new("runc")
                    .args(["run", "--bundle"])
                    .arg(&b)
                    .arg(&id)
                    .stdin(Stdio::null())
                    .output()
                    .unwrap()
            })
        };
        // Evict the page cache now and then, so that reads reach the mount.
        let stop_drop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dropper = {
            let stop = stop_drop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(800));
        let mut workers = vec![worker_of(supervisor)];
        for _ in 0..5 {
            let worker = worker_of(supervisor);
            let _ = Command::new("kill").args(["-9", &worker.to_string()]).status();
            std::thread::sleep(Duration::from_millis(600));
            let next = worker_of(supervisor);
            assert_ne!(next, worker, "no new worker after a kill");
            workers.push(next);
        }
        let up = common::zvfs(&["mounts", "--upgrade", &target]);
        assert!(up.status.success(), "upgrade: {}", text(&up));
        std::thread::sleep(Duration::from_millis(800));
        assert!(alive(supervisor), "the supervisor is gone after the upgrade");
        let after = worker_of(supervisor);
        assert!(!workers.contains(&after), "the upgrade started no new worker");
        std::fs::write(b.join("rootfs/stop"), "").unwrap();
        let out = run.join().unwrap();
        stop_drop.store(true, Ordering::Relaxed);
        dropper.join().unwrap();
        assert!(out.status.success(), "the container failed: {}", text(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("rounds"), "{said}");
        w.assert_no_mounts();
    }
}
