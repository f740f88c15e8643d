//! Drop-in command lines. Installed (or symlinked) as `rfs`, zvfs accepts the rfs 2.x
//! command line; installed as `g8ufs`, the 0-fs command line (Go `flag` syntax: `-name`,
//! `--name`, `-name=value`). Both are rewritten into the equivalent `zvfs` arguments, so
//! there is one parser and one behaviour.

use std::ffi::{OsStr, OsString};

use crate::error::{Error, Result};

/// The personality selected by the program name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Personality {
    /// Any other name: zvfs's own command line, left as it is.
    Zvfs,
    /// Named `rfs`: the rfs 2.x command line.
    Rfs,
    /// Named `g8ufs`: the 0-fs command line (Go `flag` syntax).
    G8ufs,
}

/// The personality for a program path `argv0`, from its file name only (`/usr/bin/rfs`
/// is [`Personality::Rfs`]).
pub fn personality(argv0: &OsStr) -> Personality {
    let name = std::path::Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.as_str() {
        "rfs" => Personality::Rfs,
        "g8ufs" => Personality::G8ufs,
        _ => Personality::Zvfs,
    }
}

/// rfs's default cache directory for mount, unpack and clone.
pub const RFS_DEFAULT_CACHE: &str = "/tmp/cache";
/// 0-fs's default backend (working) directory.
pub const G8UFS_DEFAULT_BACKEND: &str = "/tmp/backend";

/// Rewrite the process arguments (including argv[0]) into zvfs arguments.
pub fn translate(args: Vec<OsString>) -> Result<Vec<OsString>> {
    let Some(argv0) = args.first() else {
        return Ok(args);
    };
    match personality(argv0) {
        Personality::Zvfs => Ok(args),
        Personality::Rfs => translate_rfs(args),
        Personality::G8ufs => translate_g8ufs(args),
    }
}

fn has_flag(args: &[OsString], short: &str, long: &str) -> bool {
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == short
            || a == long
            || a.starts_with(&format!("{long}="))
            || (a.starts_with(short) && a.len() > 2 && !a.starts_with("--"))
    })
}

/// rfs 2.x: `rfs [--debug] {pack|mount|unpack|clone|config} ...`. The zvfs subcommands
/// accept rfs's flags; only rfs's defaults differ (the cache directory) and rfs's other
/// subcommands are refused.
fn translate_rfs(args: Vec<OsString>) -> Result<Vec<OsString>> {
    let mut out: Vec<OsString> = vec!["zvfs".into()];
    let mut rest = args.into_iter().skip(1).peekable();
    while let Some(a) = rest.peek() {
        // rfs counts `--debug` (more is trace); zvfs has one debug level.
        if a == "--debug" {
            if !out.iter().any(|o| o == "--debug") {
                out.push("--debug".into());
            }
            rest.next();
        } else if a == "-h" || a == "--help" || a == "-V" || a == "--version" {
            out.push(rest.next().unwrap_or_default());
        } else {
            break;
        }
    }
    let Some(sub) = rest.next() else {
        return Ok(out);
    };
    let sub_s = sub.to_string_lossy().into_owned();
    match sub_s.as_str() {
        "pack" | "mount" | "unpack" | "clone" | "config" | "help" => {}
        other => {
            return Err(Error::invalid(format!(
                "rfs: unknown subcommand {other:?} (expected pack, mount, unpack, clone or config)"
            )))
        }
    }
    let tail: Vec<OsString> = rest.collect();
    out.push(sub);
    if matches!(sub_s.as_str(), "mount" | "unpack" | "clone") && !has_flag(&tail, "-c", "--cache") {
        out.push("--cache".into());
        out.push(RFS_DEFAULT_CACHE.into());
    }
    out.extend(tail);
    Ok(out)
}

/// The 0-fs flags, as Go's `flag` package parses them.
const G8UFS_BOOL: &[&str] = &["ro", "daemon", "reset", "debug", "version", "help", "h"];
const G8UFS_VALUE: &[&str] = &[
    "meta",
    "cache",
    "storage-url",
    "log",
    "backend",
    "local-router",
];

