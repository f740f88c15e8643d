//! The cache directory's size bound, shared by every process using the directory, and the
//! maintenance operations on it (`zvfs cache stats|gc|fsck|clear`).
//!
//! A small usage file (`.zvfs-usage`, decimal bytes) counts the bytes in the cache. Every
//! change takes an `flock` on it, so two mounts on one directory keep one quota together.
//! Before a chunk is written its size is reserved; when the reservation would pass the
//! bound, the directory is scanned under the lock, the least recently used files (oldest
//! mtime; readers touch files they use) are removed down to the low watermark (90%) and
//! the usage is recomputed from the scan, which also corrects any drift (files written by
//! rfs or removed by hand). Temporary files left by dead processes are removed by scans.
//!
//! This module only manages files; it never reads chunk content except in `fsck`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::codec::{ChunkRef, MAX_OBJECT};
use crate::error::{Context, Error, Result};

/// Default bound of a cache directory: 4 GiB.
pub const DEFAULT_CACHE_SIZE: u64 = 4 << 30;
/// Prefix of temporary files: `<prefix><pid>.<hex id>` next to their final place.
pub const TMP_PREFIX: &str = ".zvfs-tmp.";
const USAGE_FILE: &str = ".zvfs-usage";
/// Eviction frees space down to this share of the bound, in percent.
const LOW_WATERMARK_PCT: u64 = 90;
/// A temporary file older than this is stale even if its writer's pid is alive (reused).
const TMP_MAX_AGE: Duration = Duration::from_secs(3600);

/// Parse a size such as `4G`, `512M`, `100K`, `1048576` (powers of 1024; `B`, `iB` ok).
/// The bytes a cache directory holds as last recorded by its users (no scan, no lock).
pub fn recorded_usage(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join(USAGE_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| Error::invalid(format!("bad size {s:?} (expected e.g. 4G, 512M, 100K)")))?;
    n.checked_mul(mult)
        .ok_or_else(|| Error::invalid(format!("size {s:?} is too large")))
}

/// `<dir>/<hex[0..2]>/<hex[2..4]>/<hex>`.
pub fn chunk_path(dir: &Path, hex: &str) -> PathBuf {
    dir.join(&hex[..2]).join(&hex[2..4]).join(hex)
}

fn is_hex2(name: &str) -> bool {
    name.len() == 2
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a scan of the cache directory found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Chunk files: (mtime, size, path).
    pub chunks: Vec<(SystemTime, u64, PathBuf)>,
    pub chunk_bytes: u64,
    /// Temporary files of live writers (their bytes count against the bound).
    pub live_tmp: u64,
    pub live_tmp_bytes: u64,
    /// Temporary files of dead writers, removed by the scan.
    pub stale_tmp_removed: u64,
    /// Files that are not where a chunk id would put them (reported, removed by fsck).
    pub strays: Vec<PathBuf>,
}

impl Scan {
    pub fn total(&self) -> u64 {
        self.chunk_bytes + self.live_tmp_bytes
    }
}

/// Result of `fsck`.
#[derive(Debug, Default)]
pub struct FsckReport {
    pub files: u64,
    pub verified: u64,
    pub unknown: u64,
    pub bad_removed: u64,
    pub empty_removed: u64,
    pub strays_removed: u64,
    pub stale_tmp_removed: u64,
}

/// Result of `gc`.
#[derive(Debug, Default)]
pub struct GcReport {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub files_removed: u64,
    pub stale_tmp_removed: u64,
}

pub struct Quota {
    dir: PathBuf,
    max: u64,
    low: u64,
}

