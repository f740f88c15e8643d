//! `zvfs dedup INPUT...`: find identical file contents across flists and local
//! directories, and what file-level and chunk-level deduplication save. Contents are
//! grouped by size, then partial checksum, then full checksum (or, for flists without
//! identity, by chunk-key sequence). On directories only files whose size and partial
//! checksum collide with another file are read whole. Metadata only: no chunk is fetched.
//! Legacy `.flist` inputs are grouped among themselves by size then chunk-key sequence;
//! they carry no checksums and other chunk keys, so their contents are not matched with
//! other generations (v2 flists, directories), and the report says so.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::content::{chunk_key, chunk_plain_size, display_path, read_whole, walk_dir, ChunkKey};
use crate::error::{Context, ExitCode, Result};
use crate::flist::{self, Flist, Kind};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Flists (`.fl`) and local directories to compare, together.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Machine-readable output (JSON).
    #[arg(long)]
    pub json: bool,
    /// Also read every file of local directories whole, to include them in the
    /// chunk-level figures (by default those cover flists only).
    #[arg(long)]
    pub chunks: bool,
}

/// One content: a regular file with all its hardlinked paths.
struct Item {
    input: usize,
    paths: Vec<Vec<u8>>,
    size: u64,
    /// Local file to sample or read; `None` for flist files.
    local: Option<PathBuf>,
    partial: Option<[u8; 32]>,
    checksum: Option<[u8; 32]>,
    keys: Option<Vec<ChunkKey>>,
}

#[derive(Default, Serialize)]
struct Counters {
    inputs: usize,
    flists: usize,
    directories: usize,
    /// Distinct contents (hardlinked paths count once).
    files: u64,
    /// Extra paths of hardlinked files (not duplicates).
    hardlinked_paths: u64,
    bytes: u64,
    /// Local files whose partial checksum was computed (a few sampled reads each).
    files_sampled: u64,
    /// Local files read whole (full checksum and chunk keys).
    files_read_whole: u64,
    /// Legacy (`.flist`) inputs among the flists.
    legacy_flists: usize,
}

#[derive(Serialize)]
struct JsonPath {
    input: String,
    path: String,
    hardlinks: Vec<String>,
}

#[derive(Serialize)]
struct JsonGroup {
    size: u64,
    copies: usize,
    saves: u64,
    files: Vec<JsonPath>,
}

#[derive(Serialize)]
struct ChunkFigures {
    /// What the figures cover: "flists" or "flists and directories".
    scope: &'static str,
    files: u64,
    references: u64,
    reference_bytes: u64,
    unique: u64,
    unique_bytes: u64,
    saves: u64,
}

#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    counters: Counters,
    groups: Vec<JsonGroup>,
    duplicate_copies: u64,
    file_level_saves: u64,
    chunk_level: ChunkFigures,
    /// Limits of the figures above, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

const CROSS_GENERATION: &str = "legacy flists are compared among themselves only: their contents \
are not matched with v2 flists or directories (other chunk keys, no checksums), and \
chunk-level figures count each generation's chunks separately";

pub fn run(args: Args) -> Result<ExitCode> {
    let mut items: Vec<Item> = Vec::new();
    let mut c = Counters {
        inputs: args.inputs.len(),
        ..Counters::default()
    };
    let mut local_inodes: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, input) in args.inputs.iter().enumerate() {
        let is_dir = std::fs::metadata(input)
            .with_ctx(|| format!("{}", input.display()))?
            .is_dir();
        if is_dir {
            c.directories += 1;
            collect_dir(i, input, &mut items, &mut local_inodes, &mut c)?;
        } else {
            c.flists += 1;
            let fl = flist::open(input)?;
            if fl.format() == "legacy" {
                c.legacy_flists += 1;
            }
            collect_flist(i, fl.as_ref(), &mut items, &mut c)
                .with_ctx(|| format!("{}", input.display()))?;
        }
    }
    if args.chunks {
        for it in items.iter_mut() {
            if it.local.is_some() && it.keys.is_none() {
                read_item(it, &mut c)?;
            }
        }
    }
    let groups = group(&mut items, &mut c)?;
    let report = build_report(&args, &items, &groups, c);
    let mut out = super::content::Out::new();
    if args.json {
        let s = serde_json::to_string_pretty(&report)
            .map_err(|e| crate::error::Error::io(format!("encoding JSON: {e}")))?;
        out.line(format_args!("{s}"))?;
    } else {
        print_text(&report, &mut out)?;
    }
    out.finish()?;
    Ok(ExitCode::Ok)
}

