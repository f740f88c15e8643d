//! The mount-time prefetch of a recorded trace (`zvfs prefetch add`): it fetches the
//! listed chunks in the trace's order, reads on demand overtake it, and it stops at the
//! cache's bound. Real FUSE mounts over the HTTP store (python's http.server, whose request
//! log gives the order of the fetches), behind `scripts/wanproxy.py` where the link must
//! be slow.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;

/// Six files of two 512 KiB chunks of noise, packed into a sharded dir store: (flist,
/// store, file contents, chunk ids by path).
struct Packed {
    fl: PathBuf,
    store: PathBuf,
    files: Vec<Vec<u8>>,
    ids: std::collections::BTreeMap<String, Vec<(String, String)>>,
}

fn packed(dir: &Path) -> Packed {
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    let mut files = Vec::new();
    for i in 0..6 {
        let data = noise(100 + 2 * i, 1 << 20);
        std::fs::write(src.join(format!("f{i}")), &data).unwrap();
        files.push(data);
    }
    let store = dir.join("store");
    let fl = dir.join("p.fl");
    pack(
        &fl,
        &format!("{}?layout=sharded", dir_url(&store)),
        &[],
        &src,
    );
    let ids = blocks_by_path(&fl);
    Packed {
        fl,
        store,
        files,
        ids,
    }
}

impl Packed {
    /// The id of chunk `chunk` of file `f<file>`.
    fn id(&self, file: usize, chunk: usize) -> String {
        self.ids[&format!("f{file}")][chunk].0.clone()
    }

    /// Put a trace of (file, chunk) first reads (and `extra` raw lines) into the flist.
    fn add_trace(&self, dir: &Path, reads: &[(usize, usize)], extra: &[&str]) {
        let mut text = String::from("# zvfs trace v1\n");
        for (n, (f, c)) in reads.iter().enumerate() {
            text.push_str(&format!("{} {c} /f{f}\n", n * 10));
        }
        for l in extra {
            text.push_str(l);
            text.push('\n');
        }
        let trace = dir.join("t.trace");
        std::fs::write(&trace, text).unwrap();
        run_ok(&["prefetch", "add", "-m", s(&self.fl), s(&trace)]);
    }
}

/// The chunk ids fetched from the HTTP store, in the order it served them.
fn fetched_ids(http: &HttpServer) -> Vec<String> {
    http.get_paths(200)
        .into_iter()
        .filter_map(|p| p.rsplit('/').next().map(str::to_string))
        .collect()
}

