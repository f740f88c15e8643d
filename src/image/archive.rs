//! `docker-archive:FILE[:NAME:TAG]`: a `docker save` (or `skopeo copy ...
//! docker-archive:`) tar holding `manifest.json` (`[{"Config", "RepoTags", "Layers"}]`),
//! the config and the layers. The tar's members are indexed once (name -> offset, size,
//! following symbolic and hard links between members) and blobs are read by seeking into
//! the file: nothing is extracted. A layer's compression is told by its magic bytes. A
//! member named `blobs/sha256/HEX` is verified against HEX; other names (`HEX.tar`,
//! `HEX/layer.tar`) carry no trustworthy digest, so the layer is checked against the
//! config's `rootfs.diff_ids[i]` on its uncompressed stream.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::layout::read_small;
use super::manifest::{self, sha256_digest, verify_digest};
use super::reference::check_digest;
use super::{Compression, Image, Layer, Source};
use crate::error::{Error, ErrorKind, Result};

/// The most members indexed (an image archive has a handful per layer).
const MAX_MEMBERS: usize = 1 << 20;

#[derive(Clone, Debug)]
enum Member {
    Data { offset: u64, size: u64 },
    Link(String),
}

/// An indexed archive and where the chosen image's layers are in it.
pub struct Archive {
    file: PathBuf,
    image: String,
    /// (offset, size) of each layer, bottom first.
    layers: Vec<(u64, u64)>,
}

impl Archive {
    /// The stored bytes of layer `i`.
    pub fn layer(&self, i: usize) -> Result<Box<dyn Read + Send + '_>> {
        let &(offset, size) = self
            .layers
            .get(i)
            .ok_or_else(|| Error::invalid(format!("{}: no layer {i}", self.image)))?;
        let mut f = open_file(&self.file, &self.image)?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(&self.image, &self.file, e))?;
        Ok(Box::new(f.take(size)))
    }
}

fn io_error(image: &str, file: &Path, e: std::io::Error) -> Error {
    Error::with_source(
        ErrorKind::Io,
        format!("{image}: reading {}: {e}", file.display()),
        e,
    )
}

fn open_file(file: &Path, image: &str) -> Result<File> {
    File::open(file).map_err(|e| {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Io,
        };
        Error::with_source(kind, format!("{image}: opening {}: {e}", file.display()), e)
    })
}

/// A member name as written, without `./` prefixes.
fn clean(name: &str) -> String {
    let mut n = name;
    while let Some(r) = n.strip_prefix("./") {
        n = r;
    }
    n.trim_start_matches('/').to_string()
}

/// Resolves a link target relative to the directory of the member `from`.
fn join_link(from: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        from.split('/').collect()
    };
    if !target.starts_with('/') {
        parts.pop();
    }
    for p in target.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn index(file: &Path, image: &str) -> Result<HashMap<String, Member>> {
    let f = open_file(file, image)?;
    let mut ar = tar::Archive::new(f);
    let bad = |e: std::io::Error| {
        Error::format(format!(
            "{image}: {} is not a readable tar: {e}",
            file.display()
        ))
    };
    let mut members = HashMap::new();
    for entry in ar.entries_with_seek().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
        let kind = entry.header().entry_type();
        let member = if kind.is_symlink() || kind.is_hard_link() {
            let Some(target) = entry.link_name_bytes() else {
                continue;
            };
            let target = String::from_utf8_lossy(&target).into_owned();
            if kind.is_symlink() {
                Member::Link(join_link(&name, &target))
            } else {
                Member::Link(clean(&target))
            }
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            Member::Data {
                offset: entry.raw_file_position(),
                size: entry.size(),
            }
        } else {
            continue;
        };
        if members.len() >= MAX_MEMBERS {
            return Err(Error::format(format!(
                "{image}: {} has more than {MAX_MEMBERS} members",
                file.display()
            )));
        }
        members.insert(name, member);
    }
    Ok(members)
}

