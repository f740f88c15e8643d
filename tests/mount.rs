//! `zvfs mount` over real FUSE mounts: the tree, attributes, xattrs and specials, reads
//! under concurrency, the bounded shared cache, crash recovery, integrity, big
//! directories, daemon mode, signals and the `cache` subcommands.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use zvfs::codec::{v2, ChunkRef, CHUNK_SIZE};
use zvfs::flist::v2::{NewEntry, V2Writer};
use zvfs::flist::{Ino, Route};
use zvfs::store::router::Router;
use zvfs::store::StoreConfig;

// ---------- helpers ----------

/// Deterministic pseudo-random bytes (xorshift), distinct per seed.
/// Builds a test flist with `V2Writer`, its chunks going to a dir store.
struct FlBuilder {
    w: V2Writer,
    router: Router,
    fl: PathBuf,
}

impl FlBuilder {
    fn new(fl: &Path, store: &Path) -> FlBuilder {
        std::fs::create_dir_all(store).unwrap();
        let route = Route {
            start: 0,
            end: 255,
            url: dir_url(store),
        };
        let router = Router::new(std::slice::from_ref(&route), &StoreConfig::default()).unwrap();
        let w = V2Writer::create(fl).unwrap();
        w.add_route(&route).unwrap();
        let root = w
            .add_entry(&NewEntry {
                parent: 0,
                name: b"/",
                mode: 0o40755,
                uid: 0,
                gid: 0,
                size: 4096,
                rdev: 0,
                mtime: 1_600_000_000,
                ctime: 1_600_000_000,
            })
            .unwrap();
        assert_eq!(root, 1);
        FlBuilder {
            w,
            router,
            fl: fl.to_path_buf(),
        }
    }

    /// `dir/<name>`, its chunks in `dir/store`.
    fn in_dir(dir: &Path, name: &str) -> FlBuilder {
        FlBuilder::new(&dir.join(name), &dir.join("store"))
    }

    fn entry(&self, parent: Ino, name: &str, mode: u32, size: u64, rdev: u64) -> Ino {
        self.w
            .add_entry(&NewEntry {
                parent,
                name: name.as_bytes(),
                mode,
                uid: 1000,
                gid: 2000,
                size,
                rdev,
                mtime: 1_600_000_123,
                ctime: 1_600_000_456,
            })
            .unwrap()
    }

    fn dir(&self, parent: Ino, name: &str) -> Ino {
        self.entry(parent, name, 0o40755, 4096, 0)
    }

    fn chunks_of(&self, data: &[u8]) -> Vec<ChunkRef> {
        data.chunks(CHUNK_SIZE)
            .map(|c| {
                let (r, ct) = v2::encode(c).unwrap();
                self.router.put(r.id(), &ct).unwrap();
                r
            })
            .collect()
    }

    fn file(&self, parent: Ino, name: &str, data: &[u8]) -> Ino {
        let ino = self.entry(parent, name, 0o100644, data.len() as u64, 0);
        let chunks = self.chunks_of(data);
        self.w.add_blocks(ino, &chunks).unwrap();
        ino
    }

    /// Writes the flist out; returns its path.
    fn finish(self) -> PathBuf {
        self.w.finish().unwrap();
        self.fl
    }
}

/// `dir/<name>.fl` holding one file `/<name>` with `data`, its chunks in `dir/store`.
fn one_file_flist(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let b = FlBuilder::in_dir(dir, &format!("{name}.fl"));
    b.file(1, name, data);
    b.finish()
}

fn s(x: impl AsRef<std::ffi::OsStr>) -> String {
    x.as_ref().to_string_lossy().into_owned()
}

/// `-m <fl> -c <cache>`: the arguments every mount here starts with.
fn mount_args(fl: &Path, cache: &Path) -> Vec<String> {
    vec!["-m".into(), s(fl), "-c".into(), s(cache)]
}

/// `zvfs mount -d -m <fl> -c <dir>/cache <extra>` on a new directory `<dir>/mnt`.
fn mount_in(dir: &Path, fl: &Path, extra: &[String]) -> (PathBuf, Mount) {
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut args = mount_args(fl, &dir.join("cache"));
    args.extend_from_slice(extra);
    let m = Mount::daemon(&mnt, &args);
    (mnt, m)
}

fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("expected a failure")
        .raw_os_error()
        .unwrap_or(0)
}

// ---------- tests ----------

