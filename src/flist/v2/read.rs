//! Reading a v2 `.fl`: [`V2Reader`] opens it read-only (immutable, refusing truncated files
//! and unknown schema markers), keeps a small pool of SQLite connections and serves the
//! [`Flist`] trait, zvfs's extension tables included. It must not write to the file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{SCHEMA_VERSION, VERSION_TAG};
use crate::codec::ChunkRef;
use crate::error::{Context, Error, Result};
use crate::flist::{Entry, Flist, Identity, Ino, Kind, Route, Totals, S_IFDIR, S_IFMT};

/// How to put back a schema marker that was set by hand (only older zvfs let `config tag
/// add` do it), for the errors that refuse such an flist.
fn restore_hint(path: &Path) -> String {
    format!(
        "if it was set by hand, put the marker back with: sqlite3 {} \"UPDATE tag SET \
         value='zvfs-{SCHEMA_VERSION}' WHERE key='{VERSION_TAG}'\"",
        path.display()
    )
}

/// Which optional tables a file has, decided once at open.
#[derive(Clone, Copy, Default)]
struct Extensions {
    names: bool,
    xattrs: bool,
    hardlinks: bool,
    identity: bool,
}

/// An open v2 `.fl`, read-only; shareable between threads (each query borrows a pooled
/// SQLite connection).
pub struct V2Reader {
    path: PathBuf,
    ext: Extensions,
    select: String,
    zvfs_version: Option<u32>,
    pool: Mutex<Vec<Connection>>,
    /// Extra paths per hardlinked content inode, loaded on first need (hardlinks are few;
    /// this avoids one query per file when listing directories).
    link_counts: OnceLock<HashMap<Ino, u32>>,
    /// Children per directory looked up in, to pick the index a lookup uses.
    child_counts: Mutex<lru::LruCache<Ino, u32>>,
}

/// Directories with more children than this are searched by name, not by parent.
const BIG_DIR: u32 = 128;

