//! Faults between zvfs and its stores: `scripts/wanproxy.py --fault` in front of a real
//! redis-server (the 0-db protocol) and python's http.server stalls, resets, truncates,
//! drips, flips a bit, lies about a length or refuses, on every connection or only the
//! first. Through a mount, a `cat`, an `unpack` and a `clone`, every fault must end in the
//! right bytes or a clear error within the deadline: never wrong bytes, never a hang, never
//! a corrupt cache file, never a wrong object in a clone's destination. The outcomes are
//! printed as the table in the README ("Faults between zvfs and its stores").

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::*;

/// Tight timeouts, so that a fault costs seconds: 1 s without progress, 3 s per chunk.
const TIMEOUTS: [&str; 6] = [
    "--connect-timeout",
    "1",
    "--io-timeout",
    "1",
    "--deadline",
    "3",
];
/// Longest an operation may take under any fault (its chunks' deadlines, with margin).
const BOUND: Duration = Duration::from_secs(40);

/// The faults: the proxy's `--fault` kind and the reply byte it strikes at.
const FAULTS: [(&str, usize); 7] = [
    ("stall", 64),
    ("reset", 64),
    ("truncate", 64),
    ("drip:100", 64),
    ("flip", 3000),
    ("length", 0),
    ("refuse", 0),
];

/// An flist of three files (3 chunks, 1 chunk, a small one) in a sharded dir store, the
/// same chunks in a redis-server, and the dir store served over HTTP.
pub(crate) struct World {
    pub(crate) fl: PathBuf,
    store: PathBuf,
    files: Vec<(String, Vec<u8>)>,
    redis: Server,
    http: HttpServer,
}

pub(crate) fn world(dir: &Path) -> World {
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    let files = vec![
        ("big".to_string(), noise(11, 1_300_000)),
        ("mid".to_string(), noise(13, 300_000)),
        ("small".to_string(), noise(15, 9_000)),
    ];
    for (n, d) in &files {
        std::fs::write(src.join(n), d).unwrap();
    }
    let store = dir.join("store");
    let fl = dir.join("w.fl");
    pack(
        &fl,
        &format!("{}?layout=sharded", dir_url(&store)),
        &[],
        &src,
    );
    let redis = redis_server(false);
    let copy = dir.join("to-redis.fl");
    std::fs::copy(&fl, &copy).unwrap();
    zvfs_ok(&[
        "clone",
        "-m",
        s(&copy),
        "-s",
        &format!("zdb://127.0.0.1:{}", redis.port),
    ]);
    let http = http_server(&store);
    World {
        fl,
        store,
        files,
        redis,
        http,
    }
}

/// How one operation ended.
#[derive(Debug)]
enum Outcome {
    /// Every byte right.
    Right,
    /// A clear error (its text).
    Error(String),
}

impl Outcome {
    fn cell(&self) -> String {
        match self {
            Outcome::Right => "right bytes".into(),
            Outcome::Error(e) if e.starts_with("EIO") => "EIO".into(),
            Outcome::Error(e) => format!("error: {}", first_words(e)),
        }
    }
}

/// The reason of an error, short: what the store attempt said (after `tried URL: `), or
/// the start of the error line.
fn first_words(e: &str) -> String {
    let line = e
        .lines()
        .find(|l| l.starts_with("zvfs: error:"))
        .or_else(|| e.lines().last())
        .unwrap_or("")
        .trim();
    let line = line.strip_prefix("zvfs: error: ").unwrap_or(line);
    let reason = match line.split_once("tried ") {
        Some((_, rest)) => rest.split_once(": ").map_or(rest, |(_, r)| r),
        None => line,
    };
    let mut w: String = reason.chars().take(48).collect();
    if reason.chars().count() > 48 {
        w.push_str("...");
    }
    w.replace('|', "/")
}

/// A failed command must say where: the store's address, or the chunk.
fn clear(stderr: &str, addr: &str) -> bool {
    stderr.contains(addr) || stderr.contains("chunk")
}

