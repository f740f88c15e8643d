//! The import engine: a container image (registry, OCI layout, docker-archive; found and
//! verified by [`crate::image`]) becomes an flist whose chunks are in the given stores,
//! with no Docker daemon and nothing extracted to disk.
//!
//! Two passes over the layers:
//! 1. **Metadata.** Every layer's tar is streamed (the lower ones by a few threads at
//!    once) and its entries are then applied in order to an in-memory tree ([`tree`]):
//!    names, modes, owners, links, whiteouts, with a regular file's content only a
//!    reference (layer, entry number). A lower layer's contents are skipped (the blob is
//!    still read to its end and checked against its digest). The top layer's files are
//!    encoded as they stream past, since no layer above can hide them: it is read once.
//! 2. **Content.** Only the regular files of lower layers that the final tree still uses
//!    are encoded: a lower layer is read a second time only if it holds such files, and
//!    only those entries go through pack's chunker ([`crate::pack::chunker`]). Chunk ids
//!    and keys are the ones `zvfs pack` gives the same content, and a file an upper layer
//!    deleted or replaced uploads nothing.
//!
//! So the top layer is read once and the others at most twice (once when every file they
//! hold was deleted above them); memory is the tree's metadata plus pack's bounded buffer
//! pool. The local layer index ([`index`], `CACHE/layers/index.db`) remembers each
//! layer's entries and encoded files by digest and stores: an import finds them there and
//! neither reads nor uploads those layers again. The flist is written to a temporary file
//! and renamed into place only when everything succeeded; the index is updated after that.
//!
//! This module parses no command line and prints nothing but a progress line on a
//! terminal's stderr.

pub mod hiders;
pub mod index;
pub mod layer;
pub mod startup;
pub mod tree;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::codec::ChunkRef;
use crate::error::{Error, Result};
use crate::flist::v2::{NewEntry, V2Writer};
use crate::flist::{Identity, Ino, Route, S_IFDIR, S_IFLNK, S_IFREG};
use crate::image::{FetchOptions, Image};
use crate::pack::chunker::{self, Completed};
use crate::pack::route_rows;
use crate::store::router::Router;
use crate::sys::atomic::AtomicFile;
use crate::sys::progress::ProgressLine;
use hiders::Hiders;
use index::{LayerIndex, Record};
use startup::{json_list, Startup};
use tree::{ContentRef, EntryKind, LayerEntry, Meta, Tree};

/// The name of the start file written into the root.
pub const STARTUP_FILE: &str = ".startup.toml";

/// The content reference of the start file (no layer has that many entries).
const STARTUP_REF: ContentRef = ContentRef {
    layer: u16::MAX,
    entry: u32::MAX,
};

/// What to import, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The image reference (`docker://...`, `NAME[:TAG]`, `oci:DIR[:TAG]`,
    /// `docker-archive:FILE`).
    pub image: String,
    /// How to find and fetch it.
    pub fetch: FetchOptions,
    /// The flist to write (replaced atomically; nothing is written on failure).
    pub output: PathBuf,
    /// The stores, recorded as the flist's routes.
    pub routes: Vec<Route>,
    /// Tags to record besides the `image.*` ones.
    pub tags: Vec<(String, String)>,
    /// Encoding and upload workers.
    pub jobs: usize,
    /// Keep passwords in the routes written into the flist.
    pub keep_passwords: bool,
    /// Write `/.startup.toml` from the image config.
    pub startup_file: bool,
    /// Where the layer index lives (`None`: no reuse, nothing recorded).
    pub index_dir: Option<PathBuf>,
    /// A parsed trace stored as the flist's prefetch table before it is published
    /// (`--prefetch`, as `zvfs prefetch add`).
    pub prefetch: Option<Vec<crate::flist::trace::TraceLine>>,
}