fn lookup(members: &HashMap<String, Member>, name: &str, image: &str) -> Result<(u64, u64)> {
    let mut n = clean(name);
    for _ in 0..16 {
        match members.get(&n) {
            Some(Member::Data { offset, size }) => return Ok((*offset, *size)),
            Some(Member::Link(t)) => n = t.clone(),
            None => {
                return Err(Error::format(format!(
                    "{image}: the archive has no member {name:?}"
                )))
            }
        }
    }
    Err(Error::format(format!(
        "{image}: member {name:?}: too many links"
    )))
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// `NAME:TAG` as Docker Hub names it briefly (`docker.io/library/x:t` -> `x:t`).
fn short_tag(t: &str) -> &str {
    let t = t.strip_prefix("docker.io/").unwrap_or(t);
    t.strip_prefix("library/").unwrap_or(t)
}

/// The digest a member path names (`blobs/sha256/HEX`).
fn path_digest(path: &str) -> Option<String> {
    let hex = clean(path).strip_prefix("blobs/sha256/")?.to_string();
    let d = format!("sha256:{hex}");
    check_digest(&d).ok().map(|_| d)
}

fn read_member(
    file: &Path,
    image: &str,
    (offset, size): (u64, u64),
    what: &str,
) -> Result<Vec<u8>> {
    let mut f = open_file(file, image)?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| io_error(image, file, e))?;
    read_small(f.take(size), &format!("{image}: {what}"))
}

