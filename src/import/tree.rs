//! The image's tree as its layers build it, in memory and metadata only: each layer's tar
//! entries are applied in order the way the OCI image spec says and `umoci unpack` does
//! (per-file and opaque whiteouts that spare what the same layer wrote, a later entry
//! replacing an earlier one of any type, directories merged, hardlinks to entries of the
//! same or lower layers, symlinks in parent paths resolved inside the root, `..` and
//! absolute names kept inside it). A regular file's content is only a reference (layer,
//! entry number); nothing here reads bytes, encodes or writes an flist.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::flist::{S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG};

/// The longest name an flist entry may have (as Linux's NAME_MAX).
pub const NAME_MAX: usize = 255;
/// The longest symlink target or path (as Linux's PATH_MAX, without the NUL).
pub const PATH_MAX: usize = 4095;
/// Symlinks followed while resolving one path before giving up (as securejoin does).
const MAX_SYMLINKS: usize = 255;
const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// The kind of one tar entry, as the importer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (with content).
    File,
    /// A directory.
    Dir,
    /// A symbolic link (`link` is its target).
    Symlink,
    /// A hard link to an earlier path (`link`).
    Hardlink,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

/// The metadata an entry carries (what umoci applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits with setuid, setgid and sticky (no type bits).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Device number of a device.
    pub rdev: u64,
    /// Extended attributes (from PAX `SCHILY.xattr.*`), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One tar entry of a layer, without its content.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    /// The name as in the tar (raw bytes).
    pub path: Vec<u8>,
    /// Its kind.
    pub kind: EntryKind,
    /// Its metadata.
    pub meta: Meta,
    /// Symlink target or hardlink target.
    pub link: Vec<u8>,
    /// Content length of a regular file.
    pub size: u64,
}

/// Where a regular file's content is: entry `entry` of layer `layer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentRef {
    /// The layer (0 = bottom).
    pub layer: u16,
    /// The entry's number in the layer's tar (0 = first).
    pub entry: u32,
}

/// One inode of the result: shared by the paths of a hardlink group.
#[derive(Debug, Clone)]
pub struct Inode {
    /// Its type bits (`S_IFREG`, ...).
    pub kind: u32,
    /// Its metadata.
    pub meta: Meta,
    /// Symlink target.
    pub target: Vec<u8>,
    /// A regular file's size and content.
    pub size: u64,
    /// A regular file's content.
    pub content: Option<ContentRef>,
}

/// What [`Tree::walk`] calls for each entry: `(parent id, name, inode, inode id)` -> the
/// entry's id.
pub type Visit<'a> = dyn FnMut(u64, &[u8], &Inode, InodeId) -> Result<u64> + 'a;

/// Index of a node in the tree.
pub type NodeId = u32;
/// Index of an inode in the tree.
pub type InodeId = u32;

struct Node {
    parent: NodeId,
    name: Box<[u8]>,
    inode: InodeId,
    /// A directory's children, by name.
    children: Option<BTreeMap<Box<[u8]>, NodeId>>,
    /// The layer (plus one) that last touched this path; whiteouts of that layer spare it.
    stamp: u16,
}

/// The tree being built (see the module doc).
pub struct Tree {
    nodes: Vec<Node>,
    inodes: Vec<Inode>,
    /// Metadata of directories the layers imply but never list.
    implicit: Meta,
    /// Stamp of the layer being applied.
    stamp: u16,
}

/// A step of a path being resolved: an existing node, or a name that does not exist.
#[derive(Clone)]
enum Step {
    At(NodeId),
    Missing(Vec<u8>),
}

const ROOT: NodeId = 0;

impl Tree {
    /// An empty root directory with `implicit` metadata, which directories that no entry
    /// describes get too.
    pub fn new(implicit: Meta) -> Tree {
        let root_inode = Inode {
            kind: S_IFDIR,
            meta: implicit.clone(),
            target: Vec::new(),
            size: 0,
            content: None,
        };
        Tree {
            nodes: vec![Node {
                parent: ROOT,
                name: Box::from(&b"/"[..]),
                inode: 0,
                children: Some(BTreeMap::new()),
                stamp: 0,
            }],
            inodes: vec![root_inode],
            implicit,
            stamp: 0,
        }
    }

    /// Start applying layer `layer` (layers are applied bottom first).
    pub fn begin_layer(&mut self, layer: u16) {
        self.stamp = layer.saturating_add(1);
    }

