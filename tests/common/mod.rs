//! Helpers shared by the integration tests: the zvfs binary, the fixtures, commands.
//! Tests use real parts (FUSE, servers, fixtures); nothing here mocks them.
#![allow(dead_code)]

pub mod image;
pub mod tree;

pub use tree::*;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// The zvfs binary built for this test run.
pub fn zvfs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zvfs"))
}

/// `shared/fixtures/<name>` in the nearest ancestor of the crate that has it (`../shared`
/// from the main checkout; the crate may also live in a worktree further below).
/// Read-only: copy before anything could write.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/fixtures").join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("fixture {name} is missing"))
}

/// Run zvfs with `args`; returns the output (never panics on a non-zero exit).
pub fn zvfs(args: &[&str]) -> Output {
    Command::new(zvfs_bin())
        .args(args)
        .output()
        .expect("running zvfs")
}

/// Run zvfs and require success, returning stdout as text.
pub fn zvfs_ok(args: &[&str]) -> String {
    let out = zvfs(args);
    assert!(
        out.status.success(),
        "zvfs {:?} failed ({}):\nstdout: {}\nstderr: {}",
        args,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Extract a tar archive (numeric owners, as root) into `dest`.
pub fn untar(tar: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let st = Command::new("tar")
        .args(["--numeric-owner", "-xpf"])
        .arg(tar)
        .arg("-C")
        .arg(dest)
        .status()
        .expect("running tar");
    assert!(st.success(), "tar failed");
}

/// `dir://` URL of a local path.
pub fn dir_url(p: &Path) -> String {
    format!("dir://{}", p.display())
}

/// FUSE tests must run; they fail (never skip silently) when FUSE is unusable, unless
/// `ZVFS_SKIP_FUSE_TESTS=1` is set explicitly (CI never sets it). Returns false to skip.
/// Whole FUSE tests use [`fuse_test!`]; this is for the FUSE part of a test that does more.
pub fn fuse_available() -> bool {
    if std::env::var("ZVFS_SKIP_FUSE_TESTS").as_deref() == Ok("1") {
        eprintln!("FUSE test skipped because ZVFS_SKIP_FUSE_TESTS=1");
        return false;
    }
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: FUSE tests cannot run (set ZVFS_SKIP_FUSE_TESTS=1 to opt out)"
    );
    assert!(
        rustix::process::geteuid().is_root(),
        "FUSE tests need root (set ZVFS_SKIP_FUSE_TESTS=1 to opt out)"
    );
    true
}

/// A FUSE test: `fuse_test! { fn name() { body } }` (doc comments and attributes may come
/// before `fn`) is a `#[test]` that runs `body` when FUSE is usable and fails when it is
/// not (no /dev/fuse, not root); it skips, saying so on stderr, only when
/// `ZVFS_SKIP_FUSE_TESTS=1` (see [`fuse_available`]).
macro_rules! fuse_test {
    ($(#[$attr:meta])* fn $name:ident() $body:block) => {
        $(#[$attr])*
        #[test]
        fn $name() {
            if !$crate::common::fuse_available() {
                return;
            }
            $body
        }
    };
}

// ---------------------------------------------------------------- the rfs fixtures and CLI runs

/// `shared/fixtures/rfs-v2/<name>`: the rfs fixtures (read-only).
pub fn rfs(name: &str) -> PathBuf {
    fixture("rfs-v2").join(name)
}

/// A temporary directory (removed on drop).
pub fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("zvfs-test-")
        .tempdir()
        .unwrap()
}

/// A path as `&str` (tests use UTF-8 paths).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Extract tree.tar (the source of the rfs fixtures).
pub fn fixture_tree(dir: &Path) -> PathBuf {
    let t = dir.join("tree");
    untar(&rfs("tree.tar"), &t);
    t
}

/// A writable copy of the rfs fixture store in `dir/store`.
pub fn store_copy(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    copy_tree(&rfs("store"), &store);
    store
}

/// `pack -m <fl> -s dir://<store> <extra..> <src>`, for `run_ok` or `run_err`.
pub fn pack_args(fl: &Path, store: &Path, extra: &[&str], src: &Path) -> Vec<String> {
    let mut args = vec!["pack".into(), "-m".into(), s(fl).into(), "-s".into()];
    args.push(dir_url(store));
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(s(src).into());
    args
}

/// `unpack -m <rfs sample.fl> -s dir://<store> <args..>` must succeed; returns stderr.
pub fn unpack_sample(store: &Path, args: &[&str]) -> String {
    let fl = rfs("sample.fl");
    let url = dir_url(store);
    let mut all = vec!["unpack", "-m", s(&fl), "-s", &url];
    all.extend_from_slice(args);
    run_ok(&all).1
}

/// Run zvfs with `args`, which must succeed; returns (stdout, stderr).
pub fn run_ok<A: AsRef<str>>(args: &[A]) -> (String, String) {
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let out = zvfs(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "zvfs {args:?} failed: {stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// Run zvfs with `args`, which must fail with exit code 1 (an operational failure);
/// returns stderr, for the caller to check the message.
pub fn run_err<A: AsRef<str>>(args: &[A]) -> String {
    run_fails(1, args)
}

/// Run zvfs with `args`, which must fail with exit code `code` (2: a usage error);
/// returns stderr, for the caller to check the message.
pub fn run_fails<A: AsRef<str>>(code: i32, args: &[A]) -> String {
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let out = zvfs(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "zvfs {args:?} should have failed with exit code {code}:\n{stderr}"
    );
    stderr
}

/// Block rows (hex id, hex key) per path of an flist.
pub fn blocks_by_path(fl: &Path) -> BTreeMap<String, Vec<(String, String)>> {
    let c = Connection::open(fl).unwrap();
    let mut rows: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    let mut st = c.prepare("SELECT ino, parent, name FROM inode").unwrap();
    for r in st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
    {
        let (i, p, n): (i64, i64, String) = r.unwrap();
        rows.insert(i, (p, n));
    }
    let path = |mut i: i64| {
        let mut parts = Vec::new();
        while i != 1 {
            let (p, n) = &rows[&i];
            parts.push(n.clone());
            i = *p;
        }
        parts.reverse();
        parts.join("/")
    };
    let mut out = BTreeMap::new();
    for &ino in rows.keys() {
        let mut st = c
            .prepare("SELECT id, key FROM block WHERE ino = ?1 ORDER BY rowid")
            .unwrap();
        let b: Vec<(String, String)> = st
            .query_map([ino], |r| {
                Ok((
                    hex::encode(r.get::<_, Vec<u8>>(0)?),
                    hex::encode(r.get::<_, Vec<u8>>(1)?),
                ))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        out.insert(path(ino), b);
    }
    out
}

/// Parse `fetched N chunks` from unpack's report.
pub fn fetched_chunks(stderr: &str) -> u64 {
    let i = stderr.find("fetched ").expect("no fetch report") + "fetched ".len();
    stderr[i..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
// ---------------------------------------------------------------- real servers on loopback

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ready() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (and reaped) on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub socket: Option<PathBuf>,
    pub _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` on a free loopback port (and a unix socket when `unix`), as a 0-db
/// stand-in; killed on drop. Another port is tried when the one picked was taken meanwhile.
pub fn redis_server(unix: bool) -> Server {
    for _ in 0..5 {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("redis.sock");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if unix {
            cmd.arg("--unixsocket").arg(&sock);
        }
        let child = cmd.spawn().expect("starting redis-server");
        let mut server = Server {
            child,
            port,
            socket: unix.then(|| sock.clone()),
            _dir: Some(dir),
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = server.child.try_wait() {
                break; // the port was taken meanwhile: try another
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() && (!unix || sock.exists()) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("redis-server did not start");
}

/// python's `http.server` serving `root` on a loopback port it picks itself (no race for
/// a free port), its request log kept; killed on drop.
pub struct HttpServer {
    pub port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn http_server(root: &Path) -> HttpServer {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("http.log");
    let logf = std::fs::File::create(&log).unwrap();
    let mut child = Command::new("python3")
        .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(logf))
        .spawn()
        .expect("starting python3 -m http.server");
    let mut out = child.stdout.take().unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    let start = Instant::now();
    // "Serving HTTP on 127.0.0.1 port N (http://127.0.0.1:N/) ..."
    while !buf.ends_with(b"\n") && start.elapsed() < Duration::from_secs(20) {
        if out.read(&mut b).unwrap_or(0) == 0 {
            break;
        }
        buf.push(b[0]);
    }
    let line = String::from_utf8_lossy(&buf).into_owned();
    let port = line
        .split("port ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("http.server said {line:?}"));
    HttpServer {
        port,
        child,
        log,
        _dir: dir,
    }
}

impl HttpServer {
    /// `http://127.0.0.1:<port>/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// Requests logged for exactly `path` (`GET /x HTTP/1.1" 200`).
    pub fn gets(&self, path: &str, status: u16) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let want = format!("\"GET /{path} HTTP/1.1\" {status}");
        text.lines().filter(|l| l.contains(&want)).count()
    }

    /// The paths of the GET requests answered with `status`, in the order served.
    pub fn get_paths(&self, status: u16) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail = format!(" HTTP/1.1\" {status}");
        text.lines()
            .filter_map(|l| l.split("\"GET ").nth(1))
            .filter_map(|r| r.split_once(&tail).map(|(p, _)| p.to_string()))
            .collect()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `scripts/wanproxy.py` in front of 127.0.0.1:`port` (a slow link, or a faulty one);
/// killed on drop.
pub struct Proxy {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// A link of `delay_ms` each way and `mbit` Mbit/s shared.
    pub fn wan(port: u16, delay_ms: u32, mbit: u32) -> Proxy {
        Proxy::start(
            port,
            &[
                "--delay-ms",
                &delay_ms.to_string(),
                "--rate-mbit",
                &mbit.to_string(),
            ],
        )
    }

    /// A link with fault `kind` (the proxy's `--fault`) once `after` reply bytes of a
    /// connection went through, on the first `conns` connections (0: all).
    pub fn fault(port: u16, kind: &str, after: usize, conns: usize) -> Proxy {
        Proxy::start(
            port,
            &[
                "--fault",
                kind,
                "--fault-after",
                &after.to_string(),
                "--fault-conns",
                &conns.to_string(),
            ],
        )
    }

    fn start(port: u16, args: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wanproxy.py");
        let child = Command::new("python3")
            .arg(&script)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--to",
                &format!("127.0.0.1:{port}"),
            ])
            .args(args)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--stats")
            .arg(dir.path().join("stats.json"))
            .stdout(Stdio::null())
            .spawn()
            .expect("starting scripts/wanproxy.py");
        let mut w = Proxy {
            port: 0,
            child,
            _dir: dir,
        };
        wait_for("wanproxy listening", || {
            std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .map(|p| w.port = p)
                .is_some()
        });
        w
    }
}

/// Every file (not directory) under `root`, sorted; none when `root` is missing.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The files under `root` whose names mark a temporary of zvfs (an atomic write, an
/// edit's copy, a SQLite journal).
pub fn temp_files(root: &Path) -> Vec<PathBuf> {
    files_under(root)
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.contains("zvfs-tmp") || n.contains("zvfs-edit") || n.ends_with("-journal")
        })
        .collect()
}

// ---------------------------------------------------------------- test data

/// `len` deterministic pseudo-random bytes (xorshift64, one byte a step), incompressible;
/// the one generator of test data. Seeds 2k and 2k+1 give the same bytes (tests rely on
/// it for identical files); other seeds give different ones.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A forged v2 object: `plain` Snappy-compressed and AES-256-GCM-encrypted under `key`
/// (nonce = its first 12 bytes), as a store that knows a chunk's key could make. The GCM
/// tag verifies; only the check that the plaintext hashes to the key catches it.
pub fn encrypt_under(key: &[u8], plain: &[u8]) -> Vec<u8> {
    use aes_gcm::aead::{Aead, KeyInit};
    let compressed = snap::raw::Encoder::new().compress_vec(plain).unwrap();
    aes_gcm::Aes256Gcm::new_from_slice(key)
        .unwrap()
        .encrypt(
            aes_gcm::Nonce::from_slice(&key[..12]),
            compressed.as_slice(),
        )
        .unwrap()
}

// ---------------------------------------------------------------- mounts

/// Whether `target` is a mount point (listed in /proc/self/mountinfo).
pub fn is_mounted(target: &Path) -> bool {
    let Ok(t) = target.canonicalize() else {
        return false;
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .any(|l| l.split(' ').nth(4).map(Path::new) == Some(t.as_path()))
}

/// Waits until `target` is mounted by `child` (a foreground `zvfs mount`); fails if the
/// child exits first or after 30 s.
pub fn wait_mounted(child: &mut Child, target: &Path) {
    let start = Instant::now();
    while !is_mounted(target) {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("zvfs mount exited early: {st}");
        }
        assert!(start.elapsed() < Duration::from_secs(30), "mount timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Source and type of the mount at `target` in /proc/self/mountinfo.
pub fn mount_of(target: &Path) -> Option<(String, String)> {
    let t = target.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        if Path::new(f.get(4)?) == t {
            Some((f.get(sep + 2)?.to_string(), f.get(sep + 1)?.to_string()))
        } else {
            None
        }
    })
}

/// Whether process `pid` runs (a zombie, exited but not reaped, counts as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(s) => !s
            .lines()
            .any(|l| l.starts_with("State:") && (l.contains('Z') || l.contains('X'))),
        Err(_) => false,
    }
}

/// The worker process serving for mount supervisor `pid`, from its registry entry
/// (`/run/zvfs/<pid>.json`).
pub fn worker_of(pid: u32) -> u32 {
    let text = std::fs::read(format!("/run/zvfs/{pid}.json")).expect("registry entry");
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    v["worker"]
        .as_u64()
        .expect("a worker in the registry entry") as u32
}

/// Lazy unmount of `target`, errors ignored (teardown).
pub fn detach(target: &Path) {
    let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
}

/// The one mount guard: a running zvfs mount of `target` served by process `pid`; on drop
/// the target is detached and the daemon killed (and reaped when it is our child).
pub struct Mount {
    pub target: PathBuf,
    pub pid: u32,
    pub child: Option<Child>,
}

impl Mount {
    /// `zvfs mount -d <args..> <target>` (the target directory is created), which must
    /// succeed; the target is then a `fuse.g8ufs` mount whose source is the daemon's pid.
    pub fn daemon<A: AsRef<str>>(target: &Path, args: &[A]) -> Mount {
        std::fs::create_dir_all(target).unwrap();
        let mut all = vec!["mount", "-d"];
        all.extend(args.iter().map(|a| a.as_ref()));
        let t = target.display().to_string();
        all.push(&t);
        let out = zvfs(&all);
        assert!(
            out.status.success(),
            "zvfs {all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (source, fstype) = mount_of(target).expect("target is a mountpoint once -d returns");
        assert_eq!(fstype, "fuse.g8ufs");
        let pid: u32 = source
            .parse()
            .expect("the mount source is the daemon's pid");
        assert!(alive(pid));
        Mount {
            target: target.to_path_buf(),
            pid,
            child: None,
        }
    }

    /// Foreground `zvfs mount <args..> <target>` as a child process (output discarded);
    /// waits until mounted.
    pub fn foreground<A: AsRef<std::ffi::OsStr>>(target: &Path, args: &[A]) -> Mount {
        let mut cmd = Command::new(zvfs_bin());
        cmd.arg("mount").args(args).arg(target);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        Mount::spawn(&mut cmd, target)
    }

    /// Spawns `cmd` (a foreground `zvfs mount` of `target`) and waits until it is mounted.
    pub fn spawn(cmd: &mut Command, target: &Path) -> Mount {
        let mut child = cmd.spawn().expect("starting zvfs mount");
        wait_mounted(&mut child, target);
        Mount {
            target: target.to_path_buf(),
            pid: child.id(),
            child: Some(child),
        }
    }

    /// SIGKILL the daemon (a crash), wait until it is gone, detach the target.
    pub fn kill9(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
        if let Some(c) = self.child.as_mut() {
            let _ = c.wait();
        }
        let start = Instant::now();
        while alive(self.pid) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        detach(&self.target);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        detach(&self.target);
        if alive(self.pid) {
            let _ = Command::new("kill")
                .args(["-9", &self.pid.to_string()])
                .status();
        }
        if let Some(c) = self.child.as_mut() {
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------- flists and files

/// `zvfs pack -m <fl> -s <store> <extra..> <src>`, which must succeed; returns stdout.
pub fn pack(fl: &Path, store: &str, extra: &[&str], src: &Path) -> String {
    let mut args = vec!["pack", "-m", fl.to_str().unwrap(), "-s", store];
    args.extend_from_slice(extra);
    args.push(src.to_str().unwrap());
    zvfs_ok(&args)
}

/// Names of the entries of `dir` that contain `part` (leftovers of a failed write).
pub fn names_containing(dir: &Path, part: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(part))
        .collect()
}

// ---------------------------------------------------------------- a store that trickles

/// A TCP proxy in front of `127.0.0.1:<upstream>` that forwards requests at once but
/// relays the replies one byte every `every`: a store that answers, too slowly for any
/// request to finish, yet never idle long enough to trip a per-read timeout. Every
/// connection ends when this is dropped.
pub struct Trickle {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn trickle_proxy(upstream: u16, every: Duration) -> Trickle {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut relays = Vec::new();
        while !s.load(Ordering::SeqCst) {
            let client = match l.accept() {
                Ok((c, _)) => c,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            client.set_nonblocking(false).unwrap();
            let tick = Some(Duration::from_millis(100));
            client.set_read_timeout(tick).unwrap();
            server.set_read_timeout(tick).unwrap();
            // requests: straight through
            let (mut from, mut to, s1) = (
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                s.clone(),
            );
            relays.push(std::thread::spawn(move || {
                let mut buf = [0u8; 64 * 1024];
                while !s1.load(Ordering::SeqCst) {
                    match from.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Both);
            }));
            // replies: one byte at a time
            let (mut from, mut to, s2) = (server, client, s.clone());
            relays.push(std::thread::spawn(move || {
                let mut b = [0u8; 1];
                while !s2.load(Ordering::SeqCst) {
                    match from.read(&mut b) {
                        Ok(0) => break,
                        Ok(_) => {
                            if to.write_all(&b).is_err() {
                                break;
                            }
                            std::thread::sleep(every);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Both);
            }));
        }
        for r in relays {
            let _ = r.join();
        }
    });
    Trickle {
        port,
        stop,
        thread: Some(thread),
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- crash leftovers

/// A pid no process can have: above the largest the kernel hands out (2^22).
pub const DEAD_PID: u32 = 4_194_305;

/// Create `path` (and its directory) as a crashed writer leaves a temporary file: some
/// bytes, last written a minute ago.
pub fn plant_leftover(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"left by a crash").unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

/// A live process (`sleep`) whose pid stands for a live writer's; killed on drop.
pub struct LiveProcess(Child);

impl LiveProcess {
    pub fn start() -> LiveProcess {
        LiveProcess(
            Command::new("sleep")
                .arg("600")
                .spawn()
                .expect("running sleep"),
        )
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for LiveProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
