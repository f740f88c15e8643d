//! S3 stores against a real distributed object store: Garage, started by these tests on
//! loopback ports in temporary directories (one node, or three with replication factor
//! 3), torn down by a drop guard even when a test fails.
//!
//! The `garage` binary must be installed (`scripts/test.sh` installs it with
//! `cargo install garage`); without it these tests FAIL, unless `ZVFS_SKIP_S3_TESTS=1`
//! is set explicitly. `GARAGE_BIN` may name the binary.

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rusty_s3::actions::{GetObject, ListObjectsV2, PutObject};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::common::{
    assert_same_tree, dir_url, fixture, free_port, fuse_available, s, untar, zvfs_bin, Mount,
};

// ------------------------------------------------------------------ the Garage cluster

const REGION: &str = "garage";
const BUCKET: &str = "zvfs-chunks";
/// Garage key ids are `GK` + 24 hex digits, secrets 64 hex digits.
const KEY_ID: &str = "GK5a1e5a1e5a1e5a1e5a1e5a1e";
const SECRET: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2";
const WRONG_SECRET: &str = "0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de";
const RPC_SECRET: &str = "7a5f1e0c3b2d4e6f8a9b0c1d2e3f405162738495a6b7c8d9eafb0c1d2e3f4051";

/// The garage binary, or `None` when the S3 tests are explicitly skipped.
fn garage_bin() -> Option<PathBuf> {
    if std::env::var("ZVFS_SKIP_S3_TESTS").as_deref() == Ok("1") {
        eprintln!("S3 test skipped because ZVFS_SKIP_S3_TESTS=1");
        return None;
    }
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("GARAGE_BIN") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("garage")));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/garage"));
    }
    let found = candidates.into_iter().find(|p| p.is_file());
    assert!(
        found.is_some(),
        "the garage binary is missing: install it with `cargo install garage --locked \
         --no-default-features --features sqlite,bundled-libs` (scripts/test.sh does), or \
         set ZVFS_SKIP_S3_TESTS=1 to skip the S3 tests explicitly"
    );
    found
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ready() {
        assert!(t.elapsed() < limit, "{what}: not ready after {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Node {
    child: Option<Child>,
    conf: PathBuf,
    dir: PathBuf,
    s3_port: u16,
    id: String,
}

/// A running Garage cluster with one bucket and one key allowed on it; every node is
/// killed (and reaped) on drop.
struct Garage {
    bin: PathBuf,
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
    }
}

impl Garage {
    /// Start `n` nodes (replication factor `n`), connect them, apply a layout, create the
    /// bucket and import the key. `None` when S3 tests are explicitly skipped.
    fn start(n: usize) -> Option<Garage> {
        let bin = garage_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("zvfs-garage-")
            .tempdir()
            .unwrap();
        let mut g = Garage {
            bin,
            nodes: Vec::new(),
            _dir: dir,
        };
        let root = g._dir.path().to_path_buf();
        for i in 0..n {
            let ndir = root.join(format!("node{i}"));
            std::fs::create_dir_all(&ndir).unwrap();
            let (rpc, s3) = (free_port(), free_port());
            let conf = ndir.join("garage.toml");
            std::fs::write(
                &conf,
                format!(
                    "metadata_dir = \"{meta}\"\n\
                     data_dir = \"{data}\"\n\
                     db_engine = \"sqlite\"\n\
                     replication_factor = {n}\n\
                     consistency_mode = \"consistent\"\n\
                     rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_secret = \"{RPC_SECRET}\"\n\
                     \n\
                     [s3_api]\n\
                     s3_region = \"{REGION}\"\n\
                     api_bind_addr = \"127.0.0.1:{s3}\"\n\
                     root_domain = \".s3.garage.localhost\"\n",
                    meta = ndir.join("meta").display(),
                    data = ndir.join("data").display(),
                ),
            )
            .unwrap();
            let log = std::fs::File::create(ndir.join("garage.log")).unwrap();
            let child = Command::new(&g.bin)
                .arg("-c")
                .arg(&conf)
                .arg("server")
                .env("RUST_LOG", "garage=info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting garage");
            g.nodes.push(Node {
                child: Some(child),
                conf,
                dir: ndir,
                s3_port: s3,
                id: String::new(),
            });
        }
        // node ids (`garage node id -q` prints ID@ADDR once the node answers)
        for i in 0..n {
            let mut id = String::new();
            wait_for("garage node id", Duration::from_secs(60), || {
                let out = g.cli_on(i, &["node", "id", "-q"]);
                id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                out.status.success() && id.contains('@')
            });
            g.nodes[i].id = id;
        }
        // `node id` can answer from the key on disk before the node listens: retry the
        // connection while the node finishes starting.
        for i in 1..n {
            let id = g.nodes[i].id.clone();
            wait_for("garage node connect", Duration::from_secs(60), || {
                g.cli(&["node", "connect", &id]).status.success()
            });
        }
        for i in 0..n {
            let short = g.nodes[i].id.split('@').next().unwrap().to_string();
            g.cli_ok(&["layout", "assign", "-z", "dc1", "-c", "1G", &short[..16]]);
        }
        g.cli_ok(&["layout", "apply", "--version", "1"]);
        // bucket and key; retried while the layout propagates
        wait_for("garage bucket create", Duration::from_secs(60), || {
            g.cli(&["bucket", "create", BUCKET]).status.success()
        });
        g.cli_ok(&["key", "import", "--yes", "-n", "zvfs-test", KEY_ID, SECRET]);
        g.cli_ok(&[
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", KEY_ID,
        ]);
        // every node serves the bucket over S3
        for i in 0..n {
            wait_for("garage S3 API", Duration::from_secs(60), || {
                g.list(i).is_ok()
            });
        }
        Some(g)
    }

