//! Chunk stores against real servers on loopback: redis-server (as a 0-db stand-in, over
//! TCP and a unix socket), python's http.server, TCP listeners that refuse to answer, and
//! the `verify`, `clone` and `config` commands; the dir store layouts (`dir`) and the stores
//! end to end through pack, unpack and mount (`e2e`).

mod dir;
mod e2e;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use crate::common::{
    self, dir_url, encrypt_under, files_under, free_port, http_server, noise, redis_server,
    wait_for, zvfs, zvfs_ok, Server,
};
use zvfs::codec::{self, ChunkRef, CHUNK_SIZE};
use zvfs::flist::v2::{NewEntry, V2Writer};
use zvfs::flist::{self, Kind, Route};
use zvfs::store::router::Router;
use zvfs::store::{self, StoreConfig};

// ---------------------------------------------------------------- servers and guards

/// What a [`Listener`] does with a connection.
#[derive(Clone, Copy)]
enum Mode {
    /// Close it at once (a broken store).
    Close,
    /// Keep it open and never answer (a hanging store).
    Hold,
    /// Read the request head, write this reply, close (a tiny HTTP server).
    Respond(&'static [u8]),
}

/// A TCP listener we control, counting accepted connections.
struct Listener {
    port: u16,
    accepts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn start(hold: bool) -> Listener {
        Listener::start_mode(if hold { Mode::Hold } else { Mode::Close })
    }

    fn start_mode(mode: Mode) -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let accepts = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (accepts.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let held = Mutex::new(Vec::new());
            for conn in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                a.fetch_add(1, Ordering::SeqCst);
                let Ok(mut c) = conn else { continue };
                match mode {
                    Mode::Close => drop(c),
                    Mode::Hold => held.lock().unwrap().push(c),
                    Mode::Respond(reply) => {
                        use std::io::Write;
                        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut head = Vec::new();
                        let mut b = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).unwrap_or(0) == 1 {
                            head.push(b[0]);
                        }
                        let _ = c.write_all(reply);
                    }
                }
            }
        });
        Listener {
            port,
            accepts,
            stop,
            thread: Some(thread),
        }
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    free_port()
}

// ---------------------------------------------------------------- test flists

fn test_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("big.bin", noise(1, 2 * CHUNK_SIZE + 12345)),
        ("small.txt", b"hello world\n".to_vec()),
        ("empty", Vec::new()),
        ("sub/copy.bin", noise(1, 2 * CHUNK_SIZE + 12345)),
        ("sub/other.bin", noise(2, CHUNK_SIZE + 1)),
    ]
}

fn cfg(connect: f64, io: f64, deadline: f64) -> StoreConfig {
    StoreConfig {
        connect_timeout: Duration::from_secs_f64(connect),
        io_timeout: Duration::from_secs_f64(io),
        deadline: Duration::from_secs_f64(deadline),
        cooldown: Duration::from_secs(60),
    }
}

/// Write `files` (paths with at most one directory level) as an flist at `meta` whose
/// routes are `routes`, storing every chunk through a router over `routes`. Returns the
/// chunks of each file.
fn build_flist(meta: &Path, routes: &[&str], files: &[(&str, Vec<u8>)]) -> Chunks {
    let parsed: Vec<Route> = routes.iter().map(|r| Route::parse(r).unwrap()).collect();
    let router = Router::new(&parsed, &StoreConfig::default()).unwrap();
    let w = V2Writer::create(meta).unwrap();
    let entry = |parent, name: &'static [u8], mode, size| NewEntry {
        parent,
        name,
        mode,
        uid: 0,
        gid: 0,
        size,
        rdev: 0,
        mtime: 1_700_000_000,
        ctime: 1_700_000_000,
    };
    let root = w.add_entry(&entry(0, b"/", 0o40755, 4096)).unwrap();
    let mut dirs = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (path, data) in files {
        let (parent, name) = match path.split_once('/') {
            Some((d, n)) => {
                let d: &'static str = Box::leak(d.to_string().into_boxed_str());
                let ino = *dirs.entry(d).or_insert_with(|| {
                    w.add_entry(&entry(root, d.as_bytes(), 0o40755, 4096))
                        .unwrap()
                });
                (ino, n)
            }
            None => (root, *path),
        };
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        let ino = w
            .add_entry(&entry(parent, name.as_bytes(), 0o100644, data.len() as u64))
            .unwrap();
        let mut chunks = Vec::new();
        for piece in data.chunks(CHUNK_SIZE) {
            let (c, stored) = codec::v2::encode(piece).unwrap();
            router.put(c.id(), &stored).unwrap();
            chunks.push(c);
        }
        w.add_blocks(ino, &chunks).unwrap();
        out.push((path.to_string(), chunks));
    }
    for r in &parsed {
        w.add_route(r).unwrap();
    }
    w.finish().unwrap();
    out
}

/// Read every regular file of the flist through a router (the flist's routes unless
/// `overrides`), returning (path, content).
fn read_back(meta: &Path, overrides: &[String], cfg: &StoreConfig) -> Vec<(String, Vec<u8>)> {
    let fl = flist::open(meta).unwrap();
    let router = Router::for_flist(&fl.routes().unwrap(), overrides, cfg).unwrap();
    let mut out = Vec::new();
    let root = fl.get(flist::ROOT_INO).unwrap();
    flist::walk(fl.as_ref(), &root, Vec::new(), &mut |e, path| {
        if e.kind() == Kind::File {
            let mut data = Vec::new();
            for c in fl.blocks(e.ino)? {
                data.extend(router.fetch(&c)?);
            }
            out.push((String::from_utf8_lossy(path).into_owned(), data));
        }
        Ok(())
    })
    .unwrap();
    out.sort();
    out
}

