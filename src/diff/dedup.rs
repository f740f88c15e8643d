//! Deduplication analysis (`zvfs dedup`): find identical file contents across flists and local
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

use crate::codec::chunk_len;
use crate::content::local::{display_path, walk_dir};
use crate::content::FileContent;
use crate::error::{Context, Result};
use crate::flist::{self, Flist, Kind};
use crate::identity::{chunk_key, read_whole, ChunkKey};

/// What to read beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Also read every file of local directories whole, for the chunk-level figures.
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

/// What the inputs hold, counted while they are read.
#[derive(Default, Serialize)]
pub struct Counters {
    /// Inputs given (flists and directories).
    pub inputs: usize,
    /// Of those, flists (v2 and legacy).
    pub flists: usize,
    /// Of those, local directories.
    pub directories: usize,
    /// Distinct contents (hardlinked paths count once).
    pub files: u64,
    /// Extra paths of hardlinked files (not duplicates).
    pub hardlinked_paths: u64,
    /// Sum of the distinct contents' sizes, in bytes.
    pub bytes: u64,
    /// Local files whose partial checksum was computed (a few sampled reads each).
    pub files_sampled: u64,
    /// Local files read whole (full checksum and chunk keys).
    pub files_read_whole: u64,
    /// Legacy (`.flist`) inputs among the flists.
    pub legacy_flists: usize,
}

/// One copy of a duplicated content.
#[derive(Serialize)]
pub struct JsonPath {
    /// The input (flist or directory) it is in, as given.
    pub input: String,
    /// Its first path in that input.
    pub path: String,
    /// Its other (hardlinked) paths in that input.
    pub hardlinks: Vec<String>,
}

/// One content found in more than one place.
#[derive(Serialize)]
pub struct JsonGroup {
    /// Its size, in bytes.
    pub size: u64,
    /// How many copies (at least 2).
    pub copies: usize,
    /// Bytes that keeping one copy would save: `size * (copies - 1)`.
    pub saves: u64,
    /// The copies.
    pub files: Vec<JsonPath>,
}

/// Chunk-level deduplication: chunk references against distinct chunk keys.
#[derive(Serialize)]
pub struct ChunkFigures {
    /// What the figures cover: "flists" or "flists and directories".
    pub scope: &'static str,
    /// Contents counted (hardlinked paths once).
    pub files: u64,
    /// Chunks those contents reference.
    pub references: u64,
    /// Plaintext bytes of those references.
    pub reference_bytes: u64,
    /// Distinct chunk keys among them.
    pub unique: u64,
    /// Plaintext bytes of the distinct chunks.
    pub unique_bytes: u64,
    /// `reference_bytes - unique_bytes`: what storing each chunk once saves.
    pub saves: u64,
}

/// The result of [`dedup`], printed as text or JSON by `zvfs dedup`.
#[derive(Serialize)]
pub struct Report {
    /// What the inputs hold.
    #[serde(flatten)]
    pub counters: Counters,
    /// Duplicated contents.
    pub groups: Vec<JsonGroup>,
    /// Copies beyond the first, over all groups.
    pub duplicate_copies: u64,
    /// Bytes file-level deduplication saves, over all groups.
    pub file_level_saves: u64,
    /// Chunk-level figures.
    pub chunk_level: ChunkFigures,
    /// Limits of the figures above, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

const CROSS_GENERATION: &str = "legacy flists are compared among themselves only: their contents \
are not matched with v2 flists or directories (other chunk keys, no checksums), and \
chunk-level figures count each generation's chunks separately";

/// Group the files of `inputs` (flists and local directories) by content and count what
/// deduplication would save.
pub fn dedup(inputs: &[PathBuf], opts: &Options) -> Result<Report> {
    let mut items: Vec<Item> = Vec::new();
    let mut c = Counters {
        inputs: inputs.len(),
        ..Counters::default()
    };
    let mut local_inodes: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, input) in inputs.iter().enumerate() {
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
    if opts.chunks {
        for it in items.iter_mut() {
            if it.local.is_some() && it.keys.is_none() {
                read_item(it, &mut c)?;
            }
        }
    }
    let groups = group(&mut items, &mut c)?;
    Ok(build_report(inputs, opts, &items, &groups, c))
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
        let content = FileContent::open(fl, e, display_path(path))?;
        let keys: Vec<ChunkKey> = content.chunks().iter().map(chunk_key).collect();
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

fn build_report(
    inputs: &[PathBuf],
    opts: &Options,
    items: &[Item],
    groups: &[Vec<usize>],
    c: Counters,
) -> Report {
    let label = |i: usize| inputs[i].display().to_string();
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
    let scope = match (c.flists > 0, c.directories > 0, opts.chunks) {
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
        if it.local.is_some() && !opts.chunks {
            continue;
        }
        let Some(keys) = &it.keys else { continue };
        ch.files += 1;
        for (n, k) in keys.iter().enumerate() {
            let sz = chunk_len(it.size, n);
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
