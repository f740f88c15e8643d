//! Reading a path's extended attributes for pack: every name and value, never following
//! a symlink, sorted by name; a filesystem without xattr support has none. It only reads.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Every extended attribute of `path` (not following a symlink), sorted by name.
pub fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    use rustix::io::Errno;
    let what = || format!("reading extended attributes of {}", path.display());
    let names = loop {
        let n = match rustix::fs::llistxattr_query(path) {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(e.to_string()).context(what())),
        };
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; n];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                break buf;
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(Error::io(e.to_string()).context(what())),
        }
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_os = std::ffi::OsStr::from_bytes(name);
        let value = loop {
            let n = match rustix::fs::lgetxattr_query(path, name_os) {
                Ok(n) => n,
                Err(Errno::NODATA) => break None,
                Err(e) => {
                    return Err(Error::io(e.to_string()).context(format!(
                        "{}: {}",
                        what(),
                        String::from_utf8_lossy(name)
                    )))
                }
            };
            let mut v = vec![0u8; n];
            match rustix::fs::lgetxattr(path, name_os, &mut v[..]) {
                Ok(len) => {
                    v.truncate(len);
                    break Some(v);
                }
                Err(Errno::RANGE) => continue,
                Err(Errno::NODATA) => break None,
                Err(e) => {
                    return Err(Error::io(e.to_string()).context(format!(
                        "{}: {}",
                        what(),
                        String::from_utf8_lossy(name)
                    )))
                }
            }
        };
        if let Some(v) = value {
            out.push((name.to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
}