    fn cli_on(&self, node: usize, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[node].conf)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running garage")
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.cli_on(0, args)
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "garage {args:?} failed:\n{}\n{}\nlog: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log(0)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log(&self, node: usize) -> String {
        let s =
            std::fs::read_to_string(self.nodes[node].dir.join("garage.log")).unwrap_or_default();
        let tail: Vec<&str> = s.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Kill node `i` (SIGKILL: a crash, not a goodbye).
    fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send a signal (`STOP`, `CONT`, ...) to node `i`.
    fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].child.as_ref().expect("node is running").id();
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn host(&self, node: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[node].s3_port)
    }

    /// `s3://KEY:SECRET@host:port/bucket?region=garage` of node `i`.
    fn url(&self, node: usize) -> String {
        self.url_with(node, SECRET)
    }

    fn url_with(&self, node: usize, secret: &str) -> String {
        format!(
            "s3://{KEY_ID}:{secret}@{}/{BUCKET}?region={REGION}",
            self.host(node)
        )
    }

    fn bucket(&self, node: usize) -> Bucket {
        Bucket::new(
            format!("http://{}", self.host(node)).parse().unwrap(),
            UrlStyle::Path,
            BUCKET,
            REGION,
        )
        .unwrap()
    }

    /// Every object key in the bucket, through node `i`'s S3 API.
    fn list(&self, node: usize) -> Result<Vec<String>, String> {
        Ok(self.list_detailed(node)?.into_keys().collect())
    }

    /// Every object in the bucket: key -> last modification time.
    fn list_detailed(&self, node: usize) -> Result<BTreeMap<String, String>, String> {
        let bucket = self.bucket(node);
        let creds = Credentials::new(KEY_ID, SECRET);
        let mut keys = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&bucket, Some(&creds));
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(Duration::from_secs(60));
            let body = ureq::get(url.as_str())
                .timeout(Duration::from_secs(10))
                .call()
                .map_err(|e| e.to_string())?
                .into_string()
                .map_err(|e| e.to_string())?;
            let page = ListObjectsV2::parse_response(&body).map_err(|e| e.to_string())?;
            keys.extend(page.contents.into_iter().map(|c| (c.key, c.last_modified)));
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(keys)
    }

    /// The object under `key`, fetched with a plain signed GET (not through zvfs).
    fn object(&self, node: usize, key: &str) -> Vec<u8> {
        let bucket = self.bucket(node);
        let creds = Credentials::new(KEY_ID, SECRET);
        let url = GetObject::new(&bucket, Some(&creds), key).sign(Duration::from_secs(60));
        let mut buf = Vec::new();
        std::io::Read::read_to_end(
            &mut ureq::get(url.as_str()).call().unwrap().into_reader(),
            &mut buf,
        )
        .unwrap();
        buf
    }

    /// Overwrite the object under `key` (to corrupt a chunk).
    fn put_object(&self, node: usize, key: &str, data: &[u8]) {
        let bucket = self.bucket(node);
        let creds = Credentials::new(KEY_ID, SECRET);
        let url = PutObject::new(&bucket, Some(&creds), key).sign(Duration::from_secs(60));
        ureq::put(url.as_str()).send_bytes(data).unwrap();
    }
}

