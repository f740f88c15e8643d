//! What changed between two flists (`zvfs diff`), and deduplication analysis ([`dedup`]). Paths are added (`A`), deleted (`D`)
//! or modified (`M <what>`: type, content, target, rdev, mode, owner, xattrs, links, and
//! mtime with `--mtime`). Content is compared by size, then by full checksum when both
//! sides record identity, otherwise by chunk-key sequence (the key is the hash of the
//! plaintext chunk, so this works across rfs and zvfs flists). Only when neither settles
//! it (a legacy flist against a v2 one: other chunk keys, no checksums) is the content of
//! same-size files fetched through `content::Chunks` and hashed chunk by chunk; flists of one
//! generation never fetch anything. It reads flists and, only for that, chunks; it writes nothing.

pub mod dedup;

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

use crate::content::local::display_path;
use crate::content::{CacheSpec, Chunks, FileContent, Layout};
use crate::error::{Context, Error, Result};
use crate::flist::{self, Entry, Flist, Ino, Kind};
use crate::identity::chunk_key;
use crate::identity::FullChecksum;
use crate::store::StoreConfig;

/// One line of the report.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `A` (only in B), `D` (only in A) or `M` (in both, different).
    pub change: &'static str,
    /// For `M`: what differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what: Option<&'static str>,
    /// The path, from the root, printed with non-UTF-8 bytes escaped.
    pub path: String,
}

/// What to compare beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Also report entries whose modification time differs.
    pub mtime: bool,
}

enum Task {
    Both(Entry, Entry, Vec<u8>),
    OnlyA(Entry, Vec<u8>),
    OnlyB(Entry, Vec<u8>),
}

/// Compare two flists, reporting changes in path order (component by component, so a
/// directory comes right before its contents).
pub fn diff(
    a: &dyn Flist,
    b: &dyn Flist,
    opts: &Options,
    fetch: &mut Fetch<'_>,
    report: &mut dyn FnMut(Change) -> Result<()>,
) -> Result<()> {
    let ra = a.get(flist::ROOT_INO)?;
    let rb = b.get(flist::ROOT_INO)?;
    let mut seen_a: HashSet<Ino> = HashSet::new();
    let mut seen_b: HashSet<Ino> = HashSet::new();
    let mut stack = vec![Task::Both(ra, rb, Vec::new())];
    while let Some(task) = stack.pop() {
        let mut next: Vec<Task> = Vec::new();
        match task {
            Task::Both(ea, eb, path) => {
                for what in compare(a, b, &ea, &eb, opts, fetch).with_ctx(|| display_path(&path))? {
                    report(Change {
                        change: "M",
                        what: Some(what),
                        path: display_path(&path),
                    })?;
                }
                let ka = children(a, &ea, &path, &mut seen_a)?;
                let kb = children(b, &eb, &path, &mut seen_b)?;
                let (mut ia, mut ib) = (ka.into_iter().peekable(), kb.into_iter().peekable());
                loop {
                    let order = match (ia.peek(), ib.peek()) {
                        (None, None) => break,
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (Some(x), Some(y)) => x.name.cmp(&y.name),
                    };
                    match order {
                        std::cmp::Ordering::Less => {
                            if let Some(x) = ia.next() {
                                let p = join(&path, &x.name);
                                next.push(Task::OnlyA(x, p));
                            }
                        }
                        std::cmp::Ordering::Greater => {
                            if let Some(y) = ib.next() {
                                let p = join(&path, &y.name);
                                next.push(Task::OnlyB(y, p));
                            }
                        }
                        std::cmp::Ordering::Equal => {
                            if let (Some(x), Some(y)) = (ia.next(), ib.next()) {
                                let p = join(&path, &x.name);
                                next.push(Task::Both(x, y, p));
                            }
                        }
                    }
                }
            }
            Task::OnlyA(e, path) => {
                report(Change {
                    change: "D",
                    what: None,
                    path: display_path(&path),
                })?;
                for k in children(a, &e, &path, &mut seen_a)? {
                    let p = join(&path, &k.name);
                    next.push(Task::OnlyA(k, p));
                }
            }
            Task::OnlyB(e, path) => {
                report(Change {
                    change: "A",
                    what: None,
                    path: display_path(&path),
                })?;
                for k in children(b, &e, &path, &mut seen_b)? {
                    let p = join(&path, &k.name);
                    next.push(Task::OnlyB(k, p));
                }
            }
        }
        stack.extend(next.into_iter().rev());
    }
    Ok(())
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The children of a directory sorted by name (none for other types), refusing cycles
/// and unsafe names.
fn children(fl: &dyn Flist, e: &Entry, path: &[u8], seen: &mut HashSet<Ino>) -> Result<Vec<Entry>> {
    if !e.is_dir() {
        return Ok(Vec::new());
    }
    if !seen.insert(e.ino) {
        return Err(Error::format(format!(
            "directory cycle at {} (inode {})",
            display_path(path),
            e.ino
        )));
    }
    let mut kids = fl.children(e.ino)?;
    for k in &kids {
        flist::check_name(&k.name).with_ctx(|| format!("in {}", display_path(path)))?;
    }
    kids.sort_by(|x, y| x.name.cmp(&y.name));
    for w in kids.windows(2) {
        if w[0].name == w[1].name {
            return Err(Error::format(format!(
                "two entries named {} in one directory",
                display_path(&join(path, &w[0].name))
            )));
        }
    }
    Ok(kids)
}

/// What differs between two entries of the same path.
fn compare(
    a: &dyn Flist,
    b: &dyn Flist,
    ea: &Entry,
    eb: &Entry,
    opts: &Options,
    fetch: &mut Fetch<'_>,
) -> Result<Vec<&'static str>> {
    let mut out = Vec::new();
    let kind = ea.kind();
    if kind != eb.kind() {
        out.push("type");
        return Ok(out);
    }
    let differs = match kind {
        Kind::File => !same_content(a, b, ea, eb, fetch)?,
        Kind::Symlink => a.link_target(ea.ino)? != b.link_target(eb.ino)?,
        Kind::CharDev | Kind::BlockDev => ea.rdev != eb.rdev,
        _ => false,
    };
    if differs {
        out.push(match kind {
            Kind::File => "content",
            Kind::Symlink => "target",
            _ => "rdev",
        });
    }
    if ea.mode & 0o7777 != eb.mode & 0o7777 {
        out.push("mode");
    }
    if (ea.uid, ea.gid) != (eb.uid, eb.gid) {
        out.push("owner");
    }
    let (mut xa, mut xb) = (a.xattrs(ea.ino)?, b.xattrs(eb.ino)?);
    xa.sort();
    xb.sort();
    if xa != xb {
        out.push("xattrs");
    }
    // Hardlinks: how many paths share this content (never for directories).
    if !ea.is_dir() && ea.nlink != eb.nlink {
        out.push("links");
    }
    if opts.mtime && ea.mtime != eb.mtime {
        out.push("mtime");
    }
    Ok(out)
}