fn open_conn(path: &Path) -> Result<Connection> {
    // immutable=1: the file never changes under a reader, so SQLite skips locking.
    let uri = format!("file:{}?immutable=1", uri_escape(path));
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_ctx(|| format!("{}: cannot open as SQLite", path.display()))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn uri_escape(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'%' | b'?' | b'#' => out.push_str(&format!("%{b:02X}")),
            _ if b.is_ascii() && !b.is_ascii_control() => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A file shorter than the page count its header declares was truncated.
fn check_not_truncated(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).with_ctx(|| format!("opening flist {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut hdr = [0u8; 100];
    f.read_exact(&mut hdr).map_err(|_| {
        Error::format(format!(
            "{}: truncated flist (short SQLite header)",
            path.display()
        ))
    })?;
    let page_size = match u16::from_be_bytes([hdr[16], hdr[17]]) {
        1 => 65536u64,
        n => n as u64,
    };
    let pages = u32::from_be_bytes([hdr[28], hdr[29], hdr[30], hdr[31]]) as u64;
    let change = &hdr[24..28];
    let valid_for = &hdr[92..96];
    if pages > 0 && change == valid_for && len < pages * page_size {
        return Err(Error::format(format!(
            "{}: truncated flist ({len} bytes, header declares {} bytes)",
            path.display(),
            pages * page_size
        )));
    }
    Ok(())
}

impl V2Reader {
    /// Open `path`, failing with its name when it is truncated, is not an rfs/zvfs flist
    /// (a table or the root entry is missing) or has a schema marker this zvfs does not
    /// read (unknown or newer than [`SCHEMA_VERSION`]).
    pub fn open(path: &Path) -> Result<V2Reader> {
        check_not_truncated(path)?;
        let conn = open_conn(path)?;
        let what = || format!("{}: not a valid flist", path.display());
        let tables: HashSet<String> = {
            let mut st = conn
                .prepare("SELECT name FROM sqlite_master WHERE type='table'")
                .with_ctx(what)?;
            let rows = st.query_map([], |r| r.get::<_, String>(0)).with_ctx(what)?;
            rows.collect::<std::result::Result<_, _>>().with_ctx(what)?
        };
        for t in ["inode", "block", "extra", "tag", "route"] {
            if !tables.contains(t) {
                return Err(Error::format(format!(
                    "{}: not an rfs/zvfs flist (table `{t}` is missing)",
                    path.display()
                )));
            }
        }
        // An empty hardlink table is as good as none: no join, no link counting.
        let has_rows = |t: &str| -> Result<bool> {
            if !tables.contains(t) {
                return Ok(false);
            }
            conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {t})"), [], |r| {
                r.get(0)
            })
            .with_ctx(what)
        };
        let ext = Extensions {
            names: has_rows("zvfs_name")?,
            xattrs: has_rows("zvfs_xattr")?,
            hardlinks: has_rows("zvfs_hardlink")?,
            identity: tables.contains("zvfs_identity"),
        };
        let version: Option<String> = conn
            .query_row("SELECT value FROM tag WHERE key = ?1", [VERSION_TAG], |r| {
                r.get(0)
            })
            .optional()
            .with_ctx(what)?;
        let zvfs_version = match version.as_deref().and_then(|v| v.strip_prefix("zvfs-")) {
            None => None,
            Some(n) => {
                let shown = version.as_deref().unwrap_or_default();
                let n: u32 = n.parse().map_err(|_| {
                    Error::format(format!(
                        "{}: unknown flist schema marker {VERSION_TAG}={shown:?} (this zvfs \
                         writes and reads zvfs-{SCHEMA_VERSION}); {}",
                        path.display(),
                        restore_hint(path)
                    ))
                })?;
                if n > SCHEMA_VERSION {
                    return Err(Error::format(format!(
                        "{}: flist schema {VERSION_TAG}={shown:?} is newer than this zvfs \
                         understands (zvfs-{SCHEMA_VERSION}); upgrade zvfs, or {}",
                        path.display(),
                        restore_hint(path)
                    )));
                }
                Some(n)
            }
        };
        let select = format!(
            "SELECT i.ino, i.parent, i.name, i.size, i.uid, i.gid, i.mode, i.rdev, i.ctime, i.mtime, {}, {} FROM inode i {} {}",
            if ext.names { "n.name" } else { "NULL" },
            if ext.hardlinks { "h.target" } else { "NULL" },
            if ext.names { "LEFT JOIN zvfs_name n ON n.ino = i.ino" } else { "" },
            if ext.hardlinks { "LEFT JOIN zvfs_hardlink h ON h.ino = i.ino" } else { "" },
        );
        let reader = V2Reader {
            path: path.to_path_buf(),
            ext,
            select,
            zvfs_version,
            pool: Mutex::new(vec![conn]),
            link_counts: OnceLock::new(),
            child_counts: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(4096).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        };
        // Fail now, with the file name, if the root is missing or the file is damaged.
        reader.get(crate::flist::ROOT_INO).with_ctx(what)?;
        Ok(reader)
    }

    /// The file this reader was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.pool.lock() {
            Ok(mut p) => p.pop(),
            Err(_) => None,
        };
        let conn = match conn {
            Some(c) => c,
            None => open_conn(&self.path)?,
        };
        let out = f(&conn).with_ctx(|| format!("reading flist {}", self.path.display()));
        if let Ok(mut p) = self.pool.lock() {
            if p.len() < 16 {
                p.push(conn);
            }
        }
        out
    }

    fn row_to_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
        let raw_name: Option<Vec<u8>> = row.get(10)?;
        let name = match raw_name {
            Some(n) => n,
            None => match row.get_ref(2)? {
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    t.to_vec()
                }
                _ => Vec::new(),
            },
        };
        let int =
            |i: usize| -> rusqlite::Result<i64> { Ok(row.get::<_, Option<i64>>(i)?.unwrap_or(0)) };
        Ok(Entry {
            ino: int(0)? as u64,
            parent: int(1)? as u64,
            name,
            size: int(3)? as u64,
            uid: int(4)? as u32,
            gid: int(5)? as u32,
            mode: int(6)? as u32,
            rdev: int(7)? as u64,
            ctime: int(8)?,
            mtime: int(9)?,
            nlink: 1,
            link_of: row.get::<_, Option<i64>>(11)?.map(|t| t as u64),
        })
    }

    /// Fill in `nlink` and check the type.
    fn finish_entry(&self, conn: &Connection, e: Entry) -> Result<Entry> {
        let subdirs = if e.is_dir() {
            conn.prepare_cached(
                "SELECT count(*) FROM inode WHERE parent = ?1 AND (mode & ?2) = ?3",
            )?
            .query_row(params![e.ino as i64, S_IFMT, S_IFDIR], |r| {
                r.get::<_, i64>(0)
            })?
        } else {
            0
        };
        self.finish_with(conn, e, subdirs as u32)
    }

    /// Fill in `nlink` given a directory's subdirectory count, and check the type.
    fn finish_with(&self, conn: &Connection, mut e: Entry, subdirs: u32) -> Result<Entry> {
        if Kind::from_mode(e.mode).is_none() {
            return Err(Error::format(format!(
                "entry {} has an unknown file type (mode {:o})",
                e.ino, e.mode
            )));
        }
        if e.is_dir() {
            e.nlink = 2 + subdirs;
        } else if self.ext.hardlinks {
            let links = self.link_counts(conn)?;
            e.nlink = 1 + links.get(&e.content_ino()).copied().unwrap_or(0);
        }
        Ok(e)
    }

    /// How many entries `parent` has (an index-only count, remembered).
    fn child_count(&self, conn: &Connection, parent: Ino) -> Result<u32> {
        if let Some(n) = self
            .child_counts
            .lock()
            .ok()
            .and_then(|mut m| m.get(&parent).copied())
        {
            return Ok(n);
        }
        let n: i64 = conn
            .prepare_cached("SELECT count(*) FROM inode WHERE parent = ?1")?
            .query_row([parent as i64], |r| r.get(0))?;
        if let Ok(mut m) = self.child_counts.lock() {
            m.put(parent, n as u32);
        }
        Ok(n as u32)
    }

    fn link_counts(&self, conn: &Connection) -> Result<&HashMap<Ino, u32>> {
        if let Some(m) = self.link_counts.get() {
            return Ok(m);
        }
        let mut st = conn.prepare("SELECT target, count(*) FROM zvfs_hardlink GROUP BY target")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, i64>(0)? as Ino, r.get::<_, i64>(1)? as u32))
        })?;
        let map = rows.collect::<std::result::Result<HashMap<_, _>, _>>()?;
        Ok(self.link_counts.get_or_init(|| map))
    }

    /// The children of `parent` above inode `after`, in inode order, all of them or at
    /// most `limit`: one indexed range scan (the `parents` index holds the rowid), so a
    /// page of a huge directory costs the page, not the directory.
    fn children_page(&self, parent: Ino, after: Ino, limit: Option<usize>) -> Result<Vec<Entry>> {
        // SQLite takes a negative LIMIT as none.
        let limit = limit.map_or(-1, |n| n.min(i64::MAX as usize) as i64);
        let after = after.min(i64::MAX as u64) as i64;
        self.with_conn(|c| {
            let mut st = c.prepare_cached(&format!(
                "{} WHERE i.parent = ?1 AND i.ino > ?2 AND i.ino != ?1 ORDER BY i.ino LIMIT ?3",
                self.select
            ))?;
            let rows = st.query_map(params![parent as i64, after, limit], Self::row_to_entry)?;
            let out = rows.collect::<rusqlite::Result<Vec<Entry>>>()?;
            drop(st);
            // Subdirectory counts of the page's child directories in one grouped query
            // (not one query per child: a page stays one pass).
            let mut subdirs: HashMap<Ino, u32> = HashMap::new();
            if let Some(last) = out.iter().rev().find(|e| e.is_dir()) {
                let mut st = c.prepare_cached(
                    "SELECT g.parent, count(*) FROM inode g WHERE g.parent IN \
                     (SELECT ino FROM inode WHERE parent = ?1 AND ino > ?4 AND ino <= ?5 \
                      AND (mode & ?2) = ?3 AND ino != ?1) \
                     AND (g.mode & ?2) = ?3 GROUP BY g.parent",
                )?;
                let rows = st.query_map(
                    params![parent as i64, S_IFMT, S_IFDIR, after, last.ino as i64],
                    |r| Ok((r.get::<_, i64>(0)? as Ino, r.get::<_, i64>(1)? as u32)),
                )?;
                for r in rows {
                    let (p, n) = r?;
                    subdirs.insert(p, n);
                }
            }
            out.into_iter()
                .map(|e| {
                    let n = subdirs.get(&e.ino).copied().unwrap_or(0);
                    self.finish_with(c, e, n)
                })
                .collect()
        })
    }

    /// The `version` tag's zvfs schema number, when written by zvfs.
    pub fn zvfs_version(&self) -> Option<u32> {
        self.zvfs_version
    }
}

