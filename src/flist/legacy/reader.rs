//! The [`Flist`] implementation of a legacy flist: [`LegacyReader::open`] extracts the
//! database ([`super::container`]), reads its `metadata` table, has [`super::decode`] build
//! the in-memory index, then serves lookups, listings, blocks and totals from that index.
//! Also maps the `backend` metadata to a store URL. It must not decode Cap'n Proto itself
//! nor fetch chunks.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::container::{extract_db, DB_MEMBER};
use super::decode::Builder;
use crate::codec::ChunkRef;
use crate::error::{Context, Error, Result};
use crate::flist::{Entry, Flist, Identity, Ino, Kind, Route, Totals};

#[derive(Clone, Debug)]
pub(super) enum Data {
    Dir { children: Vec<Ino> },
    File { start: usize, len: usize },
    Link(Vec<u8>),
    Special,
}

pub(super) struct Node {
    pub(super) entry: Entry,
    pub(super) data: Data,
}

/// A legacy flist, fully indexed in memory.
pub struct LegacyReader {
    pub(super) path: PathBuf,
    pub(super) nodes: Vec<Node>,
    /// Per directory: child name -> inode.
    pub(super) names: HashMap<Ino, HashMap<Vec<u8>, Ino>>,
    pub(super) blocks: Vec<ChunkRef>,
    pub(super) metadata: Vec<(String, String)>,
}

impl LegacyReader {
    /// Open a legacy `.flist` (gzip'd tar holding `flistdb.sqlite3`) and index it.
    pub fn open(path: &Path) -> Result<LegacyReader> {
        let tmp = extract_db(path)?;
        let conn = Connection::open_with_flags(
            &tmp.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_ctx(|| format!("{}: cannot open its {DB_MEMBER}", path.display()))?;
        let what = || {
            format!(
                "{}: {DB_MEMBER} is not a legacy flist database",
                path.display()
            )
        };
        let has_entries: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'entries'",
                [],
                |r| r.get(0),
            )
            .optional()
            .with_ctx(what)?;
        if has_entries.is_none() {
            return Err(Error::format(format!("{}: no `entries` table", what())));
        }
        let has_metadata: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'metadata'",
                [],
                |r| r.get(0),
            )
            .optional()
            .with_ctx(what)?;
        let mut metadata = Vec::new();
        if has_metadata.is_some() {
            let mut st = conn
                .prepare("SELECT key, CAST(value AS BLOB) FROM metadata ORDER BY key")
                .with_ctx(what)?;
            let rows = st
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
                })
                .with_ctx(what)?;
            for r in rows {
                let (k, v) = r.with_ctx(what)?;
                metadata.push((
                    k,
                    String::from_utf8_lossy(&v.unwrap_or_default()).into_owned(),
                ));
            }
        }
        let builder = Builder {
            path,
            conn,
            acls: HashMap::new(),
            out: LegacyReader {
                path: path.to_path_buf(),
                nodes: Vec::new(),
                names: HashMap::new(),
                blocks: Vec::new(),
                metadata,
            },
        };
        let reader = builder.build()?;
        drop(tmp);
        Ok(reader)
    }

    /// The `.flist` file this reader was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `metadata` table (including `backend`, which may hold a password).
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    fn node(&self, ino: Ino) -> Result<&Node> {
        ino.checked_sub(1)
            .and_then(|i| self.nodes.get(i as usize))
            .ok_or_else(|| Error::not_found(format!("no inode {ino}")))
    }
}

