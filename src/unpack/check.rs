//! Unpack's tree walk and its first pass: the walk over what a [`Selection`] restores,
//! depth first, parents before children, refusing a hostile or broken tree on the way
//! (unsafe or duplicate names, parent cycles, children of symlinks, chunk lists that do
//! not fit the size, unreachable entries). The check pass runs it with a visitor that
//! does nothing, before any store is opened or anything is written; the restore pass
//! runs the same walk. It reads the flist only.

use std::collections::HashSet;

use super::{join, show, Selection};
use crate::codec::{ChunkRef, CHUNK_SIZE};
use crate::error::{Context, Error, Result};
use crate::flist::{self, Entry, Flist, Ino, Kind, ROOT_INO};

/// What a non-directory entry needs, read (and checked) during the walk.
pub(super) enum LeafData {
    File(Vec<ChunkRef>),
    Symlink(Vec<u8>),
    Special,
}

/// What the walk hands over, parents before children.
pub(super) trait Visit {
    /// A directory to create or reuse; `kids` are all its children in the flist.
    fn enter(&mut self, e: &Entry, path: &[u8], kids: &[Entry], finalize: bool) -> Result<()>;
    /// The last entered directory has no more entries to restore.
    fn leave(&mut self) -> Result<()>;
    /// A non-directory in the last entered directory (`parent` is that directory's path).
    fn leaf(
        &mut self,
        e: Entry,
        parent: &[u8],
        path: &[u8],
        kind: Kind,
        data: LeafData,
    ) -> Result<()>;
}

/// Pass 1: visits nothing, the walk's checks are the point.
pub(super) struct Check;

impl Visit for Check {
    fn enter(&mut self, _: &Entry, _: &[u8], _: &[Entry], _: bool) -> Result<()> {
        Ok(())
    }
    fn leave(&mut self) -> Result<()> {
        Ok(())
    }
    fn leaf(&mut self, _: Entry, _: &[u8], _: &[u8], _: Kind, _: LeafData) -> Result<()> {
        Ok(())
    }
}

struct WalkFrame {
    kids: Vec<Entry>,
    next: usize,
    path: Vec<u8>,
    all: bool,
}

/// Whether `kid` of a directory restored whole (`all`) or leading to a chosen path is
/// restored.
fn included(sel: &Selection, all: bool, kid: &Entry) -> bool {
    all || sel.chosen.contains(&kid.ino) || sel.leading.contains(&kid.ino)
}

/// No cycle, safe and distinct names for the children of `path` that are restored.
fn check_kids(
    sel: &Selection,
    all: bool,
    path: &[u8],
    kids: &[Entry],
    seen_dirs: &HashSet<Ino>,
) -> Result<()> {
    let mut names = HashSet::new();
    for kid in kids.iter().filter(|k| included(sel, all, k)) {
        if kid.is_dir() && seen_dirs.contains(&kid.ino) {
            return Err(Error::format(format!(
                "directory cycle in the flist: inode {} (named {:?}) appears again in {}",
                kid.ino,
                String::from_utf8_lossy(&kid.name),
                show(path)
            )));
        }
        flist::check_name(&kid.name).with_ctx(|| {
            format!(
                "entry {} in {} (named {:?})",
                kid.ino,
                show(path),
                String::from_utf8_lossy(&kid.name)
            )
        })?;
        if !names.insert(kid.name.as_slice()) {
            return Err(Error::format(format!(
                "{}: the flist has two entries of that name (inode {} is the second)",
                show(&join(path, &kid.name)),
                kid.ino
            )));
        }
    }
    Ok(())
}

/// Walk what `sel` restores depth-first, checking the tree on the way (names, duplicates,
/// cycles, children of symlinks, chunk lists, reachability), and hand it to `v`. Returns
/// the number of entries visited below the root.
pub(super) fn walk(fl: &dyn Flist, sel: &Selection, v: &mut dyn Visit) -> Result<u64> {
    let root = fl.get(ROOT_INO)?;
    if !root.is_dir() {
        return Err(Error::format("the flist root is not a directory"));
    }
    let mut seen_dirs = HashSet::new();
    seen_dirs.insert(ROOT_INO);
    let kids = fl.children(ROOT_INO)?;
    check_kids(sel, sel.all, b"", &kids, &seen_dirs)?;
    v.enter(&root, b"", &kids, sel.all)?;
    let mut stack = vec![WalkFrame {
        kids,
        next: 0,
        path: Vec::new(),
        all: sel.all,
    }];
    let mut entries = 0u64;
    while let Some(top) = stack.last_mut() {
        let Some(kid) = top.kids.get(top.next).cloned() else {
            stack.pop();
            v.leave()?;
            continue;
        };
        top.next += 1;
        if !included(sel, top.all, &kid) {
            continue;
        }
        let all = top.all || sel.chosen.contains(&kid.ino);
        let path = join(&top.path, &kid.name);
        entries += 1;
        if kid.is_dir() {
            if !seen_dirs.insert(kid.ino) {
                return Err(Error::format(format!(
                    "directory cycle in the flist: inode {} appears again at {}",
                    kid.ino,
                    show(&path)
                )));
            }
            let kids = fl.children(kid.ino)?;
            check_kids(sel, all, &path, &kids, &seen_dirs)?;
            v.enter(&kid, &path, &kids, true)?;
            stack.push(WalkFrame {
                kids,
                next: 0,
                path,
                all,
            });
            continue;
        }
        let p = || show(&path);
        let kind = Kind::from_mode(kid.mode)
            .ok_or_else(|| Error::format(format!("{}: unknown file type", p())))?;
        let data = match kind {
            Kind::File => {
                let mut blocks = fl.blocks(kid.ino).with_ctx(p)?;
                if blocks.is_empty() && kid.size > 0 && kid.link_of.is_some() {
                    blocks = fl.blocks(kid.content_ino()).with_ctx(p)?;
                }
                let need = kid.size.div_ceil(CHUNK_SIZE as u64);
                if blocks.len() as u64 != need {
                    return Err(Error::format(format!(
                        "{}: {} bytes need {need} chunks but the flist lists {}",
                        p(),
                        kid.size,
                        blocks.len()
                    )));
                }
                LeafData::File(blocks)
            }
            Kind::Symlink => {
                if !fl.children(kid.ino)?.is_empty() {
                    return Err(Error::format(format!(
                        "{}: symlink inode {} has children in the flist (hostile flist)",
                        p(),
                        kid.ino
                    )));
                }
                LeafData::Symlink(fl.link_target(kid.ino).with_ctx(p)?)
            }
            Kind::Dir => return Err(Error::format(format!("{}: unexpected directory", p()))),
            Kind::Fifo | Kind::CharDev | Kind::BlockDev | Kind::Socket => LeafData::Special,
        };
        let parent = top.path.clone();
        v.leaf(kid, &parent, &path, kind, data)?;
    }
    if sel.all {
        // Entries the walk never reached hang off a parent cycle (or are orphans).
        let total = fl.totals()?.entries;
        if entries + 1 != total {
            return Err(Error::format(format!(
                "{} of the flist's {total} entries are not reachable from its root (parent cycle or orphaned entries)",
                total.saturating_sub(entries + 1)
            )));
        }
    }
    Ok(entries)
}