/// `zvfs ARGS`; panics when it outlives [`BOUND`].
fn bounded(args: &[String]) -> (bool, Vec<u8>, String) {
    use std::io::Read;
    let mut child = Command::new(zvfs_bin())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Drained meanwhile: a full pipe would stop the child.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > BOUND {
            let _ = child.kill();
            panic!("zvfs {args:?} hung past {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.success(),
        out.join().unwrap(),
        String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    )
}

fn args(parts: &[&str]) -> Vec<String> {
    parts
        .iter()
        .chain(TIMEOUTS.iter())
        .map(|a| a.to_string())
        .collect()
}

fn op_cat(w: &World, url: &str, addr: &str, _dir: &Path) -> Outcome {
    let (ok, out, err) = bounded(&args(&["cat", "-m", s(&w.fl), "-s", url, "/big"]));
    if ok {
        assert!(out == w.files[0].1, "cat over {url} gave wrong bytes");
        Outcome::Right
    } else {
        assert!(clear(&err, addr), "cat over {url}: unclear error: {err}");
        Outcome::Error(err)
    }
}

fn op_unpack(w: &World, url: &str, addr: &str, dir: &Path) -> Outcome {
    let out_dir = dir.join("unpacked");
    let (ok, _, err) = bounded(&args(&["unpack", "-m", s(&w.fl), "-s", url, s(&out_dir)]));
    // Whatever is there is right: a file is complete or absent.
    for (n, d) in &w.files {
        if let Ok(got) = std::fs::read(out_dir.join(n)) {
            assert!(
                &got == d,
                "unpack over {url} left wrong bytes in {n} (ok={ok}): {err}"
            );
        } else {
            assert!(!ok, "unpack over {url} succeeded without {n}");
        }
    }
    if ok {
        Outcome::Right
    } else {
        assert!(clear(&err, addr), "unpack over {url}: unclear error: {err}");
        Outcome::Error(err)
    }
}

fn op_clone(w: &World, url: &str, addr: &str, dir: &Path) -> Outcome {
    let fl = dir.join("clone.fl");
    std::fs::copy(&w.fl, &fl).unwrap();
    zvfs_ok(&["config", "-m", s(&fl), "store", "delete", "--all"]);
    // The route keeps its password: the clone reads with the route alone.
    zvfs_ok(&[
        "config",
        "-m",
        s(&fl),
        "store",
        "add",
        "--no-strip-password",
        "-s",
        url,
    ]);
    let dest = dir.join("dest");
    let dest_url = format!("{}?layout=sharded", dir_url(&dest));
    let (ok, _, err) = bounded(&args(&["clone", "-m", s(&fl), "-s", &dest_url]));
    // Every object that reached the destination is the source's, byte for byte.
    for f in files_under(&dest) {
        let rel = f.strip_prefix(&dest).unwrap();
        if rel.to_string_lossy().starts_with('.') {
            continue;
        }
        let want = std::fs::read(w.store.join(rel))
            .unwrap_or_else(|_| panic!("clone over {url} wrote an unknown object {rel:?}"));
        assert!(
            std::fs::read(&f).unwrap() == want,
            "clone over {url} wrote a wrong object {rel:?}"
        );
    }
    if ok {
        zvfs_ok(&["verify", "--deep", "-m", s(&fl), "-s", &dest_url]);
        Outcome::Right
    } else {
        assert!(clear(&err, addr), "clone over {url}: unclear error: {err}");
        Outcome::Error(err)
    }
}

fn op_mount(w: &World, url: &str, _addr: &str, dir: &Path) -> Outcome {
    let cache = dir.join("cache");
    let log = dir.join("mount.log");
    let mnt = dir.join("mnt");
    let mut a = vec![
        "-m".to_string(),
        s(&w.fl).to_string(),
        "-c".into(),
        s(&cache).into(),
        "-s".into(),
        url.into(),
        "-l".into(),
        s(&log).into(),
    ];
    a.extend(TIMEOUTS.iter().map(|t| t.to_string()));
    let m = Mount::daemon(&mnt, &a);
    let start = Instant::now();
    let mut errors = Vec::new();
    for (n, d) in &w.files {
        match std::fs::read(mnt.join(n)) {
            Ok(got) => assert!(&got == d, "mount over {url}: wrong bytes in {n}"),
            Err(e) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::EIO),
                    "mount over {url}: {n}: {e}"
                );
                errors.push(format!("{n}: EIO"));
            }
        }
    }
    assert!(start.elapsed() < BOUND, "mount over {url}: reads hung");
    drop(m);
    let (ok, _, err) = bounded(&["cache".into(), "fsck".into(), "-c".into(), s(&cache).into()]);
    assert!(ok, "mount over {url}: cache fsck after the fault: {err}");
    if errors.is_empty() {
        Outcome::Right
    } else {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            logged.contains("chunk"),
            "mount over {url}: the log names no chunk:\n{logged}"
        );
        Outcome::Error(format!("EIO ({})", errors.join(", ")))
    }
}

