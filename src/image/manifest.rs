//! The JSON documents of an image: indexes (OCI index, Docker manifest list) and the
//! platform choice among their entries, manifests (OCI, Docker schema 2) with their
//! config and layer descriptors, and image configs. Shared by the registry and the
//! layout sources; digests of whole documents are computed here too.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::reference::check_digest;
use super::{Compression, ImageConfig, Layer, Platform, MAX_JSON};
use crate::error::{Error, Result};

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The `Accept` header of manifest requests.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Checks that `data` has digest `digest` (`what` names it in the error).
pub fn verify_digest(data: &[u8], digest: &str, what: &str) -> Result<()> {
    let got = sha256_digest(data);
    if got != digest {
        return Err(Error::corrupt(format!(
            "{what}: digest mismatch: expected {digest}, got {got}"
        )));
    }
    Ok(())
}

/// A content descriptor (`mediaType`, `digest`, `size`, platform, annotations).
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub platform: Option<DescPlatform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The platform of an index entry.
#[derive(Deserialize, Clone, Debug, Default)]
pub struct DescPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl DescPlatform {
    fn show(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// A parsed manifest or index.
pub enum Parsed {
    /// An index: its entries.
    Index(Vec<Descriptor>),
    /// A manifest: config and layers.
    Manifest {
        config: Descriptor,
        layers: Vec<Layer>,
    },
}

/// Parses a manifest or index document. `media_type` is what its source said (the
/// `Content-Type`, the descriptor's type), if anything; the document's own `mediaType`
/// wins, and without either the shape decides. A `Format` error for schema 1 or any
/// other media type, naming it and `what`.
pub fn parse(data: &[u8], media_type: Option<&str>, what: &str) -> Result<Parsed> {
    let doc: Doc = serde_json::from_slice(data)
        .map_err(|e| Error::format(format!("{what}: manifest is not valid JSON: {e}")))?;
    if doc.schema_version == Some(1) {
        return Err(Error::format(format!(
            "{what}: Docker schema 1 manifests are not supported (push the image again with a current tool)"
        )));
    }
    let source_type = media_type
        .map(|m| m.split(';').next().unwrap_or("").trim())
        .filter(|m| !m.is_empty() && *m != "application/json" && *m != "text/plain");
    let mt = doc
        .media_type
        .as_deref()
        .or(source_type)
        .map(str::to_string)
        .unwrap_or_else(|| {
            if doc.manifests.is_some() {
                OCI_INDEX.to_string()
            } else {
                OCI_MANIFEST.to_string()
            }
        });
    match mt.as_str() {
        OCI_INDEX | DOCKER_LIST => Ok(Parsed::Index(doc.manifests.unwrap_or_default())),
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = doc
                .config
                .ok_or_else(|| Error::format(format!("{what}: manifest has no config")))?;
            match config.media_type.as_str() {
                OCI_CONFIG | DOCKER_CONFIG => {}
                other => {
                    return Err(Error::format(format!(
                        "{what}: config media type {other:?} is not an image config"
                    )))
                }
            }
            check_digest(&config.digest)
                .map_err(|w| Error::format(format!("{what}: config: {w}")))?;
            let layers = doc
                .layers
                .unwrap_or_default()
                .into_iter()
                .map(|d| layer(d, what))
                .collect::<Result<Vec<_>>>()?;
            Ok(Parsed::Manifest { config, layers })
        }
        other => Err(Error::format(format!(
            "{what}: unsupported manifest media type {other}"
        ))),
    }
}

/// The compression a layer media type says; `None` (the outer option) when it is no
/// layer type.
pub fn layer_compression(mt: &str) -> Option<Compression> {
    match mt {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

fn layer(d: Descriptor, what: &str) -> Result<Layer> {
    let compression = layer_compression(&d.media_type).ok_or_else(|| {
        Error::format(format!(
            "unknown layer media type {} in {what} (layer {})",
            d.media_type, d.digest
        ))
    })?;
    check_digest(&d.digest).map_err(|w| Error::format(format!("{what}: layer: {w}")))?;
    Ok(Layer {
        digest: d.digest,
        media_type: d.media_type,
        compression,
        size: d.size,
        uncompressed_digest: false,
    })
}

/// The entry of `index` for `platform`; a `NotFound` error naming the image, the
/// platform asked for and the platforms the index has.
pub fn select<'a>(
    index: &'a [Descriptor],
    platform: &Platform,
    what: &str,
) -> Result<&'a Descriptor> {
    let found = index.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| platform.matches(&p.os, &p.architecture, p.variant.as_deref()))
            && matches!(
                d.media_type.as_str(),
                OCI_MANIFEST | DOCKER_MANIFEST | OCI_INDEX | DOCKER_LIST | ""
            )
    });
    found.ok_or_else(|| {
        let have: Vec<String> = index
            .iter()
            .filter_map(|d| d.platform.as_ref().map(DescPlatform::show))
            .collect();
        Error::not_found(format!(
            "{what}: no manifest for platform {platform} (the index has: {})",
            if have.is_empty() {
                "no platforms".to_string()
            } else {
                have.join(", ")
            }
        ))
    })
}

