//! Image references in the transport syntax skopeo uses: `docker://HOST[:PORT]/NAME[:TAG|@DIGEST]`
//! or a bare Docker reference (Docker Hub normalisation: `registry-1.docker.io`,
//! `library/` before one-word names, tag `latest`), `oci:DIR[:TAG]` and
//! `docker-archive:FILE[:NAME:TAG]`. Parsing only: nothing is opened here.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The registry host Docker Hub's images are served from.
pub const DOCKER_HUB: &str = "registry-1.docker.io";

/// What a reference names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// An image in a registry.
    Docker(DockerRef),
    /// An OCI image layout directory, with the tag (`org.opencontainers.image.ref.name`).
    Oci {
        /// The layout directory.
        dir: PathBuf,
        /// The tag, if given.
        tag: Option<String>,
    },
    /// A `docker save` archive, with the `NAME:TAG` of one of its images.
    Archive {
        /// The tar file.
        file: PathBuf,
        /// `NAME:TAG` among the archive's `RepoTags`, if given.
        name: Option<String>,
    },
}

/// A registry image: host, repository, and a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerRef {
    /// `HOST[:PORT]` as written (Docker Hub: `registry-1.docker.io`).
    pub host: String,
    /// Repository name (`library/alpine`).
    pub name: String,
    /// Tag, or digest (`sha256:...`) when `by_digest`.
    pub reference: String,
    /// `reference` is a digest.
    pub by_digest: bool,
}

impl DockerRef {
    /// Whether this is Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.host == DOCKER_HUB
    }
}

const FORMS: &str = "expected docker://HOST[:PORT]/NAME[:TAG|@sha256:HEX] (or a bare \
    NAME[:TAG|@DIGEST] on Docker Hub), oci:DIR[:TAG] or docker-archive:FILE[:NAME:TAG]";

/// Transports skopeo knows that zvfs does not read.
const OTHER_TRANSPORTS: &[&str] = &[
    "dir:",
    "oci-archive:",
    "containers-storage:",
    "docker-daemon:",
    "ostree:",
    "sif:",
    "tarball:",
];

impl Reference {
    /// Parses a reference; an `Invalid` error naming it and listing the forms accepted.
    pub fn parse(s: &str) -> Result<Reference> {
        let shown = crate::flist::redact(s);
        let bad =
            |why: &str| Error::invalid(format!("bad image reference {shown:?}: {why}; {FORMS}"));
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = split_last_colon(rest);
            if dir.is_empty() {
                return Err(bad("no directory"));
            }
            if let Some(t) = tag {
                check_tag(t).map_err(|w| bad(&w))?;
            }
            return Ok(Reference::Oci {
                dir: PathBuf::from(dir),
                tag: tag.map(str::to_string),
            });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            // FILE[:NAME:TAG]: NAME may hold a port (host:5000/n:t), so the file ends at
            // the first ':' whose rest parses as NAME:TAG.
            let mut file = rest;
            let mut name = None;
            for (i, _) in rest.match_indices(':') {
                let candidate = &rest[i + 1..];
                if candidate.contains(':') && parse_docker(candidate).is_ok() {
                    file = &rest[..i];
                    name = Some(candidate.to_string());
                    break;
                }
            }
            if file.is_empty() {
                return Err(bad("no file"));
            }
            return Ok(Reference::Archive {
                file: PathBuf::from(file),
                name,
            });
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            return parse_docker(rest)
                .map(Reference::Docker)
                .map_err(|w| bad(&w));
        }
        if s.contains("://") || OTHER_TRANSPORTS.iter().any(|t| s.starts_with(t)) {
            return Err(bad("unsupported transport"));
        }
        parse_docker(s).map(Reference::Docker).map_err(|w| bad(&w))
    }
}

