//! Local trees as `dedup` compares them with flists: a walk of a local directory in name
//! order, and the one-line display form of raw-byte paths shared by every report. It
//! reads directories only; it never reads file content nor writes anything.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// Called by [`walk_dir`] with the absolute path, the relative path and the metadata.
pub type LocalVisitor<'a> = dyn FnMut(&Path, &[u8], &Metadata) -> Result<()> + 'a;

/// Visit every entry below the local directory `root` (not following symlinks, not
/// visiting `root` itself), parents before children, siblings sorted by name, with the
/// path relative to `root` as raw bytes.
pub fn walk_dir(root: &Path, visit: &mut LocalVisitor<'_>) -> Result<()> {
    let mut stack: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    push_children(root, &[], &mut stack)?;
    while let Some((abs, rel)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&abs).with_ctx(|| format!("{}", abs.display()))?;
        visit(&abs, &rel, &meta)?;
        if meta.is_dir() {
            push_children(&abs, &rel, &mut stack)?;
        }
    }
    Ok(())
}

fn push_children(dir: &Path, rel: &[u8], stack: &mut Vec<(PathBuf, Vec<u8>)>) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let what = || format!("listing {}", dir.display());
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).with_ctx(what)? {
        names.push(e.with_ctx(what)?.file_name());
    }
    names.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    for name in names {
        let mut r = rel.to_vec();
        if !r.is_empty() {
            r.push(b'/');
        }
        r.extend_from_slice(name.as_bytes());
        stack.push((dir.join(&name), r));
    }
    Ok(())
}

/// The display form of a path relative to a tree's root: `/` + the path, valid UTF-8
/// printed as is, other bytes and control characters escaped (`\xNN`, `\n`, `\\`), so
/// that one path is always one line.
pub fn display_path(rel: &[u8]) -> String {
    let mut out = String::with_capacity(rel.len() + 1);
    out.push('/');
    for chunk in rel.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let mut b = [0u8; 4];
                    for byte in c.encode_utf8(&mut b).bytes() {
                        out.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_display_on_one_line() {
        assert_eq!(display_path(b""), "/");
        assert_eq!(display_path("a/é b".as_bytes()), "/a/é b");
        assert_eq!(display_path(b"x\ny\\\xff"), "/x\\ny\\\\\\xff");
    }
}
