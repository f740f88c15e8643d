//! Edits of an existing v2 `.fl` (`zvfs config`, `zvfs clone --update-routes`):
//! [`V2Editor`] sets and deletes tags and routes, after checking the file opens as a v2
//! flist; [`edit_atomically`] runs such an edit on a copy that replaces the original only
//! once complete. It must not touch entries. Also replaces or drops the prefetch table
//! (`prefetch`).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{check_tag_key, insert_route, insert_tag, V2Reader, VERSION_TAG};
use crate::error::{Context, Error, Result};
use crate::flist::Route;
use crate::sys::atomic::AtomicFile;

/// Open an existing `.fl` for in-place edits of tags and routes (`zvfs config`).
pub struct V2Editor {
    conn: Connection,
    path: PathBuf,
}

impl V2Editor {
    /// Open `path` read-write, after checking that it opens as a v2 flist
    /// ([`V2Reader::open`]); legacy or damaged files are refused.
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

    /// Add a store route (its hash-prefix range and URL).
    pub fn add_route(&self, route: &Route) -> Result<()> {
        insert_route(&self.conn, route).with_ctx(|| self.err())
    }

    /// Delete every route whose URL is exactly `url`; returns how many were deleted.
    pub fn delete_route(&self, url: &str) -> Result<usize> {
        self.conn
            .execute("DELETE FROM route WHERE url = ?1", [url])
            .with_ctx(|| self.err())
    }

    /// Replace the prefetch table (`zvfs_prefetch`) with `items`, in order.
    pub fn set_prefetch(&self, items: &[crate::flist::PrefetchItem]) -> Result<()> {
        super::prefetch::write_table(&self.conn, items).with_ctx(|| self.err())
    }

    /// Drop the prefetch table; whether there was one.
    pub fn clear_prefetch(&self) -> Result<bool> {
        super::prefetch::drop_table(&self.conn).with_ctx(|| self.err())
    }

    /// Delete every route.
    pub fn delete_all_routes(&self) -> Result<()> {
        self.conn
            .execute("DELETE FROM route", [])
            .with_ctx(|| self.err())?;
        Ok(())
    }
}

/// Edit an flist atomically: copy it next to itself, run `edit` on the copy, sync it and
/// rename it over the original. On any error the original is left untouched. Legacy
/// flists are refused: they are read-only here (`zvfs convert` makes a v2 `.fl`).
pub fn edit_atomically(path: &Path, edit: impl FnOnce(&V2Editor) -> Result<()>) -> Result<()> {
    refuse_legacy(path)?;
    // The copy is locked while it is edited (see `sys::leftovers`); a copy (and its SQLite
    // journal) left by an edit killed before it finished goes with the next edit.
    let copy = AtomicFile::new(path)?;
    let tmp = copy.path().to_path_buf();
    std::fs::copy(path, &tmp)
        .with_ctx(|| format!("copying {} to {}", path.display(), tmp.display()))?;
    {
        let ed = V2Editor::open(&tmp).with_ctx(|| format!("editing {}", path.display()))?;
        edit(&ed)?;
    }
    copy.commit()
}

/// A clear error for a legacy flist, instead of what SQLite says about a gzip file.
fn refuse_legacy(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut magic = [0u8; 2];
    let mut f =
        std::fs::File::open(path).with_ctx(|| format!("opening flist {}", path.display()))?;
    let n = f
        .read(&mut magic)
        .with_ctx(|| format!("reading {}", path.display()))?;
    if crate::flist::legacy::is_gzip(&magic[..n]) {
        return Err(Error::invalid(format!(
            "{}: legacy flists are read-only; use zvfs convert to make a v2 .fl first",
            path.display()
        )));
    }
    Ok(())
}
