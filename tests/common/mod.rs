//! Helpers shared by the integration tests: the zvfs binary, the fixtures, commands.
//! Tests use real parts (FUSE, servers, fixtures); nothing here mocks them.
#![allow(dead_code)]

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

/// Run zvfs with `args`, which must fail; returns stderr.
pub fn run_err<A: AsRef<str>>(args: &[A]) -> String {
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let out = zvfs(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "zvfs {args:?} should have failed:\n{stderr}"
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

pub fn redis_server(unix: bool) -> Server {
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
    let server = Server {
        child,
        port,
        socket: unix.then(|| sock.clone()),
        _dir: Some(dir),
    };
    wait_for("redis-server", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok() && (!unix || sock.exists())
    });
    server
}

pub fn http_server(root: &Path) -> Server {
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .arg("--directory")
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting python3 -m http.server");
    let server = Server {
        child,
        port,
        socket: None,
        _dir: None,
    };
    wait_for("http.server", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    server
}

// ---------------------------------------------------------------- test data

/// The xorshift64 sequence from `state` (must not be 0), one byte a step: bits
/// `shift..shift + 8` of each state. Deterministic and incompressible enough to give
/// distinct chunks.
pub fn xorshift_bytes(state: u64, shift: u32, len: usize) -> Vec<u8> {
    let mut x = state;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> shift) as u8
        })
        .collect()
}

/// The xorshift64 sequence from `state` (must not be 0), eight little-endian bytes a
/// step, cut to `len`.
pub fn xorshift_words(state: u64, len: usize) -> Vec<u8> {
    let mut x = state;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `len` deterministic pseudo-random bytes, different for each seed.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    xorshift_bytes(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, 24, len)
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

/// A foreground `zvfs mount`: on drop its target is detached and the process killed.
pub struct Foreground {
    pub child: Child,
    pub target: PathBuf,
}

impl Foreground {
    /// Spawns `cmd` (a foreground `zvfs mount` of `target`) and waits until it is mounted.
    pub fn spawn(cmd: &mut Command, target: &Path) -> Foreground {
        let child = cmd.spawn().expect("starting zvfs mount");
        let mut f = Foreground {
            child,
            target: target.to_path_buf(),
        };
        wait_mounted(&mut f.child, target);
        f
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.target, rustix::mount::UnmountFlags::DETACH);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `zvfs mount -d <args..> <target>` (the target directory is created), which must
/// succeed; on drop `zvfs umount` (the daemon exits), or a lazy unmount if that fails.
pub struct DaemonMount {
    pub target: PathBuf,
}

impl DaemonMount {
    pub fn new(args: &[&str], target: &Path) -> DaemonMount {
        std::fs::create_dir_all(target).unwrap();
        let mut all = vec!["mount", "-d"];
        all.extend_from_slice(args);
        all.push(target.to_str().unwrap());
        zvfs_ok(&all);
        DaemonMount {
            target: target.to_path_buf(),
        }
    }
}

impl Drop for DaemonMount {
    fn drop(&mut self) {
        let out = zvfs(&["umount", &self.target.to_string_lossy()]);
        if !out.status.success() {
            let _ = rustix::mount::unmount(&self.target, rustix::mount::UnmountFlags::DETACH);
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
