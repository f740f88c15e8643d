//! The local layer index (`CACHE/layers/index.db`, SQLite): per layer digest and set of stores,
//! the layer's entries (metadata only) and, for the regular files an import encoded, their
//! chunks and identity. An import finds a layer there and neither reads nor uploads it
//! again. Rows are added only after the flist that needs their chunks was published (the
//! chunks are then flushed in the stores). Like pack's `--base`, it trusts the stores to
//! still hold what it records. A damaged or unreadable index is ignored with a warning,
//! never an import failure. It knows nothing of registries or trees.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::tree::{EntryKind, LayerEntry, Meta};
use crate::codec::ChunkRef;
use crate::error::{Context, Result};
use crate::flist::Identity;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS layer (
    id INTEGER PRIMARY KEY, digest TEXT NOT NULL, stores TEXT NOT NULL,
    entries INTEGER NOT NULL, UNIQUE (digest, stores));
CREATE TABLE IF NOT EXISTS entry (
    layer INTEGER NOT NULL, ord INTEGER NOT NULL, path BLOB NOT NULL, kind INTEGER NOT NULL,
    perm INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL, mtime INTEGER NOT NULL,
    rdev INTEGER NOT NULL, link BLOB NOT NULL, size INTEGER NOT NULL, xattrs BLOB NOT NULL,
    PRIMARY KEY (layer, ord));
CREATE TABLE IF NOT EXISTS content (
    layer INTEGER NOT NULL, ord INTEGER NOT NULL, blocks BLOB NOT NULL,
    partial BLOB NOT NULL, checksum BLOB NOT NULL, PRIMARY KEY (layer, ord));
";

/// What the index knows of one layer.
#[derive(Default)]
pub struct Known {
    /// Its entries, when the whole layer was recorded.
    pub entries: Option<Vec<LayerEntry>>,
    /// Encoded regular files, by entry number.
    pub content: HashMap<u32, (Vec<ChunkRef>, Identity)>,
}

/// The open index.
pub struct LayerIndex {
    conn: Option<Connection>,
    path: PathBuf,
    /// The stores' identity (their routes) the rows are for.
    stores: String,
}

impl LayerIndex {
    /// Open (creating) the index in `CACHE/layers` for chunks kept in `stores`. Never
    /// fails: an index that cannot be used is logged and behaves as empty.
    pub fn open(cache: &Path, stores: String) -> LayerIndex {
        let dir = cache.join("layers");
        let path = dir.join("index.db");
        let conn = match open_db(&dir, &path) {
            Ok(c) => Some(c),
            Err(e) => {
                log::warn!("layer index {} not used: {e}", path.display());
                None
            }
        };
        LayerIndex { conn, path, stores }
    }

    /// An index that records nothing (no cache directory).
    pub fn none() -> LayerIndex {
        LayerIndex {
            conn: None,
            path: PathBuf::new(),
            stores: String::new(),
        }
    }

    /// What is known of the layer `digest`.
    pub fn get(&self, digest: &str) -> Known {
        let Some(conn) = &self.conn else {
            return Known::default();
        };
        match load(conn, digest, &self.stores) {
            Ok(k) => k,
            Err(e) => {
                log::warn!(
                    "layer index {}: ignoring its record of {digest}: {e}",
                    self.path.display()
                );
                Known::default()
            }
        }
    }

    /// Record the entries of the layer `digest`, just read and verified (they name no
    /// chunk, so they need not wait for the flist).
    pub fn record_entries(&mut self, digest: &str, entries: &[LayerEntry]) {
        self.record(&[Record {
            digest,
            entries: Some(entries),
            content: Vec::new(),
        }]);
    }

    /// A recorder of the entries of the layer `digest` as they are read (see
    /// [`EntryRecorder`]), so they need not be kept in memory for the index.
    pub fn entry_recorder(&mut self, digest: &str) -> EntryRecorder<'_> {
        let where_ = self.path.display().to_string();
        let tx = match self.conn.as_mut() {
            Some(conn) => match begin_entries(conn, &self.stores, digest) {
                Ok(t) => Some(t),
                Err(e) => {
                    log::warn!("layer index {where_}: not recording {digest}: {e}");
                    None
                }
            },
            None => None,
        };
        EntryRecorder { tx, n: 0, where_ }
    }

    /// Record layers: `(digest, entries if read now, contents encoded now)`.
    pub fn record(&mut self, layers: &[Record<'_>]) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if let Err(e) = store(conn, &self.stores, layers) {
            log::warn!("layer index {} not updated: {e}", self.path.display());
        }
    }
}

/// Records one layer's entries as they stream past, in a transaction that
/// [`EntryRecorder::finish`] commits once the layer was read to its end (verified); a
/// recorder dropped unfinished records nothing. Failures are logged, never returned.
pub struct EntryRecorder<'a> {
    tx: Option<(rusqlite::Transaction<'a>, i64)>,
    n: i64,
    where_: String,
}