impl Quota {
    pub fn open(dir: &Path, max: u64) -> Result<Quota> {
        let q = Quota {
            dir: dir.to_path_buf(),
            max,
            low: max / 100 * LOW_WATERMARK_PCT,
        };
        // Start from an exact count (cheap: one directory walk).
        q.locked(|_| Ok(((), q.scan()?.total())))?;
        Ok(q)
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// Run `f` with the usage under the lock; `f` returns the new usage.
    fn locked<T>(&self, f: impl FnOnce(u64) -> Result<(T, u64)>) -> Result<T> {
        let path = self.dir.join(USAGE_FILE);
        let what = || format!("cache usage file {}", path.display());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_ctx(what)?;
        file.lock().with_ctx(what)?;
        let mut text = String::new();
        file.read_to_string(&mut text).with_ctx(what)?;
        let usage = text.trim().parse::<u64>().unwrap_or(0);
        let (out, new_usage) = f(usage)?;
        if new_usage != usage || text.trim().is_empty() {
            let write = |file: &mut File| -> std::io::Result<()> {
                file.seek(SeekFrom::Start(0))?;
                file.set_len(0)?;
                file.write_all(format!("{new_usage}\n").as_bytes())
            };
            write(&mut file).with_ctx(what)?;
        }
        // Dropping the file releases the lock.
        Ok(out)
    }

    /// The bytes the cache holds, as last counted.
    pub fn usage(&self) -> Result<u64> {
        self.locked(|u| Ok((u, u)))
    }

    /// Account for `len` bytes and run `create` (which makes the file that will hold
    /// them) in one step under the lock, evicting first when needed. A scan by any
    /// process sharing the directory then sees the reservation and the file together:
    /// bytes on disk are never unaccounted for while writers queue behind an eviction.
    /// When `create` fails nothing is reserved.
    pub fn reserve_with<T>(&self, len: u64, create: impl FnOnce() -> Result<T>) -> Result<T> {
        if len > self.max {
            return Err(Error::invalid(format!(
                "a {len}-byte chunk does not fit a {}-byte cache",
                self.max
            )));
        }
        self.locked(|u| {
            let base = if u + len <= self.max {
                u
            } else {
                let target = self.low.saturating_sub(len);
                let (total, removed) = self.evict(target)?;
                log::debug!(
                    "cache: evicted {removed} files, {} bytes left (bound {})",
                    total,
                    self.max
                );
                total
            };
            let out = create()?;
            Ok((out, base + len))
        })
    }

    /// Run `f` under the lock without changing the usage: for a rename into place, which
    /// a concurrent scan could otherwise miss (the file under neither name) and so lose
    /// its bytes from the recomputed usage.
    pub fn exclusive<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.locked(|u| Ok((f()?, u)))
    }

    /// Give back bytes reserved or removed.
    pub fn release(&self, len: u64) {
        if let Err(e) = self.locked(|u| Ok(((), u.saturating_sub(len)))) {
            log::warn!("cache: {e}");
        }
    }

    /// Scan and remove least recently used chunk files until at most `target` bytes
    /// remain; returns (bytes left, files removed). Call with the lock held.
    fn evict(&self, target: u64) -> Result<(u64, u64)> {
        let mut scan = self.scan()?;
        let mut total = scan.total();
        let mut removed = 0;
        if total <= target {
            return Ok((total, 0));
        }
        scan.chunks.sort_by_key(|c| c.0);
        for (_, size, path) in &scan.chunks {
            if total <= target {
                break;
            }
            match std::fs::remove_file(path) {
                Ok(()) => {
                    total = total.saturating_sub(*size);
                    removed += 1;
                }
                Err(e) if e.kind() == IoKind::NotFound => total = total.saturating_sub(*size),
                Err(e) => log::warn!("cache: cannot evict {}: {e}", path.display()),
            }
        }
        Ok((total, removed))
    }