    /// Apply one entry of the current layer (taken, so its metadata moves into the tree
    /// rather than being copied); `content` is where a regular file's bytes are. Returns
    /// the node it made or updated (`None` for whiteouts).
    pub fn apply(&mut self, e: LayerEntry, content: ContentRef) -> Result<Option<NodeId>> {
        let comps = clean(&e.path);
        for c in &comps {
            if c.len() > NAME_MAX {
                return Err(Error::invalid(format!(
                    "name longer than {NAME_MAX} bytes: {}",
                    show(&e.path)
                )));
            }
        }
        let Some((&file, dir)) = comps.split_last() else {
            // The root itself.
            if e.kind != EntryKind::Dir {
                return Err(Error::invalid(format!(
                    "entry {} would change the type of the root directory",
                    show(&e.path)
                )));
            }
            self.inodes[0].meta = e.meta;
            return Ok(Some(ROOT));
        };
        if let Some(wo) = file.strip_prefix(WHITEOUT) {
            if wo.is_empty() {
                return Err(Error::invalid(format!(
                    "whiteout with an empty name: {}",
                    show(&e.path)
                )));
            }
            let steps = self.resolve(dir)?;
            let Some(&Step::At(d)) = steps.last() else {
                return Ok(None);
            };
            if steps.iter().any(|s| matches!(s, Step::Missing(_))) || !self.is_dir(d) {
                return Ok(None);
            }
            if file == OPAQUE {
                self.whiteout_children(d);
            } else if let Some(n) = self.child(d, wo) {
                self.whiteout(n);
            }
            return Ok(None);
        }
        if e.kind == EntryKind::Symlink && e.link.len() > PATH_MAX {
            return Err(Error::invalid(format!(
                "symlink {} has a target longer than {PATH_MAX} bytes",
                show(&e.path)
            )));
        }
        let steps = self.resolve(dir)?;
        let d = self.make_dirs(&steps, &e.path)?;
        if let Some(old) = self.child(d, file) {
            let both_dirs = e.kind == EntryKind::Dir && self.is_dir(old);
            if both_dirs {
                let ino = self.nodes[old as usize].inode;
                self.inodes[ino as usize].meta = e.meta;
                self.touch(old);
                return Ok(Some(old));
            }
            self.remove(old);
        }
        let inode = match e.kind {
            EntryKind::Hardlink => self.link_target(&e)?,
            _ => {
                let (kind, target, size, content) = match e.kind {
                    EntryKind::File => (S_IFREG, Vec::new(), e.size, Some(content)),
                    EntryKind::Dir => (S_IFDIR, Vec::new(), 0, None),
                    EntryKind::Symlink => {
                        let len = e.link.len() as u64;
                        (S_IFLNK, e.link, len, None)
                    }
                    EntryKind::Char => (S_IFCHR, Vec::new(), 0, None),
                    EntryKind::Block => (S_IFBLK, Vec::new(), 0, None),
                    EntryKind::Fifo | EntryKind::Hardlink => (S_IFIFO, Vec::new(), 0, None),
                };
                self.new_inode(Inode {
                    kind,
                    meta: e.meta,
                    target,
                    size,
                    content,
                })
            }
        };
        let n = self.new_node(d, file, inode);
        self.touch(n);
        Ok(Some(n))
    }

    /// The path of node `n` from the root, `a/b/c` (empty for the root).
    pub fn path_of(&self, mut n: NodeId) -> Vec<u8> {
        let mut names: Vec<&[u8]> = Vec::new();
        while n != ROOT {
            let node = &self.nodes[n as usize];
            names.push(&node.name);
            n = node.parent;
        }
        names.reverse();
        names.join(&b'/')
    }

    /// The inode a hardlink entry names: resolved inside the root, the last component not
    /// followed; it must exist and not be a directory.
    fn link_target(&mut self, e: &LayerEntry) -> Result<InodeId> {
        let missing = || {
            Error::invalid(format!(
                "hardlink {} points to {}, which does not exist",
                show(&e.path),
                show(&e.link)
            ))
        };
        let comps = clean(&e.link);
        let Some((&file, dir)) = comps.split_last() else {
            return Err(Error::invalid(format!(
                "hardlink {} points to the root directory",
                show(&e.path)
            )));
        };
        let steps = self.resolve(dir)?;
        let Some(&Step::At(d)) = steps.last() else {
            return Err(missing());
        };
        if steps.iter().any(|s| matches!(s, Step::Missing(_))) || !self.is_dir(d) {
            return Err(missing());
        }
        let t = self.child(d, file).ok_or_else(missing)?;
        if self.is_dir(t) {
            return Err(Error::invalid(format!(
                "hardlink {} points to the directory {}",
                show(&e.path),
                show(&e.link)
            )));
        }
        Ok(self.nodes[t as usize].inode)
    }

