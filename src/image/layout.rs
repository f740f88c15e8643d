//! `oci:DIR[:TAG]`: an OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/sha256/HEX`). The tag selects the `index.json` entry whose
//! `org.opencontainers.image.ref.name` annotation it is; without one the index must hold
//! exactly one entry. Blobs are opened by digest (checked to be `sha256:<hex>`, so a
//! path never leaves `blobs/`) and read as they stream.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::manifest::{self, verify_digest, Descriptor, OCI_INDEX};
use super::reference::check_digest;
use super::{FetchOptions, Image, Source, MAX_JSON};
use crate::error::{Error, Result};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An opened layout directory.
pub struct Layout {
    dir: PathBuf,
    image: String,
}

impl Layout {
    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        check_digest(digest).map_err(|w| Error::format(format!("{}: {w}", self.image)))?;
        let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
        Ok(self.dir.join("blobs").join(alg).join(hex))
    }

    /// The blob `digest`, opened for streaming.
    pub fn blob_file(&self, digest: &str) -> Result<File> {
        let p = self.blob_path(digest)?;
        File::open(&p).map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => crate::error::ErrorKind::NotFound,
                _ => crate::error::ErrorKind::Io,
            };
            Error::with_source(
                kind,
                format!(
                    "{}: blob {digest}: opening {}: {e}",
                    self.image,
                    p.display()
                ),
                e,
            )
        })
    }

    /// The blob `digest`, read whole (at most [`MAX_JSON`]) and verified.
    pub fn small_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let f = self.blob_file(digest)?;
        let what = format!("{}: blob {digest}", self.image);
        let data = read_small(f, &what)?;
        verify_digest(&data, digest, &what)?;
        Ok(data)
    }
}

/// Reads a JSON document whole, refusing one above [`MAX_JSON`].
pub fn read_small(r: impl Read, what: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    r.take(MAX_JSON as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| Error::with_source(crate::error::ErrorKind::Io, format!("{what}: {e}"), e))?;
    if data.len() > MAX_JSON {
        return Err(Error::format(format!(
            "{what}: larger than the {MAX_JSON} bytes allowed for a manifest or config"
        )));
    }
    Ok(data)
}

fn read_file(path: &Path, image: &str) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(|e| {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => crate::error::ErrorKind::NotFound,
            _ => crate::error::ErrorKind::Io,
        };
        Error::with_source(
            kind,
            format!(
                "{image}: opening {}: {e} (not an OCI image layout?)",
                path.display()
            ),
            e,
        )
    })?;
    read_small(f, &format!("{image}: {}", path.display()))
}

/// Opens `oci:DIR[:TAG]`.
pub fn open(shown: &str, dir: &Path, tag: Option<&str>, opts: &FetchOptions) -> Result<Image> {
    let layout = Layout {
        dir: dir.to_path_buf(),
        image: shown.to_string(),
    };
    let marker = read_file(&dir.join("oci-layout"), shown)?;
    let v: serde_json::Value = serde_json::from_slice(&marker)
        .map_err(|e| Error::format(format!("{shown}: bad oci-layout file: {e}")))?;
    if v.get("imageLayoutVersion")
        .and_then(|v| v.as_str())
        .is_none()
    {
        return Err(Error::format(format!(
            "{shown}: oci-layout has no imageLayoutVersion"
        )));
    }
    let index_bytes = read_file(&dir.join("index.json"), shown)?;
    let entries = match manifest::parse(&index_bytes, Some(OCI_INDEX), shown)? {
        manifest::Parsed::Index(e) => e,
        manifest::Parsed::Manifest { .. } => {
            return Err(Error::format(format!(
                "{shown}: index.json is not an index"
            )))
        }
    };
    let entry: &Descriptor = match tag {
        Some(t) => entries
            .iter()
            .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(t))
            .ok_or_else(|| {
                Error::not_found(format!(
                    "{shown}: no image tagged {t:?} in the layout (tags: {})",
                    tags(&entries)
                ))
            })?,
        None => match entries.as_slice() {
            [one] => one,
            [] => {
                return Err(Error::not_found(format!(
                    "{shown}: the layout holds no image"
                )))
            }
            _ => {
                return Err(Error::invalid(format!(
                    "{shown}: the layout holds {} images: name one with oci:DIR:TAG (tags: {})",
                    entries.len(),
                    tags(&entries)
                )))
            }
        },
    };
    check_digest(&entry.digest).map_err(|w| Error::format(format!("{shown}: index.json: {w}")))?;
    let first = layout.small_blob(&entry.digest)?;
    let mt = (!entry.media_type.is_empty()).then(|| entry.media_type.clone());
    let (manifest_digest, config, layers) = manifest::resolve(
        (first, mt, Some(entry.digest.clone())),
        &opts.platform,
        shown,
        &mut |d| Ok((layout.small_blob(&d.digest)?, None)),
    )?;
    let config_bytes = layout.small_blob(&config.digest)?;
    let cfg = manifest::parse_config(&config_bytes, shown)?;
    Ok(Image {
        reference: shown.to_string(),
        manifest_digest,
        config_digest: config.digest,
        config: cfg,
        layers,
        source: Source::Layout(layout),
    })
}

fn tags(entries: &[Descriptor]) -> String {
    let t: Vec<&str> = entries
        .iter()
        .filter_map(|d| d.annotations.get(REF_NAME).map(String::as_str))
        .collect();
    if t.is_empty() {
        "none".into()
    } else {
        t.join(", ")
    }
}
