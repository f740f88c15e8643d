//! Writing a new v2 `.fl`: [`V2Writer`] creates the rfs schema plus zvfs's extension tables
//! and the `version` marker, and adds entries, blocks, xattrs, hardlinks, identities, tags
//! and routes in one transaction. It must not read entries back nor edit an existing
//! flist ([`super::edit`] does that).

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use super::{insert_route, insert_tag, SCHEMA_VERSION, VERSION_TAG};
use crate::codec::ChunkRef;
use crate::error::{Context, Error, Result};
use crate::flist::{Identity, Ino, Route};

const RFS_SCHEMA: &str = "CREATE TABLE inode (
    ino INTEGER PRIMARY KEY AUTOINCREMENT,
    parent INTEGER,
    name VARCHAR(255),
    size INTEGER,
    uid INTEGER,
    gid INTEGER,
    mode INTEGER,
    rdev INTEGER,
    ctime INTEGER,
    mtime INTEGER
);
CREATE INDEX parents ON inode (parent);
CREATE INDEX names ON inode (name);
CREATE TABLE extra (
    ino INTEGER PRIMARY KEY,
    data VARCHAR(4096)
);
CREATE TABLE block (
    ino INTEGER,
    id VARCHAR(32),
    key VARCHAR(32)
);
CREATE INDEX block_ino ON block (ino);
CREATE TABLE tag (
    key VARCHAR(10) PRIMARY KEY,
    value VARCHAR(255)
);
CREATE TABLE route (
    start integer, -- one byte hash prefix
    end integer, -- one byte hash prefix
    url VARCHAR(2048)
);
";

const ZVFS_SCHEMA: &str = "CREATE TABLE zvfs_name (ino INTEGER PRIMARY KEY, name BLOB);
CREATE INDEX zvfs_name_name ON zvfs_name (name);
CREATE TABLE zvfs_xattr (ino INTEGER, name BLOB, value BLOB);
CREATE INDEX zvfs_xattr_ino ON zvfs_xattr (ino);
CREATE TABLE zvfs_hardlink (ino INTEGER PRIMARY KEY, target INTEGER);
CREATE INDEX zvfs_hardlink_target ON zvfs_hardlink (target);
CREATE TABLE zvfs_identity (ino INTEGER PRIMARY KEY, partial BLOB, checksum BLOB);
";

/// Metadata of one entry to write.
#[derive(Clone, Debug)]
pub struct NewEntry<'a> {
    /// The inode of the directory holding it, as returned by [`V2Writer::add_entry`]
    /// (0 for the root).
    pub parent: Ino,
    /// The name as raw bytes (`/` for the root); a name that is not UTF-8 is also kept in
    /// `zvfs_name`.
    pub name: &'a [u8],
    /// Full `st_mode`: type and permission bits.
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Size in bytes (`st_size`): the content length of a regular file.
    pub size: u64,
    /// Device number of a character or block device (0 otherwise).
    pub rdev: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// Status-change time, seconds since the Unix epoch.
    pub ctime: i64,
}

/// Writes a new `.fl` file. Everything happens in one transaction; the caller writes
/// to a temporary path and renames it into place only after [`V2Writer::finish`].
pub struct V2Writer {
    conn: Connection,
    path: PathBuf,
}