impl Flist for V2Reader {
    fn prefetch(&self) -> Result<Vec<crate::flist::PrefetchItem>> {
        self.with_conn(super::prefetch::read_table)
    }

    fn format(&self) -> String {
        match self.zvfs_version {
            Some(n) => format!("zvfs-{n}"),
            None => "rfs-v2".to_string(),
        }
    }

    fn get(&self, ino: Ino) -> Result<Entry> {
        self.with_conn(|c| {
            let e = c
                .prepare_cached(&format!("{} WHERE i.ino = ?1", self.select))?
                .query_row([ino as i64], Self::row_to_entry)
                .optional()?
                .ok_or_else(|| Error::not_found(format!("no inode {ino}")))?;
            self.finish_entry(c, e)
        })
    }

    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Option<Entry>> {
        self.with_conn(|c| {
            // Without statistics SQLite always searches by the `parents` index, which
            // scans a whole directory per lookup (10 ms in a 50,000-entry one). In a big
            // directory search by the `names` index instead (`+` keeps the parent term
            // off the index): it visits only the rows that have that name.
            let by_name = self.child_count(c, parent)? > BIG_DIR;
            let parent_term = if by_name { "+i.parent" } else { "i.parent" };
            let found = match std::str::from_utf8(name) {
                Ok(text) => {
                    let sql = if self.ext.names {
                        format!(
                            "{} WHERE {parent_term} = ?1 AND i.name = ?2 AND n.name IS NULL",
                            self.select
                        )
                    } else {
                        format!("{} WHERE {parent_term} = ?1 AND i.name = ?2", self.select)
                    };
                    c.prepare_cached(&sql)?
                        .query_row(params![parent as i64, text], Self::row_to_entry)
                        .optional()?
                }
                Err(_) if self.ext.names => c
                    .prepare_cached(&format!(
                        "{} WHERE i.parent = ?1 AND n.name = ?2",
                        self.select
                    ))?
                    .query_row(params![parent as i64, name], Self::row_to_entry)
                    .optional()?,
                Err(_) => None,
            };
            match found {
                Some(e) if e.ino != parent => Ok(Some(self.finish_entry(c, e)?)),
                _ => Ok(None),
            }
        })
    }