// ------------------------------------------------------------------ helpers

/// zvfs with `args`, no AWS_* variables from the caller's environment, plus `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(zvfs_bin());
    c.args(args).stdin(Stdio::null());
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running zvfs")
}

fn ok(args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let out = run(args, env);
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "zvfs {args:?} failed ({}):\nstdout: {o}\nstderr: {e}",
        out.status
    );
    (o, e)
}

fn fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(args, env);
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "zvfs {args:?} succeeded:\n{e}");
    e
}

fn argv(v: &[String]) -> Vec<&str> {
    v.iter().map(|x| x.as_str()).collect()
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("zvfs-s3-")
        .tempdir()
        .unwrap()
}

/// The fixture tree (the source of the rfs fixtures) extracted into `dir/tree`.
fn fixture_tree(dir: &Path) -> PathBuf {
    let t = dir.join("tree");
    untar(&fixture("rfs-v2").join("tree.tar"), &t);
    t
}

/// Every object of a dir store, in either layout (flat `<hex>` or sharded `<hh>/<hex>`):
/// hex id -> bytes.
fn dir_objects(store: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut add = |f: std::fs::DirEntry| {
        out.insert(
            f.file_name().to_string_lossy().into_owned(),
            std::fs::read(f.path()).unwrap(),
        );
    };
    for sub in std::fs::read_dir(store).unwrap() {
        let sub = sub.unwrap();
        if sub.path().is_dir() {
            for f in std::fs::read_dir(sub.path()).unwrap() {
                add(f.unwrap());
            }
        } else if sub.file_name().len() == 64 {
            add(sub);
        }
    }
    out
}

fn assert_no_secret(text: &str, secret: &str) {
    assert!(
        !text.contains(secret),
        "the secret appears in the output:\n{text}"
    );
}

/// A foreground `zvfs mount` (no AWS_* variables from the caller); unmounted and killed
/// on drop.
fn start_mount(fl: &Path, cache: &Path, target: &Path, extra: &[String]) -> Mount {
    std::fs::create_dir_all(target).unwrap();
    let mut c = Command::new(zvfs_bin());
    c.arg("mount")
        .args(["-m", s(fl), "-c", s(cache)])
        .args(extra)
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        c.env_remove(k);
    }
    Mount::spawn(&mut c, target)
}

fn store_args(urls: &[String]) -> Vec<String> {
    urls.iter()
        .flat_map(|u| ["-s".to_string(), u.clone()])
        .collect()
}

// ------------------------------------------------------------------ tests

