//! The `zvfs_prefetch` extension table of a v2 `.fl`: the recorded first-read order of a
//! run (`zvfs prefetch add`, `pack --prefetch`), one row per chunk, `seq` giving the
//! order: `zvfs_prefetch(seq INTEGER PRIMARY KEY, ino INTEGER NOT NULL, chunk INTEGER NOT
//! NULL, ms INTEGER NOT NULL)`, `ino` the content inode of the file. This module writes
//! (replacing), reads (strictly: a damaged table is an error) and drops the table, and
//! turns a parsed trace into rows by resolving its paths in the flist. It must not touch
//! entries, tags or routes.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::{params, Connection};

use super::edit_atomically;
use crate::error::{Error, Result};
use crate::flist::trace::TraceLine;
use crate::flist::{self, Flist, Kind, PrefetchItem};

/// The table's name.
pub const TABLE: &str = "zvfs_prefetch";

/// Replace the table with `items`, in order.
pub(super) fn write_table(conn: &Connection, items: &[PrefetchItem]) -> rusqlite::Result<()> {
    conn.execute_batch(
        "DROP TABLE IF EXISTS zvfs_prefetch;
         CREATE TABLE zvfs_prefetch (seq INTEGER PRIMARY KEY, ino INTEGER NOT NULL, \
         chunk INTEGER NOT NULL, ms INTEGER NOT NULL);",
    )?;
    let mut st =
        conn.prepare("INSERT INTO zvfs_prefetch (seq, ino, chunk, ms) VALUES (?1, ?2, ?3, ?4)")?;
    for (seq, it) in items.iter().enumerate() {
        st.execute(params![
            seq as i64 + 1,
            it.ino as i64,
            it.chunk as i64,
            it.ms.min(i64::MAX as u64) as i64
        ])?;
    }
    Ok(())
}

/// Drop the table; whether there was one.
pub(super) fn drop_table(conn: &Connection) -> rusqlite::Result<bool> {
    let had = has_table(conn)?;
    conn.execute_batch("DROP TABLE IF EXISTS zvfs_prefetch")?;
    Ok(had)
}

fn has_table(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type='table' AND name=?1)",
        [TABLE],
        |r| r.get(0),
    )
}

/// Read the table in `seq` order (empty when there is none). A table with other columns
/// or values that are not in range (ino < 1, chunk beyond u32, ms < 0, non-integers) is a
/// format error.
pub(super) fn read_table(conn: &Connection) -> Result<Vec<PrefetchItem>> {
    if !has_table(conn)? {
        return Ok(Vec::new());
    }
    let cols: Vec<String> = {
        let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
        let rows = st.query_map([TABLE], |r| r.get::<_, String>(0))?;
        rows.collect::<std::result::Result<_, _>>()?
    };
    if cols != ["seq", "ino", "chunk", "ms"] {
        return Err(Error::format(format!(
            "table {TABLE} has columns {cols:?}, not (seq, ino, chunk, ms)"
        )));
    }
    let mut st = conn.prepare("SELECT seq, ino, chunk, ms FROM zvfs_prefetch ORDER BY seq")?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let get = |i: usize| -> Result<i64> {
            r.get::<_, i64>(i)
                .map_err(|e| Error::format(format!("table {TABLE}: bad value: {e}")))
        };
        let (seq, ino, chunk, ms) = (get(0)?, get(1)?, get(2)?, get(3)?);
        if ino < 1 || !(0..=u32::MAX as i64).contains(&chunk) || ms < 0 {
            return Err(Error::format(format!(
                "table {TABLE}: row {seq} (ino {ino}, chunk {chunk}, ms {ms}) is out of range"
            )));
        }
        out.push(PrefetchItem {
            ino: ino as u64,
            chunk: chunk as u32,
            ms: ms as u64,
        });
    }
    Ok(out)
}

/// A trace resolved against an flist: the rows to store and what was left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The rows, in trace order, the first of each (ino, chunk) kept.
    pub items: Vec<PrefetchItem>,
    /// Distinct files (content inodes) among them.
    pub files: usize,
    /// Paths the flist lacks (each once, in trace order).
    pub missing: Vec<Vec<u8>>,
    /// Paths that are not regular files (each once, in trace order).
    pub not_files: Vec<Vec<u8>>,
    /// Lines dropped as repeats of an earlier (ino, chunk).
    pub duplicates: usize,
}

impl Resolved {
    /// Trace lines left out because of their path (missing or not a regular file).
    pub fn skipped_paths(&self) -> usize {
        self.missing.len() + self.not_files.len()
    }
}