fuse_test! {
    fn fixture_flists_show_the_tree_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let reference = tmp.path().join("ref");
        untar(&fixture("rfs-v2/tree.tar"), &reference);
        let expected = snapshot(&reference);
        assert!(expected.len() > 60, "{}", expected.len());
        let copy = |name: &str| {
            let dst = tmp.path().join(name);
            let st = Command::new("cp")
                .arg("-r")
                .arg(fixture(&format!("rfs-v2/{name}")))
                .arg(&dst)
                .status()
                .unwrap();
            assert!(st.success());
            dst
        };
        let store = copy("store");
        let shard_a = copy("shard-a");
        let shard_b = copy("shard-b");
        let cases = [
            ("sample.fl", vec![dir_url(&store)]),
            (
                "sharded.fl",
                vec![
                    format!("00-7f={}", dir_url(&shard_a)),
                    format!("80-ff={}", dir_url(&shard_b)),
                ],
            ),
        ];
        for (fl, stores) in cases {
            let mnt = tmp.path().join(format!("mnt-{fl}"));
            std::fs::create_dir(&mnt).unwrap();
            let mut args = mount_args(
                &fixture(&format!("rfs-v2/{fl}")),
                &tmp.path().join(format!("cache-{fl}")),
            );
            for st in &stores {
                args.push("-s".into());
                args.push(st.clone());
            }
            let m = Mount::daemon(&mnt, &args);
            // Every entry below the root: type, mode, owners, size, device, mtime, links,
            // content or target, xattrs.
            assert_same_entries(&reference, &mnt);
            let fifo = std::fs::symlink_metadata(mnt.join("fifo1")).unwrap();
            assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
            assert_eq!(
                std::fs::metadata(mnt.join("owned.txt")).unwrap().gid(),
                2000
            );
            let hello = std::fs::metadata(mnt.join("hello.txt")).unwrap();
            assert_eq!(hello.blocks(), 1); // ceil(12 / 512)
                                           // statfs reports the flist's totals.
            let vfs = rustix::fs::statvfs(&mnt).unwrap();
            assert_eq!(vfs.f_files, 67, "{fl}: inode count");
            let bytes: u64 = expected
                .values()
                .filter(|n| n.mode & 0o170000 == 0o100000)
                .filter_map(|n| n.size)
                .sum();
            assert!(
                vfs.f_blocks * vfs.f_frsize >= bytes && vfs.f_blocks * vfs.f_frsize < bytes + 67 * 4096
            );
            // Writes are refused.
            assert_eq!(
                errno_of(std::fs::File::create(mnt.join("new"))),
                libc::EROFS
            );
            assert_eq!(errno_of(std::fs::create_dir(mnt.join("d"))), libc::EROFS);
            assert_eq!(
                errno_of(
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(mnt.join("hello.txt"))
                ),
                libc::EROFS
            );
            assert_eq!(
                errno_of(std::fs::remove_file(mnt.join("hello.txt"))),
                libc::EROFS
            );
            assert_eq!(
                errno_of(std::fs::rename(mnt.join("hello.txt"), mnt.join("x"))),
                libc::EROFS
            );
            assert_eq!(
                errno_of(std::fs::set_permissions(
                    mnt.join("hello.txt"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o600)
                )),
                libc::EROFS
            );
            drop(m);
            assert!(!is_mounted(&mnt));
        }
    }
}

fuse_test! {
    fn xattrs_hardlinks_and_special_files() {
        let tmp = tempfile::tempdir().unwrap();
        let b = FlBuilder::in_dir(tmp.path(), "x.fl");
        let f = b.file(1, "data", b"shared content\n");
        b.w.add_xattr(f, b"user.small", b"1").unwrap();
        b.w.add_xattr(f, b"user.big", &[b'v'; 300]).unwrap();
        let sub = b.dir(1, "sub");
        let link = b.entry(sub, "hard", 0o100644, 15, 0);
        b.w.add_hardlink(link, f).unwrap();
        let chunks = b.chunks_of(b"shared content\n");
        b.w.add_blocks(link, &chunks).unwrap();
        b.entry(1, "chr", 0o20644, 0, (1 << 8) | 3);
        b.entry(1, "blk", 0o60600, 0, (8 << 8) | 1);
        b.entry(1, "sock", 0o140755, 0, 0);
        let sl = b.entry(1, "link", 0o120777, 4, 0);
        b.w.set_link_target(sl, b"data").unwrap();
        let fl = b.finish();

        let (mnt, _m) = mount_in(tmp.path(), &fl, &[]);
        let a = std::fs::metadata(mnt.join("data")).unwrap();
        let h = std::fs::metadata(mnt.join("sub/hard")).unwrap();
        assert_eq!(a.ino(), h.ino(), "hardlinked paths share one inode number");
        assert_eq!((a.nlink(), h.nlink()), (2, 2));
        assert_eq!(
            std::fs::read(mnt.join("sub/hard")).unwrap(),
            b"shared content\n"
        );
        assert_eq!(
            std::fs::metadata(&mnt).unwrap().nlink(),
            3,
            "root: 2 + one subdir"
        );
        use std::os::unix::fs::FileTypeExt;
        let chr = std::fs::symlink_metadata(mnt.join("chr")).unwrap();
        assert!(chr.file_type().is_char_device());
        assert_eq!(chr.rdev(), (1 << 8) | 3);
        let blk = std::fs::symlink_metadata(mnt.join("blk")).unwrap();
        assert!(blk.file_type().is_block_device());
        assert_eq!((blk.rdev(), blk.mode()), ((8 << 8) | 1, 0o60600));
        assert!(std::fs::symlink_metadata(mnt.join("sock"))
            .unwrap()
            .file_type()
            .is_socket());
        assert_eq!(
            std::fs::read_link(mnt.join("link")).unwrap(),
            Path::new("data")
        );
        let names: Vec<String> = std::fs::read_dir(&mnt)
            .unwrap()
            .map(|e| s(e.unwrap().file_name()))
            .collect();
        for n in ["data", "sub", "chr", "blk", "sock", "link"] {
            assert!(names.contains(&n.to_string()), "{n} listed: {names:?}");
        }

        // xattrs: size probe, exact buffer, too small a buffer, missing name.
        let p = mnt.join("data");
        assert_eq!(rustix::fs::getxattr_query(&p, "user.big").unwrap(), 300);
        let mut buf = vec![0u8; 300];
        assert_eq!(rustix::fs::getxattr(&p, "user.big", &mut buf).unwrap(), 300);
        assert_eq!(buf, vec![b'v'; 300]);
        let mut small = [0u8; 10];
        assert_eq!(
            rustix::fs::getxattr(&p, "user.big", &mut small).unwrap_err(),
            rustix::io::Errno::RANGE
        );
        assert_eq!(
            rustix::fs::getxattr(&p, "user.none", &mut buf).unwrap_err(),
            rustix::io::Errno::NODATA
        );
        let mut list = vec![0u8; 100];
        let n = rustix::fs::listxattr(&p, &mut list).unwrap();
        assert_eq!(&list[..n], b"user.small\0user.big\0");
        assert_eq!(rustix::fs::listxattr_query(&p).unwrap(), n);
        let mut tiny = [0u8; 3];
        assert_eq!(
            rustix::fs::listxattr(&p, &mut tiny).unwrap_err(),
            rustix::io::Errno::RANGE
        );
        assert_eq!(
            rustix::fs::setxattr(&p, "user.new", b"x", rustix::fs::XattrFlags::empty()).unwrap_err(),
            rustix::io::Errno::ROFS
        );
    }
}

