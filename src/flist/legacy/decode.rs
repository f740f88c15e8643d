//! Cap'n Proto decoding of a legacy flist database: the `Dir` and `ACI` messages of the
//! `entries` table, walked once breadth-first from the root key into the in-memory index
//! of a [`LegacyReader`] (inode numbers, names, blocks). Every hostile input (bad message,
//! missing key, cycle, unsafe name, device without numbers) is an error naming the flist
//! and the entry. It must not open files or serve lookups: [`super::container`] and
//! [`super::reader`] do that.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::legacy_flist_capnp::{aci, dir, inode, special};
use super::reader::{Data, LegacyReader, Node};
use super::{MAX_ENTRIES, ROOT_KEY};
use crate::codec::ChunkRef;
use crate::error::{Error, Result};
use crate::flist::{
    check_name, Entry, Ino, ROOT_INO, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG,
};

/// Decode one Cap'n Proto message from an `entries` value, with traversal limits scaled
/// to its size (so a hostile message cannot make us read far more than it holds).
pub(super) fn read_message(
    value: &[u8],
) -> capnp::Result<capnp::message::Reader<capnp::serialize::OwnedSegments>> {
    let mut opts = capnp::message::ReaderOptions::new();
    opts.traversal_limit_in_words(Some((value.len() / 8) * 4 + 1024))
        .nesting_limit(16);
    let mut slice = value;
    capnp::serialize::read_message(&mut slice, opts)
}

/// Owner and permission bits from an ACI.
#[derive(Clone, Copy, Debug)]
pub(super) struct Acl {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) perm: u32,
}

pub(super) fn owner_id(id: i64, name: capnp::Result<capnp::text::Reader<'_>>) -> u32 {
    if let Ok(v) = u32::try_from(id) {
        return v;
    }
    name.ok()
        .and_then(|t| t.to_str().ok())
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(0)
}

pub(super) fn decode_aci(value: &[u8]) -> capnp::Result<Acl> {
    let msg = read_message(value)?;
    let a = msg.get_root::<aci::Reader<'_>>()?;
    Ok(Acl {
        uid: owner_id(a.get_uid(), a.get_uname()),
        gid: owner_id(a.get_gid(), a.get_gname()),
        perm: u32::from(a.get_mode()) & 0o7777,
    })
}

/// A text field as a `String` (keys are ASCII hex; anything else is refused).
fn text_string(t: capnp::Result<capnp::text::Reader<'_>>) -> capnp::Result<String> {
    t?.to_string()
        .map_err(|e| capnp::Error::failed(format!("text is not UTF-8: {e}")))
}