/// A fetched document and the media type its source gave, if any.
pub type Document = (Vec<u8>, Option<String>);

/// Resolves a manifest or index to a manifest: `first` is the document with the media
/// type its source gave and its digest when known (verified); an index's entry for
/// `platform` is fetched with `fetch(descriptor)` (returning the bytes and the media
/// type the source says) and verified against the entry's digest. Returns the chosen
/// manifest's digest, config descriptor and layers.
pub fn resolve(
    first: (Vec<u8>, Option<String>, Option<String>),
    platform: &Platform,
    what: &str,
    fetch: &mut dyn FnMut(&Descriptor) -> Result<Document>,
) -> Result<(String, Descriptor, Vec<Layer>)> {
    let (mut data, mut mt, mut digest) = first;
    // An index may point at an index (nested), but not forever.
    for _ in 0..4 {
        if data.len() > MAX_JSON {
            return Err(Error::format(format!(
                "{what}: manifest of {} bytes, more than the {MAX_JSON} allowed",
                data.len()
            )));
        }
        if let Some(d) = &digest {
            verify_digest(&data, d, &format!("{what}: manifest {d}"))?;
        }
        match parse(&data, mt.as_deref(), what)? {
            Parsed::Manifest { config, layers } => {
                return Ok((sha256_digest(&data), config, layers));
            }
            Parsed::Index(entries) => {
                let entry = select(&entries, platform, what)?;
                check_digest(&entry.digest)
                    .map_err(|w| Error::format(format!("{what}: index entry: {w}")))?;
                let (d, m) = fetch(entry)?;
                data = d;
                mt = m.or_else(|| (!entry.media_type.is_empty()).then(|| entry.media_type.clone()));
                digest = Some(entry.digest.clone());
            }
        }
    }
    Err(Error::format(format!("{what}: indexes nested too deep")))
}