impl EntryRecorder<'_> {
    /// Record the next entry.
    pub fn add(&mut self, e: &LayerEntry) {
        let Some((tx, id)) = &self.tx else {
            return;
        };
        match insert_entry(tx, *id, self.n, e) {
            Ok(()) => self.n += 1,
            Err(err) => {
                log::warn!("layer index {}: not recording a layer: {err}", self.where_);
                self.tx = None;
            }
        }
    }

    /// Commit what was recorded.
    pub fn finish(mut self) {
        let Some((tx, id)) = self.tx.take() else {
            return;
        };
        let r = tx
            .execute(
                "UPDATE layer SET entries = ?1 WHERE id = ?2",
                params![self.n, id],
            )
            .and_then(|_| tx.commit());
        if let Err(err) = r {
            log::warn!("layer index {}: not recording a layer: {err}", self.where_);
        }
    }
}

/// Start recording the entries of `digest`: its layer row, its old entries gone.
fn begin_entries<'c>(
    conn: &'c mut Connection,
    stores: &str,
    digest: &str,
) -> Result<(rusqlite::Transaction<'c>, i64)> {
    let tx = conn.transaction()?;
    let id = layer_id(&tx, stores, digest)?;
    tx.execute("DELETE FROM entry WHERE layer = ?1", params![id])?;
    Ok((tx, id))
}

/// The row id of a layer, made if missing (with no entries recorded yet: -1).
fn layer_id(tx: &rusqlite::Transaction<'_>, stores: &str, digest: &str) -> Result<i64> {
    tx.execute(
        "INSERT OR IGNORE INTO layer (digest, stores, entries) VALUES (?1, ?2, -1)",
        params![digest, stores],
    )?;
    Ok(tx.query_row(
        "SELECT id FROM layer WHERE digest = ?1 AND stores = ?2",
        params![digest, stores],
        |r| r.get(0),
    )?)
}

fn insert_entry(tx: &rusqlite::Transaction<'_>, id: i64, ord: i64, e: &LayerEntry) -> Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT INTO entry (layer, ord, path, kind, perm, uid, gid, mtime, rdev, link,
         size, xattrs) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    st.execute(params![
        id,
        ord,
        e.path,
        kind_code(e.kind),
        e.meta.perm,
        e.meta.uid,
        e.meta.gid,
        e.meta.mtime,
        e.meta.rdev as i64,
        e.link,
        e.size as i64,
        pack_xattrs(&e.meta.xattrs)
    ])?;
    Ok(())
}

/// One encoded file: its entry number, blocks and identity.
pub type Encoded<'a> = (u32, &'a [ChunkRef], &'a Identity);

/// One layer to record.
pub struct Record<'a> {
    /// The layer's digest.
    pub digest: &'a str,
    /// All its entries, when this import read the layer.
    pub entries: Option<&'a [LayerEntry]>,
    /// Regular files encoded now: entry number, blocks, identity.
    pub content: Vec<Encoded<'a>>,
}

fn open_db(dir: &Path, path: &Path) -> Result<Connection> {
    std::fs::create_dir_all(dir).with_ctx(|| format!("creating {}", dir.display()))?;
    let conn = Connection::open(path).with_ctx(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(30))
        .with_ctx(|| path.display().to_string())?;
    conn.execute_batch(SCHEMA)
        .with_ctx(|| path.display().to_string())?;
    Ok(conn)
}

fn kind_code(k: EntryKind) -> i64 {
    match k {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
        EntryKind::Symlink => 2,
        EntryKind::Hardlink => 3,
        EntryKind::Char => 4,
        EntryKind::Block => 5,
        EntryKind::Fifo => 6,
    }
}

fn code_kind(c: i64) -> Option<EntryKind> {
    Some(match c {
        0 => EntryKind::File,
        1 => EntryKind::Dir,
        2 => EntryKind::Symlink,
        3 => EntryKind::Hardlink,
        4 => EntryKind::Char,
        5 => EntryKind::Block,
        6 => EntryKind::Fifo,
        _ => return None,
    })
}