fuse_test! {
    fn thirty_two_threads_read_random_ranges() {
        let tmp = tempfile::tempdir().unwrap();
        let data = Arc::new(noise(7, 6 * CHUNK_SIZE + 12345));
        let fl = one_file_flist(tmp.path(), "big", &data);
        let (mnt, _m) = mount_in(tmp.path(), &fl, &[]);
        let path = mnt.join("big");
        let threads: Vec<_> = (0..32u64)
            .map(|t| {
                let data = data.clone();
                let path = path.clone();
                std::thread::spawn(move || {
                    let f = std::fs::File::open(&path).unwrap();
                    let mut x = t * 7919 + 1;
                    for _ in 0..12 {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let off = (x >> 20) as usize % data.len();
                        // Ranges of up to 1.5 chunks: many cross a chunk boundary.
                        let len = ((x >> 5) as usize % (CHUNK_SIZE * 3 / 2)).min(data.len() - off);
                        let mut buf = vec![0u8; len];
                        f.read_exact_at(&mut buf, off as u64).unwrap();
                        assert!(buf == data[off..off + len], "range {off}+{len}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), *data);
    }
}

fuse_test! {
    /// The FUSE read-ahead window is raised from the kernel's 128 KiB to 1 MiB (as root), so
    /// sequential reads reach the daemon as 1 MiB requests instead of 128 KiB ones.
    fn mount_raises_the_readahead_window_to_one_mib() {
        assert!(
            rustix::process::geteuid().is_root(),
            "the read-ahead knob needs root (CI runs as root)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let data = noise(11, 3 * CHUNK_SIZE);
        let fl = one_file_flist(tmp.path(), "big", &data);
        let (mnt, _m) = mount_in(tmp.path(), &fl, &[]);
        let target = mnt.canonicalize().unwrap();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dev = info
            .lines()
            .rev()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| Path::new(f[4]) == target)
            .map(|f| f[2].to_string())
            .expect("the mount is in mountinfo");
        let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
        assert_eq!(
            std::fs::read_to_string(&knob).unwrap().trim(),
            "1024",
            "{knob}"
        );
        assert_eq!(std::fs::read(mnt.join("big")).unwrap(), data);
    }
}

/// Sum of file sizes under `dir` (chunks and temporary files).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if !e.file_name().to_string_lossy().starts_with(".zvfs-usage") {
                total += md.len();
            }
        }
    }
    total
}

/// Sample the cache size every few ms while `f` runs; returns the largest sample.
fn max_size_during(dir: &Path, f: impl FnOnce()) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let max = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, max, dir) = (stop.clone(), max.clone(), dir.to_path_buf());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                max.fetch_max(dir_bytes(&dir), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    f();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    max.fetch_max(dir_bytes(dir), Ordering::Relaxed);
    max.load(Ordering::Relaxed)
}

/// An flist of `files` files of `per` distinct pseudo-random bytes each.
fn data_flist(dir: &Path, name: &str, files: usize, per: usize, seed: u64) -> PathBuf {
    let b = FlBuilder::new(
        &dir.join(format!("{name}.fl")),
        &dir.join(format!("{name}-store")),
    );
    for i in 0..files {
        b.file(1, &format!("f{i}"), &noise(seed + i as u64, per));
    }
    b.finish()
}

fn check_all_files(mnt: &Path, files: usize, per: usize, seed: u64) {
    for i in 0..files {
        let got = std::fs::read(mnt.join(format!("f{i}"))).unwrap();
        assert!(got == noise(seed + i as u64, per), "content of f{i}");
    }
}

const BOUND: u64 = 4 << 20;
/// Chunks being written while eviction runs may briefly sit beside the bound.
const IN_FLIGHT: u64 = 2 * CHUNK_SIZE as u64;

fuse_test! {
    fn cache_stays_under_its_bound_with_one_and_two_mounts() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let per = 4 << 20;
        let fl_a = data_flist(tmp.path(), "a", 10, per, 100); // 40 MiB
        let fl_b = data_flist(tmp.path(), "b", 5, per, 200); // 20 MiB, other data
        let args = |fl: &Path| {
            let mut a = mount_args(fl, &cache);
            a.extend(["--cache-size".into(), "4M".into()]);
            a
        };
        let mnt_a = tmp.path().join("mnt-a");
        let mnt_b = tmp.path().join("mnt-b");
        std::fs::create_dir(&mnt_a).unwrap();
        std::fs::create_dir(&mnt_b).unwrap();
        let _a = Mount::daemon(&mnt_a, &args(&fl_a));
        let max = max_size_during(&cache, || check_all_files(&mnt_a, 10, per, 100));
        assert!(
            max <= BOUND + IN_FLIGHT,
            "one mount: cache reached {max} bytes (bound {BOUND})"
        );
        assert!(dir_bytes(&cache) > 0);

        let _b = Mount::daemon(&mnt_b, &args(&fl_b));
        // Drop the page cache of what mount a served, so it reads again.
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
        let max = max_size_during(&cache, || {
            let t = {
                let m = mnt_b.clone();
                std::thread::spawn(move || check_all_files(&m, 5, per, 200))
            };
            check_all_files(&mnt_a, 5, per, 100);
            t.join().unwrap();
        });
        assert!(
            max <= BOUND + 2 * IN_FLIGHT,
            "two mounts: cache reached {max} bytes (bound {BOUND})"
        );

        // `zvfs cache` on that directory.
        let c = s(&cache);
        let stats = zvfs_ok(&["cache", "stats", "-c", &c, "--cache-size", "4M"]);
        let field = |out: &str, k: &str| -> u64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k} ")))
                .unwrap_or_else(|| panic!("{k} in {out}"))
                .trim()
                .parse()
                .unwrap()
        };
        assert!(field(&stats, "chunks") > 0, "{stats}");
        assert!(field(&stats, "bytes") <= BOUND, "{stats}");
        let gc = zvfs_ok(&["cache", "gc", "-c", &c, "--cache-size", "1M"]);
        assert!(field(&gc, "bytes_after") <= 1 << 20, "{gc}");
        assert!(field(&gc, "removed") > 0, "{gc}");
        assert!(dir_bytes(&cache) <= 1 << 20);
        let fsck = zvfs_ok(&["cache", "fsck", "-c", &c, "-m", &s(&fl_a), "-m", &s(&fl_b)]);
        assert_eq!(field(&fsck, "bad_removed"), 0, "{fsck}");
        assert_eq!(field(&fsck, "verified"), field(&fsck, "files"), "{fsck}");
        let clear = zvfs_ok(&["cache", "clear", "-c", &c]);
        assert!(field(&clear, "removed") > 0, "{clear}");
        assert_eq!(dir_bytes(&cache), 0);
        // Reads still work with an emptied cache.
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
        check_all_files(&mnt_b, 1, per, 200);
    }
}

