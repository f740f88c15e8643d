//! The mount table as the kernel shows it (`/proc/self/mountinfo`): which filesystem is
//! mounted where, with which source. Read-only queries; mounting is done elsewhere.
//! (To be replaced by the node mount registry's reader once it lands on main.)

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// One line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub target: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// Undo the kernel's octal escapes (`\040` for a space, `\134` for a backslash, ...).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some(MountEntry {
                target: PathBuf::from(unescape(f.get(4)?)),
                fstype: unescape(f.get(sep + 1)?),
                source: unescape(f.get(sep + 2)?),
            })
        })
        .collect()
}

/// Every mount of this process's mount namespace, in mount order.
pub fn mounts() -> Result<Vec<MountEntry>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").ctx("reading /proc/self/mountinfo")?;
    Ok(parse(&text))
}

/// The mount on top at `target` (an absolute, canonical path), if any.
pub fn mounted_at(target: &Path) -> Result<Option<MountEntry>> {
    Ok(mounts()?.into_iter().rev().find(|m| m.target == target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_escapes() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - fuse.g8ufs 1234 ro,user_id=0\n\
                    37 35 0:5 / /x rw - overlay overlay rw,lowerdir=/l\n\
                    garbage line\n";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].target, PathBuf::from("/mnt/a b"));
        assert_eq!(m[0].fstype, "fuse.g8ufs");
        assert_eq!(m[0].source, "1234");
        assert_eq!(m[1].fstype, "overlay");
        assert_eq!(unescape("a\\134b\\1"), "a\\b\\1");
    }
}