/// Single node: pack into the bucket, unpack byte-exact; the flist records the route
/// without the secret; a wrong secret fails quickly with a credentials error that names
/// the bucket and never shows either secret.
#[test]
fn single_node_pack_unpack_and_wrong_secret() {
    let Some(g) = Garage::start(1) else { return };
    let d = tmp();
    let tree = fixture_tree(d.path());
    let fl = d.path().join("t.fl");
    let url = g.url(0);
    let (out, err) = ok(&["pack", "-m", s(&fl), "-s", &url, s(&tree)], &[]);
    assert!(out.contains("56 unique chunks uploaded"), "summary: {out}");
    assert_no_secret(&(out.clone() + &err), SECRET);
    assert_eq!(g.list(0).unwrap().len(), 56);

    // the flist's route names the store without its secret
    let raw = std::fs::read(&fl).unwrap();
    assert!(
        !raw.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the secret is in the flist"
    );
    let (routes, _) = ok(&["config", "-m", s(&fl), "store", "list"], &[]);
    let stripped = format!("s3://{KEY_ID}@{}/{BUCKET}?region={REGION}", g.host(0));
    assert!(routes.contains(&stripped), "routes: {routes}");

    // unpack with the full URL: byte-exact (owners, modes, times, content)
    let target = d.path().join("out");
    ok(&["unpack", "-m", s(&fl), "-s", &url, "-p", s(&target)], &[]);
    assert_same_tree(&tree, &target);

    // unpack from the flist's own route: the secret comes from the environment
    let target2 = d.path().join("out2");
    ok(
        &["unpack", "-m", s(&fl), "-p", s(&target2)],
        &[("AWS_SECRET_ACCESS_KEY", SECRET)],
    );
    assert_same_tree(&tree, &target2);

    // mount from the bucket: the same tree, byte-exact, read through FUSE
    if fuse_available() {
        let mnt = d.path().join("mnt");
        let _m = start_mount(
            &fl,
            &d.path().join("cache"),
            &mnt,
            &store_args(std::slice::from_ref(&url)),
        );
        assert_same_tree(&tree, &mnt);
    }

    // packing again writes nothing (HEAD finds every object): no object is modified
    let before = g.list_detailed(0).unwrap();
    eprintln!("first object: {:?}", before.iter().next());
    std::thread::sleep(Duration::from_millis(1100));
    let again = d.path().join("again.fl");
    ok(&["pack", "-m", s(&again), "-s", &url, s(&tree)], &[]);
    assert_eq!(g.list_detailed(0).unwrap(), before);

    // a wrong secret: a clear, quick error naming the bucket and host, no secret shown
    let bad = g.url_with(0, WRONG_SECRET);
    for args in [
        vec![
            "pack",
            "-m",
            s(&d.path().join("bad.fl")),
            "-s",
            &bad,
            s(&tree),
        ],
        vec!["unpack", "-m", s(&fl), "-s", &bad, s(&d.path().join("bad"))],
    ] {
        let t = Instant::now();
        let err = fails(&args, &[]);
        eprintln!("zvfs {} with a wrong secret: {err}", args[0]);
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{:?} took {:?}",
            args[0],
            t.elapsed()
        );
        assert!(err.contains("access denied"), "{err}");
        assert!(err.contains(&format!("bucket '{BUCKET}'")), "{err}");
        assert!(err.contains(&g.host(0)), "{err}");
        assert_no_secret(&err, WRONG_SECRET);
        assert_no_secret(&err, SECRET);
    }
    assert!(!d.path().join("bad.fl").exists());

    // a missing bucket is an error, not an empty store
    let nobucket = url.replace(BUCKET, "no-such-bucket");
    let err = fails(
        &[
            "unpack",
            "-m",
            s(&fl),
            "-s",
            &nobucket,
            s(&d.path().join("nb")),
        ],
        &[],
    );
    assert!(err.contains("no-such-bucket"), "{err}");
    assert_no_secret(&err, SECRET);
}

/// Interop: what zvfs writes into the bucket is what rfs writes: one object per unique
/// chunk, keyed by the lowercase hex id, byte-identical to the objects of the fixture
/// store made by rfs and to a `dir://` store packed by zvfs from the same tree.
#[test]
fn bucket_objects_are_rfs_objects() {
    let Some(g) = Garage::start(1) else { return };
    let d = tmp();
    let tree = fixture_tree(d.path());
    let store = d.path().join("store");
    ok(
        &[
            "pack",
            "-m",
            s(&d.path().join("dir.fl")),
            "-s",
            &dir_url(&store),
            s(&tree),
        ],
        &[],
    );
    ok(
        &[
            "pack",
            "-m",
            s(&d.path().join("s3.fl")),
            "-s",
            &g.url(0),
            s(&tree),
        ],
        &[],
    );
    let ours = dir_objects(&store);
    let rfs = dir_objects(&fixture("rfs-v2").join("store"));
    assert_eq!(ours, rfs, "zvfs's dir store differs from rfs's");
    let keys = g.list(0).unwrap();
    assert_eq!(keys, ours.keys().cloned().collect::<Vec<_>>());
    for (key, bytes) in &ours {
        assert_eq!(&g.object(0, key), bytes, "object {key}");
    }
}