/// The store URL of a legacy `backend` metadata value:
/// `zdb://[:password@]host:port[/namespace]` (password and namespace percent-encoded).
pub fn backend_url(json: &str) -> Result<String> {
    let bad = |why: &str| Error::format(format!("legacy flist backend metadata: {why}"));
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad(&format!("not JSON ({e})")))?;
    let host = v
        .get("host")
        .and_then(|h| h.as_str())
        .filter(|h| !h.is_empty() && !h.contains(['/', '@', '?', '#', ' ']))
        .ok_or_else(|| bad("no valid \"host\""))?;
    let port = match v.get("port") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        None => Some(9900),
        _ => None,
    }
    .filter(|p| (1..=65535).contains(p))
    .ok_or_else(|| bad("no valid \"port\""))?;
    let text = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .filter(|s| !s.is_empty())
            .map(percent_encode)
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let mut url = String::from("zdb://");
    if let Some(pw) = text("password") {
        url.push(':');
        url.push_str(&pw);
        url.push('@');
    }
    url.push_str(&format!("{host}:{port}"));
    if let Some(ns) = text("namespace") {
        url.push('/');
        url.push_str(&ns);
    }
    Ok(url)
}

/// Percent-encode everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Flist for LegacyReader {
    fn format(&self) -> String {
        "legacy".to_string()
    }

    fn get(&self, ino: Ino) -> Result<Entry> {
        Ok(self.node(ino)?.entry.clone())
    }

    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Option<Entry>> {
        match self.names.get(&parent).and_then(|m| m.get(name)) {
            Some(&ino) => Ok(Some(self.node(ino)?.entry.clone())),
            None => Ok(None),
        }
    }

    fn children(&self, parent: Ino) -> Result<Vec<Entry>> {
        match &self.node(parent)?.data {
            Data::Dir { children } => children
                .iter()
                .map(|&i| Ok(self.node(i)?.entry.clone()))
                .collect(),
            _ => Ok(Vec::new()),
        }
    }

    fn children_after(&self, parent: Ino, after: Ino, limit: usize) -> Result<Vec<Entry>> {
        match &self.node(parent)?.data {
            Data::Dir { children } => {
                // Children get consecutive inode numbers as the index is built: ascending.
                let from = children.partition_point(|&i| i <= after);
                children[from..]
                    .iter()
                    .take(limit)
                    .map(|&i| Ok(self.node(i)?.entry.clone()))
                    .collect()
            }
            _ => Ok(Vec::new()),
        }
    }

    fn blocks(&self, ino: Ino) -> Result<Vec<ChunkRef>> {
        match &self.node(ino)?.data {
            Data::File { start, len } => Ok(self.blocks[*start..*start + *len].to_vec()),
            _ => Ok(Vec::new()),
        }
    }

    fn link_target(&self, ino: Ino) -> Result<Vec<u8>> {
        match &self.node(ino)?.data {
            Data::Link(t) => Ok(t.clone()),
            _ => Err(Error::format(format!("inode {ino} is not a symlink"))),
        }
    }

    fn xattrs(&self, _ino: Ino) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(Vec::new())
    }

    /// Legacy flists carry no xattrs.
    fn has_xattrs(&self) -> bool {
        false
    }

    fn identity(&self, _ino: Ino) -> Result<Option<Identity>> {
        Ok(None)
    }

    /// The `metadata` rows other than `backend` (which may hold a password).
    fn tags(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .metadata
            .iter()
            .filter(|(k, _)| k != "backend")
            .cloned()
            .collect())
    }

    /// The `backend` metadata as one `zdb://` route for every id (password included:
    /// callers redact it before showing it).
    fn routes(&self) -> Result<Vec<Route>> {
        match self.metadata.iter().find(|(k, _)| k == "backend") {
            None => Ok(Vec::new()),
            Some((_, json)) => Ok(vec![Route {
                start: 0,
                end: 255,
                url: backend_url(json).with_ctx(|| self.path.display())?,
            }]),
        }
    }

    fn totals(&self) -> Result<Totals> {
        let mut t = Totals::default();
        for n in &self.nodes {
            t.entries += 1;
            match n.entry.kind() {
                Kind::File => {
                    t.files += 1;
                    t.bytes += n.entry.size;
                }
                Kind::Dir => t.dirs += 1,
                Kind::Symlink => t.symlinks += 1,
                _ => t.specials += 1,
            }
        }
        t.blocks = self.blocks.len() as u64;
        t.unique_blocks = self
            .blocks
            .iter()
            .map(|b| b.id())
            .collect::<HashSet<_>>()
            .len() as u64;
        Ok(t)
    }
}
