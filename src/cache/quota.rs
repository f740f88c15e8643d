//! The cache directory's size bound, shared by every process using the directory, and the
//! maintenance operations on it (`zvfs cache stats|gc|fsck|clear`).
//!
//! A small usage file (`.zvfs-usage`, decimal bytes) counts the bytes in the cache. Every
//! change takes an `flock` on it, so two mounts on one directory keep one quota together.
//! Before a chunk is written its size is reserved; when the reservation would pass the
//! bound, the directory is scanned under the lock, the least recently used files (oldest
//! mtime; readers touch files they use) are removed down to the low watermark (90%) and
//! the usage is recomputed from the scan, which also corrects any drift (files written by
//! rfs or removed by hand). Usage counts what the files take on disk (whole blocks) and
//! the `<hh>` and `<hh>/<hh>` directories too, so the bound holds for `du` of the
//! directory; eviction, `gc`, `clear` and `fsck` remove the directories they leave empty
//! (under the lock, which writers also hold while they create a directory and the
//! temporary file in it). Temporary files left by dead processes (see
//! [`crate::sys::leftovers`]) are removed by scans.
//!
//! This module only manages files; it never reads chunk content except in `fsck`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::codec::{ChunkRef, MAX_OBJECT};
use crate::error::{Context, Error, Result};
use crate::sys::leftovers;

/// Default bound of a cache directory: 4 GiB.
pub const DEFAULT_CACHE_SIZE: u64 = 4 << 30;
/// Prefix of temporary files: `<prefix><pid>.<hex id>` next to their final place.
pub const TMP_PREFIX: &str = ".zvfs-tmp.";
const USAGE_FILE: &str = ".zvfs-usage";
/// Eviction frees space down to this share of the bound, in percent.
const LOW_WATERMARK_PCT: u64 = 90;
/// What a directory is counted for when its real size is unknown (before it exists).
pub const DIR_COST: u64 = 4096;
/// Files are counted in whole blocks of this size before a scan sees their real size.
const BLOCK: u64 = 4096;

/// The bytes a file of `len` bytes is expected to take on disk.
pub fn file_cost(len: u64) -> u64 {
    len.div_ceil(BLOCK) * BLOCK
}

/// What an existing file or directory takes on disk, as counted against the bound.
fn disk_cost(md: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let blocks = md.blocks() * 512;
    if md.is_dir() {
        blocks.max(DIR_COST)
    } else {
        blocks.max(md.len())
    }
}