#[derive(Deserialize, Default)]
struct ConfigDoc {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    config: Option<RunConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Parses an image config blob.
pub fn parse_config(data: &[u8], what: &str) -> Result<ImageConfig> {
    let doc: ConfigDoc = serde_json::from_slice(data)
        .map_err(|e| Error::format(format!("{what}: bad image config: {e}")))?;
    let rc = doc.config.unwrap_or_default();
    Ok(ImageConfig {
        entrypoint: rc.entrypoint.unwrap_or_default(),
        cmd: rc.cmd.unwrap_or_default(),
        env: rc.env.unwrap_or_default(),
        working_dir: rc.working_dir.unwrap_or_default(),
        user: rc.user.unwrap_or_default(),
        exposed_ports: rc.exposed_ports.unwrap_or_default().into_keys().collect(),
        labels: rc.labels.unwrap_or_default(),
        created: doc.created,
        os: doc.os,
        architecture: doc.architecture,
        diff_ids: doc.rootfs.unwrap_or_default().diff_ids,
    })
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::error::ErrorKind;

    fn d(n: char) -> String {
        format!("sha256:{}", n.to_string().repeat(64))
    }

    fn index() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"arm64"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"unknown","architecture":"unknown"}}}}
            ]}}"#,
            d('1'),
            d('2'),
            d('3'),
            d('4')
        )
    }

    fn pick(p: &str) -> Result<String> {
        let Parsed::Index(entries) = parse(index().as_bytes(), None, "img").unwrap() else {
            panic!("not an index")
        };
        select(&entries, &Platform::parse(p).unwrap(), "img").map(|e| e.digest.clone())
    }

    #[test]
    fn platform_selection() {
        assert_eq!(pick("linux/amd64").unwrap(), d('1'));
        assert_eq!(pick("linux/x86_64").unwrap(), d('1'));
        assert_eq!(pick("linux/arm/v7").unwrap(), d('2'));
        assert_eq!(pick("linux/arm").unwrap(), d('2'));
        assert_eq!(pick("linux/arm64").unwrap(), d('3'));
        // arm64's missing variant is v8.
        assert_eq!(pick("linux/arm64/v8").unwrap(), d('3'));
        let e = pick("linux/arm/v6").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(
            e.msg.contains("img") && e.msg.contains("linux/arm/v6"),
            "{}",
            e.msg
        );
        assert!(
            e.msg.contains("linux/amd64, linux/arm/v7, linux/arm64"),
            "{}",
            e.msg
        );
        assert!(pick("windows/amd64").is_err());
    }

    #[test]
    fn resolve_index_fetches_and_verifies() {
        let cfg = d('c');
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{cfg}","size":3}},
               "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{}","size":9}}]}}"#,
            d('a')
        );
        let md = sha256_digest(manifest.as_bytes());
        let idx = format!(
            r#"{{"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{md}","platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let m2 = manifest.clone();
        let (digest, config, layers) = resolve(
            (idx.clone().into_bytes(), None, None),
            &Platform::parse("linux/amd64").unwrap(),
            "img",
            &mut |e| {
                assert_eq!(e.digest, md);
                Ok((m2.clone().into_bytes(), None))
            },
        )
        .unwrap();
        assert_eq!(digest, md);
        assert_eq!(config.digest, cfg);
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].compression, Compression::Zstd);
        assert_eq!(layers[0].size, Some(9));
        // The fetched manifest does not match the entry's digest.
        let e = resolve(
            (idx.into_bytes(), None, None),
            &Platform::parse("linux/amd64").unwrap(),
            "img",
            &mut |_| Ok((b"{}".to_vec(), None)),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
        assert!(e.msg.contains(&md), "{}", e.msg);
    }

    #[test]
    fn bad_documents() {
        let e = parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None, "img")
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::Format);
        assert!(e.msg.contains("schema 1"));
        let e = parse(br#"{"mediaType":"application/x-foo"}"#, None, "img")
            .err()
            .unwrap();
        assert!(e.msg.contains("application/x-foo"), "{}", e.msg);
        let m = format!(
            r#"{{"config":{{"mediaType":"{OCI_CONFIG}","digest":"{}"}},"layers":[{{"mediaType":"application/x-tar","digest":"{}"}}]}}"#,
            d('1'),
            d('2')
        );
        let e = parse(m.as_bytes(), Some(OCI_MANIFEST), "img")
            .err()
            .unwrap();
        assert_eq!(
            e.msg,
            format!(
                "unknown layer media type application/x-tar in img (layer {})",
                d('2')
            )
        );
        let m = format!(
            r#"{{"config":{{"mediaType":"application/x-helm","digest":"{}"}},"layers":[]}}"#,
            d('1')
        );
        assert!(parse(m.as_bytes(), None, "img").is_err());
    }

    #[test]
    fn config_fields() {
        let c = parse_config(
            br#"{"created":"2024-01-01T00:00:00Z","os":"linux","architecture":"amd64",
                "config":{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"Env":["A=1"],
                "WorkingDir":"/w","User":"1000","ExposedPorts":{"80/tcp":{},"53/udp":{}},
                "Labels":{"k":"v"}},"rootfs":{"type":"layers","diff_ids":["sha256:00"]}}"#,
            "img",
        )
        .unwrap();
        assert_eq!(c.entrypoint, ["/bin/sh", "-c"]);
        assert_eq!(c.cmd, ["echo hi"]);
        assert_eq!(c.exposed_ports, ["53/udp", "80/tcp"]);
        assert_eq!(c.labels.get("k").map(String::as_str), Some("v"));
        assert_eq!(c.diff_ids, ["sha256:00"]);
        assert_eq!(c.working_dir, "/w");
        // Null fields (as Docker writes them) are empty.
        let c = parse_config(br#"{"config":{"Entrypoint":null,"Cmd":null}}"#, "img").unwrap();
        assert!(c.entrypoint.is_empty() && c.cmd.is_empty());
    }
}
