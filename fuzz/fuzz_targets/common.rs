//! Shared by the fuzz targets (included with `#[path]`): a per-process scratch file for
//! the targets whose code under test reads a path, and the bounded walk of an flist that
//! mirrors what a mount asks of it.

#![allow(dead_code)]

use std::path::PathBuf;

use zvfs::flist::{self, Flist, Kind, ROOT_INO};

/// A scratch path for this process (tmpfs when there is one), named after `what`.
pub fn scratch(what: &str) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("zvfs-fuzz-{what}-{}", std::process::id()))
}

/// Everything the FUSE layer (src/fs) and the walking commands call on an flist, bounded:
/// totals, tags, routes, prefetch list, then the tree from the root a few levels deep
/// (entries, lookups by name, paging, chunk lists, symlink targets, xattrs, identities,
/// paths), then a whole-tree walk stopped after a few hundred entries.
pub fn walk_flist(fl: &dyn Flist) {
    let _ = fl.format();
    let _ = fl.tags();
    let _ = fl.routes();
    let _ = fl.totals();
    let _ = fl.has_xattrs();
    let _ = fl.prefetch();
    let mut stack = vec![(ROOT_INO, 0u32)];
    let mut visited = 0;
    while let Some((ino, depth)) = stack.pop() {
        visited += 1;
        if visited > 300 {
            break;
        }
        let Ok(e) = fl.get(ino) else { continue };
        let _ = e.kind();
        let _ = fl.xattrs(ino);
        let _ = fl.identity(ino);
        let _ = flist::path_of(fl, ino);
        if let Some(first) = e.link_of {
            let _ = fl.get(first);
            let _ = fl.blocks(first);
        }
        match Kind::from_mode(e.mode) {
            Some(Kind::File) => {
                if let Ok(blocks) = fl.blocks(e.content_ino()) {
                    for b in blocks.iter().take(8) {
                        let _ = b.hex_id();
                        let _ = b.key();
                    }
                }
            }
            Some(Kind::Symlink) => {
                let _ = fl.link_target(ino);
            }
            Some(Kind::Dir) => {
                let _ = fl.lookup(ino, b"no-such-name");
                let _ = fl.lookup(ino, b"..");
                // Pages as readdir asks for them, then the whole listing.
                let mut after = 0;
                for _ in 0..4 {
                    match fl.children_after(ino, after, 7) {
                        Ok(page) if !page.is_empty() => after = page[page.len() - 1].ino,
                        _ => break,
                    }
                }
                if let Ok(kids) = fl.children(ino) {
                    for k in kids.iter().take(32) {
                        let _ = fl.lookup(ino, &k.name);
                        if depth < 4 && k.ino != ino {
                            stack.push((k.ino, depth + 1));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let _ = flist::resolve(fl, b"/etc/passwd");
    if let Ok(root) = fl.get(ROOT_INO) {
        let mut n = 0;
        let _ = flist::walk(fl, &root, Vec::new(), &mut |_, _| {
            n += 1;
            if n > 500 {
                return Err(zvfs::error::Error::invalid("enough"));
            }
            Ok(())
        });
    }
}