fn collect_dir(
    input: usize,
    root: &Path,
    items: &mut Vec<Item>,
    seen: &mut HashMap<(u64, u64), usize>,
    c: &mut Counters,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    walk_dir(root, &mut |abs, rel, meta| {
        if !meta.file_type().is_file() {
            return Ok(());
        }
        let id = (meta.dev(), meta.ino());
        if let Some(&idx) = seen.get(&id) {
            // Another path of a file already seen (hardlink): one content.
            if items[idx].input == input {
                items[idx].paths.push(rel.to_vec());
            }
            c.hardlinked_paths += 1;
            return Ok(());
        }
        seen.insert(id, items.len());
        c.files += 1;
        c.bytes += meta.len();
        items.push(Item {
            input,
            paths: vec![rel.to_vec()],
            size: meta.len(),
            local: Some(abs.to_path_buf()),
            partial: None,
            checksum: None,
            keys: None,
        });
        Ok(())
    })
}

fn collect_flist(
    input: usize,
    fl: &dyn Flist,
    items: &mut Vec<Item>,
    c: &mut Counters,
) -> Result<()> {
    let root = fl.get(flist::ROOT_INO)?;
    let mut by_ino: HashMap<u64, usize> = HashMap::new();
    flist::walk(fl, &root, Vec::new(), &mut |e, path| {
        if e.kind() != Kind::File {
            return Ok(());
        }
        let owner = e.content_ino();
        if let Some(&idx) = by_ino.get(&owner) {
            items[idx].paths.push(path.to_vec());
            c.hardlinked_paths += 1;
            return Ok(());
        }
        let keys: Vec<ChunkKey> = fl.blocks(owner)?.iter().map(chunk_key).collect();
        let id = fl.identity(owner)?;
        by_ino.insert(owner, items.len());
        c.files += 1;
        c.bytes += e.size;
        items.push(Item {
            input,
            paths: vec![path.to_vec()],
            size: e.size,
            local: None,
            partial: id.map(|i| i.partial),
            checksum: id.map(|i| i.checksum),
            keys: Some(keys),
        });
        Ok(())
    })
}

fn sample_item(it: &mut Item, c: &mut Counters) -> Result<()> {
    if let (Some(p), None) = (&it.local, it.partial) {
        let f = std::fs::File::open(p).with_ctx(|| format!("opening {}", p.display()))?;
        let partial = crate::identity::partial_checksum(&f, it.size)
            .with_ctx(|| format!("{}", p.display()))?;
        it.partial = Some(partial);
        c.files_sampled += 1;
    }
    Ok(())
}