/// xattrs as (u32 LE name length, name, u32 LE value length, value)*.
fn pack_xattrs(x: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in x {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

fn unpack_xattrs(mut b: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let take = |b: &mut &[u8]| -> Option<Vec<u8>> {
        let (len, rest) = b.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (v, rest) = rest.split_at(len);
        *b = rest;
        Some(v.to_vec())
    };
    while !b.is_empty() {
        let k = take(&mut b)?;
        let v = take(&mut b)?;
        out.push((k, v));
    }
    Some(out)
}

fn bad(what: &str) -> crate::error::Error {
    crate::error::Error::format(format!("damaged row: {what}"))
}

fn load(conn: &Connection, digest: &str, stores: &str) -> Result<Known> {
    let row: Option<(i64, i64)> = conn
        .query_row(
            "SELECT id, entries FROM layer WHERE digest = ?1 AND stores = ?2",
            params![digest, stores],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((id, count)) = row else {
        return Ok(Known::default());
    };
    let mut known = Known::default();
    if count >= 0 {
        let mut st = conn.prepare(
            "SELECT ord, path, kind, perm, uid, gid, mtime, rdev, link, size, xattrs
             FROM entry WHERE layer = ?1 ORDER BY ord",
        )?;
        let mut rows = st.query(params![id])?;
        let mut entries = Vec::new();
        while let Some(r) = rows.next()? {
            let ord: i64 = r.get(0)?;
            if ord != entries.len() as i64 {
                return Err(bad("entry numbers"));
            }
            let xattrs: Vec<u8> = r.get(10)?;
            entries.push(LayerEntry {
                path: r.get(1)?,
                kind: code_kind(r.get(2)?).ok_or_else(|| bad("kind"))?,
                meta: Meta {
                    perm: r.get(3)?,
                    uid: r.get(4)?,
                    gid: r.get(5)?,
                    mtime: r.get(6)?,
                    rdev: r.get::<_, i64>(7)? as u64,
                    xattrs: unpack_xattrs(&xattrs).ok_or_else(|| bad("xattrs"))?,
                },
                link: r.get(8)?,
                size: r.get::<_, i64>(9)? as u64,
            });
        }
        if entries.len() as i64 != count {
            return Err(bad("entry count"));
        }
        known.entries = Some(entries);
    }
    let mut st =
        conn.prepare("SELECT ord, blocks, partial, checksum FROM content WHERE layer = ?1")?;
    let mut rows = st.query(params![id])?;
    while let Some(r) = rows.next()? {
        let ord: u32 = r.get(0)?;
        let blocks: Vec<u8> = r.get(1)?;
        let partial: Vec<u8> = r.get(2)?;
        let checksum: Vec<u8> = r.get(3)?;
        if !blocks.len().is_multiple_of(64) {
            return Err(bad("blocks"));
        }
        let refs = blocks
            .chunks_exact(64)
            .map(|c| ChunkRef::from_slices(&c[..32], &c[32..]))
            .collect::<Result<Vec<_>>>()?;
        let identity = Identity {
            partial: partial.try_into().map_err(|_| bad("partial checksum"))?,
            checksum: checksum.try_into().map_err(|_| bad("checksum"))?,
        };
        known.content.insert(ord, (refs, identity));
    }
    Ok(known)
}

fn store(conn: &mut Connection, stores: &str, layers: &[Record<'_>]) -> Result<()> {
    let tx = conn.transaction()?;
    for l in layers {
        if l.entries.is_none() && l.content.is_empty() {
            continue;
        }
        let id = layer_id(&tx, stores, l.digest)?;
        if let Some(entries) = l.entries {
            tx.execute("DELETE FROM entry WHERE layer = ?1", params![id])?;
            for (i, e) in entries.iter().enumerate() {
                insert_entry(&tx, id, i as i64, e)?;
            }
            tx.execute(
                "UPDATE layer SET entries = ?1 WHERE id = ?2",
                params![entries.len() as i64, id],
            )?;
        }
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO content (layer, ord, blocks, partial, checksum)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (ord, blocks, ident) in &l.content {
            let mut b = Vec::with_capacity(blocks.len() * 64);
            for c in blocks.iter() {
                b.extend_from_slice(c.id());
                b.extend_from_slice(c.key());
            }
            st.execute(params![id, ord, b, &ident.partial[..], &ident.checksum[..]])?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_round_trip_and_a_damaged_index_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let e = LayerEntry {
            path: b"a/\xff".to_vec(),
            kind: EntryKind::File,
            meta: Meta {
                perm: 0o4755,
                uid: 1,
                gid: 2,
                mtime: -3,
                rdev: 0,
                xattrs: vec![(b"user.a".to_vec(), b"\x00b".to_vec())],
            },
            link: Vec::new(),
            size: 9,
        };
        let c = ChunkRef::v2([1; 32], [2; 32]);
        let ident = Identity {
            partial: [3; 32],
            checksum: [4; 32],
        };
        let mut idx = LayerIndex::open(dir.path(), "dir:///s".into());
        idx.record(&[Record {
            digest: "sha256:aa",
            entries: Some(std::slice::from_ref(&e)),
            content: vec![(0, std::slice::from_ref(&c), &ident)],
        }]);
        let k = LayerIndex::open(dir.path(), "dir:///s".into()).get("sha256:aa");
        let got = k.entries.unwrap();
        assert_eq!(got[0].path, e.path);
        assert_eq!(got[0].meta, e.meta);
        assert_eq!(k.content[&0].0, vec![c]);
        // Other stores: nothing known.
        let k = LayerIndex::open(dir.path(), "dir:///t".into()).get("sha256:aa");
        assert!(k.entries.is_none() && k.content.is_empty());
        std::fs::write(dir.path().join("layers/index.db"), b"not a database at all").unwrap();
        let k = LayerIndex::open(dir.path(), "dir:///s".into()).get("sha256:aa");
        assert!(k.entries.is_none());
    }
}
