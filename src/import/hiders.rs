//! What the upper layers of an image may hide of its bottom layer, known from their
//! entries (by cleaned name) before the bottom layer is read, so that the bottom layer's
//! files can be encoded as they stream past (read once) unless an upper entry might
//! delete or replace them, in which case they wait for the second pass. A wrong "might"
//! only costs a second read; a wrong "cannot" would upload chunks the result does not
//! use, so every doubt is a "might": an upper entry whose name runs through a symlink
//! (of an upper layer, or of the bottom one, [`Hiders::under`]) turns the rest into
//! "might". It reads nothing and decides nothing about the tree.

use std::collections::HashSet;

use super::tree::{clean_path, EntryKind, LayerEntry};

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// The upper layers' names (see the module doc).
#[derive(Default)]
pub struct Hiders {
    /// Paths an upper entry is at (any kind) or whites out: a bottom file there goes.
    exact: HashSet<Vec<u8>>,
    /// Paths whose whole subtree an upper entry replaces (a non-directory, a whiteout) or
    /// empties (an opaque directory).
    subtree: HashSet<Vec<u8>>,
    /// Strict ancestors of the upper entries' paths.
    dirs: HashSet<Vec<u8>>,
    /// An upper entry's name runs through an upper symlink: nothing is certain.
    pub hazard: bool,
}

/// The strict ancestors of `a/b/c`: `a`, `a/b`.
fn ancestors(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'/')
        .map(move |(i, _)| &p[..i])
}

impl Hiders {
    /// From the entries of every layer above the bottom one.
    pub fn new<'a>(layers: impl Iterator<Item = &'a [LayerEntry]>) -> Hiders {
        let mut h = Hiders::default();
        let mut links: HashSet<Vec<u8>> = HashSet::new();
        let mut paths: Vec<Vec<u8>> = Vec::new();
        for e in layers.flatten() {
            let p = clean_path(&e.path);
            let (dir, name) = match p.iter().rposition(|&b| b == b'/') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (&p[..0], &p[..]),
            };
            if name == OPAQUE {
                h.subtree.insert(dir.to_vec());
            } else if let Some(target) = name.strip_prefix(WHITEOUT) {
                let mut t = dir.to_vec();
                if !t.is_empty() {
                    t.push(b'/');
                }
                t.extend_from_slice(target);
                h.exact.insert(t.clone());
                h.subtree.insert(t);
            } else {
                h.exact.insert(p.clone());
                if e.kind != EntryKind::Dir {
                    h.subtree.insert(p.clone());
                }
                if e.kind == EntryKind::Symlink {
                    links.insert(p.clone());
                }
            }
            for a in ancestors(&p) {
                if !h.dirs.contains(a) {
                    h.dirs.insert(a.to_vec());
                }
            }
            paths.push(p);
        }
        h.hazard = paths
            .iter()
            .any(|p| ancestors(p).any(|a| links.contains(a)));
        h
    }

    /// Whether an upper entry may delete or replace the bottom file at `p` (its path in
    /// the bottom layer's tree).
    pub fn may_hide(&self, p: &[u8]) -> bool {
        self.hazard || self.exact.contains(p) || ancestors(p).any(|a| self.subtree.contains(a))
    }

    /// Whether an upper entry's name lies under `s` (a symlink of the bottom layer: that
    /// entry really lands elsewhere, so from then on nothing is certain).
    pub fn under(&self, s: &[u8]) -> bool {
        self.dirs.contains(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::tree::Meta;

    fn ent(path: &str, kind: EntryKind) -> LayerEntry {
        LayerEntry {
            path: path.as_bytes().to_vec(),
            kind,
            meta: Meta {
                perm: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                rdev: 0,
                xattrs: Vec::new(),
            },
            link: Vec::new(),
            size: 0,
        }
    }

    #[test]
    fn upper_entries_say_what_they_may_hide() {
        use EntryKind::*;
        let upper = [
            ent("./usr/", Dir),
            ent("usr/lib/new.so", File),
            ent("etc/.wh.passwd", File),
            ent("opt/.wh..wh..opq", File),
            ent("/var", File),
        ];
        let h = Hiders::new(std::iter::once(&upper[..]));
        assert!(!h.hazard);
        for p in [
            "usr/lib/new.so",
            "etc/passwd",
            "opt/x",
            "var/log/y",
            "var",
            "usr",
        ] {
            assert!(h.may_hide(p.as_bytes()), "{p}");
        }
        for p in ["usr/lib/old.so", "etc/group", "opt", "bin/sh"] {
            assert!(!h.may_hide(p.as_bytes()), "{p}");
        }
        assert!(h.under(b"usr/lib") && h.under(b"etc") && !h.under(b"bin"));
        let upper = [ent("lib", Symlink), ent("lib/x", File)];
        let h = Hiders::new(std::iter::once(&upper[..]));
        assert!(h.hazard && h.may_hide(b"bin/sh"));
    }
}