/// g8ufs: `g8ufs [flags] TARGET` => `zvfs mount ...`.
fn translate_g8ufs(args: Vec<OsString>) -> Result<Vec<OsString>> {
    let mut meta = None;
    let mut cache = None;
    let mut storage = None;
    let mut log = None;
    let mut backend = None;
    let mut ro = false;
    let mut daemon = false;
    let mut reset = false;
    let mut debug = false;
    let mut target = None;
    let mut it = args.into_iter().skip(1);
    while let Some(arg) = it.next() {
        let s = arg.to_string_lossy().into_owned();
        if target.is_some() || !s.starts_with('-') || s == "-" {
            if target.is_some() {
                return Err(Error::invalid(format!(
                    "g8ufs: unexpected argument {s:?} after the mount point"
                )));
            }
            target = Some(arg);
            continue;
        }
        if s == "--" {
            target = it.next();
            continue;
        }
        let body = s.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        if G8UFS_BOOL.contains(&name.as_str()) {
            let on = match inline.as_deref() {
                None | Some("true") | Some("1") | Some("t") | Some("T") | Some("TRUE")
                | Some("True") => true,
                Some("false") | Some("0") | Some("f") | Some("F") | Some("FALSE")
                | Some("False") => false,
                Some(v) => {
                    return Err(Error::invalid(format!(
                        "g8ufs: invalid boolean value {v:?} for -{name}"
                    )))
                }
            };
            match name.as_str() {
                "ro" => ro = on,
                "daemon" => daemon = on,
                "reset" => reset = on,
                "debug" => debug = on,
                "version" => return Ok(vec!["zvfs".into(), "--version".into()]),
                _ => return Ok(vec!["zvfs".into(), "mount".into(), "--help".into()]),
            }
        } else if G8UFS_VALUE.contains(&name.as_str()) {
            let value: OsString = match inline {
                Some(v) => v.into(),
                None => it.next().ok_or_else(|| {
                    Error::invalid(format!("g8ufs: flag needs an argument: -{name}"))
                })?,
            };
            match name.as_str() {
                "meta" => meta = Some(value),
                "cache" => cache = Some(value),
                "storage-url" => storage = Some(value),
                "log" => log = Some(value),
                "backend" => backend = Some(value),
                _ => {
                    return Err(Error::invalid(
                        "g8ufs: -local-router (router.yaml layering) is not supported by zvfs; use --storage-url",
                    ))
                }
            }
        } else {
            return Err(Error::invalid(format!(
                "g8ufs: flag provided but not defined: -{name}"
            )));
        }
    }
    let target = target.ok_or_else(|| Error::invalid("g8ufs: missing mount point argument"))?;
    let meta = meta.ok_or_else(|| Error::invalid("g8ufs: -meta is required by zvfs"))?;
    let backend: OsString = backend.unwrap_or_else(|| G8UFS_DEFAULT_BACKEND.into());
    let cache = cache.unwrap_or_else(|| {
        let mut c = backend.clone();
        c.push("/cache");
        c
    });
    let mut out: Vec<OsString> = vec!["zvfs".into()];
    if debug {
        out.push("--debug".into());
    }
    out.extend([
        "mount".into(),
        "--meta".into(),
        meta,
        "--cache".into(),
        cache,
    ]);
    if let Some(url) = storage {
        out.push("--store".into());
        out.push(url);
    }
    if daemon {
        out.push("--daemon".into());
    }
    if let Some(l) = log {
        out.push("--log".into());
        out.push(l);
    }
    if !ro {
        out.push("--rw".into());
        out.push("--upper".into());
        out.push(backend);
        if reset {
            out.push("--reset".into());
        }
    }
    out.push(target);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn rfs_mount_from_the_node_gets_zvfs_flags_and_default_cache() {
        let out = translate(v(&[
            "/usr/bin/rfs",
            "mount",
            "--cache",
            "/r/cache",
            "--meta",
            "/r/flist/x",
            "--daemon",
            "--log",
            "/r/log/x.log",
            "/r/ro/x",
        ]))
        .unwrap();
        assert_eq!(
            out,
            v(&[
                "zvfs",
                "mount",
                "--cache",
                "/r/cache",
                "--meta",
                "/r/flist/x",
                "--daemon",
                "--log",
                "/r/log/x.log",
                "/r/ro/x"
            ])
        );
        let out = translate(v(&[
            "rfs", "--debug", "--debug", "unpack", "-m", "a.fl", "t",
        ]))
        .unwrap();
        assert_eq!(
            out,
            v(&[
                "zvfs",
                "--debug",
                "unpack",
                "--cache",
                "/tmp/cache",
                "-m",
                "a.fl",
                "t"
            ])
        );
        assert_eq!(
            translate(v(&["rfs", "ls"])).err().map(|e| e.kind),
            Some(crate::error::ErrorKind::Invalid)
        );
    }

    #[test]
    fn g8ufs_go_flags_single_and_double_dash() {
        let out = translate(v(&[
            "g8ufs",
            "--storage-url",
            "zdb://h:9900",
            "--ro",
            "--cache",
            "/c",
            "--meta",
            "/m.flist",
            "--daemon",
            "--log",
            "/l",
            "/t",
        ]))
        .unwrap();
        assert_eq!(
            out,
            v(&[
                "zvfs",
                "mount",
                "--meta",
                "/m.flist",
                "--cache",
                "/c",
                "--store",
                "zdb://h:9900",
                "--daemon",
                "--log",
                "/l",
                "/t"
            ])
        );
        let out = translate(v(&[
            "g8ufs", "-meta=/m", "-backend", "/b", "-reset", "-debug", "/t",
        ]))
        .unwrap();
        assert_eq!(
            out,
            v(&[
                "zvfs", "--debug", "mount", "--meta", "/m", "--cache", "/b/cache", "--rw",
                "--upper", "/b", "--reset", "/t"
            ])
        );
        assert_eq!(
            translate(v(&["g8ufs", "-bogus", "/t"]))
                .err()
                .map(|e| e.kind),
            Some(crate::error::ErrorKind::Invalid)
        );
        assert_eq!(
            translate(v(&["g8ufs", "-meta", "/m"]))
                .err()
                .map(|e| e.kind),
            Some(crate::error::ErrorKind::Invalid)
        );
        assert_eq!(
            translate(v(&["g8ufs", "-ro=maybe", "-meta", "/m", "/t"]))
                .err()
                .map(|e| e.kind),
            Some(crate::error::ErrorKind::Invalid)
        );
    }
}