/// Parse a size such as `4G`, `512M`, `100K`, `1048576` (powers of 1024; `B`, `iB` ok).
/// The bytes a cache directory holds as last recorded by its users (no scan, no lock).
pub fn recorded_usage(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join(USAGE_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Bytes in a size such as `4G`, `512M`, `100k`, `1GiB` or `4096` (binary multiples of
/// K, M, G or T, optionally followed by `B` or `iB`); an `Invalid` error for anything
/// else or an overflow.
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

/// A chunk file found by a scan.
#[derive(Debug)]
pub struct ChunkFile {
    /// Its modification time: when it was last used (its LRU age).
    pub mtime: SystemTime,
    /// Its length.
    pub len: u64,
    /// What it takes on disk.
    pub cost: u64,
    /// Where it is.
    pub path: PathBuf,
}

/// What a scan of the cache directory found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every chunk file, in no particular order.
    pub chunks: Vec<ChunkFile>,
    /// The chunk files' lengths.
    pub chunk_bytes: u64,
    /// What the chunk files take on disk.
    pub chunk_cost: u64,
    /// The `<hh>` and `<hh>/<hh>` directories.
    pub dirs: u64,
    /// What those directories take on disk, in bytes.
    pub dir_bytes: u64,
    /// Directories holding nothing, deepest first (removed by gc, clear and fsck).
    pub empty_dirs: Vec<PathBuf>,
    /// Temporary files of live writers (their bytes count against the bound).
    pub live_tmp: u64,
    /// What those temporary files take on disk, in bytes.
    pub live_tmp_bytes: u64,
    /// Temporary files of dead writers, removed by the scan.
    pub stale_tmp_removed: u64,
    /// Files that are not where a chunk id would put them: in the `<hh>/<hh>` layout
    /// under the wrong name or directory, anything else inside a `<hh>` directory, and
    /// files named like a chunk at the top (reported, removed by fsck).
    pub strays: Vec<PathBuf>,
}

impl Scan {
    /// The bytes counted against the bound.
    pub fn total(&self) -> u64 {
        self.chunk_cost + self.dir_bytes + self.live_tmp_bytes
    }
}

/// Result of `fsck`.
#[derive(Debug, Default)]
pub struct FsckReport {
    /// Chunk files checked.
    pub files: u64,
    /// Empty directories removed.
    pub empty_dirs_removed: u64,
    /// Files of known chunks that matched their key.
    pub verified: u64,
    /// Files of chunks not in the given flists (not verifiable, kept).
    pub unknown: u64,
    /// Files of known chunks that did not match, removed.
    pub bad_removed: u64,
    /// Empty chunk files removed.
    pub empty_removed: u64,
    /// Misplaced files and directories removed (see [`Scan::strays`]).
    pub strays_removed: u64,
    /// Temporary files of dead writers removed.
    pub stale_tmp_removed: u64,
}

/// Result of `gc`.
#[derive(Debug, Default)]
pub struct GcReport {
    /// Usage before, in bytes (as counted against the bound).
    pub bytes_before: u64,
    /// Usage after, in bytes.
    pub bytes_after: u64,
    /// Chunk files evicted.
    pub files_removed: u64,
    /// Temporary files of dead writers removed.
    pub stale_tmp_removed: u64,
    /// Empty directories removed.
    pub empty_dirs_removed: u64,
}

/// The size bound of one cache directory, kept in its usage file under an `flock`.
pub struct Quota {
    dir: PathBuf,
    max: u64,
    low: u64,
}

impl Quota {
    /// The quota of `dir` bounded to `max` bytes; the usage is recounted by a scan.
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

    /// The bound, in bytes.
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

    /// Scan and remove least recently used chunk files, and the directories they leave
    /// empty, until at most `target` bytes remain; returns (bytes left, files removed).
    /// Call with the lock held.
    fn evict(&self, target: u64) -> Result<(u64, u64)> {
        let mut scan = self.scan()?;
        let mut total = scan.total();
        let mut removed = 0;
        if total <= target {
            return Ok((total, 0));
        }
        scan.chunks.sort_by_key(|c| c.mtime);
        let mut emptied = Vec::new();
        for c in &scan.chunks {
            if total <= target {
                break;
            }
            match std::fs::remove_file(&c.path) {
                Ok(()) => {
                    total = total.saturating_sub(c.cost);
                    removed += 1;
                }
                Err(e) if e.kind() == IoKind::NotFound => total = total.saturating_sub(c.cost),
                Err(e) => {
                    log::warn!("cache: cannot evict {}: {e}", c.path.display());
                    continue;
                }
            }
            if let Some(leaf) = c.path.parent() {
                if emptied.last().map(|p: &PathBuf| p != leaf).unwrap_or(true) {
                    emptied.push(leaf.to_path_buf());
                }
            }
        }
        let (_, freed) = prune_dirs(&self.dir, &emptied);
        Ok((total.saturating_sub(freed), removed))
    }

    /// Walk the cache directory: `<dir>/<hh>/<hh>/*` are chunk files (and temporary files,
    /// stale ones removed on the way); see [`Scan`] for what else is noted.
    pub fn scan(&self) -> Result<Scan> {
        let mut scan = Scan::default();
        for l1 in entries(&self.dir)? {
            if !l1.is_dir {
                // Other files at the top (the usage file, ...) are not the cache's chunks.
                if is_chunk_name(&l1.name) {
                    scan.strays.push(l1.path);
                }
                continue;
            }
            if !is_hex2(&l1.name) {
                continue;
            }
            let mut l1_children = 0;
            for l2 in entries(&l1.path)? {
                l1_children += 1;
                if !l2.is_dir || !is_hex2(&l2.name) {
                    scan.strays.push(l2.path);
                    continue;
                }
                self.scan_leaf(&l1.name, &l2, &mut scan)?;
            }
            if let Ok(md) = std::fs::symlink_metadata(&l1.path) {
                scan.dirs += 1;
                scan.dir_bytes += disk_cost(&md);
            }
            if l1_children == 0 {
                scan.empty_dirs.push(l1.path);
            }
        }
        Ok(scan)
    }

    fn scan_leaf(&self, l1_name: &str, l2: &Entry, scan: &mut Scan) -> Result<()> {
        let rd = match std::fs::read_dir(&l2.path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::from(e).context(l2.path.display())),
        };
        let mut children = 0;
        for ent in rd {
            let ent = ent.with_ctx(|| format!("reading {}", l2.path.display()))?;
            children += 1;
            let name = ent.file_name().to_string_lossy().into_owned();
            let path = ent.path();
            let md = match ent.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            let mtime = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if let Some(rest) = name.strip_prefix(TMP_PREFIX) {
                if tmp_is_live(&path, rest) {
                    scan.live_tmp += 1;
                    scan.live_tmp_bytes += disk_cost(&md);
                } else if std::fs::remove_file(&path).is_ok() {
                    scan.stale_tmp_removed += 1;
                    children -= 1;
                }
                continue;
            }
            let placed = md.is_file()
                && is_chunk_name(&name)
                && name[..2].eq_ignore_ascii_case(l1_name)
                && name[2..4].eq_ignore_ascii_case(&l2.name);
            if placed {
                let cost = disk_cost(&md);
                scan.chunk_bytes += md.len();
                scan.chunk_cost += cost;
                scan.chunks.push(ChunkFile {
                    mtime,
                    len: md.len(),
                    cost,
                    path,
                });
            } else {
                scan.strays.push(path);
            }
        }
        if let Ok(md) = std::fs::symlink_metadata(&l2.path) {
            scan.dirs += 1;
            scan.dir_bytes += disk_cost(&md);
        }
        if children == 0 {
            scan.empty_dirs.push(l2.path.clone());
        }
        Ok(())
    }

    /// Evict down to the low watermark when over the bound, remove empty directories;
    /// recount the usage.
    pub fn gc(&self) -> Result<GcReport> {
        self.locked(|_| {
            let scan = self.scan()?;
            let mut rep = GcReport {
                bytes_before: scan.total(),
                stale_tmp_removed: scan.stale_tmp_removed,
                ..Default::default()
            };
            let (n, freed) = prune_dirs(&self.dir, &scan.empty_dirs);
            rep.empty_dirs_removed = n;
            let usage = rep.bytes_before.saturating_sub(freed);
            drop(scan);
            let (left, removed) = if usage > self.max {
                self.evict(self.low)?
            } else {
                (usage, 0)
            };
            rep.bytes_after = left;
            rep.files_removed = removed;
            Ok((rep, left))
        })
    }

    /// Remove every chunk file (and temporary file of a dead writer) and the directories
    /// left empty; returns the files removed.
    pub fn clear(&self) -> Result<u64> {
        self.locked(|_| {
            let scan = self.scan()?;
            let mut removed = 0;
            let mut leaves = Vec::new();
            for c in scan.chunks.iter() {
                if std::fs::remove_file(&c.path).is_ok() {
                    removed += 1;
                }
                if let Some(leaf) = c.path.parent() {
                    if leaves.last().map(|p: &PathBuf| p != leaf).unwrap_or(true) {
                        leaves.push(leaf.to_path_buf());
                    }
                }
            }
            leaves.extend(scan.empty_dirs.iter().cloned());
            prune_dirs(&self.dir, &leaves);
            Ok((removed, self.scan()?.total()))
        })
    }

    /// Check every file: stale temporary files, misplaced files (see [`Scan::strays`]),
    /// empty files and empty directories are removed; a file whose chunk is in `known`
    /// (from flists given to `cache fsck -m`) is verified against its key and removed
    /// when it does not match. Files of unknown chunks cannot be verified (the layout has
    /// only the id) and are counted.
    pub fn fsck(&self, known: &HashMap<String, ChunkRef>) -> Result<FsckReport> {
        self.locked(|_| {
            let scan = self.scan()?;
            let mut rep = FsckReport {
                files: scan.chunks.len() as u64,
                stale_tmp_removed: scan.stale_tmp_removed,
                ..Default::default()
            };
            let mut leaves = scan.empty_dirs.clone();
            for p in &scan.strays {
                log::warn!("cache fsck: removing misplaced {}", p.display());
                let is_dir = std::fs::symlink_metadata(p)
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
                let gone = if is_dir {
                    std::fs::remove_dir_all(p)
                } else {
                    std::fs::remove_file(p)
                };
                if gone.is_ok() {
                    rep.strays_removed += 1;
                    if let Some(parent) = p.parent() {
                        leaves.push(parent.to_path_buf());
                    }
                }
            }
            for c in &scan.chunks {
                let p = &c.path;
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_ascii_lowercase())
                    .unwrap_or_default();
                let bad = if c.len == 0 {
                    log::warn!("cache fsck: removing empty file {}", p.display());
                    &mut rep.empty_removed
                } else {
                    let Some(chunk) = known.get(&name) else {
                        rep.unknown += 1;
                        continue;
                    };
                    let good = c.len as usize <= MAX_OBJECT
                        && std::fs::read(p)
                            .map(|d| chunk.plaintext_matches(&d))
                            .unwrap_or(false);
                    if good {
                        rep.verified += 1;
                        continue;
                    }
                    log::warn!(
                        "cache fsck: {} does not match chunk {chunk}; removing it",
                        p.display()
                    );
                    &mut rep.bad_removed
                };
                if std::fs::remove_file(p).is_ok() {
                    *bad += 1;
                    if let Some(parent) = p.parent() {
                        leaves.push(parent.to_path_buf());
                    }
                }
            }
            rep.empty_dirs_removed = prune_dirs(&self.dir, &leaves).0;
            Ok((rep, self.scan()?.total()))
        })
    }
}

