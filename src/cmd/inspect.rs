//! Operator debug commands: `inspect` (summary), `ls`, `stat` and `cat`. They read the
//! flist through the `Flist` trait (any generation) and content through
//! [`crate::content::Chunks`]; they never write anything but stdout/stderr. Names are printed as
//! raw bytes so non-UTF-8 names survive.

use std::io::Write;

use crate::content::{FileContent, Layout};
use crate::error::{Context, ExitCode, Result};
use crate::flist::{self, Entry, Flist, Kind};
use crate::store::redact;

/// Arguments of `zvfs inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The flist.
    #[command(flatten)]
    pub flist: super::FlistArg,
}

/// Arguments of `zvfs ls`.
#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// The flist.
    #[command(flatten)]
    pub flist: super::FlistArg,
    /// Long listing.
    #[arg(short = 'l')]
    pub long: bool,
    /// Directory (or entry) of the flist; the root by default.
    pub path: Option<String>,
}

/// Arguments of `zvfs stat`.
#[derive(clap::Args, Debug)]
pub struct StatArgs {
    /// The flist.
    #[command(flatten)]
    pub flist: super::FlistArg,
    /// Also list the chunks (id and key) of a file.
    #[arg(long)]
    pub blocks: bool,
    /// Path of the entry in the flist.
    pub path: String,
}

/// Arguments of `zvfs cat`.
#[derive(clap::Args, Debug)]
pub struct CatArgs {
    /// The flist.
    #[command(flatten)]
    pub flist: super::FlistArg,
    /// Chunk cache to read through.
    #[command(flatten)]
    pub cache: super::CacheFlags,
    /// Stores overriding the flist's routes.
    #[command(flatten)]
    pub stores: super::RouteOverrides,
    /// Store timeouts.
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    /// Path of the file in the flist.
    pub path: String,
}

/// Print the flist's summary (format, entries per kind, bytes, chunks, tags, routes).
pub fn inspect(a: InspectArgs) -> Result<ExitCode> {
    let fl = a.flist.open(None)?;
    let t = fl.totals()?;
    let mut out = std::io::stdout().lock();
    let mut kinds = [0u64; 7];
    let root = fl.get(flist::ROOT_INO)?;
    let walked = flist::walk(&*fl, &root, Vec::new(), &mut |e, _| {
        kinds[kind_index(e.kind())] += 1;
        Ok(())
    });
    let ratio = if t.unique_blocks > 0 {
        t.blocks as f64 / t.unique_blocks as f64
    } else {
        1.0
    };
    let mut text = format!(
        "file: {}\nformat: {}\nentries: {}\n",
        a.flist.meta.display(),
        fl.format(),
        t.entries
    );
    match walked {
        Ok(()) => {
            for k in ALL_KINDS {
                text.push_str(&format!("  {}: {}\n", k.name(), kinds[kind_index(k)]));
            }
        }
        Err(e) => text.push_str(&format!(
            "  files: {}\n  dirs: {}\n  symlinks: {}\n  specials: {}\n  (tree walk failed: {e})\n",
            t.files, t.dirs, t.symlinks, t.specials
        )),
    }
    text.push_str(&format!(
        "bytes: {}\nchunks: {}\nunique chunks: {}\ndedup ratio: {ratio:.2}\n",
        t.bytes, t.blocks, t.unique_blocks
    ));
    let tags = fl.tags()?;
    text.push_str(&format!("tags: {}\n", tags.len()));
    for (k, v) in tags {
        text.push_str(&format!("  {k}={v}\n"));
    }
    let routes = fl.routes()?;
    text.push_str(&format!("routes: {}\n", routes.len()));
    for r in routes {
        text.push_str(&format!(
            "  {:02x}-{:02x} {}\n",
            r.start,
            r.end,
            redact(&r.url)
        ));
    }
    out.write_all(text.as_bytes()).ctx("writing to stdout")?;
    Ok(ExitCode::Ok)
}

const ALL_KINDS: [Kind; 7] = [
    Kind::File,
    Kind::Dir,
    Kind::Symlink,
    Kind::Fifo,
    Kind::CharDev,
    Kind::BlockDev,
    Kind::Socket,
];

fn kind_index(k: Kind) -> usize {
    ALL_KINDS.iter().position(|x| *x == k).unwrap_or(0)
}

/// List a directory of the flist (one entry when the path is not a directory).
pub fn ls(a: LsArgs) -> Result<ExitCode> {
    let fl = a.flist.open(None)?;
    let path = a.path.unwrap_or_default();
    let e = flist::resolve(&*fl, path.as_bytes())?;
    let mut entries = if e.is_dir() {
        fl.children(e.ino)?
    } else {
        vec![e]
    };
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for e in entries {
        if a.long {
            out.write_all(long_line(&*fl, &e)?.as_slice())
        } else {
            out.write_all(&e.name).and_then(|_| out.write_all(b"\n"))
        }
        .ctx("writing to stdout")?;
    }
    out.flush().ctx("writing to stdout")?;
    Ok(ExitCode::Ok)
}

/// One `ls -l` style line, raw name bytes included.
fn long_line(fl: &dyn Flist, e: &Entry) -> Result<Vec<u8>> {
    let size = match e.kind() {
        Kind::CharDev | Kind::BlockDev => format!(
            "{}, {}",
            rustix::fs::major(e.rdev),
            rustix::fs::minor(e.rdev)
        ),
        _ => e.size.to_string(),
    };
    let mut line = format!(
        "{} {:>3} {:>5} {:>5} {:>10} {} ",
        mode_string(e.mode),
        e.nlink,
        e.uid,
        e.gid,
        size,
        &utc(e.mtime)[..16]
    )
    .into_bytes();
    line.extend_from_slice(&e.name);
    if e.kind() == Kind::Symlink {
        line.extend_from_slice(b" -> ");
        line.extend_from_slice(&fl.link_target(e.ino)?);
    }
    line.push(b'\n');
    Ok(line)
}