    /// Walk `<dir>/<hh>/<hh>/*`; removes stale temporary files on the way.
    pub fn scan(&self) -> Result<Scan> {
        let mut scan = Scan::default();
        for (l1, l1_name) in subdirs(&self.dir)? {
            if !is_hex2(&l1_name) {
                continue;
            }
            for (l2, l2_name) in subdirs(&l1)? {
                if !is_hex2(&l2_name) {
                    continue;
                }
                let rd = match std::fs::read_dir(&l2) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == IoKind::NotFound => continue,
                    Err(e) => return Err(Error::from(e).context(l2.display())),
                };
                for ent in rd {
                    let ent = ent.with_ctx(|| format!("reading {}", l2.display()))?;
                    let name = ent.file_name().to_string_lossy().into_owned();
                    let path = ent.path();
                    let md = match ent.metadata() {
                        Ok(m) => m,
                        Err(_) => continue,
                    };
                    let mtime = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    if let Some(rest) = name.strip_prefix(TMP_PREFIX) {
                        if tmp_is_live(rest, mtime) {
                            scan.live_tmp += 1;
                            scan.live_tmp_bytes += md.len();
                        } else if std::fs::remove_file(&path).is_ok() {
                            scan.stale_tmp_removed += 1;
                        }
                        continue;
                    }
                    let placed = md.is_file()
                        && (name.len() == 64 || name.len() == 32)
                        && name.bytes().all(|b| b.is_ascii_hexdigit())
                        && name[..2].eq_ignore_ascii_case(&l1_name)
                        && name[2..4].eq_ignore_ascii_case(&l2_name);
                    if placed {
                        scan.chunk_bytes += md.len();
                        scan.chunks.push((mtime, md.len(), path));
                    } else {
                        scan.strays.push(path);
                    }
                }
            }
        }
        Ok(scan)
    }

    /// Evict down to the low watermark when over the bound; recount the usage.
    pub fn gc(&self) -> Result<GcReport> {
        self.locked(|_| {
            let scan = self.scan()?;
            let mut rep = GcReport {
                bytes_before: scan.total(),
                stale_tmp_removed: scan.stale_tmp_removed,
                ..Default::default()
            };
            drop(scan);
            let (left, removed) = if rep.bytes_before > self.max {
                self.evict(self.low)?
            } else {
                (rep.bytes_before, 0)
            };
            rep.bytes_after = left;
            rep.files_removed = removed;
            Ok((rep, left))
        })
    }

    /// Remove every chunk file (and temporary file); returns the files removed.
    pub fn clear(&self) -> Result<u64> {
        self.locked(|_| {
            let scan = self.scan()?;
            let mut removed = 0;
            for (_, _, p) in scan.chunks.iter() {
                if std::fs::remove_file(p).is_ok() {
                    removed += 1;
                }
            }
            // Empty directories are left for rfs compatibility and cheap re-use.
            Ok((removed, self.scan()?.total()))
        })
    }

    /// Check every file: stale temporary files, files out of place and empty files are
    /// removed; a file whose chunk is in `known` (from flists given to `cache fsck -m`) is
    /// verified against its key and removed when it does not match. Files of unknown
    /// chunks cannot be verified (the layout has only the id) and are counted.
    pub fn fsck(&self, known: &HashMap<String, ChunkRef>) -> Result<FsckReport> {
        self.locked(|_| {
            let scan = self.scan()?;
            let mut rep = FsckReport {
                files: scan.chunks.len() as u64,
                stale_tmp_removed: scan.stale_tmp_removed,
                ..Default::default()
            };
            for p in &scan.strays {
                log::warn!("cache fsck: removing misplaced file {}", p.display());
                if std::fs::remove_file(p).is_ok() {
                    rep.strays_removed += 1;
                }
            }
            for (_, size, p) in &scan.chunks {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_ascii_lowercase())
                    .unwrap_or_default();
                if *size == 0 {
                    log::warn!("cache fsck: removing empty file {}", p.display());
                    if std::fs::remove_file(p).is_ok() {
                        rep.empty_removed += 1;
                    }
                    continue;
                }
                let Some(chunk) = known.get(&name) else {
                    rep.unknown += 1;
                    continue;
                };
                let good = *size as usize <= MAX_OBJECT
                    && std::fs::read(p)
                        .map(|d| chunk.plaintext_matches(&d))
                        .unwrap_or(false);
                if good {
                    rep.verified += 1;
                } else {
                    log::warn!(
                        "cache fsck: {} does not match chunk {chunk}; removing it",
                        p.display()
                    );
                    if std::fs::remove_file(p).is_ok() {
                        rep.bad_removed += 1;
                    }
                }
            }
            Ok((rep, self.scan()?.total()))
        })
    }
}

/// Subdirectories of `dir` with their names (missing `dir` = none).
fn subdirs(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::from(e).context(format!("reading {}", dir.display()))),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.with_ctx(|| format!("reading {}", dir.display()))?;
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push((ent.path(), ent.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(out)
}

/// `<pid>.<hex>`: live while its writer runs and it is recent.
fn tmp_is_live(rest: &str, mtime: SystemTime) -> bool {
    let recent = mtime.elapsed().map(|a| a < TMP_MAX_AGE).unwrap_or(true);
    let pid = rest
        .split('.')
        .next()
        .and_then(|p| p.parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw);
    match pid {
        Some(pid) => recent && rustix::process::test_kill_process(pid).is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("100K").unwrap(), 100 << 10);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("1234").unwrap(), 1234);
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn reserve_evicts_oldest_down_to_the_low_watermark() {
        let d = tempfile::tempdir().unwrap();
        let q = Quota::open(d.path(), 1000).unwrap();
        let mut paths = Vec::new();
        for i in 0..4u8 {
            let hex = format!("{:02x}{}", i, "ab".repeat(31));
            let p = chunk_path(d.path(), &hex);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            q.reserve_with(200, || Ok(())).unwrap();
            std::fs::write(&p, [0u8; 200]).unwrap();
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + i as u64);
            File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
            paths.push(p);
        }
        assert_eq!(q.usage().unwrap(), 800);
        q.reserve_with(300, || Ok(())).unwrap(); // 1100 > 1000: evict down to 900 - 300 = 600
        assert!(
            !paths[0].exists() && paths[1].exists(),
            "oldest evicted first"
        );
        assert_eq!(q.usage().unwrap(), 900);
        let rep = q.gc().unwrap();
        assert_eq!(rep.bytes_after, 600, "usage recomputed from the scan");
    }
}