/// Remove each of `dirs` that is an empty `<hh>/<hh>` or `<hh>` directory of the cache in
/// `root`, then the `<hh>` above a removed `<hh>/<hh>` if that became empty. Returns
/// (directories removed, bytes they took). Call with the lock held: a writer creates a
/// directory and its temporary file under the lock, so a directory it is about to use
/// never goes.
fn prune_dirs(root: &Path, dirs: &[PathBuf]) -> (u64, u64) {
    let mut n = 0;
    let mut freed = 0;
    let mut rmdir = |d: &Path| {
        let cost = std::fs::symlink_metadata(d)
            .map(|m| disk_cost(&m))
            .unwrap_or(DIR_COST);
        // rmdir fails (harmlessly) on a directory that is not empty.
        if std::fs::remove_dir(d).is_ok() {
            n += 1;
            freed += cost;
        }
    };
    for d in dirs {
        let Ok(rel) = d.strip_prefix(root) else {
            continue;
        };
        let parts: Vec<_> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        if parts.is_empty() || parts.len() > 2 || !parts.iter().all(|p| p.is_some_and(is_hex2)) {
            continue;
        }
        rmdir(d);
        if parts.len() == 2 && !d.exists() {
            if let Some(parent) = d.parent() {
                rmdir(parent);
            }
        }
    }
    (n, freed)
}