fuse_test! {
    fn crash_truncated_and_corrupt_cache_files_are_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let per = 3 << 20;
        let fl = data_flist(tmp.path(), "c", 4, per, 300);
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let args = mount_args(&fl, &cache);
        let mut m = Mount::daemon(&mnt, &args);
        // Cold reads from several threads, killed midway.
        let readers: Vec<_> = (0..4)
            .map(|i| {
                let p = mnt.join(format!("f{i}"));
                std::thread::spawn(move || {
                    let _ = std::fs::read(p);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150));
        m.kill9();
        for r in readers {
            let _ = r.join();
        }
        drop(m);
        // Make sure at least two chunks are complete in the cache, then damage two of them.
        if cache_files(&cache).len() < 2 {
            let m = Mount::daemon(&mnt, &args);
            check_all_files(&mnt, 1, per, 300);
            drop(m);
        }
        let files = cache_files(&cache);
        assert!(files.len() >= 2, "{files:?}");
        damage_and_check(&mnt, &args, per, &files[0], &files[1]);
    }
}

fuse_test! {
    /// A running mount replies to reads straight from cache files it has checked; one cut
    /// short behind its back must be checked again and replaced, never served short.
    fn cache_file_truncated_under_a_running_mount_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let per = 2 << 20;
        let fl = data_flist(tmp.path(), "t", 2, per, 400);
        let log = tmp.path().join("mount.log");
        let (mnt, _m) = mount_in(tmp.path(), &fl, &["-l".into(), s(&log)]);
        check_all_files(&mnt, 2, per, 400); // every chunk now cached and checked
        let files = cache_files(&cache);
        assert_eq!(files.len(), 2 * per / CHUNK_SIZE, "{files:?}");
        let victim = &files[0];
        let good = std::fs::read(victim).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(victim)
            .unwrap();
        f.set_len(good.len() as u64 / 3).unwrap();
        drop(f);
        // Forget the kernel's copy of the files so the reads reach the daemon again.
        std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
        check_all_files(&mnt, 2, per, 400);
        assert_eq!(
            std::fs::read(victim).unwrap(),
            good,
            "truncated file replaced"
        );
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("truncated or corrupt"), "{text}");
    }
}

