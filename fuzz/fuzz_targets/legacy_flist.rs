//! The legacy `.flist` through `zvfs::flist::open` (container, database, Cap'n Proto
//! entries, index), then walked as a mount would. The first byte picks what the rest is:
//! - 0: the whole `.flist` file (gzip over tar);
//! - 1: the `flistdb.sqlite3` database, put in a gzip'd tar here;
//! - 2: records `[table: u8][key length: u8][key][value length: u16 LE][value]` (table
//!   0 = `entries`, whose values are Cap'n Proto messages; 1 = `metadata`), written into a
//!   fresh database here, put in a gzip'd tar. This is the mode that reaches the Cap'n
//!   Proto decoding with well-formed containers.
#![no_main]

#[path = "common.rs"]
mod common;

use std::io::Write;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// `db` as the gzip'd tar that zflist writes (`./` then `./flistdb.sqlite3`).
fn container(db: &[u8]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    tar.append_data(&mut dir, "./", std::io::empty())
        .expect("tar dir");
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o644);
    file.set_size(db.len() as u64);
    tar.append_data(&mut file, "./flistdb.sqlite3", db)
        .expect("tar member");
    let mut gz = tar.into_inner().expect("tar end");
    gz.flush().expect("gzip flush");
    gz.finish().expect("gzip end")
}

/// A database with zflist's two tables holding the records of `data` (mode 2).
fn database(data: &[u8], path: &Path) -> Option<Vec<u8>> {
    let _ = std::fs::remove_file(path);
    let conn = rusqlite::Connection::open(path).ok()?;
    conn.execute_batch(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
         CREATE TABLE entries (key VARCHAR(64) PRIMARY KEY, value BLOB);
         CREATE TABLE metadata (key VARCHAR(64) PRIMARY KEY, value TEXT);",
    )
    .ok()?;
    let mut rest = data;
    while rest.len() >= 2 {
        let table = rest[0];
        let klen = rest[1] as usize;
        rest = &rest[2..];
        if rest.len() < klen + 2 {
            break;
        }
        let key = String::from_utf8_lossy(&rest[..klen]).into_owned();
        let vlen = u16::from_le_bytes([rest[klen], rest[klen + 1]]) as usize;
        rest = &rest[klen + 2..];
        let value = &rest[..vlen.min(rest.len())];
        rest = &rest[value.len()..];
        let _ = if table == 1 {
            conn.execute(
                "INSERT OR REPLACE INTO metadata (key, value) VALUES (?1, ?2)",
                rusqlite::params![key, String::from_utf8_lossy(value)],
            )
        } else {
            conn.execute(
                "INSERT OR REPLACE INTO entries (key, value) VALUES (?1, ?2)",
                rusqlite::params![key, value],
            )
        };
    }
    drop(conn);
    std::fs::read(path).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let path = common::scratch("legacy.flist");
    let file = match mode % 3 {
        0 => rest.to_vec(),
        1 => container(rest),
        _ => match database(rest, &common::scratch("legacy.sqlite3")) {
            Some(db) => container(&db),
            None => return,
        },
    };
    std::fs::write(&path, &file).expect("writing the scratch flist");
    if let Ok(fl) = zvfs::flist::open(&path) {
        common::walk_flist(&*fl);
    }
    let _ = std::fs::remove_file(&path);
});