fn text_bytes(t: capnp::Result<capnp::text::Reader<'_>>) -> capnp::Result<Vec<u8>> {
    Ok(t?.as_bytes().to_vec())
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parse `"major,minor"` device data.
fn parse_dev(data: &[u8]) -> Option<(u32, u32)> {
    let s = std::str::from_utf8(data)
        .ok()?
        .trim_end_matches('\0')
        .trim();
    let (a, b) = s.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// What one `Inode` of a `Dir` decodes to, before it gets an inode number.
enum Item {
    Dir { key: String },
    File { blocks: Vec<ChunkRef> },
    Link(Vec<u8>),
    Special { kind: u32, rdev: u64 },
}

pub(super) struct Builder<'a> {
    pub(super) path: &'a Path,
    pub(super) conn: Connection,
    pub(super) acls: HashMap<String, Acl>,
    pub(super) out: LegacyReader,
}

impl Builder<'_> {
    fn value(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM entries WHERE key = ?1")?
            .query_row([key], |r| r.get::<_, Vec<u8>>(0))
            .optional()?)
    }

    fn acl(&mut self, key: &str, what: &dyn Fn() -> String) -> Result<Acl> {
        if let Some(a) = self.acls.get(key) {
            return Ok(*a);
        }
        let value = self.value(key)?.ok_or_else(|| {
            Error::format(format!(
                "{}: ACI {key:?} of {} is missing",
                self.path.display(),
                what()
            ))
        })?;
        let acl = decode_aci(&value).map_err(|e| {
            Error::format(format!(
                "{}: ACI {key:?} of {}: bad Cap'n Proto message: {e}",
                self.path.display(),
                what()
            ))
        })?;
        self.acls.insert(key.to_string(), acl);
        Ok(acl)
    }

    fn push(&mut self, entry: Entry, data: Data) -> Result<Ino> {
        if self.out.nodes.len() >= MAX_ENTRIES {
            return Err(Error::format(format!(
                "{}: more than {MAX_ENTRIES} entries",
                self.path.display()
            )));
        }
        let ino = entry.ino;
        self.out.nodes.push(Node { entry, data });
        Ok(ino)
    }

    pub(super) fn build(mut self) -> Result<LegacyReader> {
        let p = self.path.display().to_string();
        let mut seen: HashSet<String> = HashSet::new();
        let mut queue: VecDeque<(String, Ino, Vec<u8>)> = VecDeque::new();
        seen.insert(ROOT_KEY.to_string());
        // The root entry, from the root Dir itself.
        let root_value = self.value(ROOT_KEY)?.ok_or_else(|| {
            Error::format(format!(
                "{p}: not a legacy flist (no root directory {ROOT_KEY} in entries)"
            ))
        })?;
        {
            let msg = read_message(&root_value)
                .map_err(|e| Error::format(format!("{p}: root directory: {e}")))?;
            let d = msg
                .get_root::<dir::Reader<'_>>()
                .map_err(|e| Error::format(format!("{p}: root directory: {e}")))?;
            let aclkey = text_string(d.get_aclkey())
                .map_err(|e| Error::format(format!("{p}: root directory: {e}")))?;
            let acl = if aclkey.is_empty() {
                Acl {
                    uid: 0,
                    gid: 0,
                    perm: 0o755,
                }
            } else {
                self.acl(&aclkey, &|| "the root directory".to_string())?
            };
            let entry = Entry {
                ino: ROOT_INO,
                // As in v2 flists: the root's parent is 0.
                parent: 0,
                name: b"/".to_vec(),
                mode: S_IFDIR | acl.perm,
                uid: acl.uid,
                gid: acl.gid,
                size: d.get_size(),
                rdev: 0,
                mtime: i64::from(d.get_modification_time()),
                ctime: i64::from(d.get_creation_time()),
                nlink: 2,
                link_of: None,
            };
            self.push(
                entry,
                Data::Dir {
                    children: Vec::new(),
                },
            )?;
        }
        queue.push_back((ROOT_KEY.to_string(), ROOT_INO, Vec::new()));

        while let Some((key, dir_ino, dir_path)) = queue.pop_front() {
            let shown = if dir_path.is_empty() {
                "/".to_string()
            } else {
                show(&dir_path)
            };
            let value = self.value(&key)?.ok_or_else(|| {
                Error::format(format!(
                    "{p}: directory {shown:?} (key {key}) is missing from the entries"
                ))
            })?;
            let bad = |e: capnp::Error| {
                Error::format(format!(
                    "{p}: directory {shown:?} (key {key}): bad Cap'n Proto message: {e}"
                ))
            };
            let msg = read_message(&value).map_err(bad)?;
            let d = msg.get_root::<dir::Reader<'_>>().map_err(bad)?;
            let contents = d.get_contents().map_err(bad)?;
            let mut children = Vec::with_capacity(contents.len() as usize);
            let mut subdirs = 0u32;
            for (i, node) in contents.iter().enumerate() {
                let name = text_bytes(node.get_name()).map_err(|e| {
                    Error::format(format!(
                        "{p}: entry #{i} of directory {shown:?}: bad name: {e}"
                    ))
                })?;
                let mut child_path = dir_path.clone();
                if !child_path.is_empty() {
                    child_path.push(b'/');
                }
                child_path.extend_from_slice(&name);
                let cshown = show(&child_path);
                check_name(&name).map_err(|e| {
                    Error::format(format!("{p}: entry #{i} of directory {shown:?}: {}", e.msg))
                })?;
                let bad_entry = |e: capnp::Error| {
                    Error::format(format!("{p}: entry {cshown:?}: bad Cap'n Proto data: {e}"))
                };
                let item = match node.get_attributes().which() {
                    Ok(inode::attributes::Dir(sub)) => {
                        let sub = sub.map_err(bad_entry)?;
                        let k = text_string(sub.get_key()).map_err(bad_entry)?;
                        Item::Dir { key: k }
                    }
                    Ok(inode::attributes::File(f)) => {
                        let f = f.map_err(bad_entry)?;
                        let mut blocks = Vec::new();
                        if f.has_blocks() {
                            for (j, b) in f.get_blocks().map_err(bad_entry)?.iter().enumerate() {
                                let hash = b.get_hash().map_err(bad_entry)?;
                                let bkey = b.get_key().map_err(bad_entry)?;
                                let (Ok(h), Ok(k)) =
                                    (<[u8; 16]>::try_from(hash), <[u8; 16]>::try_from(bkey))
                                else {
                                    return Err(Error::format(format!(
                                        "{p}: entry {cshown:?}: block #{j} has a {}-byte hash and a {}-byte key (expected 16 and 16)",
                                        hash.len(),
                                        bkey.len()
                                    )));
                                };
                                blocks.push(ChunkRef::legacy(h, k));
                            }
                        }
                        Item::File { blocks }
                    }
                    Ok(inode::attributes::Link(l)) => {
                        let l = l.map_err(bad_entry)?;
                        let target = text_bytes(l.get_target()).map_err(bad_entry)?;
                        if target.is_empty() || target.contains(&0) {
                            return Err(Error::format(format!(
                                "{p}: symlink {cshown:?} has an empty or invalid target"
                            )));
                        }
                        Item::Link(target)
                    }
                    Ok(inode::attributes::Special(s)) => {
                        let s = s.map_err(bad_entry)?;
                        let ty = s.get_type();
                        let data: &[u8] = if s.has_data() {
                            s.get_data().map_err(bad_entry)?
                        } else {
                            &[]
                        };
                        match (parse_dev(data), ty) {
                            (Some((ma, mi)), Ok(special::Type::Block)) => Item::Special {
                                kind: S_IFBLK,
                                rdev: libc::makedev(ma, mi),
                            },
                            (Some((ma, mi)), _) => Item::Special {
                                kind: S_IFCHR,
                                rdev: libc::makedev(ma, mi),
                            },
                            (None, Ok(special::Type::Block | special::Type::Chardev)) => {
                                return Err(Error::format(format!(
                                    "{p}: device {cshown:?} has no \"major,minor\" numbers (data {:?})",
                                    show(data)
                                )))
                            }
                            (None, _) => Item::Special {
                                kind: S_IFIFO,
                                rdev: 0,
                            },
                        }
                    }
                    Err(capnp::NotInSchema(n)) => {
                        return Err(Error::format(format!(
                            "{p}: entry {cshown:?} has an unknown kind ({n})"
                        )))
                    }
                };
                let aclkey = text_string(node.get_aclkey()).map_err(bad_entry)?;
                let (kind_bits, default_perm) = match &item {
                    Item::Dir { .. } => (S_IFDIR, 0o755),
                    Item::File { .. } => (S_IFREG, 0o644),
                    Item::Link(_) => (S_IFLNK, 0o777),
                    Item::Special { kind, .. } => (*kind, 0o644),
                };
                let acl = if aclkey.is_empty() {
                    Acl {
                        uid: 0,
                        gid: 0,
                        perm: default_perm,
                    }
                } else {
                    self.acl(&aclkey, &|| format!("entry {cshown:?}"))?
                };
                let ino = self.out.nodes.len() as Ino + 1;
                let mut entry = Entry {
                    ino,
                    parent: dir_ino,
                    name: name.clone(),
                    mode: kind_bits | acl.perm,
                    uid: acl.uid,
                    gid: acl.gid,
                    size: node.get_size(),
                    rdev: 0,
                    mtime: i64::from(node.get_modification_time()),
                    ctime: i64::from(node.get_creation_time()),
                    nlink: 1,
                    link_of: None,
                };
                let data = match item {
                    Item::Dir { key: k } => {
                        if !seen.insert(k.clone()) {
                            return Err(Error::format(format!(
                                "{p}: directory {cshown:?} (key {k}) is referenced twice (a cycle or a shared directory)"
                            )));
                        }
                        subdirs += 1;
                        entry.nlink = 2;
                        queue.push_back((k, ino, child_path));
                        Data::Dir {
                            children: Vec::new(),
                        }
                    }
                    Item::File { blocks } => {
                        let start = self.out.blocks.len();
                        let len = blocks.len();
                        self.out.blocks.extend(blocks);
                        Data::File { start, len }
                    }
                    Item::Link(t) => Data::Link(t),
                    Item::Special { rdev, .. } => {
                        entry.rdev = rdev;
                        Data::Special
                    }
                };
                if self
                    .out
                    .names
                    .entry(dir_ino)
                    .or_default()
                    .insert(name, ino)
                    .is_some()
                {
                    return Err(Error::format(format!(
                        "{p}: entry {cshown:?} appears twice in its directory"
                    )));
                }
                self.push(entry, data)?;
                children.push(ino);
            }
            let parent = &mut self.out.nodes[(dir_ino - 1) as usize];
            parent.entry.nlink = 2 + subdirs;
            parent.data = Data::Dir { children };
        }
        Ok(self.out)
    }
}