fuse_test! {
    /// A cache on a full disk: the chunks it cannot keep are served from memory, with the
    /// right bytes, and the log says why.
    fn reads_are_served_when_the_cache_disk_is_full() {
        let tmp = tempfile::tempdir().unwrap();
        // A 1 MiB filesystem under a cache bounded to 64 MiB: it fills after two chunks.
        let small = tmp.path().join("small");
        std::fs::create_dir(&small).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&small)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a 1 MiB tmpfs");
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                detach(&self.0);
            }
        }
        let _small = Unmount(small.clone());
        let per = 3 << 20;
        let fl = data_flist(tmp.path(), "full", 2, per, 500);
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let log = tmp.path().join("mount.log");
        let mut args = mount_args(&fl, &small.join("cache"));
        args.extend(["--cache-size".into(), "64M".into(), "-l".into(), s(&log)]);
        let _m = Mount::daemon(&mnt, &args);
        check_all_files(&mnt, 2, per, 500);
        std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
        check_all_files(&mnt, 2, per, 500);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("serving it from memory") || text.contains("not caching chunk"),
            "{text}"
        );
    }
}

/// The chunk files of a cache directory.
fn cache_files(cache: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![cache.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap().len() == 64 {
                files.push(p);
            }
        }
    }
    files
}

fn damage_and_check(mnt: &Path, args: &[String], per: usize, trunc: &Path, corrupt: &Path) {
    let good_trunc = std::fs::read(trunc).unwrap();
    let good_corrupt = std::fs::read(corrupt).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(trunc).unwrap();
    f.set_len(good_trunc.len() as u64 / 3).unwrap();
    drop(f);
    let mut bad = good_corrupt.clone();
    bad[1000] ^= 0x55;
    std::fs::write(corrupt, &bad).unwrap();
    let log = mnt.with_extension("log");
    let mut a = args.to_vec();
    a.push("-l".into());
    a.push(s(&log));
    let _m = Mount::daemon(mnt, &a);
    check_all_files(mnt, 4, per, 300);
    assert_eq!(
        std::fs::read(trunc).unwrap(),
        good_trunc,
        "truncated file replaced"
    );
    assert_eq!(
        std::fs::read(corrupt).unwrap(),
        good_corrupt,
        "corrupt file replaced"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("truncated or corrupt"), "{text}");
}

fuse_test! {
    fn forged_chunk_under_the_right_key_is_refused_with_eio() {
        let tmp = tempfile::tempdir().unwrap();
        let b = FlBuilder::in_dir(tmp.path(), "f.fl");
        b.file(1, "good", b"fine\n");
        // A store that knows the plaintext re-encrypts other data under its key: the GCM tag
        // verifies, the object hashes to its (forged) id; only the key check catches it.
        let genuine = b"genuine chunk content".to_vec();
        let (real, _) = v2::encode(&genuine).unwrap();
        let ct = encrypt_under(real.key(), b"evil chunk content!!!");
        let forged = ChunkRef::v2(v2::blake2b_256(&ct), real.key().try_into().unwrap());
        b.router.put(forged.id(), &ct).unwrap();
        let ino = b.entry(1, "forged", 0o100644, genuine.len() as u64, 0);
        b.w.add_blocks(ino, &[forged]).unwrap();
        let fl = b.finish();
        let log = tmp.path().join("log");
        let (mnt, _m) = mount_in(tmp.path(), &fl, &["-l".into(), s(&log)]);
        assert_eq!(std::fs::read(mnt.join("good")).unwrap(), b"fine\n");
        assert_eq!(errno_of(std::fs::read(mnt.join("forged"))), libc::EIO);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains(forged.hex_id().as_str()),
            "log names the chunk: {text}"
        );
        assert!(text.contains("does not hash to its key"), "{text}");
        assert!(!std::fs::read_dir(tmp.path().join("cache"))
            .unwrap()
            .flatten()
            .any(|e| e.path().is_dir()
                && std::fs::read_dir(e.path())
                    .unwrap()
                    .flatten()
                    .any(|x| x.path().join(forged.hex_id().as_str()).exists())));
    }
}

