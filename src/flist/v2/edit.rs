//! In-place edits of an existing v2 `.fl` (`zvfs config`): [`V2Editor`] sets and deletes
//! tags and routes, after checking the file opens as a v2 flist. It must not touch entries.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{check_tag_key, insert_route, insert_tag, V2Reader, VERSION_TAG};
use crate::error::{Context, Result};
use crate::flist::Route;

/// Open an existing `.fl` for in-place edits of tags and routes (`zvfs config`).
pub struct V2Editor {
    conn: Connection,
    path: PathBuf,
}

impl V2Editor {
    pub fn open(path: &Path) -> Result<V2Editor> {
        V2Reader::open(path)?;
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .with_ctx(|| format!("opening flist {} for writing", path.display()))?;
        Ok(V2Editor {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self) -> String {
        format!("editing flist {}", self.path.display())
    }

    /// Set a tag; the reserved `version` marker is refused ([`check_tag_key`]).
    pub fn set_tag(&self, key: &str, value: &str) -> Result<()> {
        check_tag_key(key).with_ctx(|| self.err())?;
        insert_tag(&self.conn, key, value).with_ctx(|| self.err())
    }

    /// Delete a tag; the reserved `version` marker is refused ([`check_tag_key`]).
    pub fn delete_tag(&self, key: &str) -> Result<()> {
        check_tag_key(key).with_ctx(|| self.err())?;
        self.conn
            .execute("DELETE FROM tag WHERE key = ?1", [key])
            .with_ctx(|| self.err())?;
        Ok(())
    }

    /// Delete every tag but the reserved `version` marker.
    pub fn delete_all_tags(&self) -> Result<()> {
        self.conn
            .execute("DELETE FROM tag WHERE key IS NOT ?1", [VERSION_TAG])
            .with_ctx(|| self.err())?;
        Ok(())
    }

    pub fn add_route(&self, route: &Route) -> Result<()> {
        insert_route(&self.conn, route).with_ctx(|| self.err())
    }

    pub fn delete_route(&self, url: &str) -> Result<usize> {
        self.conn
            .execute("DELETE FROM route WHERE url = ?1", [url])
            .with_ctx(|| self.err())
    }

    pub fn delete_all_routes(&self) -> Result<()> {
        self.conn
            .execute("DELETE FROM route", [])
            .with_ctx(|| self.err())?;
        Ok(())
    }
}
