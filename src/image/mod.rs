//! Container images as a source: finding an image (a registry over the OCI distribution
//! API, an `oci:` image layout directory, a `docker-archive:` tar), resolving a
//! multi-platform index to one manifest, reading its config, and giving its layers as
//! decompressed byte streams verified against their digests as they stream.
//!
//! It owns the reference syntax (`reference`), the manifest/index/config JSON
//! (`manifest`), the three sources (`registry`, `layout`, `archive`) and the verifying,
//! decompressing layer reader (`verify`). It knows nothing of flists nor of what the
//! layer tars hold (whiteouts, entries): that is the import engine's. It never buffers a
//! layer (memory stays at a few 64 KiB buffers plus the decoder's window: 32 KiB for
//! gzip, the frame's for zstd, which ruzstd bounds at 128 MiB), reads manifests and
//! configs whole only up to [`MAX_JSON`], and never prints a password or token.

mod archive;
mod layout;
mod manifest;
mod reference;
mod registry;
mod verify;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

pub use reference::{DockerRef, Reference};
pub use verify::{is_layer_error, layer_error};

/// The largest manifest, index or config blob read (they are read whole).
pub const MAX_JSON: usize = 4 << 20;

/// Parse `data` as each JSON document of an image that the sources read whole, the way
/// they do: as a manifest or an index (`media_type` is the type its source gave), resolved
/// for `platform` (an index's chosen entry is not fetched: the resolution stops there with
/// a `NotFound` error), and as an image config. For the fuzz targets (`fuzz/`) and tests:
/// the sources' JSON handling without a source.
pub fn parse_documents(
    data: &[u8],
    media_type: Option<&str>,
    platform: &Platform,
) -> (Result<Vec<Layer>>, Result<ImageConfig>) {
    let first = (data.to_vec(), media_type.map(str::to_string), None);
    let mut no_fetch =
        |d: &manifest::Descriptor| Err(Error::not_found(format!("{}: not fetched", d.digest)));
    let layers = manifest::resolve(first, platform, "document", &mut no_fetch).map(|r| r.2);
    (layers, manifest::parse_config(data, "document"))
}

/// An image platform, as OCI indexes name them (`linux/amd64`, `linux/arm64/v8`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// CPU architecture in OCI/Go names (`amd64`, `arm64`, `arm`, `386`, `ppc64le`, ...).
    pub architecture: String,
    /// CPU variant (`v7`, `v8`), when it matters.
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `OS/ARCH[/VARIANT]`; common non-OCI architecture names (`x86_64`,
    /// `aarch64`) are translated. An `Invalid` error for anything else.
    pub fn parse(s: &str) -> Result<Platform> {
        let bad = || {
            Error::invalid(format!(
                "bad platform {s:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8"
            ))
        };
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad());
        }
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !parts.iter().all(|p| ok(p)) {
            return Err(bad());
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: oci_arch(&parts[1].to_ascii_lowercase()).to_string(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// Linux on the architecture this program was built for, in OCI names.
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: oci_arch(std::env::consts::ARCH).to_string(),
            variant: None,
        }
    }

    /// Whether an index entry's platform (`os`, `architecture`, `variant`) is this one:
    /// os and architecture equal; the variant too when this platform names one (arm64's
    /// missing variant is `v8`).
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        if self.os != os || self.architecture != oci_arch(architecture) {
            return false;
        }
        let Some(want) = &self.variant else {
            return true;
        };
        let default = (self.architecture == "arm64").then_some("v8");
        variant.or(default) == Some(want.as_str())
    }
}

/// The OCI (Go) name of an architecture known by another name.
fn oci_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "x86" | "i386" | "i686" => "386",
        "powerpc64le" => "ppc64le",
        "armv7" | "armhf" => "arm",
        other => other,
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Registry credentials. Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password or token.
    pub password: String,
}

impl Credentials {
    /// Parses `USER:PASS` (as `--creds` takes it; the password may hold `:`). An `Invalid`
    /// error (that does not repeat the argument) when there is no `:` or no user.
    pub fn parse(s: &str) -> Result<Credentials> {
        match s.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Credentials {
                user: user.to_string(),
                password: password.to_string(),
            }),
            _ => Err(Error::invalid(
                "bad credentials: expected USER:PASSWORD with a non-empty user",
            )),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// How to fetch an image.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// The platform to pick from a multi-platform index.
    pub platform: Platform,
    /// Credentials for the registry (`--creds`); else the auth file's.
    pub creds: Option<Credentials>,
    /// The auth file (`--authfile`); default `$HOME/.docker/config.json` when it exists.
    pub authfile: Option<PathBuf>,
    /// Plain HTTP for any registry host (loopback hosts always use it).
    pub insecure: bool,
    /// Connect and read deadline of each request.
    pub timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            platform: Platform::host(),
            creds: None,
            authfile: None,
            insecure: false,
            timeout: Duration::from_secs(30),
        }
    }
}