/// What an import did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// What `--prefetch` stored (the trace resolved against the new flist).
    pub prefetch: Option<crate::flist::v2::prefetch::Resolved>,
    /// The image as named.
    pub image: String,
    /// Its manifest digest.
    pub manifest_digest: String,
    /// Layers in the image.
    pub layers: usize,
    /// Layers neither read nor uploaded: everything came from the layer index.
    pub reused_layers: usize,
    /// Layer blob reads (metadata and content passes together).
    pub layer_reads: usize,
    /// Uncompressed layer bytes read.
    pub read_bytes: u64,
    /// Entries written (every path, the root included).
    pub entries: u64,
    /// Regular files (every path of a hardlinked file counts).
    pub files: u64,
    /// Content bytes of the result (each hardlinked file once).
    pub bytes: u64,
    /// Block rows written.
    pub chunks: u64,
    /// Unique chunks uploaded.
    pub uploaded: u64,
    /// Their encoded bytes.
    pub uploaded_bytes: u64,
    /// Content bytes taken from the layer index (not read, not uploaded).
    pub reused_bytes: u64,
    /// Chunks taken from the layer index.
    pub reused_chunks: u64,
    /// Files whose content came from the layer index.
    pub reused_files: u64,
    /// Wall-clock time.
    pub seconds: f64,
}

impl Summary {
    /// The reuse line, like pack's `--base` report: `None` when nothing was reused.
    pub fn reuse_report(&self) -> Option<String> {
        if self.reused_layers == 0 && self.reused_chunks == 0 {
            return None;
        }
        Some(format!(
            "reused {} layers ({} bytes, {} chunks, {} files) from the layer index, nothing read or uploaded for them",
            self.reused_layers, self.reused_bytes, self.reused_chunks, self.reused_files
        ))
    }
}