fn expected(files: &[(&str, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = files
        .iter()
        .map(|(p, d)| (p.to_string(), d.clone()))
        .collect();
    v.sort();
    v
}

/// Files and chunks of a test flist.
type Chunks = Vec<(String, Vec<ChunkRef>)>;

/// `build_flist` of `files` as `dir/x.fl`, its one route the dir store `dir/<store>`.
/// Returns (flist, store, chunks of each file).
fn dir_flist(dir: &Path, store: &str, files: &[(&str, Vec<u8>)]) -> (PathBuf, PathBuf, Chunks) {
    let st = dir.join(store);
    let meta = dir.join("x.fl");
    let chunks = build_flist(&meta, &[dir_url(&st).as_str()], files);
    (meta, st, chunks)
}

/// Every file of `meta` reads back (through its own routes) as `files`.
fn assert_reads_back(meta: &Path, files: &[(&str, Vec<u8>)]) {
    assert_eq!(
        read_back(meta, &[], &StoreConfig::default()),
        expected(files)
    );
}

/// `store::open(url)` with the default configuration.
fn open(url: &str) -> Arc<dyn store::Store> {
    store::open(url, &StoreConfig::default()).unwrap()
}

/// Where a dir store holds a chunk's object: flat (a new store's default) or sharded.
fn object_path(store: &Path, c: &ChunkRef) -> PathBuf {
    let hex = c.hex_id();
    let flat = store.join(hex.as_str());
    if flat.exists() {
        return flat;
    }
    store.join(&hex[..2]).join(hex.as_str())
}

fn meta_arg(p: &Path) -> String {
    p.display().to_string()
}

// ---------------------------------------------------------------- zdb store

fn zdb_round_trip(url: &str) {
    let s = store::open(url, &StoreConfig::default()).unwrap();
    let (c, stored) = codec::v2::encode(b"zdb round trip").unwrap();
    assert!(!s.exists(c.id()).unwrap());
    assert_eq!(s.get(c.id()).unwrap(), None);
    s.set(c.id(), &stored).unwrap();
    assert!(s.exists(c.id()).unwrap());
    assert_eq!(s.get(c.id()).unwrap().unwrap(), stored);
    // setting again is accepted (EXISTS short-cut) and leaves the object as it is
    s.set(c.id(), &stored).unwrap();
    assert_eq!(
        c.decode(&s.get(c.id()).unwrap().unwrap()).unwrap(),
        b"zdb round trip"
    );
    // a value just under the limit goes through
    let big = noise(9, codec::MAX_OBJECT);
    s.set(&[0x42; 32], &big).unwrap();
    assert_eq!(s.get(&[0x42; 32]).unwrap().unwrap().len(), big.len());
}

#[test]
fn zdb_store_against_redis_over_tcp() {
    let r = redis_server(false);
    zdb_round_trip(&format!("zdb://127.0.0.1:{}", r.port));
    // a namespace is selected on each connection: redis takes a number as the name
    let ns1 = open(&format!("zdb://127.0.0.1:{}/1", r.port));
    let dflt = open(&format!("zdb://127.0.0.1:{}/default", r.port));
    ns1.set(&[7; 32], b"in namespace 1").unwrap();
    assert_eq!(ns1.get(&[7; 32]).unwrap().unwrap(), b"in namespace 1");
    assert_eq!(dflt.get(&[7; 32]).unwrap(), None);
    // the legacy redis:// alias works the same
    let alias = open(&format!("redis://127.0.0.1:{}/1", r.port));
    assert_eq!(alias.get(&[7; 32]).unwrap().unwrap(), b"in namespace 1");
    // a refused SELECT is a clear error (redis has no database "nope")
    let bad = open(&format!("zdb://u:sekrit@127.0.0.1:{}/nope", r.port));
    let e = bad.get(&[1; 32]).unwrap_err();
    assert!(e.msg.contains("SELECT nope"), "{e}");
    assert!(!e.msg.contains("sekrit"), "password leaked: {e}");
}

#[test]
fn zdb_store_against_redis_over_unix_socket() {
    let r = redis_server(true);
    let sock = r.socket.clone().unwrap();
    zdb_round_trip(&format!("zdb://{}", sock.display()));
    let ns = open(&format!("zdb://{}?ns=3", sock.display()));
    ns.set(&[3; 32], b"three").unwrap();
    let tcp3 = open(&format!("zdb://127.0.0.1:{}/3", r.port));
    assert_eq!(tcp3.get(&[3; 32]).unwrap().unwrap(), b"three");
}

#[test]
fn oversized_value_is_refused_before_sending() {
    let l = Listener::start(false);
    let s = open(&format!("zdb://127.0.0.1:{}", l.port));
    let e = s
        .set(&[1; 32], &vec![0u8; codec::MAX_OBJECT + 1])
        .unwrap_err();
    assert!(e.msg.contains("more than"), "{e}");
    assert_eq!(l.accepts(), 0, "a connection was made for a refused value");
}

#[test]
fn broken_connection_is_replaced() {
    let mut r = redis_server(false);
    let port = r.port;
    let s = open(&format!("zdb://127.0.0.1:{port}"));
    s.set(&[5; 32], b"five").unwrap();
    // restart the server on the same port: the pooled connection is now dead
    let _ = r.child.kill();
    let _ = r.child.wait();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _r2 = Server {
        child,
        port,
        socket: None,
        _dir: Some(dir),
    };
    wait_for("redis-server", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // the first request after the restart succeeds (retried on a fresh connection)
    assert_eq!(s.get(&[5; 32]).unwrap(), None);
    s.set(&[5; 32], b"again").unwrap();
    assert_eq!(s.get(&[5; 32]).unwrap().unwrap(), b"again");
}

#[test]
fn flist_chunks_in_redis_read_back_byte_exact() {
    let r = redis_server(false);
    let t = tempfile::tempdir().unwrap();
    let meta = t.path().join("x.fl");
    let url = format!("zdb://127.0.0.1:{}", r.port);
    let files = test_files();
    build_flist(&meta, &[url.as_str()], &files);
    assert_reads_back(&meta, &files);
    // and the command-line verify agrees, through the flist's own routes
    zvfs_ok(&["verify", "--deep", "-m", &meta_arg(&meta)]);
}

// ---------------------------------------------------------------- zdb pipelining

/// Connections redis accepted so far (`total_connections_received`; this query's own
/// connection counts).
fn connections_received(port: u16) -> usize {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "stats"])
        .output()
        .expect("running redis-cli");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total_connections_received in {text}"))
}

/// The key of test object `i`.
fn key(i: usize) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&(i as u64).to_be_bytes());
    k[31] = 0x5a;
    k
}

/// Values of `n` objects in namespace `ns` of redis at `port` (`None`: missing, every
/// eighth), `size(i)` bytes each, none a `$` (so that the fault proxy's `length` fault
/// hits a RESP length, never the bytes of a value); the same keys hold other bytes in
/// namespace 0, so an answer from the wrong namespace shows.
fn plant(port: u16, ns: u32, n: usize, size: impl Fn(usize) -> usize) -> Vec<Option<Vec<u8>>> {
    let there = open(&format!("zdb://127.0.0.1:{port}/{ns}"));
    let decoy = open(&format!("zdb://127.0.0.1:{port}"));
    (0..n)
        .map(|i| {
            decoy
                .set(&key(i), &value(2 * i as u64 + 1000, 1000))
                .unwrap();
            (i % 8 != 7).then(|| {
                let v = value(2 * i as u64, size(i));
                there.set(&key(i), &v).unwrap();
                v
            })
        })
        .collect()
}

/// `len` bytes of [`noise`] without a `$`.
fn value(seed: u64, len: usize) -> Vec<u8> {
    let no_dollar = |b| if b == b'$' { b'#' } else { b };
    noise(seed, len).into_iter().map(no_dollar).collect()
}

