//! `zvfs diff A B`: what changed between two flists. Paths are added (`A`), deleted (`D`)
//! or modified (`M <what>`: type, content, target, rdev, mode, owner, xattrs, links, and
//! mtime with `--mtime`). Content is compared by size, then by full checksum when both
//! sides record identity, otherwise by chunk-key sequence (the key is the hash of the
//! plaintext chunk, so this works across rfs and zvfs flists). Only when neither settles
//! it (a legacy flist against a v2 one: other chunk keys, no checksums) is the content of
//! same-size files fetched through `cmd::Chunks` and hashed chunk by chunk; flists of one
//! generation never fetch anything. Exit status like diff(1): 0 identical, 1 different,
//! 2 error.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Serialize;

use super::content::{chunk_key, display_path};
use super::{Chunks, StoreFlags};
use crate::error::{Context, Error, ExitCode, Result};
use crate::flist::{self, Entry, Flist, Ino, Kind};
use crate::identity::FullChecksum;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Content is decided from metadata whenever it can be: different sizes differ; equal full \
checksums (zvfs flists) or equal chunk-key sequences (flists of one generation) are equal. \
Only files of equal size whose contents no metadata can compare (a legacy .flist against a \
v2 .fl: other chunk keys, no checksums) are fetched from their flist's stores, chunk by \
chunk, and compared by SHA-256; the number of files fetched is printed on stderr. \
--store-a/--store-b override each flist's routes for that; a fetch that fails exits 2.")]
pub struct Args {
    /// The old flist.
    pub a: PathBuf,
    /// The new flist.
    pub b: PathBuf,
    /// Also report modification times that differ (`M mtime`).
    #[arg(long)]
    pub mtime: bool,
    /// Machine-readable output (JSON).
    #[arg(long)]
    pub json: bool,
    /// Print nothing; only the exit status tells.
    #[arg(short, long)]
    pub quiet: bool,
    /// Store for A's chunks instead of its routes, `[xx-xx=]URL` (repeatable); used only
    /// for content that must be fetched to be compared.
    #[arg(long = "store-a", value_name = "URL")]
    pub store_a: Vec<String>,
    /// Store for B's chunks instead of its routes (repeatable), like `--store-a`.
    #[arg(long = "store-b", value_name = "URL")]
    pub store_b: Vec<String>,
    /// Chunk cache for fetched content.
    #[command(flatten)]
    pub cache: super::CacheFlags,
    #[command(flatten)]
    pub store_flags: StoreFlags,
}

/// One line of the report.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `A` (only in B), `D` (only in A) or `M` (in both, different).
    pub change: &'static str,
    /// For `M`: what differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what: Option<&'static str>,
    pub path: String,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match run_inner(&args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("zvfs: diff: {e}");
            Ok(ExitCode::TROUBLE)
        }
    }
}

fn run_inner(args: &Args) -> Result<ExitCode> {
    let a = flist::open(&args.a)?;
    let b = flist::open(&args.b)?;
    let opts = Options { mtime: args.mtime };
    let mut fetch = Fetch::new(
        [&args.store_a, &args.store_b],
        &args.cache,
        &args.store_flags,
    );
    let mut changes = Vec::new();
    let mut out = super::content::Out::new();
    let result = diff(a.as_ref(), b.as_ref(), &opts, &mut fetch, &mut |c| {
        if !args.json && !args.quiet {
            match c.what {
                Some(w) => out.line(format_args!("{} {} {}", c.change, w, c.path))?,
                None => out.line(format_args!("{} {}", c.change, c.path))?,
            }
        }
        changes.push(c);
        Ok(())
    });
    if fetch.files > 0 && !args.quiet {
        eprintln!(
            "zvfs: diff: fetched {} file{} ({} chunks, {} bytes) to compare content without common checksums",
            fetch.files,
            if fetch.files == 1 { "" } else { "s" },
            fetch.chunks_fetched,
            fetch.bytes
        );
    }
    result?;
    if args.json && !args.quiet {
        #[derive(Serialize)]
        struct Out<'a> {
            identical: bool,
            added: usize,
            removed: usize,
            modified: usize,
            changes: &'a [Change],
        }
        let count = |k: &str| changes.iter().filter(|c| c.change == k).count();
        let modified: HashSet<&str> = changes
            .iter()
            .filter(|c| c.change == "M")
            .map(|c| c.path.as_str())
            .collect();
        let report = Out {
            identical: changes.is_empty(),
            added: count("A"),
            removed: count("D"),
            modified: modified.len(),
            changes: &changes,
        };
        let s = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::io(format!("encoding JSON: {e}")))?;
        out.line(format_args!("{s}"))?;
    }
    out.finish()?;
    Ok(if changes.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::DIFFERENT
    })
}

/// What to compare beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct Options {
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
    cache: &'a super::CacheFlags,
    flags: &'a StoreFlags,
    chunks: [Option<Chunks>; 2],
    /// Files whose content was fetched (one per side and file).
    pub files: u64,
    pub chunks_fetched: u64,
    /// Plaintext bytes fetched.
    pub bytes: u64,
}

impl<'a> Fetch<'a> {
    pub fn new(
        overrides: [&'a [String]; 2],
        cache: &'a super::CacheFlags,
        flags: &'a StoreFlags,
    ) -> Fetch<'a> {
        Fetch {
            overrides,
            cache,
            flags,
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
            let c = Chunks::open(fl, self.overrides[side], self.cache, 1, self.flags)
                .with_ctx(|| format!("stores of flist {which}"))?;
            self.chunks[side] = Some(c);
        }
        let Some(chunks) = &self.chunks[side] else {
            return Err(Error::invalid("no chunk source"));
        };
        let mut full = FullChecksum::new();
        let mut size = 0u64;
        for c in fl.blocks(e.content_ino())? {
            let plain = chunks
                .fetch(&c)
                .with_ctx(|| format!("fetching content from flist {which}"))?;
            self.chunks_fetched += 1;
            self.bytes += plain.len() as u64;
            size += plain.len() as u64;
            full.update(&plain);
        }
        if size != e.size {
            return Err(Error::format(format!(
                "flist {which}: chunks hold {size} bytes, the entry says {}",
                e.size
            )));
        }
        self.files += 1;
        Ok(full.finish())
    }
}
