//! Subcommands that work on whole flists: pack, unpack and the debug commands. They use
//! the layers below (flist, store, cache, codec) and are used only by the CLI.

pub mod cache;
pub mod clone;
pub mod config;
pub mod convert;
pub mod dedup;
pub mod diff;
pub mod identity;
pub mod inspect;
pub mod mount;
pub mod mounts;
pub mod out;
pub mod pack;
pub mod unpack;
pub mod verify;
pub mod warm;

use std::io::Write;
use std::sync::Mutex;

use crate::cache::parse_size;
use crate::content::CacheSpec;
use crate::error::{Error, Result};
use crate::store::StoreConfig;

/// Check a `[xx-xx=]URL` store argument: its range and URL (see `store::check_url`).
pub fn check_store_spec(spec: &str) -> Result<crate::flist::Route> {
    let route = crate::flist::Route::parse(spec)?;
    crate::store::check_url(&route.url)?;
    Ok(route)
}

/// The value parser of every `-s/--store` argument that names stores to use or record:
/// a bad one is a usage error (exit code 2) before the command does anything, with a
/// message naming the URL with its password redacted (clap's own message would print the
/// argument as given).
#[derive(Clone, Copy, Debug)]
pub struct StoreSpec;

impl clap::builder::TypedValueParser for StoreSpec {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<String, clap::Error> {
        checked_arg(cmd, arg, value, |s| check_store_spec(s).map(drop))
    }
}

/// Check a `key=value` tag argument (`pack --tag`, `config tag add -t`): a key, and not
/// the reserved `version` marker.
pub fn check_tag_spec(spec: &str) -> Result<(&str, &str)> {
    match spec.split_once('=') {
        Some((k, v)) if !k.is_empty() => {
            crate::flist::v2::check_tag_key(k)?;
            Ok((k, v))
        }
        _ => Err(Error::invalid(format!(
            "bad tag {spec:?} (expected key=value)"
        ))),
    }
}

/// The value parser of tag arguments: `key=value` ([`TagSpec::Pair`]) or a key to delete
/// ([`TagSpec::Key`]); a malformed or reserved one is a usage error (exit code 2).
#[derive(Clone, Copy, Debug)]
pub enum TagSpec {
    /// A `key=value` to set.
    Pair,
    /// A key to delete.
    Key,
}

impl clap::builder::TypedValueParser for TagSpec {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<String, clap::Error> {
        checked_arg(cmd, arg, value, |s| match self {
            TagSpec::Pair => check_tag_spec(s).map(drop),
            TagSpec::Key => crate::flist::v2::check_tag_key(s),
        })
    }
}

/// An argument that passed `check`, or a usage error naming the flag and what is wrong.
fn checked_arg(
    cmd: &clap::Command,
    arg: Option<&clap::Arg>,
    value: &std::ffi::OsStr,
    check: impl FnOnce(&str) -> Result<()>,
) -> std::result::Result<String, clap::Error> {
    let flag = match arg {
        Some(a) => match a.get_long() {
            Some(l) => format!("--{l}"),
            None => a.get_id().to_string(),
        },
        None => "argument".into(),
    };
    let usage = |msg: String| {
        clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{msg}\n")).with_cmd(cmd)
    };
    let text = value
        .to_str()
        .ok_or_else(|| usage(format!("{flag}: not valid UTF-8")))?;
    check(text).map_err(|e| usage(format!("{flag}: {e}")))?;
    Ok(text.to_string())
}

/// Store timeouts as command-line flags, shared by every command that reads chunks.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreFlags {
    /// Connect timeout per store, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub connect_timeout: f64,
    /// Time a connection may go without progress (one read or write), in seconds; the
    /// deadline bounds the whole request.
    #[arg(long, default_value_t = 10.0)]
    pub io_timeout: f64,
    /// Total time allowed to fetch one chunk across replicas, in seconds (each replica
    /// tried gets an equal share of the time left; past it the read fails with EIO).
    #[arg(long, default_value_t = 30.0)]
    pub deadline: f64,
    /// Seconds a failed store is tried last (after every healthy replica).
    #[arg(long, default_value_t = 30.0)]
    pub cooldown: f64,
}

impl StoreFlags {
    /// The flags as a store configuration (values below 1 ms count as 1 ms).
    pub fn config(&self) -> StoreConfig {
        let d = |s: f64| std::time::Duration::from_secs_f64(s.max(0.001));
        StoreConfig {
            connect_timeout: d(self.connect_timeout),
            io_timeout: d(self.io_timeout),
            deadline: d(self.deadline),
            cooldown: d(self.cooldown),
        }
    }
}

/// `-c CACHE` and `--cache-size`, for commands that read chunks.
#[derive(clap::Args, Debug, Clone)]
pub struct CacheFlags {
    /// Chunk cache directory (rfs layout, shared with mounts): chunks found there are not
    /// fetched, chunks fetched are kept there.
    #[arg(short = 'c', long = "cache")]
    pub cache: Option<std::path::PathBuf>,
    /// Bound of the cache directory (K, M, G suffixes), shared by every process using it.
    #[arg(long = "cache-size", default_value = "4G")]
    pub cache_size: String,
}

impl CacheFlags {
    /// The cache these flags name, if any (its size checked).
    pub fn spec(&self) -> Result<Option<CacheSpec>> {
        match &self.cache {
            Some(dir) => Ok(Some(CacheSpec {
                dir: dir.clone(),
                size: parse_size(&self.cache_size)?,
            })),
            None => Ok(None),
        }
    }
}

struct Logger {
    level: log::LevelFilter,
}

/// Where log lines go: stderr unless a file was set with [`log_to_file`].
static LOG_FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Send log lines to `path` (appending) from now on.
pub fn log_to_file(path: &std::path::Path) -> crate::error::Result<()> {
    use crate::error::Context;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_ctx(|| format!("opening log file {}", path.display()))?;
    if let Ok(mut g) = LOG_FILE.lock() {
        *g = Some(f);
    }
    Ok(())
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
    }
    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let line = format!(
            "{now:.3} {} zvfs[{}]: {}\n",
            r.level(),
            std::process::id(),
            r.args()
        );
        if let Ok(mut g) = LOG_FILE.lock() {
            if let Some(f) = g.as_mut() {
                let _ = f.write_all(line.as_bytes());
                return;
            }
        }
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    fn flush(&self) {}
}

/// Install the logger (stderr). `RUST_LOG=debug` also enables debug lines.
pub fn init_logging(debug: bool) {
    let debug = debug
        || std::env::var("RUST_LOG")
            .map(|v| v.contains("debug"))
            .unwrap_or(false);
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let logger = Box::new(Logger { level });
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