fuse_test! {
    fn directory_of_fifty_thousand_entries_lists_completely() {
        let tmp = tempfile::tempdir().unwrap();
        let b = FlBuilder::in_dir(tmp.path(), "d.fl");
        let big = b.dir(1, "big");
        for i in 0..50_000 {
            b.entry(big, &format!("entry-{i:05}"), 0o100644, 0, 0);
        }
        let fl = b.finish();
        let (mnt, _m) = mount_in(tmp.path(), &fl, &[]);
        let mut names: Vec<String> = std::fs::read_dir(mnt.join("big"))
            .unwrap()
            .map(|e| s(e.unwrap().file_name()))
            .collect();
        names.sort();
        assert_eq!(names.len(), 50_000);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(n, &format!("entry-{i:05}"));
        }
        let md = std::fs::metadata(mnt.join("big/entry-49999")).unwrap();
        assert_eq!((md.uid(), md.gid(), md.len()), (1000, 2000, 0));
    }
}

/// The per-mount options of the mount at `target` in /proc/self/mountinfo.
fn mount_options(target: &Path) -> Vec<String> {
    let t = target.canonicalize().unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .rev()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (Path::new(f[4]) == t).then(|| f[5].split(',').map(String::from).collect())
        })
        .unwrap_or_else(|| panic!("{} is not in mountinfo", t.display()))
}

/// Peak resident memory of a process (`VmHWM`), in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

fuse_test! {
    fn device_nodes_do_not_open_the_host_devices_unless_dev() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        // What /dev/zero is: c 1 5.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("zero"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 5),
        )
        .unwrap();
        let fl = tmp.path().join("dev.fl");
        pack(&fl, &dir_url(&tmp.path().join("store")), &[], &src);
        let cache = tmp.path().join("cache");
        let mnt = |name: &str| {
            let p = tmp.path().join(name);
            std::fs::create_dir(&p).unwrap();
            p
        };
        let with = |extra: &[&str]| {
            let mut a = mount_args(&fl, &cache);
            a.extend(extra.iter().map(|x| x.to_string()));
            a
        };
        let refused = |m: &Path| {
            use std::os::unix::fs::FileTypeExt;
            let p = m.join("zero");
            let md = std::fs::symlink_metadata(&p).unwrap();
            assert!(
                md.file_type().is_char_device(),
                "{}: still a char device",
                p.display()
            );
            assert_eq!(
                md.rdev(),
                rustix::fs::makedev(1, 5),
                "{}: rdev 1,5",
                p.display()
            );
            let r = std::fs::File::open(&p).map(|mut f| {
                let mut b = [1u8; 16];
                std::io::Read::read(&mut f, &mut b).map(|n| b[..n].to_vec())
            });
            assert_eq!(
                errno_of(r),
                libc::EACCES,
                "{}: a device node on a nodev mount does not open",
                p.display()
            );
            assert!(
                mount_options(m).contains(&"nodev".to_string()),
                "{}: nodev",
                m.display()
            );
        };
        let opens = |m: &Path| {
            let mut b = [1u8; 16];
            let n = std::fs::File::open(m.join("zero"))
                .and_then(|mut f| std::io::Read::read(&mut f, &mut b))
                .unwrap();
            assert_eq!(
                &b[..n],
                &[0u8; 16],
                "--dev: the node is the host's /dev/zero"
            );
            assert!(!mount_options(m).contains(&"nodev".to_string()));
        };

        // --dev, the first daemon: the node opens.
        let m2 = mnt("m2");
        let dev = Mount::daemon(&m2, &with(&["--dev"]));
        opens(&m2);
        // A default mount of the same flist shares that daemon (a bind of its mount), nodev
        // all the same: a bind gets the flags its own command asked for.
        let m3 = mnt("m3");
        let bind = Mount::daemon(&m3, &with(&[]));
        assert_eq!(
            bind.pid, dev.pid,
            "m3 is a bind of the --dev daemon's mount"
        );
        refused(&m3);
        // The default, a daemon of its own: its FUSE mount is nodev.
        let m1 = mnt("m1");
        let nodev = Mount::daemon(&m1, &with(&["--new-daemon"]));
        refused(&m1);
        drop(bind); // takes the --dev daemon down
        drop(dev);
        // --dev sharing the nodev daemon: the bind opens the node, the daemon's own mount not.
        let m4 = mnt("m4");
        let bind = Mount::daemon(&m4, &with(&["--dev"]));
        assert_eq!(
            bind.pid, nodev.pid,
            "m4 is a bind of the nodev daemon's mount"
        );
        opens(&m4);
        refused(&m1);
    }
}

