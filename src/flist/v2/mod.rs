//! The rfs v2 `.fl` SQLite format, read and written exactly as rfs 2.x does, plus zvfs's
//! extension tables (ignored by rfs; see `docs/flist-extensions.md`):
//!
//! - `zvfs_name(ino PRIMARY KEY, name BLOB)`: the raw bytes of a name that is not UTF-8
//!   (the `inode.name` column then holds a lossy UTF-8 rendering for rfs);
//! - `zvfs_xattr(ino, name BLOB, value BLOB)`: extended attributes;
//! - `zvfs_hardlink(ino PRIMARY KEY, target)`: this inode is another path of `target`
//!   (its block rows are duplicated so rfs still reads its content);
//! - `zvfs_identity(ino PRIMARY KEY, partial BLOB, checksum BLOB)`: content identity;
//! - `zvfs_prefetch(seq PRIMARY KEY, ino, chunk, ms)`: a recorded first-read order
//!   (`prefetch`).
//!
//! A `version` tag `zvfs-1` marks files written by zvfs. This module does not fetch data.
//!
//! Parts: `read` ([`V2Reader`], the [`Flist`](super::Flist) implementation), `write`
//! ([`V2Writer`], the builder of a new file, and the schema it creates), `edit`
//! ([`V2Editor`], in-place edits of tags and routes). This file holds the schema marker and
//! the row inserts that writing and editing share.

mod edit;
pub mod prefetch;
mod read;
mod write;

pub use edit::{edit_atomically, V2Editor};
pub use read::V2Reader;
pub use write::{NewEntry, V2Writer};

use rusqlite::{params, Connection};

use super::Route;
use crate::error::{Error, Result};

/// The schema version zvfs writes and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Key of the tag holding the schema marker (`zvfs-<SCHEMA_VERSION>`).
pub const VERSION_TAG: &str = "version";

/// Refuse a tag key that zvfs writes itself and users must not set or delete: `version`,
/// the schema marker (any other value makes readers refuse the flist or read it as
/// another format). The one check behind `pack --tag` and `config tag add|delete`.
pub fn check_tag_key(key: &str) -> Result<()> {
    if key == VERSION_TAG {
        return Err(Error::invalid(format!(
            "the `{VERSION_TAG}` tag is reserved: zvfs writes it itself (schema marker \
             zvfs-{SCHEMA_VERSION}) and cannot read an flist whose marker was changed; use \
             another key such as `release`"
        )));
    }
    Ok(())
}

fn insert_tag(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO tag (key, value) VALUES (?1, ?2)",
        params![key, value],
    )
    .map(|_| ())
}

fn insert_route(conn: &Connection, route: &Route) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO route (start, end, url) VALUES (?1, ?2, ?3)",
        params![route.start as i64, route.end as i64, route.url],
    )
    .map(|_| ())
}
