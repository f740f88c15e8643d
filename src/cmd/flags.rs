//! The flags several commands share, each defined once (one `clap::Args` group with one
//! help text and one default), and the value parsers that turn a bad store URL or tag
//! into a usage error before a command starts. It parses and checks; it does nothing.

use std::path::PathBuf;

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

/// `-m/--meta FLIST`: the flist a command reads.
#[derive(clap::Args, Debug, Clone)]
pub struct FlistArg {
    /// Flist to read: an rfs/zvfs `.fl` or a legacy `.flist` file, or an http(s) URL
    /// (downloaded into CACHE/flist/<md5> with a cache, else a temporary directory; checked
    /// against <URL>.md5 when the server has one and reused while it is unchanged).
    #[arg(short = 'm', long = "meta", value_name = "FLIST")]
    pub meta: PathBuf,
}

impl FlistArg {
    /// Open the flist (downloading it first when it is a URL), under `cache` if given.
    pub fn open(&self, cache: Option<&std::path::Path>) -> Result<Box<dyn crate::flist::Flist>> {
        crate::flist::download::open_flist(&self.meta, cache)
    }
}

/// `-s/--store URL`: stores to read chunks from instead of the flist's routes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RouteOverrides {
    /// Store to read chunks from instead of the flist's routes, `[xx-xx=]URL`
    /// (repeatable; the optional first-byte range splits chunks between stores).
    #[arg(short = 's', long = "store", value_name = "URL", value_parser = StoreSpec)]
    pub stores: Vec<String>,
}

/// `-s/--store URL` (at least one): stores that receive chunks.
#[derive(clap::Args, Debug, Clone)]
pub struct DestStores {
    /// Store receiving the chunks, `[xx-xx=]URL` (repeatable; the optional first-byte
    /// range splits chunks between stores; recorded as routes without passwords unless
    /// told otherwise).
    #[arg(
        short = 's',
        long = "store",
        value_name = "URL",
        required = true,
        value_parser = StoreSpec
    )]
    pub stores: Vec<String>,
}

/// `-j/--jobs N`: how much work runs in parallel.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct Jobs {
    /// Work in parallel: chunks encoded or fetched, or files converted (default: the
    /// available parallelism for encoding, 8 for fetches and uploads).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
}

impl Jobs {
    /// For CPU-bound work (encoding): the flag, else the available parallelism (1..=64).
    pub fn cpu(&self) -> usize {
        let n = self.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        n.clamp(1, 64)
    }

    /// For I/O-bound work (fetches, uploads, presence checks): the flag, else 8 (1..=64).
    pub fn io(&self) -> usize {
        self.jobs.unwrap_or(8).clamp(1, 64)
    }
}

/// `--tag key=value` (repeatable): tags a new flist records (`pack`, `import`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Tags {
    /// Tag to record, `key=value` (repeatable; `version` is reserved).
    #[arg(long = "tag", value_parser = TagSpec::Pair)]
    pub tags: Vec<String>,
}

impl Tags {
    /// The tags as `(key, value)` pairs.
    pub fn pairs(&self) -> Result<Vec<(String, String)>> {
        self.tags
            .iter()
            .map(|t| {
                let (k, v) = check_tag_spec(t).map_err(|e| e.context("--tag"))?;
                Ok((k.to_string(), v.to_string()))
            })
            .collect()
    }
}

/// `--no-strip-password`: keep passwords in the routes written into an flist.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct KeepPasswords {
    /// Keep passwords in the routes written into the flist.
    #[arg(long = "no-strip-password")]
    pub no_strip_password: bool,
}

/// How to find and fetch a container image (`import`, `oci prepare`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ImageFlags {
    /// Platform to pick from a multi-platform image, `OS/ARCH[/VARIANT]` (default: this
    /// machine's, e.g. linux/amd64).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Registry credentials, `USER:PASSWORD` (else the auth file's).
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "authfile")]
    pub creds: Option<String>,
    /// Auth file in Docker's `config.json` format (default: ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<std::path::PathBuf>,
    /// Plain HTTP to the registry (loopback registries always get it).
    #[arg(long)]
    pub insecure: bool,
    /// Connect and read deadline of each registry request, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub registry_timeout: f64,
}

impl ImageFlags {
    /// The flags as fetch options.
    pub fn options(&self) -> Result<crate::image::FetchOptions> {
        use crate::image::{Credentials, FetchOptions, Platform};
        Ok(FetchOptions {
            platform: match &self.platform {
                Some(p) => Platform::parse(p).map_err(|e| e.context("--platform"))?,
                None => Platform::host(),
            },
            creds: match &self.creds {
                Some(c) => Some(Credentials::parse(c).map_err(|e| e.context("--creds"))?),
                None => None,
            },
            authfile: self.authfile.clone(),
            insecure: self.insecure,
            timeout: std::time::Duration::from_secs_f64(self.registry_timeout.max(0.001)),
        })
    }
}

/// `--prefetch TRACE` of `pack` and `import`: store a recorded trace in the new flist
/// before it is published, as `zvfs prefetch add` does.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PrefetchTrace {
    /// A trace recorded by `zvfs mount --record-trace`, stored as the new flist's
    /// prefetch list (paths it lacks are skipped with a warning).
    #[arg(long = "prefetch", value_name = "TRACE")]
    pub prefetch: Option<PathBuf>,
}

impl PrefetchTrace {
    /// The parsed trace, when given.
    pub fn lines(&self) -> Result<Option<Vec<crate::flist::trace::TraceLine>>> {
        self.prefetch
            .as_deref()
            .map(crate::flist::trace::read_file)
            .transpose()
    }
}
