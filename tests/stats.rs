//! `zvfs mounts --stats`: the daemon's live counters over its stats socket, checked
//! against what a real redis store served, and answered while a read is stuck on it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use zvfs::codec::CHUNK_SIZE;
use zvfs::flist::{Route, ROOT_INO};
use zvfs::store::router::Router;
use zvfs::store::StoreConfig;

/// `zvfs mounts --stats --json TARGET`: the one report, parsed.
fn stats_of(target: &Path) -> serde_json::Value {
    let out = zvfs_ok(&["mounts", "--stats", "--json", target.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let a = v.as_array().expect("a JSON array");
    assert_eq!(a.len(), 1, "{out}");
    a[0].clone()
}

fn u(v: &serde_json::Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(|x| x.as_u64())
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fuse_test! {
    fn stats_count_what_the_store_served_and_answer_while_reads_hang() {
        let redis = redis_server(false);
        let t = tmp();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let files = [
            ("a.bin", noise(1, 2 * CHUNK_SIZE + 1000)),
            ("b.bin", noise(2, CHUNK_SIZE)),
            ("c.bin", noise(3, 70_000)),
            ("late.bin", noise(4, 300_000)),
        ];
        for (n, d) in &files {
            std::fs::write(src.join(n), d).unwrap();
        }
        let url = format!("zdb://127.0.0.1:{}", redis.port);
        let fl = t.path().join("x.fl");
        pack(&fl, &url, &[], &src);

        // the distinct chunks of the files read first, and their stored sizes
        let flist = zvfs::flist::open(&fl).unwrap();
        let router = Router::new(
            &[Route { start: 0, end: 255, url: url.clone() }],
            &StoreConfig::default(),
        )
        .unwrap();
        let mut ids = BTreeSet::new();
        let mut stored = 0u64;
        for (n, _) in &files[..3] {
            let e = flist.lookup(ROOT_INO, n.as_bytes()).unwrap().unwrap();
            for c in flist.blocks(e.content_ino()).unwrap() {
                if ids.insert(c.id().to_vec()) {
                    stored += router.fetch_stored(&c).unwrap().len() as u64;
                }
            }
        }
        let n = ids.len() as u64;
        assert!(n >= 4, "{n} chunks");

        let mnt = t.path().join("mnt");
        let cache = t.path().join("cache");
        let m = Mount::daemon(
            &mnt,
            &["-m", s(&fl), "-c", s(&cache), "--readahead", "0", "--whole-file", "0"],
        );

        // before any read: the store is listed, nothing served, no latency yet
        let r = stats_of(&mnt);
        assert_eq!(u(&r, "/pid"), m.pid as u64);
        assert_eq!(r.pointer("/stats/stores/0/name").unwrap(), &serde_json::json!(url));
        assert_eq!(u(&r, "/stats/stores/0/chunks"), 0);
        assert!(r.pointer("/stats/stores/0/latency_ms_p50").unwrap().is_null());

        for (name, d) in &files[..3] {
            assert_eq!(&std::fs::read(mnt.join(name)).unwrap(), d, "{name}");
        }
        let r = stats_of(&mnt);
        let st = r.pointer("/stats/stores/0").unwrap();
        assert_eq!(u(st, "/chunks"), n, "{r}");
        assert_eq!(u(st, "/bytes"), stored, "{r}");
        assert_eq!(u(st, "/errors"), 0, "{r}");
        assert_eq!(u(st, "/failures"), 0, "{r}");
        assert_eq!(u(st, "/attempts"), n, "{r}");
        for q in ["latency_ms_p50", "latency_ms_p99"] {
            let l = st[q].as_f64().unwrap_or_else(|| panic!("{q} in {r}"));
            assert!(l > 0.0 && l < 10_000.0, "{q} {l}");
        }
        assert!(u(&r, "/stats/cache/misses") >= n, "{r}");
        assert_eq!(u(&r, "/stats/cache/fetches"), n, "{r}");
        let hits = u(&r, "/stats/cache/hits");
        assert!(r.pointer("/stats/prefetch/finished").unwrap().is_boolean());
        assert!(r.pointer("/stats/uptime_secs").unwrap().is_u64());

        // the same files again, past the kernel's page cache: hits, no new chunks
        let st = Command::new("sh")
            .args(["-c", "echo 3 > /proc/sys/vm/drop_caches"])
            .status()
            .unwrap();
        assert!(st.success());
        for (name, d) in &files[..3] {
            assert_eq!(&std::fs::read(mnt.join(name)).unwrap(), d, "{name}");
        }
        let r = stats_of(&mnt);
        assert_eq!(u(&r, "/stats/stores/0/chunks"), n, "{r}");
        assert!(u(&r, "/stats/cache/hits") >= hits + n, "{r}");

        // the readable form
        let text = zvfs_ok(&["mounts", "--stats", s(&mnt)]);
        assert!(
            text.contains(&format!("store {url}: {n} chunks, {stored} bytes")),
            "{text}"
        );
        assert!(text.contains("  cache: ") && text.contains("  prefetch: "), "{text}");

        // a read stuck on a stopped store does not hold the stats up
        signal(redis.child.id(), "-STOP");
        let late = mnt.join("late.bin");
        let reader = std::thread::spawn(move || std::fs::read(late));
        std::thread::sleep(Duration::from_millis(500));
        assert!(!reader.is_finished(), "the read did not wait for the store");
        let t0 = Instant::now();
        let r = stats_of(&mnt);
        let took = t0.elapsed();
        assert!(!reader.is_finished(), "the store was resumed too early");
        signal(redis.child.id(), "-CONT");
        assert!(took < Duration::from_secs(1), "stats took {took:?}");
        assert_eq!(u(&r, "/stats/stores/0/chunks"), n, "{r}");
        assert_eq!(reader.join().unwrap().unwrap(), files[3].1);
        let r = stats_of(&mnt);
        assert_eq!(u(&r, "/stats/stores/0/chunks"), n + 1, "{r}");

        // a daemon whose registry entry names no socket (an older zvfs)
        let entry = zvfs::sys::registry::run_dir().join(format!("{}.json", m.pid));
        let mut state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
        state.as_object_mut().unwrap().remove("socket");
        std::fs::write(&entry, serde_json::to_vec(&state).unwrap()).unwrap();
        let text = zvfs_ok(&["mounts", "--stats", s(&mnt)]);
        assert!(text.contains("no stats (daemon predates --stats)"), "{text}");
        let r = stats_of(&mnt);
        assert!(r["stats"].is_null(), "{r}");
    }
}

/// Polls the mount's store counter until it reaches `want` (or 10 s pass); its last value.
fn chunks_served(mnt: &Path, want: u64) -> u64 {
    let t0 = Instant::now();
    loop {
        let got = u(&stats_of(mnt), "/stats/stores/0/chunks");
        if got >= want || t0.elapsed() > Duration::from_secs(10) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads 4 KiB at `offset` of `path` with one pread, as a page fault of a mapped file does.
fn pread(path: &Path, offset: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 4096];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}

fuse_test! {
    fn a_small_file_is_fetched_whole_at_its_first_read() {
        let t = tmp();
        let small = noise(5, 6 * CHUNK_SIZE);
        let big = noise(6, 20 * CHUNK_SIZE);
        let (_redis, fl) = packed_on_redis(t.path(), &[("small.so", &small), ("big.bin", &big)]);
        let at = 5 * CHUNK_SIZE as u64 + 1000;
        let slice = |d: &[u8]| d[at as usize..at as usize + 4096].to_vec();

        // the default: one read of the last chunk of a 6-chunk file brings all 6, and a
        // 20-chunk file (over the default 16) only the chunk read
        let mnt = t.path().join("mnt");
        let m = Mount::daemon(
            &mnt,
            &["-m", s(&fl), "-c", s(&t.path().join("cache")), "--readahead", "0"],
        );
        assert_eq!(pread(&mnt.join("small.so"), at), slice(&small));
        assert_eq!(chunks_served(&mnt, 6), 6);
        assert_eq!(std::fs::read(mnt.join("small.so")).unwrap(), small);
        assert_eq!(pread(&mnt.join("big.bin"), at), slice(&big));
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(chunks_served(&mnt, 7), 7, "only the chunk read of big.bin");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(u(&stats_of(&mnt), "/stats/stores/0/chunks"), 7);
        drop(m);

        // --whole-file 0: the chunk read and nothing else
        let mnt = t.path().join("mnt0");
        let _m = Mount::daemon(
            &mnt,
            &["-m", s(&fl), "-c", s(&t.path().join("cache0")), "--readahead", "0", "--whole-file", "0"],
        );
        assert_eq!(pread(&mnt.join("small.so"), at), slice(&small));
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(u(&stats_of(&mnt), "/stats/stores/0/chunks"), 1);
    }
}

/// A redis-server and `DIR/x.fl`: `files` (name, content) packed into it from `DIR/src`.
fn packed_on_redis(dir: &Path, files: &[(&str, &[u8])]) -> (Server, std::path::PathBuf) {
    let redis = redis_server(false);
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    for (name, data) in files {
        std::fs::write(src.join(name), data).unwrap();
    }
    let fl = dir.join("x.fl");
    pack(&fl, &format!("zdb://127.0.0.1:{}", redis.port), &[], &src);
    (redis, fl)
}

/// Read `path` start to end with 1 MiB reads (as `dd bs=1M` would).
fn read_through(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fuse_test! {
    fn fetches_in_flight_follow_the_measured_link() {
        let t = tmp();
        let big = noise(7, 48 * CHUNK_SIZE);
        let (redis, fl) = packed_on_redis(t.path(), &[("big.bin", &big)]);

        // A long fat link: 40 ms each way, 400 Mbit/s (a bandwidth-delay product of 8
        // chunks). A sequential reader gets more fetches in flight than the 4 a local
        // store gets, as many as the measured link asks for, never more than the bound.
        let proxy = Proxy::wan(redis.port, 40, 400);
        let via = format!("zdb://127.0.0.1:{}", proxy.port);
        let mount = |name: &str, store: &str, extra: &[&str]| {
            let mnt = t.path().join(name);
            let cache = t.path().join(format!("cache-{name}"));
            let mut args = vec!["-m", s(&fl), "-c", s(&cache), "-s", store];
            args.extend_from_slice(extra);
            (Mount::daemon(&mnt, &args), mnt)
        };
        let (m, mnt) = mount("fat", &via, &[]);
        assert!(read_through(&mnt.join("big.bin")) == big, "big.bin read back wrong");
        let st = stats_of(&mnt);
        let link = &st["stats"]["link"];
        eprintln!("long fat link: {link}");
        let rtt = link["rtt_ms"].as_f64().unwrap();
        assert!((80.0..2000.0).contains(&rtt), "round trip {rtt} ms: {st}");
        let (peak, target) = (u(&st, "/stats/link/peak"), u(&st, "/stats/link/target"));
        assert!(target > 4 && target <= 32, "kept in flight: {target}: {st}");
        // more than the 6 on-demand fetch slots, and no more than the bound and them
        assert!(peak > 6 && peak <= 32 + 6, "at most {peak} in flight: {st}");
        assert_eq!(u(&st, "/stats/link/inflight"), 0);
        let text = zvfs_ok(&["mounts", "--stats", s(&mnt)]);
        assert!(text.contains("kept in flight ahead of readers"), "{text}");
        drop(m);

        // --max-inflight bounds it
        let (m, mnt) = mount("bounded", &via, &["--max-inflight", "5"]);
        assert!(read_through(&mnt.join("big.bin")) == big);
        let st = stats_of(&mnt);
        eprintln!("--max-inflight 5: {}", st["stats"]["link"]);
        assert_eq!(u(&st, "/stats/link/target"), 5, "{st}");
        assert!(u(&st, "/stats/link/peak") <= 5 + 6, "{st}");
        drop(m);

        // the store on loopback itself: a local link keeps the minimum
        let (_m, mnt) = mount("local", &format!("zdb://127.0.0.1:{}", redis.port), &[]);
        assert!(read_through(&mnt.join("big.bin")) == big);
        let st = stats_of(&mnt);
        assert_eq!(u(&st, "/stats/link/target"), 4, "{st}");
    }
}