fuse_test! {
    fn ls_l_of_an_flist_without_xattrs_sends_no_xattr_requests() {
        let tmp = tempfile::tempdir().unwrap();
        let b = FlBuilder::in_dir(tmp.path(), "d.fl");
        let big = b.dir(1, "big");
        for i in 0..2000 {
            b.entry(big, &format!("entry-{i:05}"), 0o100644, 0, 0);
        }
        let fl = b.finish();
        let log = tmp.path().join("mount.log");
        let (mnt, _m) = mount_in(tmp.path(), &fl, &["--debug".into(), "-l".into(), s(&log)]);
        let out = Command::new("ls")
            .arg("-l")
            .arg(mnt.join("big"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ls -l: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.stdout
                .split(|&c| c == b'\n')
                .filter(|l| l.starts_with(b"-rw-r--r--"))
                .count(),
            2000
        );
        // No xattr anywhere: the kernel is told once (ENOSYS) and answers getxattr itself.
        let p = mnt.join("big/entry-00007");
        let mut buf = [0u8; 64];
        assert_eq!(
            rustix::fs::getxattr(&p, "user.x", &mut buf).unwrap_err(),
            rustix::io::Errno::NOTSUP
        );
        let text = std::fs::read_to_string(&log).unwrap();
        let gets = text.matches("getxattr of inode").count();
        assert!(
            gets <= 1,
            "getxattr requests that reached the daemon for `ls -l` of 2000 entries: {gets}"
        );
        // Listing still answers: no xattrs (what `getfattr -d` shows), not an error.
        assert_eq!(rustix::fs::listxattr(&p, &mut buf).unwrap(), 0);
        let out = Command::new("getfattr").arg("-d").arg(&p).output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "getfattr -d: {out:?}"
        );
    }
}

fuse_test! {
    fn listing_a_huge_directory_keeps_the_daemon_memory_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let b = FlBuilder::in_dir(tmp.path(), "d.fl");
        let big = b.dir(1, "big");
        // 300,000 entries with 200-byte names: about 90 MiB as entries in memory at once.
        const N: usize = 300_000;
        let pad = "n".repeat(190);
        for i in 0..N {
            b.entry(big, &format!("{pad}-{i:07}"), 0o100644, 0, 0);
        }
        let sub = b.dir(big, "sub");
        b.entry(sub, "inside", 0o100644, 0, 0);
        let fl = b.finish();
        let (mnt, m) = mount_in(tmp.path(), &fl, &[]);
        std::fs::metadata(mnt.join("big")).unwrap();
        // The worker serves; the supervisor holds no entries.
        let worker = worker_of(m.pid);
        let before = vm_hwm_kib(worker);
        // `ls -f`: a plain listing, then `find -ls`-like: every entry with its attributes.
        let mut n = 0;
        for e in std::fs::read_dir(mnt.join("big")).unwrap() {
            e.unwrap();
            n += 1;
        }
        assert_eq!(n, N + 1);
        let mut last = String::new();
        let mut dirs = 0;
        for e in std::fs::read_dir(mnt.join("big")).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                dirs += 1;
                assert_eq!(md.nlink(), 2);
            }
            last = s(e.file_name());
        }
        assert_eq!((dirs, last.as_str()), (1, "sub"), "every entry, in order");
        let grew = vm_hwm_kib(worker).saturating_sub(before);
        assert!(
            grew < 32 * 1024,
            "listing {N} entries grew the daemon's peak RSS by {grew} KiB"
        );
    }
}