    /// Resolve the directory components `dir` from the root the way securejoin does:
    /// symlinks followed inside the root (absolute targets from the root, `..` never above
    /// it), names that do not exist kept as [`Step::Missing`].
    fn resolve(&self, dir: &[&[u8]]) -> Result<Vec<Step>> {
        let mut steps: Vec<Step> = vec![Step::At(ROOT)];
        let mut todo: Vec<&[u8]> = dir.iter().rev().copied().collect();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == b".." {
                if steps.len() > 1 {
                    steps.pop();
                }
                continue;
            }
            if c.is_empty() || c == b"." {
                continue;
            }
            let next = match steps.last() {
                Some(&Step::At(d)) if self.is_dir(d) => self.child(d, c),
                _ => None,
            };
            let Some(n) = next else {
                steps.push(Step::Missing(c.to_vec()));
                continue;
            };
            let ino = &self.inodes[self.nodes[n as usize].inode as usize];
            if ino.kind == S_IFLNK {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::invalid(format!(
                        "too many levels of symbolic links resolving {}",
                        show(&dir.join(&b'/'))
                    )));
                }
                if ino.target.first() == Some(&b'/') {
                    steps.truncate(1);
                }
                for t in ino.target.split(|&b| b == b'/').rev() {
                    todo.push(t);
                }
                continue;
            }
            steps.push(Step::At(n));
        }
        Ok(steps)
    }

    /// Create the missing directories of a resolved path (mode 0755, the implicit
    /// metadata); returns the last one. A component that exists but is not a directory is
    /// an error naming `path`.
    fn make_dirs(&mut self, steps: &[Step], path: &[u8]) -> Result<NodeId> {
        let mut cur = ROOT;
        for s in steps {
            match s {
                &Step::At(n) => cur = n,
                Step::Missing(name) => {
                    if !self.is_dir(cur) {
                        return Err(Error::invalid(format!(
                            "{}: a parent path is not a directory",
                            show(path)
                        )));
                    }
                    let inode = self.new_inode(Inode {
                        kind: S_IFDIR,
                        meta: self.implicit.clone(),
                        target: Vec::new(),
                        size: 0,
                        content: None,
                    });
                    cur = self.new_node(cur, name, inode);
                }
            }
        }
        if !self.is_dir(cur) {
            return Err(Error::invalid(format!(
                "{}: a parent path is not a directory",
                show(path)
            )));
        }
        Ok(cur)
    }

    fn new_inode(&mut self, i: Inode) -> InodeId {
        self.inodes.push(i);
        (self.inodes.len() - 1) as InodeId
    }

    fn new_node(&mut self, parent: NodeId, name: &[u8], inode: InodeId) -> NodeId {
        let id = self.nodes.len() as NodeId;
        let is_dir = self.inodes[inode as usize].kind == S_IFDIR;
        self.nodes.push(Node {
            parent,
            name: Box::from(name),
            inode,
            children: is_dir.then(BTreeMap::new),
            stamp: 0,
        });
        if let Some(ch) = self.nodes[parent as usize].children.as_mut() {
            ch.insert(Box::from(name), id);
        }
        id
    }

    fn is_dir(&self, n: NodeId) -> bool {
        self.nodes[n as usize].children.is_some()
    }

    fn child(&self, d: NodeId, name: &[u8]) -> Option<NodeId> {
        self.nodes[d as usize].children.as_ref()?.get(name).copied()
    }

    /// Mark `n` and its ancestors as written by the current layer.
    fn touch(&mut self, mut n: NodeId) {
        loop {
            self.nodes[n as usize].stamp = self.stamp;
            if n == ROOT {
                break;
            }
            n = self.nodes[n as usize].parent;
        }
    }

    /// Detach `n` (and so its subtree) from its parent.
    fn remove(&mut self, n: NodeId) {
        let (parent, name) = {
            let node = &self.nodes[n as usize];
            (node.parent, node.name.clone())
        };
        if let Some(ch) = self.nodes[parent as usize].children.as_mut() {
            ch.remove(&name);
        }
    }

    /// A whiteout of `n`: removed unless the current layer wrote it, in which case only
    /// what it holds from lower layers goes.
    fn whiteout(&mut self, n: NodeId) {
        if self.nodes[n as usize].stamp != self.stamp {
            self.remove(n);
        } else {
            self.whiteout_children(n);
        }
    }

    /// An opaque directory: every child from a lower layer goes.
    fn whiteout_children(&mut self, d: NodeId) {
        let kids: Vec<NodeId> = match &self.nodes[d as usize].children {
            Some(ch) => ch.values().copied().collect(),
            None => return,
        };
        for k in kids {
            self.whiteout(k);
        }
    }

    /// Put a regular file `name` in the root (replacing whatever has that name), as the
    /// importer's own `/.startup.toml`.
    pub fn put_root_file(&mut self, name: &[u8], meta: Meta, size: u64, content: ContentRef) {
        if let Some(old) = self.child(ROOT, name) {
            self.remove(old);
        }
        let inode = self.new_inode(Inode {
            kind: S_IFREG,
            meta,
            target: Vec::new(),
            size,
            content: Some(content),
        });
        self.new_node(ROOT, name, inode);
    }

    /// Every content reference the result still uses, with the file's size.
    pub fn contents(&self) -> Vec<(ContentRef, u64)> {
        let mut out = Vec::new();
        self.walk(&mut |_, _, inode, _| {
            if let Some(c) = inode.content {
                out.push((c, inode.size));
            }
            Ok(1)
        })
        .ok();
        out.sort();
        out.dedup();
        out
    }

    /// Visit the result depth first, a directory's children in byte order, each directory
    /// listed whole before its subdirectories (as pack walks): `f(parent, name, inode,
    /// inode id)` returns an id for the visited entry, handed back as `parent` for its
    /// children.
    pub fn walk(&self, f: &mut Visit<'_>) -> Result<()> {
        let root_id = f(0, b"/", &self.inodes[0], 0)?;
        let mut stack: Vec<(NodeId, u64)> = vec![(ROOT, root_id)];
        while let Some((d, did)) = stack.pop() {
            let mut subdirs = Vec::new();
            if let Some(ch) = &self.nodes[d as usize].children {
                for (name, &n) in ch {
                    let node = &self.nodes[n as usize];
                    let id = f(did, name, &self.inodes[node.inode as usize], node.inode)?;
                    if node.children.is_some() {
                        subdirs.push((n, id));
                    }
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }
}

/// The components of a tar name, cleaned as umoci's CleanPath does: relative to the root,
/// `.` and empty parts dropped, `..` removing the one before and never going above.
fn clean(path: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            _ => out.push(c),
        }
    }
    out
}