/// Import `opts.image` into `opts.output`, uploading chunks through `router` (which must
/// write to `opts.routes`).
pub fn import(opts: &Options, router: &Router) -> Result<Summary> {
    let started = Instant::now();
    let image = Image::open(&opts.image, &opts.fetch)?;
    let name = image.reference.clone();
    let nlayers = image.layers.len();
    if nlayers >= u16::MAX as usize {
        return Err(Error::invalid(format!(
            "{name}: {nlayers} layers is more than an import handles"
        )));
    }
    let mut summary = Summary {
        image: name.clone(),
        manifest_digest: image.manifest_digest.clone(),
        layers: nlayers,
        ..Summary::default()
    };
    let mut idx = match &opts.index_dir {
        Some(d) => LayerIndex::open(d, stores_key(&opts.routes)),
        None => LayerIndex::none(),
    };
    let created = image
        .config
        .created
        .as_deref()
        .and_then(parse_rfc3339)
        .unwrap_or(0);
    let implicit = Meta {
        perm: 0o755,
        uid: 0,
        gid: 0,
        mtime: created,
        rdev: 0,
        xattrs: Vec::new(),
    };
    let mut tree = Tree::new(implicit.clone());
    let mut progress = Progress::new();
    let what = |i: usize| {
        format!(
            "layer {} of {} ({}) of {name}",
            i + 1,
            nlayers,
            image.layers[i].digest
        )
    };

    let known: Vec<index::Known> = image.layers.iter().map(|l| idx.get(&l.digest)).collect();
    let top = nlayers.checked_sub(1);
    let startup = opts.startup_file.then(|| {
        let c = &image.config;
        Startup::new(&c.entrypoint, &c.cmd, &c.env, &c.working_dir).toml()
    });
    let mut known = known;
    // Layers read now (not found in the index).
    let mut read_now: Vec<bool> = vec![false; nlayers];
    // Regular files fed to the chunker, whose blocks the run returns.
    let mut fed: HashSet<ContentRef> = HashSet::new();
    let mut results = Blocks::default();
    let mut encoded: Vec<ContentRef> = Vec::new();
    let ((), up) = chunker::run(opts.jobs, router, |ch| {
        ch.set_read_error(crate::image::layer_error);
        // Pass 1: the entries of every layer the index does not list. The lower layers are
        // listed by threads while this one reads the top layer and encodes its files as
        // they stream past: nothing above it can hide them, so it is read only once.
        // The bottom layer (below others) is read after them, once (see below).
        let bottom_now = nlayers >= 2 && known[0].entries.is_none();
        let lower: Vec<usize> = (0..nlayers)
            .filter(|&i| Some(i) != top && known[i].entries.is_none() && !(i == 0 && bottom_now))
            .collect();
        let read_top = top.filter(|&t| known[t].entries.is_none());
        progress.phase(format!("listing {nlayers} layers, encoding the top one"));
        let next = AtomicUsize::new(0);
        let threads = opts.jobs.clamp(1, 4).min(lower.len());
        let mut listed: Vec<(usize, Result<Listed>)> = Vec::new();
        std::thread::scope(|sc| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    sc.spawn(|| {
                        let mut out = Vec::new();
                        while let Some(&i) = lower.get(next.fetch_add(1, Ordering::Relaxed)) {
                            let r = list_layer(&image, i, &what(i));
                            let failed = r.is_err();
                            out.push((i, r));
                            if failed {
                                next.store(lower.len(), Ordering::Relaxed);
                            }
                        }
                        out
                    })
                })
                .collect();
            if let Some(t) = read_top {
                let r = read_layer(&image, t, &what(t), &mut |n, e, content| {
                    if e.kind == EntryKind::File && !tree::is_whiteout(&e.path) {
                        let c = ContentRef {
                            layer: t as u16,
                            entry: n,
                        };
                        encode(ch, c, e, content, &mut progress)?;
                        fed.insert(c);
                        results.take(ch.take_completed(), &mut encoded);
                    }
                    Ok(())
                });
                if r.is_err() {
                    next.store(lower.len(), Ordering::Relaxed);
                }
                listed.push((t, r));
            }
            for h in handles {
                match h.join() {
                    Ok(v) => listed.extend(v),
                    Err(_) => listed.push((0, Err(Error::io("a layer reader panicked")))),
                }
            }
        });
        listed.sort_by_key(|(i, _)| *i);
        let mut lists: Vec<Option<Vec<LayerEntry>>> = vec![None; nlayers];
        for (i, r) in listed {
            let (entries, n) = r?;
            summary.layer_reads += 1;
            summary.read_bytes += n;
            // Verified (read to its end): its entries go to the index now, and then move
            // into the tree, so the metadata is held once.
            idx.record_entries(&image.layers[i].digest, &entries);
            read_now[i] = true;
            lists[i] = Some(entries);
        }
        // The bottom layer, read once: each file is encoded as it streams past unless an
        // upper layer may delete or replace it (those wait for pass 2). Its entries are
        // applied as they come: it is the first layer, its paths are final.
        if bottom_now {
            let hiders = Hiders::new(
                (1..nlayers).filter_map(|i| known[i].entries.as_deref().or(lists[i].as_deref())),
            );
            let mut hazard = false;
            tree.begin_layer(0);
            progress.phase(format!("reading layer 1/{nlayers}"));
            let mut rec = idx.entry_recorder(&image.layers[0].digest);
            let n = stream_layer(&image, 0, &what(0), &mut |n, e, content| {
                rec.add(e);
                let c = ContentRef { layer: 0, entry: n };
                let Some(node) = tree.apply(e.clone(), c)? else {
                    return Ok(());
                };
                match e.kind {
                    EntryKind::File if !hazard && !hiders.may_hide(&tree.path_of(node)) => {
                        encode(ch, c, e, content, &mut progress)?;
                        fed.insert(c);
                        results.take(ch.take_completed(), &mut encoded);
                    }
                    EntryKind::Symlink if hiders.under(&tree.path_of(node)) => hazard = true,
                    _ => {}
                }
                Ok(())
            })?;
            // Read to its end: verified, so its entries are committed to the index.
            rec.finish();
            summary.layer_reads += 1;
            summary.read_bytes += n;
            read_now[0] = true;
        }
        for (i, list) in lists.iter_mut().enumerate() {
            if i == 0 && bottom_now {
                continue;
            }
            tree.begin_layer(i as u16);
            let Some(entries) = known[i].entries.take().or_else(|| list.take()) else {
                continue;
            };
            for (n, e) in entries.into_iter().enumerate() {
                let c = ContentRef {
                    layer: i as u16,
                    entry: n as u32,
                };
                let path = tree::show(&e.path);
                tree.apply(e, c)
                    .map_err(|err| err.context(format!("{}: entry {path}", what(i))))?;
            }
        }

        // What the result uses, and what of it the index or pass 1 already has.
        let mut wanted: BTreeMap<u16, HashSet<u32>> = BTreeMap::new();
        let used = tree.contents();
        for &(c, size) in &used {
            if fed.contains(&c) {
                continue;
            }
            match known[c.layer as usize].content.get(&c.entry) {
                Some(found) => {
                    summary.reused_files += 1;
                    summary.reused_chunks += found.0.len() as u64;
                    summary.reused_bytes += size;
                    results.insert(c, &found.0, found.1);
                }
                None => {
                    wanted.entry(c.layer).or_default().insert(c.entry);
                }
            }
        }
        // The index's chunk lists are in `results` now.
        for k in &mut known {
            k.content = HashMap::new();
        }
        let unused = fed.len() - used.iter().filter(|(c, _)| fed.contains(c)).count();
        if unused > 0 {
            log::warn!(
                "{name}: {unused} files were encoded as they streamed past but are not in the result (a layer lists a path twice, or an upper layer writes through a symlink of the bottom one): their chunks are in the store, unused"
            );
        }
        summary.reused_layers = (0..nlayers)
            .filter(|&i| !read_now[i] && !wanted.contains_key(&(i as u16)))
            .count();

        // Pass 2: the files of lower layers that the result uses.
        for (&layer, entries) in &wanted {
            let i = layer as usize;
            progress.phase(format!("encoding layer {}/{nlayers}", i + 1));
            let mut seen = 0usize;
            let (_, n) = read_layer(&image, i, &what(i), &mut |n, e, content| {
                if !entries.contains(&n) {
                    return Ok(());
                }
                seen += 1;
                let c = ContentRef { layer, entry: n };
                encode(ch, c, e, content, &mut progress)?;
                fed.insert(c);
                results.take(ch.take_completed(), &mut encoded);
                Ok(())
            })?;
            if seen != entries.len() {
                return Err(Error::corrupt(format!(
                    "{}: the second read found {seen} of the {} files the first read listed",
                    what(i),
                    entries.len()
                )));
            }
            summary.layer_reads += 1;
            summary.read_bytes += n;
        }
        if let Some(doc) = &startup {
            let path: Arc<Path> = Arc::from(Path::new("/.startup.toml"));
            ch.add(
                key(STARTUP_REF),
                &mut doc.as_bytes(),
                doc.len() as u64,
                &path,
                &mut |_| {},
            )?;
        }
        ch.wait_all()?;
        results.take(ch.take_completed(), &mut encoded);
        Ok(())
    })?;
    progress.clear();
    summary.uploaded = up.chunks;
    summary.uploaded_bytes = up.bytes;
    if let Some(doc) = &startup {
        let meta = Meta {
            perm: 0o644,
            uid: 0,
            gid: 0,
            mtime: created,
            rdev: 0,
            xattrs: Vec::new(),
        };
        tree.put_root_file(STARTUP_FILE.as_bytes(), meta, doc.len() as u64, STARTUP_REF);
    }

    // The flist.
    let tmp = AtomicFile::new(&opts.output)?;
    let w = V2Writer::create(tmp.path())?;
    for (k, v) in image_tags(&image, opts.startup_file)
        .iter()
        .chain(&opts.tags)
    {
        w.set_tag(k, v)?;
    }
    for r in route_rows(&opts.routes, opts.keep_passwords) {
        w.add_route(&r)?;
    }
    write_tree(&w, &tree, &results, &mut summary)?;
    // Objects are synced once, here, before the flist that refers to them is published.
    router.flush()?;
    w.finish()?;
    if let Some(lines) = &opts.prefetch {
        summary.prefetch = Some(crate::flist::v2::prefetch::add_trace_unpublished(
            tmp.path(),
            lines,
        )?);
    }
    tmp.commit()?;

    // The layer index, now that the chunks it names are in the stores.
    let mut by_layer: BTreeMap<u16, Vec<index::Encoded<'_>>> = BTreeMap::new();
    for r in &encoded {
        if let Some((b, id)) = results.get(r) {
            by_layer.entry(r.layer).or_default().push((r.entry, b, id));
        }
    }
    let records: Vec<Record<'_>> = (0..nlayers)
        .map(|i| Record {
            digest: &image.layers[i].digest,
            entries: None,
            content: by_layer.remove(&(i as u16)).unwrap_or_default(),
        })
        .collect();
    idx.record(&records);
    summary.seconds = started.elapsed().as_secs_f64();
    log::debug!(
        "{name}: {} layer reads, {} uncompressed bytes read",
        summary.layer_reads,
        summary.read_bytes
    );
    Ok(summary)
}

