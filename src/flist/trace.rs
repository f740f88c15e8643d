//! The trace file format of `zvfs mount --record-trace` and `zvfs prefetch add`: a header
//! line `# zvfs trace v1`, then one line `MS CHUNK PATH` per first read of a chunk of a
//! file (MS: milliseconds since the mount was ready; CHUNK: the chunk's index in the file;
//! PATH: the absolute path in the flist, its bytes outside `0x21..=0x7e` and the backslash
//! written `\xHH`). Lines starting with `#` and empty lines are comments. This module
//! only formats and parses traces: it opens no flist and reads only trace files.

use std::io::BufRead;

use crate::error::{Error, Result};

/// The first line of a trace file.
pub const HEADER: &str = "# zvfs trace v1";

/// One line of a trace: chunk `chunk` of the file at `path` first read at `ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceLine {
    /// Milliseconds since the mount was ready.
    pub ms: u64,
    /// Index of the chunk in the file (offset / `CHUNK_SIZE`).
    pub chunk: u32,
    /// Absolute path in the flist, raw bytes (starts with `/`).
    pub path: Vec<u8>,
}

/// `path` with bytes outside `0x21..=0x7e` and `\` escaped as `\xHH`.
pub fn escape_path(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path {
        if (0x21..=0x7e).contains(&b) && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The raw bytes of an escaped path; an error for a bad escape or an unescaped byte.
pub fn unescape_path(s: &str) -> Result<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let hex = b
                    .get(i + 1..i + 4)
                    .filter(|h| h[0] == b'x')
                    .and_then(|h| std::str::from_utf8(&h[1..]).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Error::format(format!("bad escape in path {s:?}")))?;
                out.push(hex);
                i += 4;
            }
            c if (0x21..=0x7e).contains(&c) => {
                out.push(c);
                i += 1;
            }
            c => {
                return Err(Error::format(format!(
                    "unescaped byte 0x{c:02x} in path {s:?}"
                )))
            }
        }
    }
    Ok(out)
}

/// One trace line (no newline).
pub fn format_line(line: &TraceLine) -> String {
    format!("{} {} {}", line.ms, line.chunk, escape_path(&line.path))
}

/// Parse one non-comment line.
pub fn parse_line(s: &str) -> Result<TraceLine> {
    let bad = |why: &str| Error::format(format!("bad trace line {s:?}: {why}"));
    let mut parts = s.trim_end_matches(['\r', '\n']).splitn(3, ' ');
    let ms = parts
        .next()
        .and_then(|m| m.parse::<u64>().ok())
        .ok_or_else(|| bad("MS is not a number"))?;
    let chunk = parts
        .next()
        .and_then(|c| c.parse::<u32>().ok())
        .ok_or_else(|| bad("CHUNK is not a number"))?;
    let path = unescape_path(parts.next().ok_or_else(|| bad("no PATH"))?)?;
    if path.first() != Some(&b'/') {
        return Err(bad("PATH is not absolute"));
    }
    Ok(TraceLine { ms, chunk, path })
}

/// Parse a whole trace: the header first, then lines (comments and blank lines skipped).
/// Errors name the line number and `what` (the file's name).
pub fn parse(r: impl BufRead, what: &str) -> Result<Vec<TraceLine>> {
    let mut out = Vec::new();
    for (n, line) in r.lines().enumerate() {
        let line = line.map_err(|e| Error::io(format!("reading trace {what}: {e}")))?;
        if n == 0 {
            if line.trim_end() != HEADER {
                return Err(Error::format(format!(
                    "{what}: not a zvfs trace (the first line must be {HEADER:?})"
                )));
            }
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(
            parse_line(&line).map_err(|e| Error::format(format!("{what} line {}: {e}", n + 1)))?,
        );
    }
    Ok(out)
}

/// Read and parse the trace file at `path`.
pub fn read_file(path: &std::path::Path) -> Result<Vec<TraceLine>> {
    use crate::error::Context;
    let f = std::fs::File::open(path).with_ctx(|| format!("opening trace {}", path.display()))?;
    parse(std::io::BufReader::new(f), &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trip() {
        let p = b"/a b/\\c\xff\x7f~!".to_vec();
        let e = escape_path(&p);
        assert_eq!(e, "/a\\x20b/\\x5cc\\xff\\x7f~!");
        assert_eq!(unescape_path(&e).unwrap(), p);
    }

    #[test]
    fn parse_whole_trace() {
        let text = format!("{HEADER}\n0 0 /a\n\n# c\n12 3 /d\\x20e\n");
        let t = parse(text.as_bytes(), "t").unwrap();
        assert_eq!(
            t,
            vec![
                TraceLine {
                    ms: 0,
                    chunk: 0,
                    path: b"/a".to_vec()
                },
                TraceLine {
                    ms: 12,
                    chunk: 3,
                    path: b"/d e".to_vec()
                },
            ]
        );
        assert_eq!(format_line(&t[1]), "12 3 /d\\x20e");
    }

    #[test]
    fn refuses_bad_input() {
        assert!(parse("0 0 /a\n".as_bytes(), "t").is_err());
        for bad in ["x 0 /a", "0 y /a", "0 0", "0 0 a", "0 0 /a b", "0 0 /\\x2"] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }
}