/// `get_before(key(i), now + deadline)` of every `i` in `keys`, all at once (one thread
/// each, released together).
fn get_all(
    s: &Arc<zvfs::store::zdb::ZdbStore>,
    keys: impl Iterator<Item = usize>,
    deadline: Duration,
) -> Vec<(usize, zvfs::error::Result<Option<Vec<u8>>>)> {
    use zvfs::store::Store;
    let keys: Vec<usize> = keys.collect();
    let go = Arc::new(std::sync::Barrier::new(keys.len()));
    let threads: Vec<_> = keys
        .into_iter()
        .map(|i| {
            let (s, go) = (s.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                (i, s.get_before(&key(i), Instant::now() + deadline))
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn zdb_store(port: u16, ns: u32, cfg: &StoreConfig) -> Arc<zvfs::store::zdb::ZdbStore> {
    let url = format!("zdb://127.0.0.1:{port}/{ns}");
    Arc::new(zvfs::store::zdb::ZdbStore::open(&url, cfg).unwrap())
}

/// 64 GETs at once over a 30 ms link: each gets exactly its own bytes (or nil), from
/// the selected namespace, over at most POOL_SIZE connections, the requests pipelined
/// several deep on each.
#[test]
fn zdb_pipelines_concurrent_gets_over_a_slow_link() {
    use zvfs::store::zdb::{PIPELINE_DEPTH, POOL_SIZE};
    let r = redis_server(false);
    let want = plant(r.port, 5, 64, |i| 3 * 1024 + i * (509 * 1024 / 63));
    let link = common::Proxy::wan(r.port, 30, 1000);
    let s = zdb_store(link.port, 5, &cfg(5.0, 10.0, 30.0));
    let before = connections_received(r.port);
    let t = Instant::now();
    let got = get_all(&s, 0..64, Duration::from_secs(30));
    let took = t.elapsed();
    for (i, g) in got {
        let g = g.unwrap_or_else(|e| panic!("GET {i}: {e}"));
        assert!(g == want[i], "GET {i}: not its own bytes");
    }
    let conns = connections_received(r.port) - before - 1;
    eprintln!(
        "64 GETs in {took:?} over {conns} connections, {} deep at most",
        s.peak_pipeline()
    );
    assert!(conns <= POOL_SIZE, "{conns} connections");
    // 64 requests over at most 8 connections were in flight together: pipelined
    assert!(s.peak_pipeline() >= 4, "{} deep", s.peak_pipeline());
    assert!(
        s.peak_pipeline() <= PIPELINE_DEPTH + 1,
        "{}",
        s.peak_pipeline()
    );
}

/// GETs with a short deadline pipelined behind slow replies fail with a timeout naming
/// the store, without harming the slow ones; their replies, left on the connections,
/// never reach another request: the next GETs on the pool get their own bytes.
#[test]
fn zdb_pipelined_gets_that_time_out_leave_the_pool_in_order() {
    use zvfs::store::zdb::POOL_SIZE;
    let r = redis_server(false);
    // 8 large values (one a connection, each at least 0.4 s at 10 Mbit), 56 small ones
    let want = plant(r.port, 2, 64, |i| if i < 8 { 512 * 1024 } else { 4096 });
    let link = common::Proxy::wan(r.port, 30, 10);
    let s = zdb_store(link.port, 2, &cfg(5.0, 10.0, 30.0));
    let before = connections_received(r.port);
    // open the pool's connections (and select their namespace) first: then each large
    // GET takes a connection of its own
    for (i, g) in get_all(&s, 8..8 + POOL_SIZE, Duration::from_secs(30)) {
        assert!(g.unwrap() == want[i], "GET {i}");
    }
    let slow = {
        let s = s.clone();
        std::thread::spawn(move || get_all(&s, 0..8, Duration::from_secs(30)))
    };
    // the small GETs go behind the large ones and give up 0.25 s in
    std::thread::sleep(Duration::from_millis(150));
    let short = get_all(&s, 8..64, Duration::from_millis(100));
    for (i, g) in short {
        match g {
            Err(e) => {
                assert_eq!(e.kind, zvfs::error::ErrorKind::Timeout, "GET {i}: {e}");
                assert!(
                    e.msg
                        .starts_with(&format!("zdb://127.0.0.1:{}/2: GET: timed out", link.port)),
                    "GET {i}: {e}"
                );
            }
            Ok(g) => panic!(
                "GET {i} behind 512 KiB at 10 Mbit answered in 100 ms: {}",
                g == want[i]
            ),
        }
    }
    for (i, g) in slow.join().unwrap() {
        let g = g.unwrap_or_else(|e| panic!("slow GET {i}: {e}"));
        assert!(g == want[i], "slow GET {i}: not its own bytes");
    }
    // the abandoned replies were left on the connections, which stayed usable
    let conns = connections_received(r.port) - before - 1;
    assert!(conns <= POOL_SIZE, "{conns} connections");
    for round in 0..2 {
        for (i, g) in get_all(&s, 0..64, Duration::from_secs(30)) {
            let g = g.unwrap_or_else(|e| panic!("round {round}: GET {i}: {e}"));
            assert!(g == want[i], "round {round}: GET {i}: not its own bytes");
        }
    }
}

/// A new connection writes SELECT and its first command together (two replies owed at
/// once) and reads from the namespace; a refused SELECT is the clear error it always
/// was, and the command's reply (from the wrong namespace) never reaches the caller.
#[test]
fn zdb_select_is_pipelined_with_the_first_command() {
    use zvfs::store::Store;
    let r = redis_server(false);
    let want = plant(r.port, 4, 2, |_| 100);
    let link = common::Proxy::wan(r.port, 30, 1000);
    let s = zdb_store(link.port, 4, &StoreConfig::default());
    let t = Instant::now();
    assert_eq!(s.get(&key(0)).unwrap(), want[0]);
    eprintln!(
        "first GET with SELECT over a 60 ms round trip: {:?}",
        t.elapsed()
    );
    assert_eq!(
        s.peak_pipeline(),
        2,
        "SELECT and GET were not written together"
    );
    assert_eq!(s.get(&key(1)).unwrap(), want[1]);
    // key 0 exists in namespace 0: a refused SELECT must not hand out its value
    for (url, shown) in [
        (
            format!("zdb://u:sekrit@127.0.0.1:{}/nope", link.port),
            "SELECT nope refused",
        ),
        (
            format!("zdb://u:sekrit@127.0.0.1:{}/4", link.port),
            "SELECT 4 refused",
        ),
    ] {
        let bad = open(&url);
        for _ in 0..2 {
            let e = bad.get(&key(0)).unwrap_err();
            assert!(e.msg.contains(shown), "{e}");
            assert!(!e.msg.contains("sekrit"), "password leaked: {e}");
            let e = bad.exists(&key(0)).unwrap_err();
            assert!(e.msg.contains(shown), "{e}");
        }
    }
}

/// A connection breaking under pipelined GETs (reset, cut, a wrong length, a stall, on
/// the first connection, a fifth of the way into its replies): every request on it
/// fails, none with another's bytes, and is retried on a fresh connection; only the one
/// reading when a stall hit may fail, with a timeout naming the store.
#[test]
fn zdb_pipelined_gets_survive_a_broken_connection() {
    let r = redis_server(false);
    let want = plant(r.port, 3, 64, |i| 3 * 1024 + i * (253 * 1024 / 63));
    for fault in ["reset", "truncate", "length", "stall"] {
        let link = common::Proxy::fault(r.port, fault, 200_000, 1);
        let s = zdb_store(link.port, 3, &cfg(5.0, 1.0, 30.0));
        let name = format!("zdb://127.0.0.1:{}/3", link.port);
        let before = connections_received(r.port);
        let mut failed = Vec::new();
        for (i, g) in get_all(&s, 0..64, Duration::from_secs(20)) {
            match g {
                Ok(g) => assert!(g == want[i], "{fault}: GET {i}: not its own bytes"),
                Err(e) => {
                    assert!(e.msg.starts_with(&name), "{fault}: GET {i}: {e}");
                    failed.push(e);
                }
            }
        }
        let allowed = usize::from(fault == "stall");
        assert!(failed.len() <= allowed, "{fault}: {failed:?}");
        if let Some(e) = failed.first() {
            assert_eq!(e.kind, zvfs::error::ErrorKind::Timeout, "{fault}: {e}");
        }
        // and the pool goes on serving
        for (i, g) in get_all(&s, 0..64, Duration::from_secs(20)) {
            let g = g.unwrap_or_else(|e| panic!("{fault}, after: GET {i}: {e}"));
            assert!(g == want[i], "{fault}, after: GET {i}: not its own bytes");
        }
        // the broken connection was replaced (the pool filled up again for the second
        // round: POOL_SIZE connections besides the broken one)
        let conns = connections_received(r.port) - before - 1;
        eprintln!(
            "{fault}: {} failed, {conns} connections, {} deep at most",
            failed.len(),
            s.peak_pipeline()
        );
        assert!(
            conns > zvfs::store::zdb::POOL_SIZE,
            "{fault}: {conns} connections"
        );
    }
}

// ---------------------------------------------------------------- http store

#[test]
fn http_store_two_level_and_flat_layouts() {
    let t = tempfile::tempdir().unwrap();
    let nested = t.path().join("nested");
    let flat = t.path().join("flat");
    let meta = t.path().join("x.fl");
    let files = test_files();
    let nested_url = format!("{}?layout=sharded", dir_url(&nested));
    let chunks = build_flist(&meta, &[nested_url.as_str()], &files);
    // the same objects in the older flat layout
    std::fs::create_dir_all(&flat).unwrap();
    for (_, cs) in &chunks {
        for c in cs {
            std::fs::copy(object_path(&nested, c), flat.join(c.hex_id().as_str())).unwrap();
        }
    }
    let srv = http_server(t.path());
    for layout in ["nested", "flat"] {
        let url = format!("http://127.0.0.1:{}/{layout}", srv.port);
        assert_eq!(
            read_back(&meta, std::slice::from_ref(&url), &StoreConfig::default()),
            expected(&files),
            "{layout}"
        );
        let s = open(&url);
        assert_eq!(s.get(&[0xee; 32]).unwrap(), None, "404 on both is missing");
        let e = s.set(&[1; 32], b"x").unwrap_err();
        assert!(e.msg.contains("read-only"), "{e}");
    }
    // any other status is an error naming the URL (redacted)
    let l500 = Listener::start_mode(Mode::Respond(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ));
    let s = open(&format!("http://user:sekrit@127.0.0.1:{}/st", l500.port));
    let e = s.get(&[0xdd; 32]).unwrap_err();
    assert!(e.msg.contains("HTTP 500"), "{e}");
    assert!(
        e.msg.contains(&format!(
            "http://user:***@127.0.0.1:{}/st/dd/dddd",
            l500.port
        )),
        "{e}"
    );
    assert!(!e.msg.contains("sekrit"), "{e}");
    // a response above 8 MiB is refused
    let lbig = Listener::start_mode(Mode::Respond(
        b"HTTP/1.1 200 OK\r\nContent-Length: 9000000\r\nConnection: close\r\n\r\nxxxx",
    ));
    let s = open(&format!("http://127.0.0.1:{}", lbig.port));
    let e = s.get(&[0xdd; 32]).unwrap_err();
    assert!(e.msg.contains("more than"), "{e}");
    // a store that does not answer HTTP at all
    let port = dead_port();
    let s = store::open(
        &format!("http://user:sekrit@127.0.0.1:{port}/x"),
        &cfg(1.0, 1.0, 2.0),
    )
    .unwrap();
    let e = s.get(&[1; 32]).unwrap_err();
    assert!(e.msg.contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(!e.msg.contains("sekrit") && e.msg.contains("***"), "{e}");
}

// ---------------------------------------------------------------- failover and deadlines

#[test]
fn dead_replica_is_not_retried_on_every_chunk() {
    let t = tempfile::tempdir().unwrap();
    let (meta, good, _) = dir_flist(t.path(), "good", &test_files());
    let n_chunks = zvfs::content::chunkset::unique_chunks(flist::open(&meta).unwrap().as_ref())
        .unwrap()
        .len();
    assert!(n_chunks >= 5);

    // broken: accepts TCP and closes at once; dead: nothing listens
    let broken = Listener::start(false);
    for first in [
        format!("zdb://127.0.0.1:{}", broken.port),
        format!("zdb://127.0.0.1:{}", dead_port()),
        format!("http://127.0.0.1:{}", dead_port()),
    ] {
        let fl = flist::open(&meta).unwrap();
        let router = Router::for_flist(
            &fl.routes().unwrap(),
            &[first.clone(), dir_url(&good)],
            &cfg(1.0, 2.0, 10.0),
        )
        .unwrap();
        let before = broken.accepts();
        let mut n = 0;
        let root = fl.get(flist::ROOT_INO).unwrap();
        flist::walk(fl.as_ref(), &root, Vec::new(), &mut |e, _| {
            if e.kind() == Kind::File {
                for c in fl.blocks(e.ino)? {
                    router.fetch(&c)?;
                    n += 1;
                }
            }
            Ok(())
        })
        .unwrap();
        assert!(n > n_chunks, "hardlink-free copy makes repeated reads");
        let stats = router.store_stats();
        assert_eq!(
            stats[0].attempts, 1,
            "{first}: dead replica tried more than once: {stats:?}"
        );
        assert_eq!(stats[0].failures, 1);
        assert_eq!(stats[1].attempts as usize, n);
        if first.contains(&broken.port.to_string()) {
            // one attempt plus one retry on a fresh connection, then cool-down
            let accepted = broken.accepts() - before;
            assert!(
                (1..=2).contains(&accepted),
                "{accepted} connections to the broken store"
            );
        }
    }
}

#[test]
fn hanging_store_fails_within_the_deadline_then_a_replica_serves() {
    let t = tempfile::tempdir().unwrap();
    let (meta, good, chunks) = dir_flist(t.path(), "good", &[("a.bin", noise(3, 3000))]);
    let chunk = chunks[0].1[0];
    let hang = Listener::start(true);
    for url in [
        format!("zdb://127.0.0.1:{}", hang.port),
        format!("http://127.0.0.1:{}", hang.port),
    ] {
        // I/O timeout far above the deadline: the deadline must cut the read
        let c = cfg(1.0, 30.0, 1.5);
        let router = Router::for_flist(&[], std::slice::from_ref(&url), &c).unwrap();
        let t0 = Instant::now();
        let e = router.fetch(&chunk).unwrap_err();
        let took = t0.elapsed();
        assert!(
            took < Duration::from_secs_f64(1.5 + 3.0),
            "{url}: took {took:?}"
        );
        assert!(e.msg.contains(chunk.hex_id().as_str()), "{e}");
        assert!(e.msg.contains(&format!("127.0.0.1:{}", hang.port)), "{e}");
        assert_eq!(e.kind, zvfs::error::ErrorKind::Timeout, "{e}");
        assert_eq!(e.errno(), libc::EIO);

        // the command line: fails within the deadline alone, succeeds with a replica
        let m = meta_arg(&meta);
        // `verify --deep` over `stores` with a 30 s I/O timeout and this deadline.
        let verify = |stores: &[&str], deadline: &str| {
            let mut args = vec!["verify", "--deep", "-m", &m];
            for s in stores {
                args.extend(["-s", s]);
            }
            args.extend(["--deadline", deadline, "--io-timeout", "30"]);
            zvfs(&args)
        };
        let t0 = Instant::now();
        let out = verify(&[&url], "1.5");
        assert!(!out.status.success());
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "took {:?}",
            t0.elapsed()
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("1 unreachable"), "{stderr}");
        let out = verify(&[&url, &dir_url(&good)], "2");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(hang.accepts() >= 2);
}

#[test]
fn corrupt_or_reencrypted_replica_is_skipped() {
    let r = redis_server(false);
    let t = tempfile::tempdir().unwrap();
    let files = [("a.txt", b"genuine content".to_vec())];
    let (_, good, chunks) = dir_flist(t.path(), "good", &files);
    let chunk = chunks[0].1[0];
    let good_obj = std::fs::read(object_path(&good, &chunk)).unwrap();

    // replica 1 (redis): a flipped byte
    let zdb = format!("zdb://127.0.0.1:{}", r.port);
    let mut flipped = good_obj.clone();
    flipped[4] ^= 0x10;
    open(&zdb).set(chunk.id(), &flipped).unwrap();
    // replica 2 (dir): other plaintext re-encrypted under the right key (GCM tag valid)
    let evil_dir = t.path().join("evil");
    {
        let p = object_path(&evil_dir, &chunk);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, encrypt_under(chunk.key(), b"evil content!!!")).unwrap();
    }
    for bad in [zdb.clone(), dir_url(&evil_dir)] {
        let alone =
            Router::for_flist(&[], std::slice::from_ref(&bad), &StoreConfig::default()).unwrap();
        let e = alone.fetch(&chunk).unwrap_err();
        assert!(
            e.msg.contains(chunk.hex_id().as_str()) && e.msg.contains("corrupt"),
            "{e}"
        );
        assert_eq!(e.errno(), libc::EIO);
        let both = Router::for_flist(&[], &[bad.clone(), dir_url(&good)], &StoreConfig::default())
            .unwrap();
        assert_eq!(both.fetch(&chunk).unwrap(), b"genuine content");
    }
}

// ---------------------------------------------------------------- verify, clone, config

#[test]
fn verify_names_deleted_and_corrupted_chunks() {
    let t = tempfile::tempdir().unwrap();
    let (meta, st, chunks) = dir_flist(t.path(), "store", &test_files());
    let m = meta_arg(&meta);
    zvfs_ok(&["verify", "-m", &m]);
    zvfs_ok(&["verify", "--deep", "-m", &m]);
    // delete the last chunk of other.bin, corrupt the only chunk of small.txt
    let other = chunks.iter().find(|(p, _)| p == "sub/other.bin").unwrap().1[1];
    let small = chunks.iter().find(|(p, _)| p == "small.txt").unwrap().1[0];
    std::fs::remove_file(object_path(&st, &other)).unwrap();
    let p = object_path(&st, &small);
    let mut d = std::fs::read(&p).unwrap();
    d[0] ^= 1;
    std::fs::write(&p, d).unwrap();

    // Both verifies fail and name the deleted chunk; returns the report.
    let verify_fails = |deep: &[&str]| {
        let mut args = vec!["verify"];
        args.extend_from_slice(deep);
        args.extend(["-m", m.as_str()]);
        let out = zvfs(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!out.status.success(), "{stdout}");
        let missing = format!("missing {} used by /sub/other.bin", other.hex_id());
        assert!(stdout.contains(&missing), "{stdout}");
        stdout
    };
    let stdout = verify_fails(&[]);
    assert!(
        !stdout.contains(small.hex_id().as_str()),
        "shallow verify only checks presence"
    );

    let stdout = verify_fails(&["--deep"]);
    assert!(
        stdout.contains(&format!("corrupt {} used by /small.txt", small.hex_id())),
        "{stdout}"
    );
}

#[test]
fn clone_to_fresh_store_then_deep_verify() {
    let t = tempfile::tempdir().unwrap();
    let fresh = t.path().join("fresh");
    let files = test_files();
    let (meta, src, _) = dir_flist(t.path(), "src", &files);
    let m = meta_arg(&meta);
    zvfs_ok(&["clone", "-m", &m, "-s", &dir_url(&fresh)]);
    zvfs_ok(&["verify", "--deep", "-m", &m, "-s", &dir_url(&fresh)]);
    // the stored bytes are copied as they are
    for entry in files_under(&src) {
        let rel = entry.strip_prefix(&src).unwrap();
        assert_eq!(
            std::fs::read(&entry).unwrap(),
            std::fs::read(fresh.join(rel)).unwrap()
        );
    }
    // a second clone copies nothing and succeeds
    let out = zvfs(&["clone", "-m", &m, "-s", &dir_url(&fresh)]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 copied"));

    // clone into redis with a password in the URL and update the routes
    let r = redis_server(false);
    let zdb = format!("zdb://user:sekrit@127.0.0.1:{}", r.port);
    zvfs_ok(&["clone", "-m", &m, "-s", &zdb, "--update-routes"]);
    let listed = zvfs_ok(&["config", "-m", &m, "store", "list"]);
    assert_eq!(
        listed.trim(),
        format!("00-ff=zdb://user@127.0.0.1:{}", r.port)
    );
    let raw = std::fs::read(&meta).unwrap();
    assert!(
        !raw.windows(6).any(|w| w == b"sekrit"),
        "password written into the flist"
    );
    // the flist now reads from redis alone
    std::fs::remove_dir_all(&src).unwrap();
    assert_reads_back(&meta, &files);
    zvfs_ok(&["verify", "--deep", "-m", &m]);
    // a failing clone leaves the routes alone
    let out = zvfs(&[
        "clone",
        "-m",
        &m,
        "-s",
        "http://127.0.0.1:1/ro",
        "--update-routes",
    ]);
    assert!(!out.status.success());
    assert_eq!(zvfs_ok(&["config", "-m", &m, "store", "list"]), listed);
}

#[test]
fn clone_removes_what_dead_writers_left_in_the_destination() {
    let t = tempfile::tempdir().unwrap();
    let files = test_files();
    let (meta, _, _) = dir_flist(t.path(), "src", &files);
    let live = common::LiveProcess::start();
    let (dead, lp) = (common::DEAD_PID, live.pid());
    let hex = "cd".repeat(32);
    for (layout, dest) in [
        ("flat", t.path().join("flat")),
        ("sharded", t.path().join("sharded")),
    ] {
        let removed = [
            dest.join(format!(".tmp.{dead}.{hex}")),
            dest.join(format!("cd/.tmp.{dead}.{hex}")),
        ];
        let kept = [
            dest.join(format!(".tmp.{lp}.{hex}")),
            dest.join(format!("cd/.tmp.{lp}.{hex}")),
            dest.join(format!("cd/tmp.{dead}.{hex}")),
        ];
        for p in removed.iter().chain(&kept) {
            common::plant_leftover(p);
        }
        let url = format!("{}?layout={layout}", dir_url(&dest));
        zvfs_ok(&["clone", "-m", &meta_arg(&meta), "-s", &url]);
        for p in &removed {
            assert!(!p.exists(), "{} is still there", p.display());
        }
        for p in &kept {
            assert!(p.exists(), "{} was removed", p.display());
        }
        zvfs_ok(&["verify", "--deep", "-m", &meta_arg(&meta), "-s", &url]);
    }
}

#[test]
fn config_tags_and_stores() {
    let t = tempfile::tempdir().unwrap();
    let files = test_files();
    let (meta, st, _) = dir_flist(t.path(), "store", &files);
    let m = meta_arg(&meta);
    let tags = zvfs_ok(&["config", "-m", &m, "tag", "list"]);
    assert!(tags.contains("version=zvfs-1"), "{tags}");
    zvfs_ok(&[
        "config",
        "-m",
        &m,
        "tag",
        "add",
        "-t",
        "author=me",
        "-t",
        "description=a b=c",
    ]);
    let tags = zvfs_ok(&["config", "-m", &m, "tag", "list"]);
    assert!(
        tags.contains("author=me\n") && tags.contains("description=a b=c\n"),
        "{tags}"
    );
    zvfs_ok(&["config", "-m", &m, "tag", "delete", "-k", "author"]);
    let tags = zvfs_ok(&["config", "-m", &m, "tag", "list"]);
    assert!(
        !tags.contains("author") && tags.contains("description"),
        "{tags}"
    );
    zvfs_ok(&["config", "-m", &m, "tag", "delete", "-a"]);
    // every tag but the reserved schema marker
    assert_eq!(
        zvfs_ok(&["config", "-m", &m, "tag", "list"]),
        "version=zvfs-1\n"
    );
    assert!(!zvfs(&["config", "-m", &m, "tag", "add", "-t", "novalue"])
        .status
        .success());

    let routes = zvfs_ok(&["config", "-m", &m, "store", "list"]);
    assert_eq!(routes.trim(), format!("00-ff={}", dir_url(&st)));
    zvfs_ok(&[
        "config",
        "-m",
        &m,
        "store",
        "add",
        "-s",
        "00-7f=zdb://u:sekrit@10.0.0.1:9900/ns",
        "-s",
        "http://h/x",
    ]);
    let routes = zvfs_ok(&["config", "-m", &m, "store", "list"]);
    assert!(
        routes.contains("00-7f=zdb://u@10.0.0.1:9900/ns\n"),
        "{routes}"
    );
    assert!(routes.contains("00-ff=http://h/x\n"), "{routes}");
    assert!(!std::fs::read(&meta)
        .unwrap()
        .windows(6)
        .any(|w| w == b"sekrit"));
    // delete by URL, with or without the password given
    zvfs_ok(&[
        "config",
        "-m",
        &m,
        "store",
        "delete",
        "-s",
        "zdb://u:sekrit@10.0.0.1:9900/ns",
    ]);
    zvfs_ok(&["config", "-m", &m, "store", "delete", "-s", "http://h/x"]);
    let out = zvfs(&["config", "-m", &m, "store", "delete", "-s", "http://nope/"]);
    assert!(!out.status.success());
    assert_eq!(
        zvfs_ok(&["config", "-m", &m, "store", "list"]).trim(),
        format!("00-ff={}", dir_url(&st))
    );
    // the flist stays readable after every edit, and no temporary file is left behind
    zvfs_ok(&["verify", "--deep", "-m", &m]);
    assert_reads_back(&meta, &files);
    let leftovers = common::names_containing(t.path(), "zvfs-edit");
    assert!(leftovers.is_empty(), "{leftovers:?}");
    zvfs_ok(&["config", "-m", &m, "store", "delete", "-a"]);
    assert_eq!(zvfs_ok(&["config", "-m", &m, "store", "list"]), "");
    let out = zvfs(&["verify", "-m", &m]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no routes"));
}

// ---------------------------------------------------------------- slow stores and messages

/// `zvfs cat` of `path` from the flist `meta` over `store` with a 5 s deadline and a 2 s
/// I/O timeout and no cache; returns (success, stderr, time taken).
fn cat_within(meta: &Path, store: &str, path: &str) -> (bool, String, Duration) {
    let m = meta_arg(meta);
    let t0 = Instant::now();
    let out = zvfs(&[
        "cat",
        "-m",
        &m,
        "-s",
        store,
        "--deadline",
        "5",
        "--io-timeout",
        "2",
        path,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), stderr, t0.elapsed())
}

/// `cat` of a multi-chunk file and of a tiny one from `meta` through `url` (a trickling
/// store whose password is `secret`) fails well within 20 s, saying it timed out, naming
/// the store as `shown` and never its password; `ran_out`: the message names the deadline.
fn assert_cut_by_the_deadline(meta: &Path, url: &str, shown: &str, ran_out: bool) {
    for path in ["big.bin", "tiny.txt"] {
        let (ok, err, took) = cat_within(meta, url, path);
        assert!(!ok, "{path}: served through a trickle: {err}");
        assert!(
            took < Duration::from_secs(20),
            "{path}: took {took:?}: {err}"
        );
        assert!(err.contains("timed out after"), "{path}: {err}");
        if ran_out {
            assert!(err.contains("(the deadline ran out)"), "{path}: {err}");
        }
        assert!(err.contains(shown), "{path}: {err}");
        assert!(!err.contains("secret"), "{path}: {err}");
        assert!(!err.contains("os error 11"), "{path}: {err}");
    }
}

#[test]
fn trickling_zdb_store_is_cut_by_the_deadline() {
    let r = redis_server(false);
    let t = tempfile::tempdir().unwrap();
    let meta = t.path().join("fl.fl");
    let files = [
        ("big.bin", noise(7, CHUNK_SIZE)),
        ("tiny.txt", b"hi\n".to_vec()),
    ];
    build_flist(&meta, &[&format!("zdb://127.0.0.1:{}", r.port)], &files);
    // a reply byte every second: never idle for the 2 s I/O timeout, never done in 5 s
    let slow = common::trickle_proxy(r.port, Duration::from_secs(1));
    let url = format!("zdb://user:secret@127.0.0.1:{}", slow.port);
    let shown = format!("zdb://user:***@127.0.0.1:{}", slow.port);
    assert_cut_by_the_deadline(&meta, &url, &shown, true);
    // the same flist straight from redis reads back
    let direct = format!("zdb://127.0.0.1:{}", r.port);
    let (ok, err, _) = cat_within(&meta, &direct, "tiny.txt");
    assert!(ok, "{err}");
}

#[test]
fn failures_say_what_happened_not_the_deadline() {
    let r = redis_server(false);
    let t = tempfile::tempdir().unwrap();
    let (meta, _good, _) = dir_flist(t.path(), "good", &[("a.bin", noise(9, 5000))]);
    let deadline = "within 5.0s";

    // nothing listens: refused at once
    let refused = format!("zdb://127.0.0.1:{}", dead_port());
    let (ok, err, took) = cat_within(&meta, &refused, "a.bin");
    assert!(!ok);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(
        !err.contains(deadline) && !err.contains("deadline"),
        "{err}"
    );

    // stores that answer that they do not have it (an empty redis, an empty directory)
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for store in [format!("zdb://127.0.0.1:{}", r.port), dir_url(&empty)] {
        let (ok, err, _) = cat_within(&meta, &store, "a.bin");
        assert!(!ok);
        assert!(err.contains("missing from every store"), "{store}: {err}");
        assert!(
            !err.contains("deadline") && !err.contains(deadline),
            "{err}"
        );
    }

    // a store that times out per read (holds the connection, never answers) within the
    // deadline says so, naming the store and the I/O timeout
    let hang = Listener::start(true);
    let url = format!("zdb://127.0.0.1:{}", hang.port);
    let m = meta_arg(&meta);
    let out = zvfs(&[
        "cat",
        "-m",
        &m,
        "-s",
        &url,
        "--deadline",
        "20",
        "--io-timeout",
        "1",
        "a.bin",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("timed out after"), "{err}");
    assert!(err.contains(&url), "{err}");
    assert!(!err.contains("os error 11"), "{err}");
}

#[test]
fn trickling_http_store_is_cut_by_the_deadline() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("objects");
    let meta = t.path().join("fl.fl");
    let files = [
        ("big.bin", noise(8, CHUNK_SIZE)),
        ("tiny.txt", b"hi\n".to_vec()),
    ];
    build_flist(&meta, &[dir_url(&root).as_str()], &files);
    let srv = http_server(t.path());
    let slow = common::trickle_proxy(srv.port, Duration::from_secs(1));
    let url = format!("http://user:secret@127.0.0.1:{}/objects", slow.port);
    let shown = format!("http://user:***@127.0.0.1:{}", slow.port);
    assert_cut_by_the_deadline(&meta, &url, &shown, false);
    let direct = format!("http://127.0.0.1:{}/objects", srv.port);
    let (ok, err, _) = cat_within(&meta, &direct, "tiny.txt");
    assert!(ok, "{err}");
}

#[test]
fn config_removes_the_copies_dead_edits_left() {
    let t = tempfile::tempdir().unwrap();
    let (meta, _, _) = dir_flist(t.path(), "store", &test_files());
    let name = meta.file_name().unwrap().to_str().unwrap().to_string();
    let dir = meta.parent().unwrap();
    let live = common::LiveProcess::start();
    let (dead, lp) = (common::DEAD_PID, live.pid());
    let removed = [
        dir.join(format!(".{name}.zvfs-edit.{dead}")),
        dir.join(format!(".{name}.zvfs-edit.{dead}-journal")),
        dir.join(format!(".other.fl.zvfs-edit.{dead}")),
        // a journal whose copy is already gone
        dir.join(format!(".gone.fl.zvfs-edit.{dead}-journal")),
        // the names edits use now (the ones above are earlier versions')
        dir.join(format!(".{name}.zvfs-tmp-{dead}")),
        dir.join(format!(".{name}.zvfs-tmp-{dead}-journal")),
    ];
    let kept = [
        dir.join(format!(".{name}.zvfs-edit.{lp}")),
        dir.join(format!(".{name}.zvfs-edit.{lp}-journal")),
        dir.join(format!("{name}.zvfs-edit.{dead}")),
        dir.join(format!(".{name}.zvfs-edit.{dead}.bak")),
        dir.join(format!(".{name}.zvfs-tmp-{lp}")),
    ];
    for p in removed.iter().chain(&kept) {
        common::plant_leftover(p);
    }
    zvfs_ok(&["config", "-m", &meta_arg(&meta), "tag", "add", "-t", "k=v"]);
    for p in &removed {
        assert!(!p.exists(), "{} is still there", p.display());
    }
    for p in &kept {
        assert!(p.exists(), "{} was removed", p.display());
    }
    let tags = zvfs_ok(&["config", "-m", &meta_arg(&meta), "tag", "list"]);
    assert!(tags.contains("k=v"), "{tags}");
}

/// A failed zvfs run: its exit code and stderr.
fn refused(args: &[&str]) -> (i32, String) {
    let out = zvfs(args);
    assert!(!out.status.success(), "zvfs {args:?} succeeded");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_refuses_the_reserved_version_tag() {
    let t = tempfile::tempdir().unwrap();
    let files = test_files();
    let (meta, _, _) = dir_flist(t.path(), "store", &files);
    let m = meta_arg(&meta);
    zvfs_ok(&["config", "-m", &m, "tag", "add", "-t", "author=me"]);
    let before = std::fs::read(&meta).unwrap();
    for args in [
        vec!["tag", "add", "-t", "version=zvfs-99"],
        vec!["tag", "add", "-t", "version=x"],
        vec!["tag", "add", "-t", "release=2", "--tag", "version=zvfs-1"],
        vec!["tag", "delete", "-k", "version"],
        vec!["tag", "delete", "-k", "author", "-k", "version"],
    ] {
        let mut all = vec!["config", "-m", &m];
        all.extend(&args);
        let (code, err) = refused(&all);
        assert_eq!(code, 2, "{args:?}: a usage error: {err}");
        assert!(
            err.contains("`version` tag is reserved") && err.contains("release"),
            "{args:?}: {err}"
        );
        assert_eq!(std::fs::read(&meta).unwrap(), before, "{args:?} changed it");
    }
    let tags = zvfs_ok(&["config", "-m", &m, "tag", "list"]);
    assert_eq!(tags, "author=me\nversion=zvfs-1\n");
    assert!(zvfs_ok(&["inspect", "-m", &m]).contains("zvfs-1"));
    assert_reads_back(&meta, &files);
    assert!(common::names_containing(t.path(), "zvfs-edit").is_empty());

    // pack refuses it through the same check
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let out_fl = t.path().join("out.fl");
    let (code, err) = refused(&[
        "pack",
        "-m",
        out_fl.to_str().unwrap(),
        "-s",
        &dir_url(&t.path().join("s2")),
        "--tag",
        "version=3",
        src.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`version` tag is reserved"), "{err}");
    assert!(!out_fl.exists() && !t.path().join("s2").exists());

    // An flist whose marker an older zvfs let someone change: every command says which
    // file and which value, and how to put the marker back.
    for bad in ["zvfs-99", "zvfs-x"] {
        let c = rusqlite::Connection::open(&meta).unwrap();
        c.execute("UPDATE tag SET value = ?1 WHERE key = 'version'", [bad])
            .unwrap();
        drop(c);
        for args in [
            vec!["config", "-m", &m, "tag", "list"],
            vec!["config", "-m", &m, "tag", "delete", "-k", "author"],
            vec!["inspect", "-m", &m],
        ] {
            let (code, err) = refused(&args);
            assert_eq!(code, 1, "{err}");
            assert!(
                err.contains(&m) && err.contains(&format!("version=\"{bad}\"")),
                "{args:?}: {err}"
            );
            assert!(err.contains("UPDATE tag SET value='zvfs-1'"), "{err}");
        }
        // the repair the message gives works
        let c = rusqlite::Connection::open(&meta).unwrap();
        c.execute("UPDATE tag SET value='zvfs-1' WHERE key='version'", [])
            .unwrap();
        drop(c);
        assert_reads_back(&meta, &files);
    }
}

/// `-s` values no store can use: each with what the error must say.
const BAD_STORES: &[(&str, &str)] = &[
    ("http://[::1", "invalid IPv6 address"),
    ("https://user:sekrit@[::1/store", "invalid IPv6 address"),
    ("http://127.0.0.1:99999/x", "invalid port"),
    ("dir://relative/path", "must be absolute"),
    ("dir://", "no path"),
    ("dir:///srv/store?layout=nested", "unknown layout"),
    ("zdb://user:sekrit@[::1/ns", "bad host or port"),
    ("redis://h st/ns", "bad host"),
    ("s3://AK:sekrit@127.0.0.1:3900", "no bucket"),
    ("s3://AK:sekrit@[::1/bucket", "invalid IPv6 address"),
    ("ftp://127.0.0.1/x", "unsupported store URL"),
    ("00-zz=dir:///srv/store", "route range must be xx-xx"),
    ("0-7f=dir:///srv/store", "route range must be xx-xx"),
    ("80-00=zdb://user:sekrit@127.0.0.1/ns", "empty route range"),
];

/// The URL part of a `[xx-xx=]URL` argument as error messages show it.
fn shown(spec: &str) -> String {
    match spec.split_once('=') {
        Some((range, url)) if !range.contains("://") => {
            format!("{range}={}", store::redact(url))
        }
        _ => store::redact(spec),
    }
}

#[test]
fn bad_store_urls_are_refused_before_anything_is_done() {
    let t = tempfile::tempdir().unwrap();
    let files = test_files();
    let (meta, st, _) = dir_flist(t.path(), "store", &files);
    let m = meta_arg(&meta);
    let flist_before = std::fs::read(&meta).unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), b"content").unwrap();
    let good = dir_url(&t.path().join("good-store"));
    let out_fl = t.path().join("out.fl");
    let cache = t.path().join("cache");
    let target = t.path().join("mnt");
    let unpacked = t.path().join("unpacked");
    std::fs::create_dir(&target).unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_string();
    for (bad, why) in BAD_STORES {
        let commands: Vec<Vec<String>> = vec![
            vec!["pack", "-m", &p(&out_fl), "-s", &good, "-s", bad, &p(&src)],
            vec![
                "mount",
                "-d",
                "-m",
                &m,
                "-c",
                &p(&cache),
                "-s",
                bad,
                &p(&target),
            ],
            vec!["cat", "-m", &m, "-s", bad, "/small.txt"],
            vec![
                "unpack",
                "-m",
                &m,
                "-c",
                &p(&cache),
                "-s",
                bad,
                &p(&unpacked),
            ],
            vec!["warm", "-m", &m, "-c", &p(&cache), "-s", bad],
            vec!["verify", "-m", &m, "-s", bad],
            vec!["clone", "-m", &m, "-s", bad, "--update-routes"],
            vec!["config", "-m", &m, "store", "add", "-s", bad],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(str::to_string).collect())
        .collect();
        for args in commands {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = zvfs(&args);
            // never leave a mount behind, whatever happened
            if common::is_mounted(&target) {
                let _ = zvfs(&["umount", &p(&target)]);
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(&shown(bad)), "{args:?}: {err}");
            assert!(err.contains(why), "{args:?}: {err}");
            assert!(!err.contains("sekrit"), "{args:?}: password shown: {err}");
            assert!(out.stdout.is_empty(), "{args:?} printed something");
        }
        // nothing was written anywhere
        assert!(!out_fl.exists(), "{bad}: pack wrote its flist");
        assert!(
            !t.path().join("good-store").exists(),
            "{bad}: pack stored chunks"
        );
        assert!(!cache.exists(), "{bad}: a cache was created");
        assert!(!unpacked.exists(), "{bad}: unpack created its target");
        assert_eq!(
            std::fs::read(&meta).unwrap(),
            flist_before,
            "{bad}: flist changed"
        );
        let left = common::names_containing(t.path(), "zvfs-");
        assert!(left.is_empty(), "{bad}: leftovers {left:?}");
    }
    assert_eq!(
        zvfs_ok(&["config", "-m", &m, "store", "list"]).trim(),
        format!("00-ff={}", dir_url(&st))
    );

    // Good URLs of every kind are accepted (recorded without connecting to anything),
    // the dir layouts included.
    let good_urls = [
        "dir:///srv/store",
        "dir:///srv/flat?layout=flat",
        "00-7f=dir:///srv/sharded?layout=sharded",
        "zdb://u:sekrit@127.0.0.1:9900/ns",
        "80-ff=zdb://[::1]:9900/ns",
        "zdb:///run/zdb.sock",
        "redis://u:sekrit@/run/redis.sock?ns=x",
        "http://[::1]:8080/store",
        "https://hub.example/store/",
        "s3://AK:sekrit@127.0.0.1:3900/bucket?region=garage",
        "00-0f=s3s://host.example/bucket",
    ];
    let mut args = vec!["config", "-m", &m, "store", "add"];
    for g in &good_urls {
        args.extend(["-s", g]);
    }
    zvfs_ok(&args);
    let routes = zvfs_ok(&["config", "-m", &m, "store", "list"]);
    for want in [
        "00-ff=dir:///srv/flat?layout=flat\n",
        "00-7f=dir:///srv/sharded?layout=sharded\n",
        "80-ff=zdb://[::1]:9900/ns\n",
        "00-ff=redis://u@/run/redis.sock?ns=x\n",
        "00-ff=http://[::1]:8080/store\n",
        "00-0f=s3s://host.example/bucket\n",
    ] {
        assert!(routes.contains(want), "{want} missing from {routes}");
    }
    // pack, cat and mount take good ones (a dir store given as an absolute path)
    pack_and_read_with(t.path(), &src, &good);
}

/// `pack -s URL` (plus ranges over the same store) then `cat -s URL` reads it back.
fn pack_and_read_with(dir: &Path, src: &Path, url: &str) {
    let fl = dir.join("good.fl");
    let (lo, hi) = (format!("00-7f={url}"), format!("80-ff={url}"));
    zvfs_ok(&[
        "pack",
        "-m",
        fl.to_str().unwrap(),
        "-s",
        &lo,
        "-s",
        &hi,
        src.to_str().unwrap(),
    ]);
    let out = zvfs_ok(&["cat", "-m", fl.to_str().unwrap(), "-s", url, "/d/f"]);
    assert_eq!(out, "content");
}