/// Three nodes, replication factor 3, routed as three replicas: with one node killed,
/// unpack still succeeds (failover from the dead first endpoint); with two killed, the
/// data has no read quorum and unpack fails within its deadline with a clear error.
#[test]
fn three_nodes_survive_one_failure_and_fail_fast_after_two() {
    let Some(mut g) = Garage::start(3) else {
        return;
    };
    let d = tmp();
    let tree = fixture_tree(d.path());
    let fl = d.path().join("t.fl");
    let urls: Vec<String> = (0..3).map(|i| g.url(i)).collect();
    let mut pack = vec!["pack", "-m", s(&fl)];
    for u in &urls {
        pack.extend(["-s", u.as_str()]);
    }
    pack.push(s(&tree));
    ok(&pack, &[]);
    for i in 0..3 {
        assert_eq!(g.list(i).unwrap().len(), 56, "node {i}");
    }
    let unpack = |target: &Path, deadline: &str| -> Vec<String> {
        let mut a: Vec<String> = ["unpack", "-m", s(&fl), "-p", "--deadline", deadline]
            .iter()
            .map(|x| x.to_string())
            .collect();
        a.extend(["--connect-timeout".into(), "1".into()]);
        for u in &urls {
            a.extend(["-s".into(), u.clone()]);
        }
        a.push(s(target).to_string());
        a
    };
    // node 0 (the first replica) dies: reads fail over to the others
    g.stop(0);
    let target = d.path().join("one-down");
    let a = unpack(&target, "20");
    ok(&argv(&a), &[]);
    assert_same_tree(&tree, &target);

    // and a mount with the three replicas serves the whole tree
    if fuse_available() {
        let mnt = d.path().join("mnt-one-down");
        let mut extra = store_args(&urls);
        extra.extend(["--deadline".into(), "20".into()]);
        let _m = start_mount(&fl, &d.path().join("cache1"), &mnt, &extra);
        assert_same_tree(&tree, &mnt);
    }

    // node 1 freezes (SIGSTOP: connections are accepted, nothing answers): node 2 waits
    // for a quorum that cannot come and node 1 never answers; the per-chunk deadline, not
    // Garage's RPC timeouts, bounds the failure
    g.signal(1, "STOP");
    let err = unpack_fails(&unpack(&d.path().join("frozen"), "5"), "node 1 frozen");
    assert!(
        err.contains("not available from any store within 5.0s"),
        "{err}"
    );
    assert!(
        err.contains(&g.host(1)) && err.contains(&g.host(2)),
        "{err}"
    );

    // node 1 dies: the last node answers at once that it has no read quorum
    g.stop(1);
    let err = unpack_fails(
        &unpack(&d.path().join("two-down"), "5"),
        "nodes 0 and 1 down",
    );
    assert!(err.contains("not available from any store"), "{err}");
    assert!(err.contains(&g.host(2)), "{err}");

    // a read through a mount fails with EIO within the deadline, never hangs
    if fuse_available() {
        let mnt = d.path().join("mnt-two-down");
        let mut extra = store_args(&urls);
        extra.extend(["--deadline".into(), "5".into()]);
        let _m = start_mount(&fl, &d.path().join("cache2"), &mnt, &extra);
        // metadata comes from the flist: listing works without any store
        assert!(mnt.join("hello.txt").exists());
        let t = Instant::now();
        let r = std::fs::read(mnt.join("hello.txt"));
        let took = t.elapsed();
        assert_eq!(
            r.as_ref().err().and_then(|e| e.raw_os_error()),
            Some(libc::EIO),
            "read gave {r:?}"
        );
        assert!(took < Duration::from_secs(40), "read took {took:?}");
    }
}

/// Run a failing unpack: it must fail within a generous bound for a 5-second per-chunk
/// deadline (the first failed chunk aborts the unpack) and not show the secret.
fn unpack_fails(args: &[String], what: &str) -> String {
    let t = Instant::now();
    let err = fails(&argv(args), &[]);
    let took = t.elapsed();
    eprintln!("unpack with {what} failed after {took:?}: {err}");
    assert!(
        took < Duration::from_secs(40),
        "unpack with {what} took {took:?} to fail:\n{err}"
    );
    assert_no_secret(&err, SECRET);
    err
}