/// The chunk lists and identities of the files encoded or taken from the index, in one
/// arena: a file's blocks are a range of one vector, no allocation per file.
#[derive(Default)]
struct Blocks {
    blocks: Vec<ChunkRef>,
    files: HashMap<ContentRef, (u32, u32, Identity)>,
}

impl Blocks {
    fn insert(&mut self, c: ContentRef, blocks: &[ChunkRef], identity: Identity) {
        let start = self.blocks.len() as u32;
        self.blocks.extend_from_slice(blocks);
        self.files.insert(c, (start, blocks.len() as u32, identity));
    }

    fn get(&self, c: &ContentRef) -> Option<(&[ChunkRef], &Identity)> {
        let (start, len, id) = self.files.get(c)?;
        let b = self.blocks.get(*start as usize..(*start + *len) as usize)?;
        Some((b, id))
    }

    /// Take what the chunker completed (`encoded` lists the image's files among them).
    fn take(&mut self, done: Vec<Completed>, encoded: &mut Vec<ContentRef>) {
        for c in done {
            let r = unkey(c.key);
            if r != STARTUP_REF {
                encoded.push(r);
            }
            self.insert(r, &c.blocks, c.identity);
        }
    }
}

/// A layer's entries and the uncompressed bytes read.
type Listed = (Vec<LayerEntry>, u64);

