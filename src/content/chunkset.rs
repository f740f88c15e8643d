//! The set of chunks an flist uses and which paths use a given chunk (for reports).
//! Shared by verify, clone and warm; it reads metadata only and never talks to stores.

use std::collections::{BTreeMap, HashSet};

use crate::codec::ChunkRef;
use crate::error::Result;
use crate::flist::{self, Flist, Kind};

/// Every distinct chunk used by a regular file of the flist, in a stable order.
pub fn unique_chunks(fl: &dyn Flist) -> Result<Vec<ChunkRef>> {
    let mut set = HashSet::new();
    let root = fl.get(flist::ROOT_INO)?;
    flist::walk(fl, &root, Vec::new(), &mut |e, _| {
        if e.kind() == Kind::File && e.link_of.is_none() {
            set.extend(fl.blocks(e.ino)?);
        }
        Ok(())
    })?;
    let mut v: Vec<ChunkRef> = set.into_iter().collect();
    v.sort();
    Ok(v)
}

/// For each chunk of `wanted`, up to `limit` paths (relative to the root, lossy UTF-8)
/// of the files that use it, and how many paths use it in all.
pub fn paths_using(
    fl: &dyn Flist,
    wanted: &HashSet<ChunkRef>,
    limit: usize,
) -> Result<BTreeMap<ChunkRef, (Vec<String>, usize)>> {
    let mut out: BTreeMap<ChunkRef, (Vec<String>, usize)> = BTreeMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let root = fl.get(flist::ROOT_INO)?;
    flist::walk(fl, &root, Vec::new(), &mut |e, path| {
        if e.kind() != Kind::File {
            return Ok(());
        }
        let blocks = fl.blocks(e.content_ino())?;
        let mut seen = HashSet::new();
        for b in blocks.iter().filter(|b| wanted.contains(b)) {
            if !seen.insert(*b) {
                continue;
            }
            let slot = out.entry(*b).or_default();
            slot.1 += 1;
            if slot.0.len() < limit {
                slot.0.push(format!("/{}", String::from_utf8_lossy(path)));
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// Format the paths of a chunk for a report line.
pub fn describe_paths(paths: Option<&(Vec<String>, usize)>) -> String {
    match paths {
        None => "(no path)".to_string(),
        Some((shown, total)) if *total > shown.len() => {
            format!("{} and {} more", shown.join(", "), total - shown.len())
        }
        Some((shown, _)) => shown.join(", "),
    }
}