/// A tar name cleaned as umoci's CleanPath does, `a/b/c` relative to the root.
pub fn clean_path(path: &[u8]) -> Vec<u8> {
    clean(path).join(&b'/')
}

/// Whether a tar name is a whiteout or an opaque marker (never part of the result).
pub fn is_whiteout(path: &[u8]) -> bool {
    clean(path)
        .last()
        .is_some_and(|name| name.starts_with(WHITEOUT))
}

/// A tar name for messages (lossy UTF-8).
pub fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// The type bits of an entry kind.
pub fn type_bits(kind: EntryKind) -> u32 {
    match kind {
        EntryKind::File | EntryKind::Hardlink => S_IFREG,
        EntryKind::Dir => S_IFDIR,
        EntryKind::Symlink => S_IFLNK,
        EntryKind::Char => S_IFCHR,
        EntryKind::Block => S_IFBLK,
        EntryKind::Fifo => S_IFIFO,
    }
}

/// Whether `mode`'s type is a directory.
pub fn is_dir_mode(mode: u32) -> bool {
    mode & S_IFMT == S_IFDIR
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(perm: u32) -> Meta {
        Meta {
            perm,
            uid: 0,
            gid: 0,
            mtime: 7,
            rdev: 0,
            xattrs: Vec::new(),
        }
    }

    fn ent(path: &str, kind: EntryKind, link: &str) -> LayerEntry {
        LayerEntry {
            path: path.as_bytes().to_vec(),
            kind,
            meta: meta(0o644),
            link: link.as_bytes().to_vec(),
            size: 3,
        }
    }

    /// Paths of the result with their type bits and content refs.
    fn listing(t: &Tree) -> Vec<(String, u32, Option<ContentRef>)> {
        let mut names: BTreeMap<u64, String> = BTreeMap::new();
        names.insert(0, String::new());
        let mut next = 1u64;
        let mut out = Vec::new();
        t.walk(&mut |parent, name, inode, _| {
            let id = next;
            next += 1;
            let p = if parent == 0 {
                "/".to_string()
            } else {
                let base = names[&parent].clone();
                format!("{}/{}", base.trim_end_matches('/'), show(name))
            };
            names.insert(id, p.clone());
            out.push((p, inode.kind, inode.content));
            Ok(id)
        })
        .unwrap();
        out.sort();
        out
    }

    fn apply(t: &mut Tree, layer: u16, entries: &[LayerEntry]) {
        t.begin_layer(layer);
        for (i, e) in entries.iter().enumerate() {
            t.apply(
                e.clone(),
                ContentRef {
                    layer,
                    entry: i as u32,
                },
            )
            .unwrap();
        }
    }

    fn paths(t: &Tree) -> Vec<String> {
        listing(t).into_iter().map(|(p, _, _)| p).collect()
    }

    #[test]
    fn whiteouts_opaque_dirs_and_replacements() {
        use EntryKind::*;
        let mut t = Tree::new(meta(0o755));
        apply(
            &mut t,
            0,
            &[
                ent("a/", Dir, ""),
                ent("a/x", File, ""),
                ent("a/y", File, ""),
                ent("b/", Dir, ""),
                ent("b/z", File, ""),
                ent("c", File, ""),
                ent("d", Symlink, "a"),
                ent("e/", Dir, ""),
                ent("e/f", File, ""),
            ],
        );
        apply(
            &mut t,
            1,
            &[
                ent("a/.wh.x", File, ""),
                ent("b/new", File, ""),
                ent("b/.wh..wh..opq", File, ""),
                ent("c/", Dir, ""),
                ent("c/in", File, ""),
                ent("d/", Dir, ""),
                ent("e", File, ""),
            ],
        );
        assert_eq!(
            paths(&t),
            ["/", "/a", "/a/y", "/b", "/b/new", "/c", "/c/in", "/d", "/e"]
        );
        let l = listing(&t);
        let e = l.iter().find(|(p, _, _)| p == "/e").unwrap();
        assert_eq!(e.1, S_IFREG);
        assert_eq!(e.2, Some(ContentRef { layer: 1, entry: 6 }));
        assert_eq!(t.contents().len(), 4);
    }

    #[test]
    fn a_whiteout_spares_what_its_own_layer_wrote() {
        use EntryKind::*;
        let mut t = Tree::new(meta(0o755));
        apply(&mut t, 0, &[ent("d/", Dir, ""), ent("d/old", File, "")]);
        apply(&mut t, 1, &[ent("d/new", File, ""), ent(".wh.d", File, "")]);
        assert_eq!(paths(&t), ["/", "/d", "/d/new"]);
    }

    #[test]
    fn hostile_names_stay_inside_and_parent_symlinks_resolve_inside() {
        use EntryKind::*;
        let mut t = Tree::new(meta(0o755));
        apply(
            &mut t,
            0,
            &[
                ent("/etc/x", File, ""),
                ent("../../escape", File, ""),
                ent("a/../../b", File, ""),
                ent("lib", Symlink, "/usr/lib"),
                ent("up", Symlink, "../../.."),
                ent("lib/libc", File, ""),
                ent("up/top", File, ""),
            ],
        );
        assert_eq!(
            paths(&t),
            [
                "/",
                "/b",
                "/escape",
                "/etc",
                "/etc/x",
                "/lib",
                "/top",
                "/up",
                "/usr",
                "/usr/lib",
                "/usr/lib/libc"
            ]
        );
    }

    #[test]
    fn hardlinks_share_an_inode_across_layers() {
        use EntryKind::*;
        let mut t = Tree::new(meta(0o755));
        apply(&mut t, 0, &[ent("f", File, ""), ent("g", Hardlink, "f")]);
        apply(
            &mut t,
            1,
            &[ent("h", Hardlink, "/f"), ent(".wh.f", File, "")],
        );
        let mut inodes = BTreeMap::new();
        t.walk(&mut |_, name, _, ino| {
            inodes.insert(show(name), ino);
            Ok(1)
        })
        .unwrap();
        assert_eq!(inodes.get("g"), inodes.get("h"));
        assert!(!inodes.contains_key("f"));
        let err = {
            t.begin_layer(2);
            t.apply(
                ent("k", Hardlink, "missing"),
                ContentRef { layer: 2, entry: 0 },
            )
            .unwrap_err()
        };
        assert!(err.msg.contains("k points to missing"), "{err}");
    }

    #[test]
    fn long_names_and_root_type_changes_are_refused() {
        let mut t = Tree::new(meta(0o755));
        t.begin_layer(0);
        let long = "n".repeat(256);
        let err = t
            .apply(
                ent(&long, EntryKind::File, ""),
                ContentRef { layer: 0, entry: 0 },
            )
            .unwrap_err();
        assert!(err.msg.contains("longer than 255"), "{err}");
        let err = t
            .apply(
                ent("./", EntryKind::File, ""),
                ContentRef { layer: 0, entry: 1 },
            )
            .unwrap_err();
        assert!(err.msg.contains("root"), "{err}");
    }
}