/// Read layer `i` to its end: its entries (and the uncompressed bytes read), each also
/// handed with its content to `f`.
fn read_layer(
    image: &Image,
    i: usize,
    what: &str,
    f: &mut dyn FnMut(u32, &LayerEntry, &mut dyn Read) -> Result<()>,
) -> Result<Listed> {
    let mut list = Vec::new();
    let n = stream_layer(image, i, what, &mut |n, e, content| {
        f(n, e, content)?;
        list.push(e.clone());
        Ok(())
    })?;
    Ok((list, n))
}

/// Read layer `i` to its end, each entry handed with its content to `f`; returns the
/// uncompressed bytes read.
fn stream_layer(
    image: &Image,
    i: usize,
    what: &str,
    f: &mut dyn FnMut(u32, &LayerEntry, &mut dyn Read) -> Result<()>,
) -> Result<u64> {
    let mut r = Counted::new(image.layer_reader(i)?);
    layer::each_entry(&mut r, what, f)?;
    Ok(r.n)
}

/// The entries of layer `i` (its contents skipped, the blob still read to its end).
fn list_layer(image: &Image, i: usize, what: &str) -> Result<Listed> {
    read_layer(image, i, what, &mut |_, _, _| Ok(()))
}

/// Feed one regular file's content to the chunker.
fn encode(
    ch: &mut chunker::Chunker<'_, '_, '_>,
    c: ContentRef,
    e: &LayerEntry,
    content: &mut dyn Read,
    progress: &mut Progress,
) -> Result<()> {
    let path: Arc<Path> = Arc::from(Path::new(OsStr::from_bytes(&e.path)));
    let got = ch.add(key(c), content, e.size, &path, &mut |fed| {
        progress.tick(fed.bytes, fed.chunks)
    })?;
    if got != e.size {
        return Err(Error::corrupt(format!(
            "entry {} holds {got} bytes, its header says {}",
            tree::show(&e.path),
            e.size
        )));
    }
    Ok(())
}

/// The rows of the tree, each directory listed before its subdirectories (as pack
/// does), hardlinked paths as hardlinks of the first one.
fn write_tree(w: &V2Writer, tree: &Tree, results: &Blocks, summary: &mut Summary) -> Result<()> {
    let mut first: HashMap<tree::InodeId, Ino> = HashMap::new();
    let mut counted: HashSet<tree::InodeId> = HashSet::new();
    tree.walk(&mut |parent, name, inode, id| {
        let size = match inode.kind {
            S_IFDIR => 4096,
            S_IFREG | S_IFLNK => inode.size,
            _ => 0,
        };
        let ino = w.add_entry(&NewEntry {
            parent,
            name,
            mode: inode.kind | inode.meta.perm,
            uid: inode.meta.uid,
            gid: inode.meta.gid,
            size,
            rdev: inode.meta.rdev,
            mtime: inode.meta.mtime,
            ctime: inode.meta.mtime,
        })?;
        summary.entries += 1;
        for (k, v) in &inode.meta.xattrs {
            w.add_xattr(ino, k, v)?;
        }
        if inode.kind == S_IFLNK {
            w.set_link_target(ino, &inode.target)?;
        }
        if inode.kind != S_IFDIR {
            match first.get(&id) {
                Some(&f) => w.add_hardlink(ino, f)?,
                None => {
                    first.insert(id, ino);
                }
            }
        }
        if let Some(c) = inode.content {
            let (blocks, ident) = results.get(&c).ok_or_else(|| {
                Error::io(format!(
                    "{}: the content of layer {} entry {} was not encoded",
                    tree::show(name),
                    c.layer,
                    c.entry
                ))
            })?;
            w.add_blocks(ino, blocks)?;
            w.set_identity(ino, ident)?;
            summary.files += 1;
            summary.chunks += blocks.len() as u64;
            if counted.insert(id) {
                summary.bytes += inode.size;
            }
        }
        Ok(ino)
    })
}