/// `zvfs clone` from a dir store into the bucket, then `zvfs verify --deep` against the
/// bucket: first every chunk is missing, after the clone every chunk is fetched and
/// verified, and a chunk overwritten in the bucket is reported corrupt.
#[test]
fn clone_into_bucket_and_deep_verify() {
    let Some(g) = Garage::start(1) else { return };
    let d = tmp();
    let tree = fixture_tree(d.path());
    let store = d.path().join("store");
    let fl = d.path().join("t.fl");
    ok(
        &["pack", "-m", s(&fl), "-s", &dir_url(&store), s(&tree)],
        &[],
    );
    let url = g.url(0);

    let out = run(&["verify", "-m", s(&fl), "-s", &url], &[]);
    assert!(!out.status.success(), "verify of an empty bucket succeeded");

    let (o, e) = ok(&["clone", "-m", s(&fl), "-s", &url], &[]);
    assert_no_secret(&(o + &e), SECRET);
    assert_eq!(
        g.list(0).unwrap(),
        dir_objects(&store).keys().cloned().collect::<Vec<_>>()
    );

    let (o, e) = ok(&["verify", "--deep", "-m", s(&fl), "-s", &url], &[]);
    let report = o + &e;
    assert!(report.contains("56 ok, 0 missing, 0 corrupt"), "{report}");

    // a chunk replaced in the bucket: deep verify fetches it and catches it
    let victim = g.list(0).unwrap()[0].clone();
    let mut bytes = g.object(0, &victim);
    bytes[0] ^= 0xff;
    g.put_object(0, &victim, &bytes);
    let out = run(&["verify", "--deep", "-m", s(&fl), "-s", &url], &[]);
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("1 corrupt"), "{report}");
}

/// Credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: a URL without any, the flist
/// records it as given (no secret), and reading without credentials is refused clearly.
#[test]
fn credentials_from_the_environment() {
    let Some(g) = Garage::start(1) else { return };
    let d = tmp();
    let tree = fixture_tree(d.path());
    let fl = d.path().join("t.fl");
    let url = format!("s3://{}/{BUCKET}?region={REGION}", g.host(0));
    let env = [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];

    // without credentials: anonymous, refused, and the message says how to give them
    let err = fails(&["pack", "-m", s(&fl), "-s", &url, s(&tree)], &[]);
    assert!(err.contains("access denied"), "{err}");
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");

    let (out, err) = ok(&["pack", "-m", s(&fl), "-s", &url, s(&tree)], &env);
    assert!(out.contains("56 unique chunks uploaded"), "{out}");
    assert_no_secret(&(out + &err), SECRET);
    let raw = std::fs::read(&fl).unwrap();
    assert!(!raw.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    let (routes, _) = ok(&["config", "-m", s(&fl), "store", "list"], &[]);
    assert!(routes.contains(&url), "routes: {routes}");

    // unpack from the flist's route, credentials from the environment
    let target = d.path().join("out");
    ok(&["unpack", "-m", s(&fl), "-p", s(&target)], &env);
    assert_same_tree(&tree, &target);

    // --no-strip-password keeps a URL secret in the flist (asked for explicitly)
    let kept = d.path().join("kept.fl");
    ok(
        &[
            "pack",
            "--no-strip-password",
            "-m",
            s(&kept),
            "-s",
            &g.url(0),
            s(&tree),
        ],
        &[],
    );
    let raw = std::fs::read(&kept).unwrap();
    assert!(raw.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
}

fuse_test! {
    /// Faults between zvfs and Garage (the matrix of `tests/faults.rs`): stalls, resets,
    /// truncations, drips, bit flips, wrong lengths and refusals give the right bytes or a
    /// clear error in time, through a mount, a cat, an unpack and a clone.
    fn faults_between_zvfs_and_garage() {
        let Some(g) = Garage::start(1) else { return };
        let d = tmp();
        let w = crate::faults::world(d.path());
        let copy = d.path().join("to-s3.fl");
        std::fs::copy(&w.fl, &copy).unwrap();
        ok(&["clone", "-m", s(&copy), "-s", &g.url(0)], &[]);
        let url = format!("s3://{KEY_ID}:{SECRET}@{{addr}}/{BUCKET}?region={REGION}");
        crate::faults::matrix(&w, &[("garage", g.nodes[0].s3_port, url)]);
    }
}
