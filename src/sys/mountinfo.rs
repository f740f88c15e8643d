//! `/proc/self/mountinfo`, parsed: which mounts exist, their type, source and options.
//! zvfs mounts are recognised as the node recognises them: type `fuse.g8ufs` and a source
//! equal to the daemon's pid (binds of such a mount keep both); overlays by their
//! `lowerdir`. Read-only: this module never changes a mount.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Context, Result};

/// The filesystem type of zvfs (and rfs / g8ufs) mounts.
pub const FSTYPE: &str = "fuse.g8ufs";

/// One line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's id (field 1).
    pub id: u64,
    /// The id of the mount it sits on (field 2).
    pub parent: u64,
    /// `major:minor` of the filesystem (a bind shares it with its origin).
    pub dev: String,
    /// The mountpoint, octal escapes decoded.
    pub target: PathBuf,
    /// Per-mount options (`ro,nosuid,...`).
    pub opts: String,
    /// Filesystem type (`overlay`, [`FSTYPE`], ...).
    pub fstype: String,
    /// Mount source (for a zvfs FUSE mount: the daemon's pid).
    pub source: String,
    /// Superblock options (`lowerdir=...`, `allow_other`, ...).
    pub super_opts: String,
}

impl MountEntry {
    /// The pid of the daemon serving a zvfs FUSE mount (or a bind of one).
    pub fn daemon_pid(&self) -> Option<u32> {
        if self.fstype == FSTYPE {
            self.source.parse().ok()
        } else {
            None
        }
    }

    /// Whether this is an overlayfs mount.
    pub fn is_overlay(&self) -> bool {
        self.fstype == "overlay"
    }

    /// An overlay's lower directories, top first.
    pub fn lowerdirs(&self) -> Vec<PathBuf> {
        self.super_opt("lowerdir")
            .map(|v| {
                v.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of a superblock option `key=value`.
    pub fn super_opt(&self, key: &str) -> Option<&str> {
        self.super_opts
            .split(',')
            .find_map(|o| o.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }

    /// Whether a per-mount or superblock option is set (`ro`, `allow_other`, ...).
    pub fn has_opt(&self, opt: &str) -> bool {
        self.opts.split(',').any(|o| o == opt) || self.super_opts.split(',').any(|o| o == opt)
    }
}

/// Undo the octal escapes the kernel uses for space, tab, newline and backslash.
fn unescape(s: &str) -> OsString {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c));
        if b[i] == b'\\' && octal {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    OsString::from_vec(out)
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let f: Vec<&str> = line.split(' ').collect();
    let sep = f.iter().position(|x| *x == "-")?;
    if sep < 6 || f.len() < sep + 3 {
        return None;
    }
    Some(MountEntry {
        id: f[0].parse().ok()?,
        parent: f[1].parse().ok()?,
        dev: f[2].to_string(),
        target: PathBuf::from(unescape(f[4])),
        opts: f[5].to_string(),
        fstype: f[sep + 1].to_string(),
        source: unescape(f[sep + 2]).to_string_lossy().into_owned(),
        super_opts: f
            .get(sep + 3)
            .map(|s| unescape(s).to_string_lossy().into_owned())
            .unwrap_or_default(),
    })
}

/// Every mount of this process's mount namespace, in mount order.
pub fn read() -> Result<Vec<MountEntry>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").ctx("reading /proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// The topmost mount at `target` (an absolute, normalised path).
pub fn at<'a>(all: &'a [MountEntry], target: &Path) -> Option<&'a MountEntry> {
    all.iter().rev().find(|m| m.target == target)
}

/// `path` made absolute and free of `.`/`..`/symlinks as far as it resolves. A stale FUSE
/// mountpoint cannot be resolved itself (ENOTCONN), so its parent is.
pub fn absolute(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut norm = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                norm.pop();
            }
            Component::CurDir => {}
            other => norm.push(other),
        }
    }
    match (norm.parent(), norm.file_name()) {
        (Some(parent), Some(name)) => match parent.canonicalize() {
            Ok(p) => p.join(name),
            Err(_) => norm,
        },
        _ => norm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fuse_and_overlay_lines_with_escapes() {
        let fuse = parse_line(
            "612 27 0:71 / /r/ro/a\\040b ro,noatime shared:1 - fuse.g8ufs 4242 ro,user_id=0,group_id=0,default_permissions,allow_other",
        )
        .unwrap();
        assert_eq!(fuse.target, PathBuf::from("/r/ro/a b"));
        assert_eq!(fuse.daemon_pid(), Some(4242));
        assert!(fuse.has_opt("ro") && fuse.has_opt("allow_other"));
        assert!(fuse.has_opt("default_permissions"));
        let ov = parse_line(
            "44 27 0:39 / /t rw,relatime - overlay overlay rw,lowerdir=/v/ro,upperdir=/v/rw,workdir=/v/wd,uuid=on",
        )
        .unwrap();
        assert!(ov.is_overlay());
        assert_eq!(ov.daemon_pid(), None);
        assert_eq!(ov.lowerdirs(), vec![PathBuf::from("/v/ro")]);
        assert_eq!(ov.super_opt("upperdir"), Some("/v/rw"));
        assert!(parse_line("garbage").is_none());
    }
}