/// Wait until the daemon's log says the prefetch ended; returns that line.
fn prefetch_end(log: &Path) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text
            .lines()
            .find(|l| l.contains("prefetch ") && l.contains("chunks fetched"))
        {
            return l.to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the prefetch did not end; log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `zvfs mount -d` of the flist over `store_url` with its own cache and log.
fn mount(dir: &Path, fl: &Path, store_url: &str, extra: &[&str]) -> (PathBuf, PathBuf, Mount) {
    let mnt = dir.join("mnt");
    let log = dir.join("mount.log");
    let mut args: Vec<String> = vec![
        "-m".into(),
        s(fl).into(),
        "-c".into(),
        s(&dir.join("cache")).into(),
    ];
    args.extend([
        "-s".into(),
        store_url.to_string(),
        "-l".into(),
        s(&log).into(),
    ]);
    args.extend(extra.iter().map(|a| a.to_string()));
    let m = Mount::daemon(&mnt, &args);
    (mnt, log, m)
}

fuse_test! {
    fn a_recorded_trace_is_prefetched_in_its_order() {
        let tmp = tmp();
        let p = packed(tmp.path());
        let order = [(3, 1), (0, 0), (5, 1), (1, 0), (3, 0)];
        p.add_trace(tmp.path(), &order, &["60 0 /no/such/file"]);
        let http = http_server(&p.store);
        let url = format!("http://127.0.0.1:{}", http.port);
        let (mnt, log, _m) = mount(tmp.path(), &p.fl, &url, &["--prefetch-parallel", "1"]);
        let end = prefetch_end(&log);
        assert!(end.contains("done: 5 of 5 chunks fetched"), "{end}");
        let want: Vec<String> = order.iter().map(|&(f, c)| p.id(f, c)).collect();
        assert_eq!(fetched_ids(&http), want, "fetched in the trace's order, nothing else");
        // what was prefetched is read from the cache: only the other chunks are fetched
        assert_eq!(std::fs::read(mnt.join("f3")).unwrap(), p.files[3]);
        assert_eq!(std::fs::read(mnt.join("f2")).unwrap(), p.files[2]);
        let after = fetched_ids(&http);
        assert_eq!(&after[..5], &want[..]);
        let mut rest = after[5..].to_vec();
        rest.sort();
        let mut f2 = vec![p.id(2, 0), p.id(2, 1)];
        f2.sort();
        assert_eq!(rest, f2, "f3 came from the cache");
    }
}

fuse_test! {
    fn reads_on_demand_overtake_the_prefetch() {
        let tmp = tmp();
        let p = packed(tmp.path());
        // every chunk of every file, f5's last chunk last
        let order: Vec<(usize, usize)> = (0..6).flat_map(|f| [(f, 0), (f, 1)]).collect();
        p.add_trace(tmp.path(), &order, &[]);
        let http = http_server(&p.store);
        // 512 KiB of noise takes ~0.5 s at 8 Mbit/s: the prefetch of 12 chunks one at a
        // time takes ~7 s.
        let slow = Proxy::wan(http.port, 50, 8);
        let url = format!("http://127.0.0.1:{}", slow.port);
        let (mnt, log, _m) = mount(tmp.path(), &p.fl, &url, &["--prefetch-parallel", "1"]);
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        let f = std::fs::File::open(mnt.join("f5")).unwrap();
        let mut buf = vec![0u8; 4096];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, (1 << 20) - 4096).unwrap();
        let took = t.elapsed();
        assert_eq!(&buf[..], &p.files[5][(1 << 20) - 4096..]);
        let end = prefetch_end(&log);
        let ids = fetched_ids(&http);
        let demand = ids.iter().position(|i| *i == p.id(5, 1)).expect("f5's chunk 1 was fetched");
        assert!(
            demand < 6,
            "the read's chunk (last in the trace) was fetched {}th of {}, within {took:?}; {end}",
            demand + 1,
            ids.len()
        );
        assert_eq!(ids.len(), 12, "each chunk fetched once: {ids:?}");
        assert!(end.contains("12 chunks"), "{end}");
    }
}

fuse_test! {
    fn the_prefetch_stops_at_the_cache_bound() {
        let tmp = tmp();
        let p = packed(tmp.path());
        let order: Vec<(usize, usize)> = (0..6).flat_map(|f| [(f, 0), (f, 1)]).collect();
        p.add_trace(tmp.path(), &order, &[]);
        let http = http_server(&p.store);
        let url = format!("http://127.0.0.1:{}", http.port);
        let bound: u64 = 3 << 20;
        let (mnt, log, _m) = mount(
            tmp.path(),
            &p.fl,
            &url,
            &["--cache-size", &bound.to_string(), "--prefetch-parallel", "4"],
        );
        let end = prefetch_end(&log);
        assert!(end.contains("stopped at the cache's bound"), "{end}");
        let used = du(&tmp.path().join("cache"));
        assert!(used <= bound, "cache holds {used} bytes, bound {bound}");
        let fetched = fetched_ids(&http).len();
        assert!((2..12).contains(&fetched), "{fetched} chunks prefetched; {end}");
        // every file still reads right (reads evict as they must)
        for (i, data) in p.files.iter().enumerate() {
            assert_eq!(&std::fs::read(mnt.join(format!("f{i}"))).unwrap(), data);
        }
        assert!(du(&tmp.path().join("cache")) <= bound);
    }
}

/// Bytes of the regular files under `dir` (the chunk files of a cache).
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}