/// Same content: size, then checksums when both sides have them, else the chunk-key
/// sequences when both are of one codec; otherwise (chunk lists of different codecs and
/// no common checksum) the SHA-256 of what lacks one, fetched chunk by chunk.
fn same_content(
    a: &dyn Flist,
    b: &dyn Flist,
    ea: &Entry,
    eb: &Entry,
    fetch: &mut Fetch<'_>,
) -> Result<bool> {
    if ea.size != eb.size {
        return Ok(false);
    }
    let (ia, ib) = (ea.content_ino(), eb.content_ino());
    let (ida, idb) = (a.identity(ia)?, b.identity(ib)?);
    if let (Some(x), Some(y)) = (ida, idb) {
        return Ok(x.checksum == y.checksum);
    }
    let ka: Vec<_> = a.blocks(ia)?.iter().map(chunk_key).collect();
    let kb: Vec<_> = b.blocks(ib)?.iter().map(chunk_key).collect();
    match (ka.first(), kb.first()) {
        (Some(x), Some(y)) if x.0 != y.0 => {}
        _ => return Ok(ka == kb),
    }
    let sa = match ida {
        Some(id) => id.checksum,
        None => fetch.checksum(0, a, ea)?,
    };
    let sb = match idb {
        Some(id) => id.checksum,
        None => fetch.checksum(1, b, eb)?,
    };
    Ok(sa == sb)
}

/// Content fetched to be compared: each side's chunk source, opened on first need, and
/// what was fetched.
pub struct Fetch<'a> {
    overrides: [&'a [String]; 2],
    cache: Option<CacheSpec>,
    cfg: StoreConfig,
    chunks: [Option<Chunks>; 2],
    /// Files whose content was fetched (one per side and file).
    pub files: u64,
    /// Chunks fetched (from the cache or the stores).
    pub chunks_fetched: u64,
    /// Plaintext bytes fetched.
    pub bytes: u64,
}

impl<'a> Fetch<'a> {
    /// Nothing opened yet: side A's stores are its flist's routes unless `overrides[0]`
    /// (`-s` URLs) is given, and the same for side B; `cache` is shared by both.
    pub fn new(
        overrides: [&'a [String]; 2],
        cache: Option<CacheSpec>,
        cfg: StoreConfig,
    ) -> Fetch<'a> {
        Fetch {
            overrides,
            cache,
            cfg,
            chunks: [None, None],
            files: 0,
            chunks_fetched: 0,
            bytes: 0,
        }
    }

    /// SHA-256 of a file's content on `side` (0: A, 1: B), streamed chunk by chunk.
    fn checksum(&mut self, side: usize, fl: &dyn Flist, e: &Entry) -> Result<[u8; 32]> {
        let which = if side == 0 { "A" } else { "B" };
        if self.chunks[side].is_none() {
            let c = Chunks::open(fl, self.overrides[side], self.cache.as_ref(), 1, &self.cfg)
                .with_ctx(|| format!("stores of flist {which}"))?;
            self.chunks[side] = Some(c);
        }
        let Some(chunks) = &self.chunks[side] else {
            return Err(Error::invalid("no chunk source"));
        };
        let mut full = FullChecksum::new();
        let file = FileContent::new(
            e.size,
            Arc::new(fl.blocks(e.content_ino())?),
            format!("flist {which}"),
        );
        let (mut n, mut bytes) = (0u64, 0u64);
        let fetched = file.read(chunks, Layout::Any, |_, plain| {
            n += 1;
            bytes += plain.len() as u64;
            full.update(plain);
            Ok(())
        });
        self.chunks_fetched += n;
        self.bytes += bytes;
        fetched.ctx("fetching content")?;
        self.files += 1;
        Ok(full.finish())
    }
}
