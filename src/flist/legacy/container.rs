//! The `.flist` container: a gzip'd tar holding `flistdb.sqlite3`. Owns getting that
//! database out into a private temporary file (size-bounded against gzip bombs, removed
//! on drop). It must not look inside the database: decoding is [`super::decode`]'s job.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::MAX_DB_SIZE;
use crate::error::{Context, Error, Result};

/// Name of the database member in the tar.
pub(super) const DB_MEMBER: &str = "flistdb.sqlite3";

/// A private temporary file, removed on drop.
pub(super) struct TempFile {
    pub(super) path: PathBuf,
}

impl TempFile {
    fn create() -> Result<(TempFile, std::fs::File)> {
        use std::os::unix::fs::OpenOptionsExt;
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut last_err = None;
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(
                ".zvfs-legacy-{}-{nanos:x}-{n}.sqlite3",
                std::process::id()
            ));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(f) => return Ok((TempFile { path }, f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => {
                    return Err(Error::from(e)
                        .context(format!("creating a temporary file in {}", dir.display())))
                }
            }
        }
        Err(Error::io(format!(
            "creating a temporary file in {}: {}",
            dir.display(),
            last_err.map(|e| e.to_string()).unwrap_or_default()
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Extract `flistdb.sqlite3` from the gzip'd tar at `path` into a private temp file.
pub(super) fn extract_db(path: &Path) -> Result<TempFile> {
    let file =
        std::fs::File::open(path).with_ctx(|| format!("opening flist {}", path.display()))?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let mut archive = tar::Archive::new(gz);
    let not_tar = |e: std::io::Error| {
        Error::format(format!(
            "{}: not a legacy flist (gzip does not hold a readable tar: {e})",
            path.display()
        ))
    };
    // The tar crate stops at end of input, so archives without the two zero blocks
    // at the end (as zflist writes them) are accepted.
    for member in archive.entries().map_err(not_tar)? {
        let mut member = member.map_err(not_tar)?;
        let name = member.path_bytes().into_owned();
        let name = name.strip_prefix(b"./").unwrap_or(&name);
        if name != DB_MEMBER.as_bytes() {
            continue;
        }
        if !member.header().entry_type().is_file() {
            return Err(Error::format(format!(
                "{}: {DB_MEMBER} in the archive is not a regular file",
                path.display()
            )));
        }
        let size = member.header().size().map_err(not_tar)?;
        if size > MAX_DB_SIZE {
            return Err(Error::format(format!(
                "{}: {DB_MEMBER} is {size} bytes, more than the {MAX_DB_SIZE} accepted",
                path.display()
            )));
        }
        let (tmp, mut out) = TempFile::create()?;
        let copied =
            std::io::copy(&mut (&mut member).take(MAX_DB_SIZE), &mut out).map_err(|e| {
                Error::format(format!(
                    "{}: extracting {DB_MEMBER}: {e} (truncated or corrupt archive)",
                    path.display()
                ))
            })?;
        if copied != size {
            return Err(Error::format(format!(
                "{}: {DB_MEMBER} is truncated ({copied} of {size} bytes)",
                path.display()
            )));
        }
        out.flush()
            .with_ctx(|| format!("writing {}", tmp.path.display()))?;
        return Ok(tmp);
    }
    Err(Error::format(format!(
        "{}: not a legacy flist (the archive has no {DB_MEMBER})",
        path.display()
    )))
}