/// How a layer's stored bytes are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// Zstandard (one or more frames).
    Zstd,
}

/// One layer of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// `sha256:<64 hex>` the layer is verified against: the stored bytes' digest, except
    /// for `docker-archive:` members whose path names no digest (`HEX.tar`,
    /// `HEX/layer.tar`): then it is the config's `diff_id`, checked on the uncompressed
    /// stream ([`Layer::uncompressed_digest`]).
    pub digest: String,
    /// The layer media type (for archive layers: the OCI type their magic bytes say).
    pub media_type: String,
    /// How the stored bytes are compressed.
    pub compression: Compression,
    /// The stored size, when the manifest says it (checked too).
    pub size: Option<u64>,
    /// `digest` is of the uncompressed tar (a docker-archive `diff_id`), not of the
    /// stored bytes.
    pub uncompressed_digest: bool,
}

/// What the image config says (OCI image config or Docker schema 2 config JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `config.Cmd`.
    pub cmd: Vec<String>,
    /// `config.Env` (`KEY=VALUE`).
    pub env: Vec<String>,
    /// `config.WorkingDir` (may be empty).
    pub working_dir: String,
    /// `config.User` (may be empty).
    pub user: String,
    /// Keys of `config.ExposedPorts`, sorted (`80/tcp`).
    pub exposed_ports: Vec<String>,
    /// `config.Labels`.
    pub labels: BTreeMap<String, String>,
    /// `created`, as written.
    pub created: Option<String>,
    /// `os`.
    pub os: String,
    /// `architecture`.
    pub architecture: String,
    /// `rootfs.diff_ids`: the uncompressed layers' digests, bottom first.
    pub diff_ids: Vec<String>,
}

/// Where an image's blobs come from.
enum Source {
    Registry(registry::Client),
    Layout(layout::Layout),
    Archive(archive::Archive),
}

/// An opened image: its identity, config and layers, and the source to stream the
/// layers from.
pub struct Image {
    /// The reference as the user gave it (a password in it is never kept).
    pub reference: String,
    /// `sha256:...` of the manifest chosen (after platform resolution); for a
    /// `docker-archive:` (which has no distribution manifest), of its `manifest.json`.
    pub manifest_digest: String,
    /// `sha256:...` of the config blob.
    pub config_digest: String,
    /// The config.
    pub config: ImageConfig,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    source: Source,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("reference", &self.reference)
            .field("manifest_digest", &self.manifest_digest)
            .field("config_digest", &self.config_digest)
            .field("layers", &self.layers.len())
            .finish()
    }
}

impl Image {
    /// Finds and opens the image `reference` (`docker://...`, a bare Docker reference,
    /// `oci:DIR[:TAG]`, `docker-archive:FILE[:NAME:TAG]`): reads and verifies its
    /// manifest (picking `opts.platform` from an index) and config. Layers are read
    /// later, with [`Image::layer_reader`].
    pub fn open(reference: &str, opts: &FetchOptions) -> Result<Image> {
        let shown = crate::flist::redact(reference);
        match Reference::parse(reference)? {
            Reference::Docker(r) => registry::open(&shown, &r, opts),
            Reference::Oci { dir, tag } => layout::open(&shown, &dir, tag.as_deref(), opts),
            Reference::Archive { file, name } => archive::open(&shown, &file, name.as_deref()),
        }
    }

    /// The i-th layer as an uncompressed tar byte stream. The stored bytes are hashed as
    /// they stream; when the caller reads to EOF, a digest or size mismatch, or trailing
    /// garbage, is an io::Error (InvalidData) whose message names the image and the blob
    /// digest. A truncated or corrupt gzip/zstd stream is likewise an error naming both.
    /// The caller always reads to EOF (a Read returning 0) to get the verification.
    /// [`layer_error`] turns such an `io::Error` (also when a tar parser wrapped it) into
    /// the [`Error`] it means (`Corrupt`, `Store`, `Timeout` or `Io`).
    pub fn layer_reader(&self, i: usize) -> Result<Box<dyn Read + Send + '_>> {
        let layer = self.layers.get(i).ok_or_else(|| {
            Error::invalid(format!(
                "{}: no layer {i} (the image has {})",
                self.reference,
                self.layers.len()
            ))
        })?;
        let (raw, kind): (Box<dyn Read + Send + '_>, _) = match &self.source {
            Source::Registry(c) => (c.blob(&layer.digest)?, ErrorKind::Store),
            Source::Layout(l) => (Box::new(l.blob_file(&layer.digest)?), ErrorKind::Io),
            Source::Archive(a) => (a.layer(i)?, ErrorKind::Io),
        };
        let label = format!("{}: layer {}", self.reference, layer.digest);
        Ok(verify::layer_stream(raw, layer, label, kind))
    }
}