/// `drwxr-xr-x`, with setuid/setgid/sticky as `s`/`S`/`t`/`T`.
pub fn mode_string(mode: u32) -> String {
    let t = match Kind::from_mode(mode) {
        Some(Kind::Dir) => 'd',
        Some(Kind::Symlink) => 'l',
        Some(Kind::Fifo) => 'p',
        Some(Kind::CharDev) => 'c',
        Some(Kind::BlockDev) => 'b',
        Some(Kind::Socket) => 's',
        Some(Kind::File) => '-',
        None => '?',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    let bit = |m: u32, c: char| if mode & m != 0 { c } else { '-' };
    let special = |x: bool, special: bool, on: char, off: char| match (x, special) {
        (true, true) => on,
        (false, true) => off,
        (true, false) => 'x',
        (false, false) => '-',
    };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(mode & 0o100 != 0, mode & 0o4000 != 0, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(mode & 0o010 != 0, mode & 0o2000 != 0, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(mode & 0o001 != 0, mode & 0o1000 != 0, 't', 'T'));
    s
}

/// `YYYY-MM-DD HH:MM:SS` in UTC (no time-zone database needed).
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Print every field of one entry (and its chunks with `--blocks`).
pub fn stat(a: StatArgs) -> Result<ExitCode> {
    let fl = a.flist.open(None)?;
    let e = flist::resolve(&*fl, a.path.as_bytes())?;
    let mut out: Vec<u8> = Vec::new();
    out.extend_from_slice(b"name: ");
    out.extend_from_slice(&e.name);
    out.push(b'\n');
    let mut text = format!(
        "ino: {}\nparent: {}\ntype: {}\nmode: {:o} ({})\nuid: {}\ngid: {}\nsize: {}\nrdev: {} ({}, {})\nmtime: {} ({} UTC)\nctime: {} ({} UTC)\nnlink: {}\n",
        e.ino,
        e.parent,
        e.kind().name(),
        e.mode,
        mode_string(e.mode),
        e.uid,
        e.gid,
        e.size,
        e.rdev,
        rustix::fs::major(e.rdev),
        rustix::fs::minor(e.rdev),
        e.mtime,
        utc(e.mtime),
        e.ctime,
        utc(e.ctime),
        e.nlink,
    );
    if let Some(l) = e.link_of {
        text.push_str(&format!("hardlink of: inode {l}\n"));
    }
    let blocks = if e.kind() == Kind::File {
        fl.blocks(e.ino)?
    } else {
        Vec::new()
    };
    text.push_str(&format!("blocks: {}\n", blocks.len()));
    if a.blocks {
        for (i, b) in blocks.iter().enumerate() {
            text.push_str(&format!(
                "  {i} {} {}\n",
                b.hex_id(),
                crate::codec::hex_bytes(b.key())
            ));
        }
    }
    out.extend_from_slice(text.as_bytes());
    let xattrs = fl.xattrs(e.ino)?;
    out.extend_from_slice(format!("xattrs: {}\n", xattrs.len()).as_bytes());
    for (k, v) in xattrs {
        out.extend_from_slice(b"  ");
        out.extend_from_slice(&k);
        out.extend_from_slice(format!(" ({} bytes)\n", v.len()).as_bytes());
    }
    if e.kind() == Kind::Symlink {
        out.extend_from_slice(b"target: ");
        out.extend_from_slice(&fl.link_target(e.ino)?);
        out.push(b'\n');
    }
    if let Some(id) = fl.identity(e.ino)? {
        out.extend_from_slice(
            format!(
                "partial checksum: {}\nchecksum: {}\n",
                crate::codec::hex_bytes(&id.partial),
                crate::codec::hex_bytes(&id.checksum)
            )
            .as_bytes(),
        );
    }
    std::io::stdout()
        .lock()
        .write_all(&out)
        .ctx("writing to stdout")?;
    Ok(ExitCode::Ok)
}

/// Write a file's content to stdout, fetched chunk by chunk (bounded memory).
pub fn cat(a: CatArgs) -> Result<ExitCode> {
    let fl = a.flist.open(a.cache.cache.as_deref())?;
    let e = flist::resolve(&*fl, a.path.as_bytes())?;
    let file = FileContent::open(&*fl, &e, a.path.as_str())?;
    let chunks = crate::content::Chunks::open(
        &*fl,
        &a.stores.stores,
        a.cache.spec()?.as_ref(),
        2,
        &a.store_flags.config(),
    )?;
    let mut out = std::io::stdout().lock();
    // Each chunk is checked before it is written: nothing wrong reaches stdout.
    file.read(&chunks, Layout::Fixed, |_, plain| {
        out.write_all(plain).ctx("writing to stdout")
    })?;
    out.flush().ctx("writing to stdout")?;
    Ok(ExitCode::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings_like_ls() {
        assert_eq!(mode_string(0o104755), "-rwsr-xr-x");
        assert_eq!(mode_string(0o41777), "drwxrwxrwt");
        assert_eq!(mode_string(0o102644), "-rw-r-Sr--");
        assert_eq!(mode_string(0o120777), "lrwxrwxrwx");
        assert_eq!(mode_string(0o20620), "crw--w----");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1577934245), "2020-01-02 03:04:05");
        assert_eq!(utc(951782400), "2000-02-29 00:00:00");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
    }
}