/// A chunk file's name: the hex of a 32-byte (or legacy 16-byte) id.
fn is_chunk_name(name: &str) -> bool {
    (name.len() == 64 || name.len() == 32) && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An entry of a directory, without following symlinks.
struct Entry {
    path: PathBuf,
    name: String,
    is_dir: bool,
}

/// The entries of `dir` (missing `dir` = none).
fn entries(dir: &Path) -> Result<Vec<Entry>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::from(e).context(format!("reading {}", dir.display()))),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.with_ctx(|| format!("reading {}", dir.display()))?;
        out.push(Entry {
            path: ent.path(),
            name: ent.file_name().to_string_lossy().into_owned(),
            is_dir: ent.file_type().map(|t| t.is_dir()).unwrap_or(false),
        });
    }
    Ok(out)
}

/// `<pid>.<hex>`: live unless abandoned by its writer (see [`crate::sys::leftovers`]); a
/// name without a pid is no writer's.
fn tmp_is_live(path: &Path, rest: &str) -> bool {
    match rest
        .split_once('.')
        .and_then(|(pid, _)| leftovers::pid_between(pid, "", ""))
    {
        Some(pid) => !leftovers::is_abandoned(path, pid),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("100K").unwrap(), 100 << 10);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("1234").unwrap(), 1234);
        assert_eq!(
            parse_size("x").err().map(|e| e.kind),
            Some(crate::error::ErrorKind::Invalid)
        );
        assert_eq!(
            parse_size("99999999999T").err().map(|e| e.kind),
            Some(crate::error::ErrorKind::Invalid)
        );
    }

    #[test]
    fn reserve_evicts_oldest_down_to_the_low_watermark_with_its_directories() {
        let d = tempfile::tempdir().unwrap();
        // Each chunk: 10 blocks in its own two directories.
        let len = 10 * BLOCK;
        let each = file_cost(len) + 2 * DIR_COST;
        let q = Quota::open(d.path(), 4 * each + each / 2).unwrap();
        let mut paths = Vec::new();
        for i in 0..4u8 {
            let hex = format!("{:02x}{}", i, "ab".repeat(31));
            let p = chunk_path(d.path(), &hex);
            q.reserve_with(each, || Ok(())).unwrap();
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, vec![1u8; len as usize]).unwrap();
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + i as u64);
            File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
            paths.push(p);
        }
        assert_eq!(q.usage().unwrap(), 4 * each);
        assert_eq!(q.scan().unwrap().total(), 4 * each, "directories counted");
        // 5 chunks do not fit: evict down to 90 % of the bound minus the new one.
        q.reserve_with(each, || Ok(())).unwrap();
        assert!(
            !paths[0].exists() && paths[3].exists(),
            "oldest evicted first"
        );
        assert!(
            !d.path().join("00").exists(),
            "the emptied directories went with it"
        );
        let left = paths.iter().filter(|p| p.exists()).count() as u64;
        assert_eq!(q.usage().unwrap(), left * each + each);
        let rep = q.gc().unwrap();
        assert_eq!(
            rep.bytes_after,
            left * each,
            "usage recomputed from the scan"
        );
        // An empty shard directory left by an older version goes on gc.
        std::fs::create_dir_all(d.path().join("ee/ff")).unwrap();
        let rep = q.gc().unwrap();
        assert_eq!(rep.empty_dirs_removed, 2);
        assert!(!d.path().join("ee").exists());
        assert_eq!(q.clear().unwrap(), left);
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [USAGE_FILE], "clear leaves no directories");
    }
}