/// Resolve each line's path to the content inode of a regular file of `fl`. Lines whose
/// path is missing or not a regular file are left out (listed in the result); a chunk
/// index beyond the file's end is kept (the prefetcher skips it).
pub fn resolve_trace(fl: &dyn Flist, lines: &[TraceLine]) -> Result<Resolved> {
    let mut out = Resolved::default();
    let mut seen = HashSet::new();
    let mut files = HashSet::new();
    let mut cache: std::collections::HashMap<Vec<u8>, Option<u64>> = Default::default();
    for l in lines {
        let ino = match cache.get(&l.path) {
            Some(i) => *i,
            None => {
                let i = match flist::resolve(fl, &l.path) {
                    Ok(e) if e.kind() == Kind::File => Some(e.content_ino()),
                    Ok(_) => {
                        out.not_files.push(l.path.clone());
                        None
                    }
                    Err(e) if e.kind == crate::error::ErrorKind::NotFound => {
                        out.missing.push(l.path.clone());
                        None
                    }
                    Err(e) => return Err(e),
                };
                cache.insert(l.path.clone(), i);
                i
            }
        };
        let Some(ino) = ino else { continue };
        if !seen.insert((ino, l.chunk)) {
            out.duplicates += 1;
            continue;
        }
        files.insert(ino);
        out.items.push(PrefetchItem {
            ino,
            chunk: l.chunk,
            ms: l.ms,
        });
    }
    out.files = files.len();
    Ok(out)
}

/// `zvfs prefetch add`: resolve `lines` against the flist at `path` and replace its
/// prefetch table with the result, atomically ([`edit_atomically`]).
pub fn add_trace(path: &Path, lines: &[TraceLine]) -> Result<Resolved> {
    let resolved = {
        let fl = super::V2Reader::open(path)?;
        resolve_trace(&fl, lines)?
    };
    edit_atomically(path, |ed| ed.set_prefetch(&resolved.items))?;
    Ok(resolved)
}

/// `pack --prefetch` / `import --prefetch`: the same as [`add_trace`] on a complete flist
/// not yet published (the temporary file of a pack), edited in place and synced.
pub fn add_trace_unpublished(path: &Path, lines: &[TraceLine]) -> Result<Resolved> {
    let resolved = {
        let fl = super::V2Reader::open(path)?;
        resolve_trace(&fl, lines)?
    };
    {
        let ed = super::V2Editor::open(path)?;
        ed.set_prefetch(&resolved.items)?;
    }
    let what = || format!("syncing {}", path.display());
    use crate::error::Context;
    std::fs::File::open(path)
        .with_ctx(what)?
        .sync_all()
        .with_ctx(what)?;
    Ok(resolved)
}

/// `zvfs prefetch clear`: drop the prefetch table of the flist at `path`, atomically;
/// whether it had one.
pub fn clear(path: &Path) -> Result<bool> {
    let mut had = false;
    edit_atomically(path, |ed| {
        had = ed.clear_prefetch()?;
        Ok(())
    })?;
    Ok(had)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(sql: &str) -> Result<Vec<PrefetchItem>> {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(sql).unwrap();
        read_table(&c)
    }

    #[test]
    fn round_trip_and_corrupt_tables() {
        let c = Connection::open_in_memory().unwrap();
        assert!(read_table(&c).unwrap().is_empty());
        let items = [
            PrefetchItem {
                ino: 5,
                chunk: 2,
                ms: 0,
            },
            PrefetchItem {
                ino: 3,
                chunk: 0,
                ms: 7,
            },
        ];
        write_table(&c, &items).unwrap();
        assert_eq!(read_table(&c).unwrap(), items);
        assert!(drop_table(&c).unwrap());
        assert!(read_table(&c).unwrap().is_empty());
        let make = "CREATE TABLE zvfs_prefetch (seq INTEGER PRIMARY KEY, ino INTEGER NOT NULL, \
                    chunk INTEGER NOT NULL, ms INTEGER NOT NULL);";
        for bad in [
            "CREATE TABLE zvfs_prefetch (seq INTEGER PRIMARY KEY, ino INTEGER);".to_string(),
            format!("{make} INSERT INTO zvfs_prefetch VALUES (1, 'x', 0, 0);"),
            format!("{make} INSERT INTO zvfs_prefetch VALUES (1, 0, 0, 0);"),
            format!("{make} INSERT INTO zvfs_prefetch VALUES (1, 2, -1, 0);"),
            format!("{make} INSERT INTO zvfs_prefetch VALUES (1, 2, 4294967296, 0);"),
            format!("{make} INSERT INTO zvfs_prefetch VALUES (1, 2, 0, -5);"),
            format!("{make} INSERT INTO zvfs_prefetch VALUES (1, 2, 0, 1.5);"),
        ] {
            assert!(table(&bad).is_err(), "{bad}");
        }
    }
}