fuse_test! {
    fn daemon_mode_failures_and_sigterm() {
        let tmp = tempfile::tempdir().unwrap();
        let fl = one_file_flist(tmp.path(), "hello", b"hello\n");
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let args = mount_args(&fl, &tmp.path().join("cache"));
        let cache = s(tmp.path().join("cache"));
        let marker = s(&mnt);
        let daemons = || -> Vec<u32> {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    alive(*pid)
                        && std::fs::read(format!("/proc/{pid}/cmdline"))
                            .map(|c| String::from_utf8_lossy(&c).contains(&marker))
                            .unwrap_or(false)
                })
                .collect()
        };

        // -d returns once mounted: readable right away; then a second -d gets an error.
        {
            let m = Mount::daemon(&mnt, &args);
            assert_eq!(std::fs::read(mnt.join("hello")).unwrap(), b"hello\n");
            assert_eq!(daemons(), vec![m.pid]);
        }
        assert!(!is_mounted(&mnt));

        // A bad flist: non-zero, the reason, no process left, nothing mounted.
        let junk = tmp.path().join("junk.fl");
        std::fs::write(&junk, b"this is not an flist").unwrap();
        let out = zvfs(&["mount", "-d", "-m", &s(&junk), "-c", &cache, &marker]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not an flist"), "{err}");
        assert!(!is_mounted(&mnt));
        assert!(daemons().is_empty(), "no stray daemon: {:?}", daemons());

        // A bad store URL: same.
        let out = zvfs(&[
            "mount",
            "-d",
            "-m",
            &s(&fl),
            "-c",
            &cache,
            "-s",
            "nosuch://x",
            &marker,
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("unsupported store URL"), "{err}");
        assert!(!is_mounted(&mnt));
        assert!(daemons().is_empty());

        // Foreground: SIGTERM unmounts and exits 0.
        let mut m = Mount::foreground(&mnt, &args);
        assert_eq!(std::fs::read(mnt.join("hello")).unwrap(), b"hello\n");
        let st = Command::new("kill")
            .args(["-TERM", &m.pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let status = m.child.as_mut().unwrap().wait().unwrap();
        assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
        assert!(!is_mounted(&mnt), "SIGTERM unmounts");

        // An external unmount ends a daemon too.
        let m = Mount::daemon(&mnt, &args);
        let pid = m.pid;
        let st = Command::new("fusermount3")
            .arg("-u")
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(st.success());
        let start = Instant::now();
        while alive(pid) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "daemon exits after an external unmount");
    }
}

/// `zvfs mounts --check TARGET`, killed if it takes more than 30 s: (exit code, stderr).
fn check_mount(target: &Path) -> (Option<i32>, String) {
    let mut c = Command::new(zvfs_bin())
        .args(["mounts", "--check", &s(target)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while c.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = c.kill();
            let _ = c.wait();
            return (None, "still running after 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = c.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Reads `path` in a thread; the receiver gets (result, time taken).
fn read_in_thread(
    path: PathBuf,
) -> std::sync::mpsc::Receiver<(std::io::Result<Vec<u8>>, Duration)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = std::fs::read(&path);
        let _ = tx.send((r, t0.elapsed()));
    });
    rx
}

fuse_test! {
    fn trickling_store_never_starves_cached_reads() {
        let redis = redis_server(false);
        let tmp = tempfile::tempdir().unwrap();
        // one small file, and five one-chunk files whose chunks are also in redis
        let b = FlBuilder::in_dir(tmp.path(), "slow.fl");
        let cached = noise(1, 100_000);
        b.file(1, "cached.bin", &cached);
        let zdb_url = format!("zdb://127.0.0.1:{}", redis.port);
        let route = Route {
            start: 0,
            end: 255,
            url: zdb_url.clone(),
        };
        let zdb = Router::new(&[route], &StoreConfig::default()).unwrap();
        for i in 0..5 {
            let data = noise(10 + i, CHUNK_SIZE);
            b.file(1, &format!("s{i}.bin"), &data);
            let (c, stored) = v2::encode(&data).unwrap();
            zdb.put(c.id(), &stored).unwrap();
        }
        let fl = b.finish();
        let cache = tmp.path().join("cache");

        // cached.bin enters the cache through a first mount over the flist's dir store
        {
            let (mnt, _m) = mount_in(tmp.path(), &fl, &[]);
            assert_eq!(std::fs::read(mnt.join("cached.bin")).unwrap(), cached);
        }

        // the second mount reads through a store that trickles a reply byte a second
        let slow = trickle_proxy(redis.port, Duration::from_secs(1));
        let mnt = tmp.path().join("mnt2");
        std::fs::create_dir(&mnt).unwrap();
        let mut args = mount_args(&fl, &cache);
        let slow_url = format!("zdb://127.0.0.1:{}", slow.port);
        for a in [
            "-s",
            &slow_url,
            "-t",
            "2",
            "--deadline",
            "5",
            "--io-timeout",
            "2",
        ] {
            args.push(a.into());
        }
        let m = Mount::daemon(&mnt, &args);

        // four readers (twice the workers) wait on trickling chunks...
        let t0 = Instant::now();
        let stuck: Vec<_> = (0..4)
            .map(|i| read_in_thread(mnt.join(format!("s{i}.bin"))))
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        // ...while the cached file still reads at once, and the mount counts as healthy
        let hit = read_in_thread(mnt.join("cached.bin"));
        let (r, took) = hit
            .recv_timeout(Duration::from_secs(4))
            .expect("a cached read waited behind reads stuck on a slow store");
        assert_eq!(r.unwrap(), cached);
        assert!(took < Duration::from_secs(4), "cached read took {took:?}");
        let (code, err) = check_mount(&mnt);
        assert_eq!(code, Some(0), "healthy mount reported unhealthy: {err}");

        // every stuck reader gets EIO, bounded by the 5 s deadline (two fetch at a time)
        for rx in stuck {
            let (r, _) = rx
                .recv_timeout(Duration::from_secs(40).saturating_sub(t0.elapsed()))
                .expect("a read of a trickling chunk hung past its deadline");
            assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EIO));
        }
        assert!(t0.elapsed() < Duration::from_secs(40), "{:?}", t0.elapsed());

        // a stopped daemon (its worker: the process that answers) answers nothing:
        // --check says so, in bounded time
        let pid = worker_of(m.pid).to_string();
        assert!(Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success());
        let (code, err) = check_mount(&mnt);
        assert!(Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success());
        assert_eq!(code, Some(1), "a hung mount passed --check: {err}");
        assert!(err.contains("does not answer"), "{err}");

        // umount with a reader stuck on a trickling chunk is quick
        let _stuck = read_in_thread(mnt.join("s4.bin"));
        std::thread::sleep(Duration::from_millis(500));
        let t0 = Instant::now();
        let out = zvfs(&["umount", &s(&mnt)]);
        let took = t0.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(took < Duration::from_secs(4), "umount took {took:?}");
        assert!(!is_mounted(&mnt));
    }
}
