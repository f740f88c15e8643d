//! One layer's tar stream read entry by entry (the `tar` crate: GNU long names, PAX paths,
//! sizes, owners; this module adds PAX mtimes and `SCHILY.xattr.*`): each entry becomes a
//! [`LayerEntry`] handed with its content reader to the caller, numbered in stream order
//! so a second read finds the same entry again. After the last entry the stream is read
//! to its end, which is when the image source checks the blob's digest. It neither
//! applies entries to a tree nor encodes content.

use std::io::Read;

use super::tree::{show, EntryKind, LayerEntry, Meta};
use crate::error::{Error, Result};

/// Read every entry of the tar stream `r`; `f(number, entry, content)` is called for each
/// (the content reader yields a regular file's bytes; what `f` leaves unread is skipped).
/// Errors name `what` (the layer) and the entry.
pub fn each_entry(
    r: &mut dyn Read,
    what: &str,
    f: &mut dyn FnMut(u32, &LayerEntry, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    // The archive borrows the stream only for the entries, so the end can be drained.
    let mut ar = tar::Archive::new(&mut *r);
    let entries = ar
        .entries()
        .map_err(|e| Error::from(e).context(format!("reading {what}")))?;
    let mut n: u32 = 0;
    for item in entries {
        let mut ent = item.map_err(|e| tar_error(e, what))?;
        let Some(le) = describe(&mut ent).map_err(|e| e.context(what))? else {
            continue;
        };
        f(n, &le, &mut ent).map_err(|e| {
            if e.msg.contains(what) {
                e
            } else {
                e.context(format!("{what}: entry {}", show(&le.path)))
            }
        })?;
        n = n
            .checked_add(1)
            .ok_or_else(|| Error::invalid(format!("{what}: too many entries")))?;
    }
    // The end-of-archive blocks and anything after them: reading to the end is what
    // verifies the blob.
    std::io::copy(r, &mut std::io::sink()).map_err(|e| tar_error(e, what))?;
    Ok(())
}

/// A failed read: the layer stream's own failure keeps the kind the image source gave it
/// (corrupt blob, registry gone, local I/O); a bad tar is the layer's corruption.
fn tar_error(e: std::io::Error, what: &str) -> Error {
    if crate::image::is_layer_error(&e) {
        return crate::image::layer_error(e).context(format!("reading {what}"));
    }
    Error::corrupt(format!("reading {what}: not a valid tar stream: {e}"))
}

/// The entry's description, or `None` for entries that describe nothing (PAX global
/// headers).
fn describe<R: Read>(ent: &mut tar::Entry<'_, R>) -> Result<Option<LayerEntry>> {
    use tar::EntryType as T;
    let path = ent.path_bytes().into_owned();
    let bad = |m: &str| Error::format(format!("tar entry {}: {m}", show(&path)));
    let h = ent.header();
    let kind = match h.entry_type() {
        T::Regular | T::Continuous => EntryKind::File,
        T::Directory => EntryKind::Dir,
        T::Symlink => EntryKind::Symlink,
        T::Link => EntryKind::Hardlink,
        T::Char => EntryKind::Char,
        T::Block => EntryKind::Block,
        T::Fifo => EntryKind::Fifo,
        T::XGlobalHeader => return Ok(None),
        other => {
            return Err(bad(&format!(
                "unsupported entry type {:?}",
                other.as_byte() as char
            )))
        }
    };
    // An empty numeric field (all NULs or spaces) is 0, as Go's archive/tar (umoci, Docker)
    // reads it.
    let old = h.as_old();
    let field = |parsed: std::io::Result<u64>, raw: &[u8], name: &str| match parsed {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(_) => Err(bad(&format!("bad {name} field"))),
    };
    let perm = field(h.mode().map(u64::from), &old.mode, "mode")? as u32 & 0o7777;
    let uid = field(h.uid(), &old.uid, "uid")?;
    let gid = field(h.gid(), &old.gid, "gid")?;
    let mut mtime = field(h.mtime(), &old.mtime, "mtime")? as i64;
    let rdev = match kind {
        EntryKind::Char | EntryKind::Block => {
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            libc::makedev(major, minor)
        }
        _ => 0,
    };
    let link = ent
        .link_name_bytes()
        .map(|l| l.into_owned())
        .unwrap_or_default();
    if matches!(kind, EntryKind::Symlink | EntryKind::Hardlink) && link.is_empty() {
        return Err(bad("link without a target"));
    }
    let size = if kind == EntryKind::File {
        ent.size()
    } else {
        0
    };
    let mut xattrs = Vec::new();
    if let Some(pax) = ent.pax_extensions().map_err(|_| bad("bad PAX header"))? {
        for ext in pax {
            let ext = ext.map_err(|_| bad("bad PAX record"))?;
            let key = ext.key_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            } else if key == b"mtime" {
                if let Some(t) = std::str::from_utf8(ext.value_bytes())
                    .ok()
                    .and_then(|v| v.split('.').next())
                    .and_then(|s| s.parse::<i64>().ok())
                {
                    mtime = t;
                }
            }
        }
    }
    xattrs.sort();
    xattrs.dedup_by(|a, b| a.0 == b.0);
    let id32 = |v: u64, f: &str| u32::try_from(v).map_err(|_| bad(&format!("{f} {v} too big")));
    Ok(Some(LayerEntry {
        kind,
        meta: Meta {
            perm,
            uid: id32(uid, "uid")?,
            gid: id32(gid, "gid")?,
            mtime,
            rdev,
            xattrs,
        },
        link,
        size,
        path,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_described_with_pax_xattrs_and_numbered() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o1777);
        h.set_mtime(5);
        h.set_size(0);
        b.append_data(&mut h, "tmp/", &[][..]).unwrap();
        b.append_pax_extensions([("SCHILY.xattr.user.k", &b"v"[..]), ("mtime", b"77.5")])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o4755);
        h.set_uid(1000);
        h.set_size(3);
        b.append_data(&mut h, "bin/su", &b"abc"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let mut seen = Vec::new();
        each_entry(&mut &data[..], "layer 0", &mut |n, e, r| {
            let mut s = Vec::new();
            r.read_to_end(&mut s).unwrap();
            seen.push((n, e.clone(), s));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].1.kind, EntryKind::Dir);
        assert_eq!(seen[0].1.meta.perm, 0o1777);
        let f = &seen[1];
        assert_eq!((f.0, f.1.kind, f.1.meta.perm), (1, EntryKind::File, 0o4755));
        assert_eq!(f.1.meta.mtime, 77);
        assert_eq!(f.1.meta.xattrs, vec![(b"user.k".to_vec(), b"v".to_vec())]);
        assert_eq!(f.2, b"abc");
    }

    #[test]
    fn a_truncated_tar_is_an_error_naming_the_layer() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(4000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "big", &vec![1u8; 4000][..]).unwrap();
        let data = b.into_inner().unwrap();
        let cut = &data[..1500];
        let err = each_entry(&mut &cut[..], "layer 3 (sha256:ab)", &mut |_, _, r| {
            std::io::copy(r, &mut std::io::sink())?;
            Ok(())
        })
        .unwrap_err();
        assert!(err.msg.contains("layer 3 (sha256:ab)"), "{err}");
    }
}