impl V2Writer {
    /// Create an empty flist at `path` with the rfs schema, the zvfs extension tables and
    /// the `version` tag. A file already at `path` is emptied in place (not replaced: the
    /// caller may hold a lock on it).
    pub fn create(path: &Path) -> Result<V2Writer> {
        if path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)
                .with_ctx(|| format!("emptying stale {}", path.display()))?;
        }
        let conn =
            Connection::open(path).with_ctx(|| format!("creating flist {}", path.display()))?;
        conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; BEGIN;")
            .with_ctx(|| format!("creating flist {}", path.display()))?;
        conn.execute_batch(RFS_SCHEMA)
            .with_ctx(|| format!("creating flist {}", path.display()))?;
        conn.execute_batch(ZVFS_SCHEMA)
            .with_ctx(|| format!("creating flist {}", path.display()))?;
        let w = V2Writer {
            conn,
            path: path.to_path_buf(),
        };
        w.set_tag(VERSION_TAG, &format!("zvfs-{SCHEMA_VERSION}"))?;
        Ok(w)
    }

    fn err(&self) -> String {
        format!("writing flist {}", self.path.display())
    }

    /// Insert an entry; the root is the entry with `parent == 0` and name `/`.
    /// Returns its inode number (assigned in insertion order, root = 1).
    pub fn add_entry(&self, e: &NewEntry<'_>) -> Result<Ino> {
        let utf8 = std::str::from_utf8(e.name);
        let text = match utf8 {
            Ok(t) => t.to_string(),
            Err(_) => String::from_utf8_lossy(e.name).into_owned(),
        };
        self.conn
            .prepare_cached(
                "INSERT INTO inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    e.parent as i64,
                    text,
                    e.size as i64,
                    e.uid as i64,
                    e.gid as i64,
                    e.mode as i64,
                    e.rdev as i64,
                    e.ctime,
                    e.mtime
                ])
            })
            .with_ctx(|| self.err())?;
        let ino = self.conn.last_insert_rowid() as Ino;
        if utf8.is_err() {
            self.conn
                .prepare_cached("INSERT INTO zvfs_name (ino, name) VALUES (?1, ?2)")
                .and_then(|mut st| st.execute(params![ino as i64, e.name]))
                .with_ctx(|| self.err())?;
        }
        Ok(ino)
    }

    /// Record the target of symlink `ino` (raw bytes, in the rfs `extra` table).
    pub fn set_link_target(&self, ino: Ino, target: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached("INSERT INTO extra (ino, data) VALUES (?1, ?2)")
            .and_then(|mut st| st.execute(params![ino as i64, target]))
            .with_ctx(|| self.err())?;
        Ok(())
    }

    /// Append block rows for `ino`, in file order.
    pub fn add_blocks(&self, ino: Ino, blocks: &[ChunkRef]) -> Result<()> {
        let mut st = self
            .conn
            .prepare_cached("INSERT INTO block (ino, id, key) VALUES (?1, ?2, ?3)")
            .with_ctx(|| self.err())?;
        for b in blocks {
            st.execute(params![ino as i64, b.id(), b.key()])
                .with_ctx(|| self.err())?;
        }
        Ok(())
    }

    /// Add one extended attribute of `ino` (raw name and value, in `zvfs_xattr`).
    pub fn add_xattr(&self, ino: Ino, name: &[u8], value: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached("INSERT INTO zvfs_xattr (ino, name, value) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![ino as i64, name, value]))
            .with_ctx(|| self.err())?;
        Ok(())
    }

    /// Record that `ino` is another path of `target` (its blocks must be added too).
    pub fn add_hardlink(&self, ino: Ino, target: Ino) -> Result<()> {
        self.conn
            .prepare_cached("INSERT INTO zvfs_hardlink (ino, target) VALUES (?1, ?2)")
            .and_then(|mut st| st.execute(params![ino as i64, target as i64]))
            .with_ctx(|| self.err())?;
        Ok(())
    }

    /// Record the content identity (partial and full checksums) of file `ino`, replacing
    /// any identity it already has.
    pub fn set_identity(&self, ino: Ino, id: &Identity) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO zvfs_identity (ino, partial, checksum) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut st| st.execute(params![ino as i64, &id.partial[..], &id.checksum[..]]))
            .with_ctx(|| self.err())?;
        Ok(())
    }

    /// Set a tag, replacing any value it has. Unlike
    /// [`V2Editor::set_tag`](super::V2Editor::set_tag) the key is not checked: callers
    /// check user keys with [`check_tag_key`](super::check_tag_key).
    pub fn set_tag(&self, key: &str, value: &str) -> Result<()> {
        insert_tag(&self.conn, key, value).with_ctx(|| self.err())
    }

    /// Add a store route (its hash-prefix range and URL).
    pub fn add_route(&self, route: &Route) -> Result<()> {
        insert_route(&self.conn, route).with_ctx(|| self.err())
    }

    /// Commit and close. The file is complete on disk when this returns.
    pub fn finish(self) -> Result<()> {
        let what = self.err();
        self.conn.execute_batch("COMMIT;").ctx(&what)?;
        self.conn
            .close()
            .map_err(|(_, e)| Error::from(e).context(&what))?;
        let f = std::fs::File::open(&self.path).ctx(&what)?;
        f.sync_all().ctx(&what)?;
        Ok(())
    }
}