fn read_item(it: &mut Item, c: &mut Counters) -> Result<()> {
    if let (Some(p), None) = (&it.local, &it.keys) {
        let w = read_whole(p, it.size)?;
        it.checksum = Some(w.checksum);
        it.keys = Some(w.keys);
        c.files_read_whole += 1;
    }
    Ok(())
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

/// Group identical contents; returns the groups of two or more items (indices).
fn group(items: &mut [Item], c: &mut Counters) -> Result<Vec<Vec<usize>>> {
    let mut by_size: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        // Empty files are all alike and dedup saves nothing on them.
        if it.size > 0 {
            by_size.entry(it.size).or_default().push(i);
        }
    }
    let mut parent: Vec<usize> = (0..items.len()).collect();
    for bucket in by_size.values().filter(|b| b.len() > 1) {
        // Step 2: partial checksums of local files (a few sampled reads).
        for &i in bucket {
            sample_item(&mut items[i], c)?;
        }
        // Step 3: read whole only the local files that another content could equal:
        // same partial checksum, or a content without one (an rfs flist file).
        let mut partial_count: HashMap<[u8; 32], usize> = HashMap::new();
        let mut without_partial = 0usize;
        for &i in bucket {
            match items[i].partial {
                Some(p) => *partial_count.entry(p).or_default() += 1,
                None => without_partial += 1,
            }
        }
        for &i in bucket {
            if items[i].local.is_some() {
                let same = items[i]
                    .partial
                    .and_then(|p| partial_count.get(&p).copied())
                    .unwrap_or(0);
                if same > 1 || without_partial > 0 {
                    read_item(&mut items[i], c)?;
                }
            }
        }
        // Equal full checksums or equal chunk-key sequences mean equal content.
        let mut by_sum: HashMap<[u8; 32], usize> = HashMap::new();
        let mut by_keys: HashMap<&[ChunkKey], usize> = HashMap::new();
        for &i in bucket {
            if let Some(s) = items[i].checksum {
                if let Some(&j) = by_sum.get(&s) {
                    union(&mut parent, i, j);
                } else {
                    by_sum.insert(s, i);
                }
            }
            if let Some(k) = items[i].keys.as_deref() {
                if let Some(&j) = by_keys.get(k) {
                    union(&mut parent, i, j);
                } else {
                    by_keys.insert(k, i);
                }
            }
        }
    }
    let mut comps: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..items.len() {
        let r = find(&mut parent, i);
        comps.entry(r).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = comps.into_values().filter(|g| g.len() > 1).collect();
    for g in groups.iter_mut() {
        g.sort_by(|&a, &b| {
            (items[a].input, &items[a].paths[0]).cmp(&(items[b].input, &items[b].paths[0]))
        });
    }
    // Largest savings first, then by first path, for a stable order.
    groups.sort_by(|a, b| {
        let sa = items[a[0]].size * (a.len() as u64 - 1);
        let sb = items[b[0]].size * (b.len() as u64 - 1);
        sb.cmp(&sa).then_with(|| {
            (items[a[0]].input, &items[a[0]].paths[0])
                .cmp(&(items[b[0]].input, &items[b[0]].paths[0]))
        })
    });
    Ok(groups)
}

fn build_report(args: &Args, items: &[Item], groups: &[Vec<usize>], c: Counters) -> Report {
    let label = |i: usize| args.inputs[i].display().to_string();
    let mut out_groups = Vec::new();
    let mut copies = 0u64;
    let mut saves = 0u64;
    for g in groups {
        let size = items[g[0]].size;
        let s = size * (g.len() as u64 - 1);
        copies += g.len() as u64 - 1;
        saves += s;
        out_groups.push(JsonGroup {
            size,
            copies: g.len(),
            saves: s,
            files: g
                .iter()
                .map(|&i| JsonPath {
                    input: label(items[i].input),
                    path: display_path(&items[i].paths[0]),
                    hardlinks: items[i].paths[1..]
                        .iter()
                        .map(|p| display_path(p))
                        .collect(),
                })
                .collect(),
        });
    }
    // Chunk level: every content with a chunk list in scope (hardlinks count once).
    let scope = match (c.flists > 0, c.directories > 0, args.chunks) {
        (_, false, _) => "flists",
        (false, true, true) => "directories",
        (false, true, false) => "none: directories need --chunks",
        (true, true, true) => "flists and directories",
        (true, true, false) => "flists only: directories need --chunks",
    };
    let mut ch = ChunkFigures {
        scope,
        files: 0,
        references: 0,
        reference_bytes: 0,
        unique: 0,
        unique_bytes: 0,
        saves: 0,
    };
    let mut unique: HashSet<ChunkKey> = HashSet::new();
    for it in items {
        if it.local.is_some() && !args.chunks {
            continue;
        }
        let Some(keys) = &it.keys else { continue };
        ch.files += 1;
        for (n, k) in keys.iter().enumerate() {
            let sz = chunk_plain_size(it.size, n);
            ch.references += 1;
            ch.reference_bytes += sz;
            if unique.insert(*k) {
                ch.unique += 1;
                ch.unique_bytes += sz;
            }
        }
    }
    ch.saves = ch.reference_bytes - ch.unique_bytes;
    let mut notes = Vec::new();
    if c.legacy_flists > 0 && (c.legacy_flists < c.flists || c.directories > 0) {
        notes.push(CROSS_GENERATION.to_string());
    }
    Report {
        notes,
        counters: c,
        groups: out_groups,
        duplicate_copies: copies,
        file_level_saves: saves,
        chunk_level: ch,
    }
}

fn print_text(r: &Report, out: &mut super::content::Out) -> Result<()> {
    for (n, g) in r.groups.iter().enumerate() {
        out.line(format_args!(
            "group {}: {} copies of {} bytes, saves {} bytes",
            n + 1,
            g.copies,
            g.size,
            g.saves
        ))?;
        for f in &g.files {
            if f.hardlinks.is_empty() {
                out.line(format_args!("  {}:{}", f.input, f.path))?;
            } else {
                out.line(format_args!(
                    "  {}:{} (hardlinked as {})",
                    f.input,
                    f.path,
                    f.hardlinks.join(", ")
                ))?;
            }
        }
    }
    let c = &r.counters;
    out.line(format_args!(
        "inputs: {} ({} flists, {} directories); files: {} contents, {} bytes, {} more hardlinked paths",
        c.inputs, c.flists, c.directories, c.files, c.bytes, c.hardlinked_paths
    ))?;
    out.line(format_args!(
        "file-level dedup: {} groups, {} duplicate copies, saves {} bytes",
        r.groups.len(),
        r.duplicate_copies,
        r.file_level_saves
    ))?;
    let ch = &r.chunk_level;
    out.line(format_args!(
        "chunk-level dedup ({}): {} chunk references ({} bytes), {} unique ({} bytes), saves {} bytes",
        ch.scope, ch.references, ch.reference_bytes, ch.unique, ch.unique_bytes, ch.saves
    ))?;
    out.line(format_args!(
        "local files sampled: {}; files read whole: {}",
        c.files_sampled, c.files_read_whole
    ))?;
    for n in &r.notes {
        out.line(format_args!("note: {n}"))?;
    }
    Ok(())
}