/// `DIR[:TAG]`: split at the last `:` when what follows has no `/`.
fn split_last_colon(s: &str) -> (&str, Option<&str>) {
    match s.rfind(':') {
        Some(i) if !s[i + 1..].contains('/') => (&s[..i], Some(&s[i + 1..])),
        _ => (s, None),
    }
}

fn check_tag(t: &str) -> std::result::Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("bad tag {t:?}"))
    }
}

/// Checks `sha256:<64 lowercase hex>`.
pub fn check_digest(d: &str) -> std::result::Result<(), String> {
    match d.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(())
        }
        Some(("sha256", _)) => Err(format!(
            "bad digest {d:?}: expected sha256:<64 lowercase hex>"
        )),
        Some((alg, _)) => Err(format!(
            "unsupported digest algorithm {alg:?} in {d:?} (only sha256)"
        )),
        None => Err(format!("bad digest {d:?}")),
    }
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
            && c.as_bytes()[0].is_ascii_alphanumeric()
            && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
    };
    if name.len() > 255 || !name.split('/').all(component_ok) {
        return Err(format!(
            "bad repository name {name:?} (lowercase letters, digits, '.', '_', '-' and '/')"
        ));
    }
    Ok(())
}

/// `HOST[:PORT]`: a DNS name or IPv4 address, or `[IPv6]`, and a numeric port.
fn check_host(host: &str) -> std::result::Result<(), String> {
    let bad = || Err(format!("bad registry host {host:?}"));
    let (name, port) = if let Some(r) = host.strip_prefix('[') {
        let Some((ip, rest)) = r.split_once(']') else {
            return bad();
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return bad();
        }
        match rest {
            "" => ("x", None),
            r => match r.strip_prefix(':') {
                Some(p) => ("x", Some(p)),
                None => return bad(),
            },
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    let name_ok = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    if name_ok && port_ok {
        Ok(())
    } else {
        bad()
    }
}

/// `[HOST[:PORT]/]NAME[:TAG][@DIGEST]` with Docker Hub normalisation.
fn parse_docker(s: &str) -> std::result::Result<DockerRef, String> {
    if s.is_empty() {
        return Err("empty reference".into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => {
            check_digest(d)?;
            (r, Some(d))
        }
        None => (s, None),
    };
    let (path, tag) = split_last_colon(rest);
    if let Some(t) = tag {
        check_tag(t)?;
    }
    let (host, name) = match path.split_once('/') {
        Some((first, more))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), more.to_string())
        }
        _ => (DOCKER_HUB.to_string(), path.to_string()),
    };
    check_host(&host)?;
    let host = match host.as_str() {
        "docker.io" | "index.docker.io" => DOCKER_HUB.to_string(),
        _ => host,
    };
    let name = match host.as_str() {
        DOCKER_HUB if !name.contains('/') => format!("library/{name}"),
        _ => name,
    };
    check_name(&name)?;
    let (reference, by_digest) = match (digest, tag) {
        (Some(d), _) => (d.to_string(), true),
        (None, Some(t)) => (t.to_string(), false),
        (None, None) => ("latest".to_string(), false),
    };
    Ok(DockerRef {
        host,
        name,
        reference,
        by_digest,
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    fn docker(s: &str) -> DockerRef {
        match Reference::parse(s).unwrap() {
            Reference::Docker(d) => d,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn docker_hub_normalisation() {
        let d = docker("alpine");
        assert_eq!(
            (
                d.host.as_str(),
                d.name.as_str(),
                d.reference.as_str(),
                d.by_digest
            ),
            (DOCKER_HUB, "library/alpine", "latest", false)
        );
        let d = docker("docker://alpine:3.20");
        assert_eq!(
            (d.name.as_str(), d.reference.as_str()),
            ("library/alpine", "3.20")
        );
        let d = docker("user/app:v1");
        assert_eq!((d.host.as_str(), d.name.as_str()), (DOCKER_HUB, "user/app"));
        let d = docker("docker.io/library/busybox");
        assert_eq!(
            (d.host.as_str(), d.name.as_str()),
            (DOCKER_HUB, "library/busybox")
        );
        let d = docker("docker.io/busybox");
        assert_eq!(d.name, "library/busybox");
    }

    #[test]
    fn hosts_ports_digests() {
        let d = docker("docker://127.0.0.1:5000/n:t");
        assert_eq!(
            (d.host.as_str(), d.name.as_str(), d.reference.as_str()),
            ("127.0.0.1:5000", "n", "t")
        );
        let d = docker("localhost/a/b");
        assert_eq!(
            (d.host.as_str(), d.name.as_str(), d.reference.as_str()),
            ("localhost", "a/b", "latest")
        );
        let d = docker("localhost:5000/a");
        assert_eq!((d.host.as_str(), d.name.as_str()), ("localhost:5000", "a"));
        let hex = "a".repeat(64);
        let d = docker(&format!("ghcr.io/o/r:tag@sha256:{hex}"));
        assert_eq!(d.host, "ghcr.io");
        assert!(d.by_digest);
        assert_eq!(d.reference, format!("sha256:{hex}"));
        // A one-word name on another host gets no library/ prefix.
        assert_eq!(docker("quay.io/x").name, "x");
        let d = docker("[::1]:5000/x");
        assert_eq!((d.host.as_str(), d.name.as_str()), ("[::1]:5000", "x"));
    }

    #[test]
    fn layouts_and_archives() {
        assert_eq!(
            Reference::parse("oci:/tmp/d:t").unwrap(),
            Reference::Oci {
                dir: "/tmp/d".into(),
                tag: Some("t".into())
            }
        );
        assert_eq!(
            Reference::parse("oci:/tmp/d").unwrap(),
            Reference::Oci {
                dir: "/tmp/d".into(),
                tag: None
            }
        );
        // What follows the last ':' holds a '/': part of the directory.
        assert_eq!(
            Reference::parse("oci:/tmp/a:b/c").unwrap(),
            Reference::Oci {
                dir: "/tmp/a:b/c".into(),
                tag: None
            }
        );
        assert_eq!(
            Reference::parse("docker-archive:/x/f.tar:n:t").unwrap(),
            Reference::Archive {
                file: "/x/f.tar".into(),
                name: Some("n:t".into())
            }
        );
        assert_eq!(
            Reference::parse("docker-archive:f.tar").unwrap(),
            Reference::Archive {
                file: "f.tar".into(),
                name: None
            }
        );
        assert_eq!(
            Reference::parse("docker-archive:/f.tar:localhost:5000/a/b:v2").unwrap(),
            Reference::Archive {
                file: "/f.tar".into(),
                name: Some("localhost:5000/a/b:v2".into())
            }
        );
    }

    #[test]
    fn bad_references() {
        for s in [
            "",
            "Alpine",
            "alpine:",
            "alpine:bad/tag",
            "alpine@sha256:abc",
            "alpine@md5:0123",
            "dir:/tmp/x",
            "oci-archive:/tmp/x.tar",
            "http://host/x",
            "docker://",
            "oci:",
            "oci:/d:b@d",
            "docker-archive:",
            "docker://host.io/a//b",
            "host:port/x",
            "-bad.io/x",
            "[::1/x",
        ] {
            let e = Reference::parse(s).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::Invalid, "{s}");
            assert!(e.msg.contains("docker-archive:FILE"), "{s}: {}", e.msg);
        }
        // A password never appears in the message.
        let e = Reference::parse("http://u:secret@h/x").unwrap_err();
        assert!(!e.msg.contains("secret"), "{}", e.msg);
    }

    #[test]
    fn digest_check() {
        assert!(check_digest(&format!("sha256:{}", "0".repeat(64))).is_ok());
        assert!(check_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(check_digest("sha256:../../etc").is_err());
        assert!(check_digest(&format!("sha512:{}", "0".repeat(128))).is_err());
    }
}