type Op = fn(&World, &str, &str, &Path) -> Outcome;

/// Run every fault x operation x (every connection | the first only) against each store
/// (`name`, the real server's port, its URL with `{addr}` for the proxy's address),
/// asserting each outcome; prints the table.
pub(crate) fn matrix(w: &World, stores: &[(&'static str, u16, String)]) {
    let ops: [(&str, Op); 4] = [
        ("mount", op_mount),
        ("cat", op_cat),
        ("unpack", op_unpack),
        ("clone", op_clone),
    ];
    let mut cases = Vec::new();
    for (store, port, url) in stores {
        for (fault, after) in FAULTS {
            for conns in [0usize, 1] {
                cases.push((*store, *port, url.clone(), fault, after, conns));
            }
        }
        cases.push((*store, 0, url.clone(), "no listener", 0, 0));
    }
    let rows = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some((store, port, url, fault, after, conns)) = cases.get(i).cloned() else {
                    return;
                };
                let proxy = (port != 0).then(|| Proxy::fault(port, fault, after, conns));
                let p = proxy.as_ref().map(|p| p.port).unwrap_or_else(dead_port);
                let addr = format!("127.0.0.1:{p}");
                let url = url.replace("{addr}", &addr);
                let mut cells = Vec::new();
                for (name, op) in ops {
                    let dir = tempfile::tempdir().unwrap();
                    let t = Instant::now();
                    eprintln!("faults: {store} {fault} conns={conns} {name} ...");
                    let o = op(w, &url, &addr, dir.path());
                    eprintln!("faults: {store} {fault} conns={conns} {name}: {o:?}");
                    cells.push(format!("{} ({:.1} s)", o.cell(), t.elapsed().as_secs_f64()));
                }
                let which = if conns == 0 {
                    "every connection"
                } else {
                    "first connection"
                };
                rows.lock().unwrap().push((store, fault, which, cells));
            });
        }
    });
    let mut rows = rows.into_inner().unwrap();
    rows.sort();
    println!("| store | fault | on | mount | cat | unpack | clone |");
    println!("|---|---|---|---|---|---|---|");
    for (store, fault, which, cells) in &rows {
        println!("| {store} | {fault} | {which} | {} |", cells.join(" | "));
    }
    // A fault of the first connection only leaves the later ones whole: some operation
    // must then end with the right bytes, for every store.
    for (store, _, _) in stores {
        assert!(
            rows.iter().any(|r| r.0 == *store
                && r.2 == "first connection"
                && r.3.iter().all(|c| c.starts_with("right"))),
            "{store}: no first-connection fault was ever recovered from"
        );
    }
}

fuse_test! {
    /// Every fault x operation x (all connections | the first only), over redis and HTTP.
    fn every_fault_gives_the_right_bytes_or_a_clear_error_in_time() {
        let tmp = tmp();
        let w = world(tmp.path());
        let stores = [
            ("redis", w.redis.port, "zdb://{addr}".to_string()),
            ("http", w.http.port, "http://{addr}".to_string()),
        ];
        matrix(&w, &stores);
    }
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    free_port()
}