/// The `image.*` tags (documented in the README).
fn image_tags(image: &Image, startup_file: bool) -> Vec<(String, String)> {
    let c = &image.config;
    let mut t = vec![
        ("image".to_string(), image.reference.clone()),
        ("image.digest".to_string(), image.manifest_digest.clone()),
    ];
    let mut put = |k: &str, v: String| t.push((k.to_string(), v));
    if !c.entrypoint.is_empty() {
        put("image.entrypoint", json_list(&c.entrypoint));
    }
    if !c.cmd.is_empty() {
        put("image.cmd", json_list(&c.cmd));
    }
    if !c.env.is_empty() {
        put("image.env", json_list(&c.env));
    }
    if !c.working_dir.is_empty() {
        put("image.workdir", c.working_dir.clone());
    }
    if !c.user.is_empty() {
        put("image.user", c.user.clone());
    }
    if !c.exposed_ports.is_empty() {
        put("image.ports", json_list(&c.exposed_ports));
    }
    if startup_file {
        put("image.startup", format!("/{STARTUP_FILE}"));
    }
    t
}

/// The identity of a set of stores for the layer index: their routes, passwords removed.
fn stores_key(routes: &[Route]) -> String {
    let mut v: Vec<String> = route_rows(routes, false)
        .iter()
        .map(|r| format!("{:02x}-{:02x}={}", r.start, r.end, r.url))
        .collect();
    v.sort();
    v.join(" ")
}

fn key(c: ContentRef) -> u64 {
    ((c.layer as u64) << 32) | c.entry as u64
}

fn unkey(k: u64) -> ContentRef {
    ContentRef {
        layer: (k >> 32) as u16,
        entry: k as u32,
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05.678Z`, offsets
/// allowed); `None` when it is not one.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b't' && b[10] != b' ')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" | "" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) => {
            let oh: i64 = r.get(1..3)?.parse().ok()?;
            let om: i64 = r.get(4..6)?.parse().ok()?;
            let o = oh * 3600 + om * 60;
            if r.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + se - offset)
}

/// A reader that counts what passed through.
struct Counted<R> {
    r: R,
    n: u64,
}

impl<R: Read> Counted<R> {
    fn new(r: R) -> Self {
        Counted { r, n: 0 }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.r.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Import's progress line: what is being done, bytes and chunks encoded, rate.
struct Progress {
    line: ProgressLine,
    what: String,
    bytes: u64,
    chunks: u64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            line: ProgressLine::new(),
            what: String::new(),
            bytes: 0,
            chunks: 0,
        }
    }

    /// A new phase is shown at once; progress within one at most twice a second.
    fn phase(&mut self, what: String) {
        self.what = what;
        self.show();
    }

    fn tick(&mut self, bytes: u64, chunks: u64) {
        (self.bytes, self.chunks) = (bytes, chunks);
        if self.line.due() {
            self.show();
        }
    }

    fn show(&mut self) {
        let rate = self.line.rate(self.bytes);
        self.line.show(format_args!(
            "{}: {:.1} MB, {} chunks encoded, {:.1} MB/s",
            self.what,
            self.bytes as f64 / 1e6,
            self.chunks,
            rate
        ));
    }

    fn clear(&mut self) {
        self.line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.123456789Z"),
            Some(1709208000)
        );
        assert_eq!(parse_rfc3339("2024-02-29T14:00:00+02:00"), Some(1709208000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn content_keys_round_trip() {
        for c in [
            STARTUP_REF,
            ContentRef {
                layer: 3,
                entry: 77,
            },
        ] {
            assert_eq!(unkey(key(c)), c);
        }
    }
}
