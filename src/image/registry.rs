//! The registry client (OCI distribution API, ureq 2, blocking): manifests by tag or
//! digest with the four manifest media types accepted, blobs by digest (redirects
//! followed; the registry's `Authorization` is never sent to another host), and the
//! authentication dance: on 401 the `WWW-Authenticate` challenge is answered with a
//! bearer token from its realm (asked with basic credentials when known) or with basic
//! credentials, and the result is reused for every later request of the image.
//! Credentials come from the options or from the Docker auth file. HTTPS unless the
//! host is loopback or the options say `insecure`. No password or token is ever put in
//! a message or a log line.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;

use super::layout::read_small;
use super::manifest::{self, verify_digest, ACCEPT};
use super::reference::DockerRef;
use super::{Credentials, FetchOptions, Image, Source};
use crate::error::{no_panic, Error, ErrorKind, Result};

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm=..,service=..,scope=..`.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter, if given.
        service: Option<String>,
        /// `scope` parameter, if given.
        scope: Option<String>,
    },
    /// `Basic realm=..`.
    Basic,
}

/// Parses a `WWW-Authenticate` header value (one challenge; parameters quoted or not).
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    } else if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else {
        None
    }
}

/// `k=v, k="v, with comma", ...`.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = s[ks..i].trim().to_string();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                // Byte-wise copy of a UTF-8 string: push whole chars.
                let ch_len = utf8_len(b[i]);
                val.push_str(&s[i..(i + ch_len).min(b.len())]);
                i += ch_len;
            }
            i += 1;
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = s[vs..i].trim().to_string();
        }
        if !key.is_empty() {
            out.push((key, val));
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

/// The auth file to read: the given one, else `$HOME/.docker/config.json` if it exists.
fn auth_file(opts: &FetchOptions) -> Option<PathBuf> {
    if let Some(p) = &opts.authfile {
        return Some(p.clone());
    }
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".docker/config.json");
    p.is_file().then_some(p)
}

/// The keys an auth file may file `host` under.
fn auth_keys(host: &str) -> Vec<String> {
    if host == super::reference::DOCKER_HUB {
        return [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
            "https://registry-1.docker.io",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
    }
    vec![host.to_string()]
}

/// The key of an auth file entry as a bare `HOST[:PORT]` (scheme and path dropped).
fn bare_key(k: &str) -> &str {
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    k.split('/').next().unwrap_or(k)
}

/// The credentials `path` holds for `host`: `auths.<key>.auth`, base64 `user:password`.
/// `Ok(None)` when it has none; an `Invalid` error naming the file when it is malformed.
pub fn lookup_auth_file(path: &Path, host: &str) -> Result<Option<Credentials>> {
    let shown = path.display();
    let f = std::fs::File::open(path).map_err(|e| {
        Error::with_source(ErrorKind::Invalid, format!("auth file {shown}: {e}"), e)
    })?;
    let data = read_small(f, &format!("auth file {shown}"))?;
    let v: serde_json::Value = serde_json::from_slice(&data)
        .map_err(|e| Error::invalid(format!("auth file {shown}: not valid JSON: {e}")))?;
    let Some(auths) = v.get("auths") else {
        return Ok(None);
    };
    let auths = auths
        .as_object()
        .ok_or_else(|| Error::invalid(format!("auth file {shown}: \"auths\" is not an object")))?;
    let keys = auth_keys(host);
    let entry = keys.iter().find_map(|k| auths.get(k)).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| keys.iter().any(|want| bare_key(k) == bare_key(want)))
            .map(|(_, v)| v)
    });
    let Some(entry) = entry else {
        return Ok(None);
    };
    let Some(auth) = entry.get("auth") else {
        return Ok(None);
    };
    let bad = |why: &str| Error::invalid(format!("auth file {shown}: entry for {host}: {why}"));
    let auth = auth
        .as_str()
        .ok_or_else(|| bad("\"auth\" is not a string"))?;
    if auth.is_empty() {
        return Ok(None);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| bad("\"auth\" is not base64"))?;
    let text = String::from_utf8(raw).map_err(|_| bad("\"auth\" is not UTF-8"))?;
    Credentials::parse(&text)
        .map(Some)
        .map_err(|_| bad("\"auth\" is not base64 of USER:PASSWORD"))
}

fn is_loopback(host: &str) -> bool {
    let h = if let Some(r) = host.strip_prefix('[') {
        r.split(']').next().unwrap_or(r)
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A registry client for one repository.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    host: String,
    name: String,
    image: String,
    creds: Option<Credentials>,
    /// Plain HTTP allowed to any host (`--insecure`).
    insecure: bool,
    /// The `Authorization` value that worked (a bearer token or basic credentials).
    auth: Mutex<Option<String>>,
}

enum What<'a> {
    Manifest,
    Blob(&'a str),
}

impl Client {
    fn new(image: &str, r: &DockerRef, opts: &FetchOptions) -> Result<Client> {
        let creds = match &opts.creds {
            Some(c) => Some(c.clone()),
            None => match auth_file(opts) {
                Some(p) => lookup_auth_file(&p, &r.host)?,
                None => None,
            },
        };
        let scheme = if opts.insecure || is_loopback(&r.host) {
            "http"
        } else {
            "https"
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(opts.timeout)
            .timeout_read(opts.timeout)
            .timeout_write(opts.timeout)
            .redirects(5)
            .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
            .build();
        Ok(Client {
            agent,
            base: format!("{scheme}://{}/v2/{}", r.host, r.name),
            host: r.host.clone(),
            name: r.name.clone(),
            image: image.to_string(),
            creds,
            insecure: opts.insecure,
            auth: Mutex::new(None),
        })
    }

    fn cached_auth(&self) -> Option<String> {
        self.auth.lock().map(|g| g.clone()).unwrap_or(None)
    }

    fn set_auth(&self, v: String) {
        if let Ok(mut g) = self.auth.lock() {
            *g = Some(v);
        }
    }

    fn basic(&self) -> Option<String> {
        self.creds.as_ref().map(|c| {
            let raw = format!("{}:{}", c.user, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        })
    }

    fn refused(&self, code: u16) -> Error {
        Error::new(
            ErrorKind::Credentials,
            format!(
                "{}: authentication refused by {} ({code}){}",
                self.image,
                self.host,
                if self.creds.is_none() {
                    "; no credentials given (--creds USER:PASS or --authfile FILE)"
                } else {
                    ""
                }
            ),
        )
    }

    fn transport(&self, url_path: &str, t: &ureq::Transport) -> Error {
        let (kind, detail) = crate::store::http::describe_transport(t);
        let kind = if kind == ErrorKind::Timeout {
            ErrorKind::Timeout
        } else {
            ErrorKind::Store
        };
        Error::new(
            kind,
            format!(
                "{}: registry {}: GET {url_path}: {detail}",
                self.image, self.host
            ),
        )
    }

    /// GET `path` (below `/v2/NAME/`), authenticating on a 401 once.
    fn get(&self, path: &str, accept: Option<&str>, what: What<'_>) -> Result<ureq::Response> {
        let url = format!("{}/{path}", self.base);
        let mut tried_auth = false;
        loop {
            let mut req = self.agent.get(&url);
            if let Some(a) = accept {
                req = req.set("Accept", a);
            }
            let auth = self.cached_auth();
            if let Some(a) = &auth {
                req = req.set("Authorization", a);
            }
            match req.call() {
                Ok(r) => return Ok(r),
                Err(ureq::Error::Status(401, r)) if !tried_auth => {
                    tried_auth = true;
                    let challenge = r.header("www-authenticate").and_then(parse_challenge);
                    let value = match challenge {
                        Some(Challenge::Bearer {
                            realm,
                            service,
                            scope,
                        }) => self.token(&realm, service.as_deref(), scope.as_deref())?,
                        Some(Challenge::Basic) | None => {
                            self.basic().ok_or_else(|| self.refused(401))?
                        }
                    };
                    self.set_auth(value);
                }
                Err(ureq::Error::Status(code @ (401 | 403), _)) => return Err(self.refused(code)),
                Err(ureq::Error::Status(404, _)) => {
                    return Err(Error::not_found(match what {
                        What::Manifest => {
                            format!("{}: no such image or tag at {}", self.image, self.host)
                        }
                        What::Blob(d) => {
                            format!("{}: blob {d} not found at {}", self.image, self.host)
                        }
                    }))
                }
                Err(ureq::Error::Status(code, r)) => {
                    return Err(Error::store(format!(
                        "{}: registry {}: GET /v2/{}/{path}: HTTP {code} {}",
                        self.image,
                        self.host,
                        self.name,
                        r.status_text()
                    )))
                }
                Err(ureq::Error::Transport(t)) => {
                    return Err(self.transport(&format!("/v2/{}/{path}", self.name), &t))
                }
            }
        }
    }

    /// A bearer token from `realm` for pulling this repository.
    fn token(&self, realm: &str, service: Option<&str>, scope: Option<&str>) -> Result<String> {
        let mut req = self.agent.get(realm);
        if let Some(s) = service {
            req = req.query("service", s);
        }
        let own_scope = format!("repository:{}:pull", self.name);
        req = req.query(
            "scope",
            scope
                .filter(|s| s.contains(&self.name))
                .unwrap_or(&own_scope),
        );
        let realm_url = url::Url::parse(realm).map_err(|e| {
            Error::store(format!(
                "{}: registry {} names a bad token realm {realm:?}: {e}",
                self.image, self.host
            ))
        })?;
        let realm_host = match (realm_url.host_str(), realm_url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => self.host.clone(),
        };
        if let Some(b) = self.basic() {
            // Credentials go over plain HTTP only where the registry itself is reached so.
            if realm_url.scheme() != "https" && !self.insecure && !is_loopback(&realm_host) {
                return Err(Error::new(
                    ErrorKind::Credentials,
                    format!(
                        "{}: refusing to send credentials to the plain-HTTP token realm {realm_host} (--insecure allows it)",
                        self.image
                    ),
                ));
            }
            req = req.set("Authorization", &b);
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code @ (401 | 403), _)) => {
                return Err(Error::new(
                    ErrorKind::Credentials,
                    format!(
                        "{}: authentication refused by {realm_host} ({code})",
                        self.image
                    ),
                ))
            }
            Err(ureq::Error::Status(code, r)) => {
                return Err(Error::store(format!(
                    "{}: token service {realm_host}: HTTP {code} {}",
                    self.image,
                    r.status_text()
                )))
            }
            Err(ureq::Error::Transport(t)) => {
                let (kind, detail) = crate::store::http::describe_transport(&t);
                return Err(Error::new(
                    kind,
                    format!("{}: token service {realm_host}: {detail}", self.image),
                ));
            }
        };
        let body = read_small(
            resp.into_reader(),
            &format!("{}: token from {realm_host}", self.image),
        )?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            Error::store(format!(
                "{}: token service {realm_host}: bad JSON: {e}",
                self.image
            ))
        })?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::store(format!(
                    "{}: token service {realm_host} gave no token",
                    self.image
                ))
            })?;
        Ok(format!("Bearer {token}"))
    }

    fn read_body(&self, resp: ureq::Response, what: &str) -> Result<Vec<u8>> {
        if let Some(len) = resp
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            if len > super::MAX_JSON as u64 {
                return Err(Error::format(format!(
                    "{what}: {len} bytes, more than the {} allowed for a manifest or config",
                    super::MAX_JSON
                )));
            }
        }
        let mut data = Vec::new();
        resp.into_reader()
            .take(super::MAX_JSON as u64 + 1)
            .read_to_end(&mut data)
            .map_err(|e| {
                let kind = crate::store::http::io_kind(&e);
                Error::new(kind, format!("{what}: reading from {}: {e}", self.host))
            })?;
        if data.len() > super::MAX_JSON {
            return Err(Error::format(format!(
                "{what}: more than the {} bytes allowed for a manifest or config",
                super::MAX_JSON
            )));
        }
        Ok(data)
    }

    /// The manifest `reference` (tag or digest) and the media type the registry says.
    fn manifest(&self, reference: &str) -> Result<manifest::Document> {
        // The registry's replies go through ureq, which can panic on a malformed header.
        no_panic(
            || {
                format!(
                    "{}: registry {}: manifest {reference}",
                    self.image, self.host
                )
            },
            || {
                let resp = self.get(
                    &format!("manifests/{reference}"),
                    Some(ACCEPT),
                    What::Manifest,
                )?;
                let mt = resp.header("content-type").map(str::to_string);
                let data =
                    self.read_body(resp, &format!("{}: manifest {reference}", self.image))?;
                Ok((data, mt))
            },
        )
    }

    /// The blob `digest` as a stream (verified by the caller).
    pub fn blob(&self, digest: &str) -> Result<Box<dyn Read + Send + 'static>> {
        no_panic(
            || format!("{}: registry {}: blob {digest}", self.image, self.host),
            || {
                let resp = self.get(&format!("blobs/{digest}"), None, What::Blob(digest))?;
                Ok(Box::new(resp.into_reader()) as Box<dyn Read + Send + 'static>)
            },
        )
    }

    fn small_blob(&self, digest: &str) -> Result<Vec<u8>> {
        no_panic(
            || format!("{}: registry {}: blob {digest}", self.image, self.host),
            || {
                let resp = self.get(&format!("blobs/{digest}"), None, What::Blob(digest))?;
                let what = format!("{}: blob {digest}", self.image);
                let data = self.read_body(resp, &what)?;
                verify_digest(&data, digest, &what)?;
                Ok(data)
            },
        )
    }
}

/// Opens a registry image.
pub fn open(shown: &str, r: &DockerRef, opts: &FetchOptions) -> Result<Image> {
    let client = Client::new(shown, r, opts)?;
    let (data, mt) = client.manifest(&r.reference)?;
    let known = r.by_digest.then(|| r.reference.clone());
    let (manifest_digest, config, layers) =
        manifest::resolve((data, mt, known), &opts.platform, shown, &mut |d| {
            client.manifest(&d.digest)
        })?;
    let config_bytes = client.small_blob(&config.digest)?;
    let cfg = manifest::parse_config(&config_bytes, shown)?;
    Ok(Image {
        reference: shown.to_string(),
        manifest_digest,
        config_digest: config.digest,
        config: cfg,
        layers,
        source: Source::Registry(client),
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            })
        );
        // Unquoted values, spaces after commas, a quoted comma, any case.
        assert_eq!(
            parse_challenge(r#"bearer realm=https://r/t, scope="repository:a:pull,push""#),
            Some(Challenge::Bearer {
                realm: "https://r/t".into(),
                service: None,
                scope: Some("repository:a:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="r""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn auth_file_lookup() {
        let d = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let p = write(
            d.path(),
            "a.json",
            &format!(
                r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}},
                   "https://ghcr.io/v2/":{{"auth":"{}"}}}}}}"#,
                b64("u:p:q"),
                b64("hub:pw"),
                b64("gh:tok")
            ),
        );
        let c = lookup_auth_file(&p, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("u", "p:q"));
        let c = lookup_auth_file(&p, super::super::reference::DOCKER_HUB)
            .unwrap()
            .unwrap();
        assert_eq!(c.user, "hub");
        assert_eq!(lookup_auth_file(&p, "ghcr.io").unwrap().unwrap().user, "gh");
        assert!(lookup_auth_file(&p, "127.0.0.1:5001").unwrap().is_none());
        // docker.io as the key.
        let p2 = write(
            d.path(),
            "b.json",
            &format!(r#"{{"auths":{{"docker.io":{{"auth":"{}"}}}}}}"#, b64("h:p")),
        );
        assert_eq!(
            lookup_auth_file(&p2, "registry-1.docker.io")
                .unwrap()
                .unwrap()
                .user,
            "h"
        );
        // Malformed files name themselves and never print the auth value.
        for (i, text) in [
            "not json".to_string(),
            r#"{"auths":[]}"#.to_string(),
            r#"{"auths":{"h":{"auth":"%%%"}}}"#.to_string(),
            format!(r#"{{"auths":{{"h":{{"auth":"{}"}}}}}}"#, b64("nocolon")),
        ]
        .iter()
        .enumerate()
        {
            let p = write(d.path(), &format!("bad{i}.json"), text);
            let e = lookup_auth_file(&p, "h").unwrap_err();
            assert_eq!(e.kind, ErrorKind::Invalid, "{text}");
            assert!(e.msg.contains(&p.display().to_string()), "{}", e.msg);
            assert!(!e.msg.contains("nocolon"), "{}", e.msg);
        }
    }

    #[test]
    fn no_credentials_to_a_plain_http_realm() {
        let r = DockerRef {
            host: "registry.example".into(),
            name: "a/b".into(),
            reference: "t".into(),
            by_digest: false,
        };
        let opts = FetchOptions {
            creds: Some(Credentials::parse("u:secret").unwrap()),
            ..FetchOptions::default()
        };
        let c = Client::new("img", &r, &opts).unwrap();
        // Refused before any connection is made.
        let e = c
            .token("http://auth.example/token", None, None)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Credentials);
        assert!(
            e.msg.contains("plain-HTTP token realm auth.example"),
            "{}",
            e.msg
        );
        assert!(!e.msg.contains("secret"));
        assert!(c.base.starts_with("https://registry.example/v2/a/b"));
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1:5000", "registry-1.docker.io"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn credentials_debug_hides_password() {
        let c = Credentials::parse("user:s3cret:x").unwrap();
        assert_eq!(c.password, "s3cret:x");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(Credentials::parse("nocolon").is_err());
        assert!(Credentials::parse(":pw").is_err());
    }
}