    fn children(&self, parent: Ino) -> Result<Vec<Entry>> {
        self.children_page(parent, 0, None)
    }

    fn children_after(&self, parent: Ino, after: Ino, limit: usize) -> Result<Vec<Entry>> {
        self.children_page(parent, after, Some(limit))
    }

    fn blocks(&self, ino: Ino) -> Result<Vec<ChunkRef>> {
        self.with_conn(|c| {
            let mut st =
                c.prepare_cached("SELECT id, key FROM block WHERE ino = ?1 ORDER BY rowid")?;
            let rows = st.query_map([ino as i64], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let (id, key) = r?;
                out.push(ChunkRef::from_slices(&id, &key).with_ctx(|| format!("inode {ino}"))?);
            }
            Ok(out)
        })
    }

    fn link_target(&self, ino: Ino) -> Result<Vec<u8>> {
        self.with_conn(|c| {
            let v: Option<rusqlite::types::Value> = c
                .prepare_cached("SELECT data FROM extra WHERE ino = ?1")?
                .query_row([ino as i64], |r| r.get(0))
                .optional()?;
            match v {
                Some(rusqlite::types::Value::Blob(b)) => Ok(b),
                Some(rusqlite::types::Value::Text(t)) => Ok(t.into_bytes()),
                _ => Err(Error::format(format!("symlink inode {ino} has no target"))),
            }
        })
    }

    fn has_xattrs(&self) -> bool {
        self.ext.xattrs
    }

    fn xattrs(&self, ino: Ino) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if !self.ext.xattrs {
            return Ok(Vec::new());
        }
        self.with_conn(|c| {
            let mut st = c.prepare_cached(
                "SELECT name, value FROM zvfs_xattr WHERE ino = ?1 ORDER BY rowid",
            )?;
            let rows = st.query_map([ino as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        })
    }

    fn identity(&self, ino: Ino) -> Result<Option<Identity>> {
        if !self.ext.identity {
            return Ok(None);
        }
        self.with_conn(|c| {
            let row: Option<(Vec<u8>, Vec<u8>)> = c
                .prepare_cached("SELECT partial, checksum FROM zvfs_identity WHERE ino = ?1")?
                .query_row([ino as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            Ok(row.and_then(|(p, f)| {
                Some(Identity {
                    partial: p.as_slice().try_into().ok()?,
                    checksum: f.as_slice().try_into().ok()?,
                })
            }))
        })
    }

    fn tags(&self) -> Result<Vec<(String, String)>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached("SELECT key, value FROM tag ORDER BY key")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        })
    }

    fn routes(&self) -> Result<Vec<Route>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached("SELECT start, end, url FROM route ORDER BY rowid")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let (s, e, url) = r?;
                if !(0..=255).contains(&s) || !(0..=255).contains(&e) || s > e {
                    return Err(Error::format(format!(
                        "route [{s}, {e}] for {url} is not a byte range"
                    )));
                }
                out.push(Route {
                    start: s as u8,
                    end: e as u8,
                    url,
                });
            }
            Ok(out)
        })
    }

    fn totals(&self) -> Result<Totals> {
        self.with_conn(|c| {
            let mut t = Totals::default();
            let mut st =
                c.prepare("SELECT mode & 61440, count(*), sum(size) FROM inode GROUP BY 1")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u32,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })?;
            for r in rows {
                let (ty, n, size) = r?;
                t.entries += n;
                match Kind::from_mode(ty) {
                    Some(Kind::File) => {
                        t.files += n;
                        t.bytes += size.unwrap_or(0) as u64;
                    }
                    Some(Kind::Dir) => t.dirs += n,
                    Some(Kind::Symlink) => t.symlinks += n,
                    _ => t.specials += n,
                }
            }
            let (blocks, unique): (i64, i64) =
                c.query_row("SELECT count(*), count(DISTINCT id) FROM block", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            t.blocks = blocks as u64;
            t.unique_blocks = unique as u64;
            Ok(t)
        })
    }
}