/// Opens `docker-archive:FILE[:NAME:TAG]`.
pub fn open(shown: &str, file: &Path, name: Option<&str>) -> Result<Image> {
    let members = index(file, shown)?;
    let mloc = lookup(&members, "manifest.json", shown)
        .map_err(|e| e.context("not a docker-archive (no manifest.json)"))?;
    let mbytes = read_member(file, shown, mloc, "manifest.json")?;
    let entries: Vec<Entry> = serde_json::from_slice(&mbytes)
        .map_err(|e| Error::format(format!("{shown}: bad manifest.json: {e}")))?;
    let all_tags = || {
        let t: Vec<&str> = entries
            .iter()
            .flat_map(|e| e.repo_tags.iter().flatten().map(String::as_str))
            .collect();
        if t.is_empty() {
            "none".to_string()
        } else {
            t.join(", ")
        }
    };
    let entry = match name {
        Some(n) => entries
            .iter()
            .find(|e| {
                e.repo_tags
                    .iter()
                    .flatten()
                    .any(|t| t == n || short_tag(t) == short_tag(n))
            })
            .ok_or_else(|| {
                Error::not_found(format!(
                    "{shown}: no image {n} in the archive (tags: {})",
                    all_tags()
                ))
            })?,
        None => match entries.as_slice() {
            [one] => one,
            [] => return Err(Error::not_found(format!("{shown}: the archive holds no image"))),
            _ => {
                return Err(Error::invalid(format!(
                    "{shown}: the archive holds {} images: name one with docker-archive:FILE:NAME:TAG (tags: {})",
                    entries.len(),
                    all_tags()
                )))
            }
        },
    };
    let cloc = lookup(&members, &entry.config, shown)?;
    let config_bytes = read_member(file, shown, cloc, &entry.config)?;
    let config_digest = sha256_digest(&config_bytes);
    let config_hex = clean(&entry.config)
        .trim_start_matches("blobs/sha256/")
        .trim_end_matches(".json")
        .to_string();
    let named = format!("sha256:{config_hex}");
    if check_digest(&named).is_ok() {
        verify_digest(
            &config_bytes,
            &named,
            &format!("{shown}: config {}", entry.config),
        )?;
    }
    let config = manifest::parse_config(&config_bytes, shown)?;
    if config.diff_ids.len() != entry.layers.len() {
        return Err(Error::format(format!(
            "{shown}: manifest.json lists {} layers but the config has {} diff_ids",
            entry.layers.len(),
            config.diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    let mut locs = Vec::new();
    for (i, path) in entry.layers.iter().enumerate() {
        let loc = lookup(&members, path, shown)?;
        let compression = sniff(file, shown, loc)?;
        let media_type = match compression {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        };
        let (digest, uncompressed_digest) = match path_digest(path) {
            Some(d) => (d, false),
            None => {
                let d = config.diff_ids[i].clone();
                check_digest(&d)
                    .map_err(|w| Error::format(format!("{shown}: config diff_ids: {w}")))?;
                (d, true)
            }
        };
        layers.push(Layer {
            digest,
            media_type: media_type.to_string(),
            compression,
            size: Some(loc.1),
            uncompressed_digest,
        });
        locs.push(loc);
    }
    Ok(Image {
        reference: shown.to_string(),
        manifest_digest: sha256_digest(&mbytes),
        config_digest,
        config,
        layers,
        source: Source::Archive(Archive {
            file: file.to_path_buf(),
            image: shown.to_string(),
            layers: locs,
        }),
    })
}

/// A member's compression, by its first bytes.
fn sniff(file: &Path, image: &str, (offset, size): (u64, u64)) -> Result<Compression> {
    let mut f = open_file(file, image)?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| io_error(image, file, e))?;
    let mut magic = Vec::with_capacity(4);
    f.take(size.min(4))
        .read_to_end(&mut magic)
        .map_err(|e| io_error(image, file, e))?;
    Ok(match magic.as_slice() {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}

#[cfg(test)]
mod unit {
    use super::*;
    use std::io::Write;

    fn one_file_tar(name: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &b"abc"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn add(b: &mut tar::Builder<File>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }

    /// An archive in the old `docker save` shape (`HEX/layer.tar`, a symlinked duplicate
    /// layer) mixed with the new one (`blobs/sha256/HEX`, here a gzip'd layer).
    fn archive(dir: &Path, diff0: Option<&str>) -> PathBuf {
        let t0 = one_file_tar("a");
        let t1 = one_file_tar("b");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&t1).unwrap();
        let g1 = gz.finish().unwrap();
        let g1_path = format!("blobs/sha256/{}", &sha256_digest(&g1)[7..]);
        let d0 = diff0.map_or_else(|| sha256_digest(&t0), str::to_string);
        let config = format!(
            r#"{{"os":"linux","architecture":"amd64","config":{{"Cmd":["/b"]}},
               "rootfs":{{"type":"layers","diff_ids":["{d0}","{}","{d0}"]}}}}"#,
            sha256_digest(&t1)
        );
        let cfg_path = format!("{}.json", &sha256_digest(config.as_bytes())[7..]);
        let manifest = format!(
            r#"[{{"Config":"{cfg_path}","RepoTags":["docker.io/library/x:1"],
                "Layers":["abc/layer.tar","{g1_path}","def/layer.tar"]}}]"#
        );
        let p = dir.join(format!("a{}.tar", diff0.is_some()));
        let mut b = tar::Builder::new(File::create(&p).unwrap());
        add(&mut b, "./abc/layer.tar", &t0);
        add(&mut b, &g1_path, &g1);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        b.append_link(&mut h, "def/layer.tar", "../abc/layer.tar")
            .unwrap();
        add(&mut b, &cfg_path, config.as_bytes());
        add(&mut b, "manifest.json", manifest.as_bytes());
        b.into_inner().unwrap().flush().unwrap();
        p
    }

    fn names(img: &Image, i: usize) -> std::io::Result<Vec<String>> {
        let mut ar = tar::Archive::new(img.layer_reader(i).unwrap());
        let mut out = Vec::new();
        for e in ar.entries()? {
            out.push(e?.path()?.to_string_lossy().into_owned());
        }
        std::io::copy(&mut ar.into_inner(), &mut std::io::sink())?;
        Ok(out)
    }

    #[test]
    fn old_and_new_member_names() {
        let d = tempfile::tempdir().unwrap();
        let p = archive(d.path(), None);
        let r = format!("docker-archive:{}:x:1", p.display());
        let img = open(&r, &p, Some("x:1")).unwrap();
        assert_eq!(img.config.cmd, ["/b"]);
        let c: Vec<Compression> = img.layers.iter().map(|l| l.compression).collect();
        assert_eq!(c, [Compression::None, Compression::Gzip, Compression::None]);
        let u: Vec<bool> = img.layers.iter().map(|l| l.uncompressed_digest).collect();
        assert_eq!(u, [true, false, true]);
        assert_eq!(names(&img, 0).unwrap(), ["a"]);
        assert_eq!(names(&img, 1).unwrap(), ["b"]);
        assert_eq!(names(&img, 2).unwrap(), ["a"]);
        let e = open(&r, &p, Some("y:1")).err().unwrap();
        assert!(e.msg.contains("docker.io/library/x:1"), "{}", e.msg);

        // A diff_id the layer does not match: the error names the image and the digest.
        let bad = format!("sha256:{}", "e".repeat(64));
        let p = archive(d.path(), Some(&bad));
        let img = open("img", &p, None).unwrap();
        let e = names(&img, 0).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("img: layer {bad}: digest mismatch")),
            "{e}"
        );
        assert_eq!(names(&img, 1).unwrap(), ["b"]);
    }

    #[test]
    fn links_and_names() {
        assert_eq!(join_link("a/layer.tar", "../b/layer.tar"), "b/layer.tar");
        assert_eq!(join_link("x", "y"), "y");
        assert_eq!(clean("./blobs/sha256/x"), "blobs/sha256/x");
        assert_eq!(short_tag("docker.io/library/alpine:3"), "alpine:3");
        let hex = "b".repeat(64);
        assert_eq!(
            path_digest(&format!("blobs/sha256/{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(path_digest(&format!("{hex}.tar")), None);
    }
}
