//! Real-tool tests of the image sources: `umoci` builds an OCI layout, `skopeo` copies it
//! into a `docker-archive:` file, a zstd layout and a real `docker-registry` on 127.0.0.1
//! (anonymous, htpasswd basic auth, and token auth with a small token issuer whose JWTs
//! `openssl` signs and the registry verifies); each image is opened with [`Image::open`]
//! and every layer read to EOF and parsed as a tar. The tools come from scripts/test.sh's
//! `need` lines; a missing tool fails the test.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::error::ErrorKind;

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed (scripts/test.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A layout `DIR` with image `t` of two layers: `/f` ("x"), then `/g` and a 300 KB `/big`.
fn make_layout(root: &Path) -> PathBuf {
    let d = root.join("layout");
    let b = root.join("bundle");
    let ds = d.to_str().unwrap();
    let bs = b.to_str().unwrap();
    let img = format!("{ds}:t");
    run("umoci", &["init", "--layout", ds]);
    run("umoci", &["new", "--image", &img]);
    run("umoci", &["unpack", "--rootless", "--image", &img, bs]);
    std::fs::write(b.join("rootfs/f"), "x\n").unwrap();
    run("umoci", &["repack", "--image", &img, bs]);
    std::fs::remove_dir_all(&b).unwrap();
    run("umoci", &["unpack", "--rootless", "--image", &img, bs]);
    std::fs::write(b.join("rootfs/g"), "y\n").unwrap();
    std::fs::write(b.join("rootfs/big"), vec![5u8; 300_000]).unwrap();
    run("umoci", &["repack", "--image", &img, bs]);
    run(
        "umoci",
        &[
            "config",
            "--image",
            &img,
            "--config.entrypoint",
            "/bin/true",
            "--config.env",
            "A=1",
        ],
    );
    d
}

/// Every layer's tar member names, each layer read to EOF.
fn layer_names(img: &Image) -> Vec<Vec<String>> {
    (0..img.layers.len())
        .map(|i| {
            let r = img.layer_reader(i).unwrap();
            let mut ar = tar::Archive::new(r);
            let mut names = Vec::new();
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                names.push(
                    e.path()
                        .unwrap()
                        .to_string_lossy()
                        .trim_start_matches("./")
                        .to_string(),
                );
                std::io::copy(&mut e, &mut std::io::sink()).unwrap();
            }
            // The rest (end blocks), to EOF: this is where the digest is checked.
            let mut rest = ar.into_inner();
            std::io::copy(&mut rest, &mut std::io::sink()).unwrap();
            names
        })
        .collect()
}

fn check_two_layers(img: &Image) {
    assert_eq!(img.layers.len(), 2, "{img:?}");
    let names = layer_names(img);
    assert!(names[0].iter().any(|n| n == "f"), "{names:?}");
    assert!(names[1].iter().any(|n| n == "g"), "{names:?}");
    assert!(names[1].iter().any(|n| n == "big"), "{names:?}");
    assert_eq!(img.config.entrypoint, ["/bin/true"]);
    assert!(
        img.config.env.iter().any(|e| e == "A=1"),
        "{:?}",
        img.config.env
    );
    assert_eq!(img.config.diff_ids.len(), 2);
    assert!(img.config_digest.starts_with("sha256:"));
    assert!(img.manifest_digest.starts_with("sha256:"));
}

fn opts() -> FetchOptions {
    FetchOptions {
        timeout: Duration::from_secs(10),
        ..FetchOptions::default()
    }
}

#[test]
fn oci_layout_gzip_and_zstd() {
    let t = tempfile::tempdir().unwrap();
    let d = make_layout(t.path());
    let img = Image::open(&format!("oci:{}:t", d.display()), &opts()).unwrap();
    assert!(img
        .layers
        .iter()
        .all(|l| l.compression == Compression::Gzip));
    check_two_layers(&img);
    // One image: no tag needed.
    let img = Image::open(&format!("oci:{}", d.display()), &opts()).unwrap();
    check_two_layers(&img);
    let e = Image::open(&format!("oci:{}:nope", d.display()), &opts()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(
        e.msg.contains("nope") && e.msg.contains("tags: t"),
        "{}",
        e.msg
    );

    // zstd layers, as skopeo writes them.
    let z = t.path().join("zstd");
    run(
        "skopeo",
        &[
            "copy",
            "--dest-compress-format",
            "zstd",
            &format!("oci:{}:t", d.display()),
            &format!("oci:{}:t", z.display()),
        ],
    );
    let img = Image::open(&format!("oci:{}:t", z.display()), &opts()).unwrap();
    assert!(
        img.layers
            .iter()
            .all(|l| l.compression == Compression::Zstd),
        "{:?}",
        img.layers
    );
    check_two_layers(&img);

    // Two tags: the tag must be given.
    run(
        "umoci",
        &["tag", "--image", &format!("{}:t", d.display()), "t2"],
    );
    let e = Image::open(&format!("oci:{}", d.display()), &opts()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(
        e.msg.contains("t, t2") || e.msg.contains("t2, t"),
        "{}",
        e.msg
    );
}

#[test]
fn corrupt_layer_blob_is_named() {
    let t = tempfile::tempdir().unwrap();
    let d = make_layout(t.path());
    let img = Image::open(&format!("oci:{}:t", d.display()), &opts()).unwrap();
    let l = img.layers[1].clone();
    let hex = l.digest.trim_start_matches("sha256:");
    let p = d.join("blobs/sha256").join(hex);
    let mut data = std::fs::read(&p).unwrap();
    // A byte of the deflate data (past the gzip header): corrupt data or a digest mismatch.
    let n = data.len();
    data[n / 2] ^= 0x55;
    std::fs::write(&p, &data).unwrap();
    let mut r = img.layer_reader(1).unwrap();
    let e = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    let m = e.to_string();
    assert!(m.contains(&l.digest) && m.contains(&img.reference), "{m}");
    // Through a tar parser, as the import engine reads it: still Corrupt, still named.
    let mut ar = tar::Archive::new(img.layer_reader(1).unwrap());
    let failed = (|| -> std::io::Result<()> {
        for e in ar.entries()? {
            std::io::copy(&mut e?, &mut std::io::sink())?;
        }
        std::io::copy(&mut ar.into_inner(), &mut std::io::sink())?;
        Ok(())
    })()
    .unwrap_err();
    let err = layer_error(failed);
    assert_eq!(err.kind, ErrorKind::Corrupt, "{}", err.msg);
    assert!(err.msg.contains(&l.digest), "{}", err.msg);
}

#[test]
fn docker_archive() {
    let t = tempfile::tempdir().unwrap();
    let d = make_layout(t.path());
    let f = t.path().join("img.tar");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:t", d.display()),
            &format!("docker-archive:{}:n:t", f.display()),
        ],
    );
    for r in [
        format!("docker-archive:{}", f.display()),
        format!("docker-archive:{}:n:t", f.display()),
    ] {
        let img = Image::open(&r, &opts()).unwrap();
        check_two_layers(&img);
    }
    let e = Image::open(&format!("docker-archive:{}:n:other", f.display()), &opts()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.msg.contains("n:t"), "{}", e.msg);
}

/// A `docker-registry` on 127.0.0.1, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(htpasswd: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let auth = htpasswd.map(|line| {
            let p = dir.path().join("htpasswd");
            std::fs::write(&p, line).unwrap();
            format!(
                "auth:\n  htpasswd:\n    realm: r\n    path: {}\n",
                p.display()
            )
        });
        Self::start_in(dir, auth.as_deref().unwrap_or(""))
    }

    /// A registry whose config ends with `auth` (YAML).
    fn start_with(auth: &str) -> Registry {
        Self::start_in(tempfile::tempdir().unwrap(), auth)
    }

    fn start_in(dir: tempfile::TempDir, auth: &str) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        cfg.push_str(auth);
        let cp = dir.path().join("config.yml");
        std::fs::write(&cp, cfg).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cp)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("docker-registry is needed (scripts/test.sh installs it): {e}")
            });
        let reg = Registry {
            child,
            port,
            _dir: dir,
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "docker-registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn htpasswd_line(user: &str, pass: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, pass])
        .output()
        .unwrap_or_else(|e| {
            panic!("htpasswd is needed (apache2-utils; scripts/test.sh installs it): {e}")
        });
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn registry_anonymous() {
    let t = tempfile::tempdir().unwrap();
    let d = make_layout(t.path());
    let reg = Registry::start(None);
    let r = format!("docker://127.0.0.1:{}/n:t", reg.port);
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:t", d.display()),
            &r,
        ],
    );
    let img = Image::open(&r, &opts()).unwrap();
    check_two_layers(&img);
    // By digest, the same manifest.
    let by_digest = format!("127.0.0.1:{}/n@{}", reg.port, img.manifest_digest);
    let img2 = Image::open(&by_digest, &opts()).unwrap();
    assert_eq!(img2.manifest_digest, img.manifest_digest);
    check_two_layers(&img2);
    let e = Image::open(
        &format!("docker://127.0.0.1:{}/n:missing", reg.port),
        &opts(),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(
        e.msg.contains("no such image or tag at 127.0.0.1"),
        "{}",
        e.msg
    );
    // Nothing listening: a store error naming the host.
    drop(reg);
    let e = Image::open(&r, &opts()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Store, "{}", e.msg);
    assert!(e.msg.contains("127.0.0.1"), "{}", e.msg);
}

#[test]
fn registry_htpasswd() {
    let t = tempfile::tempdir().unwrap();
    let d = make_layout(t.path());
    let reg = Registry::start(Some(&htpasswd_line("user", "pass")));
    let r = format!("docker://127.0.0.1:{}/a/n:t", reg.port);
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "user:pass",
            &format!("oci:{}:t", d.display()),
            &r,
        ],
    );
    let empty = t.path().join("auth.json");
    std::fs::write(&empty, "{}").unwrap();
    let mut o = opts();
    o.authfile = Some(empty);
    let e = Image::open(&r, &o).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Credentials, "{}", e.msg);
    assert!(
        e.msg.contains("authentication refused by 127.0.0.1"),
        "{}",
        e.msg
    );
    o.creds = Some(Credentials::parse("user:wrong").unwrap());
    let e = Image::open(&r, &o).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Credentials, "{}", e.msg);
    assert!(!e.msg.contains("wrong"), "{}", e.msg);
    o.creds = Some(Credentials::parse("user:pass").unwrap());
    check_two_layers(&Image::open(&r, &o).unwrap());
    // The same credentials from an auth file.
    let af = t.path().join("config.json");
    std::fs::write(
        &af,
        format!(
            r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"dXNlcjpwYXNz"}}}}}}"#,
            reg.port
        ),
    )
    .unwrap();
    let o = FetchOptions {
        authfile: Some(af),
        ..opts()
    };
    check_two_layers(&Image::open(&r, &o).unwrap());
}

#[test]
fn layer_reader_reads_to_eof_only_once_verified() {
    // A reader of a layout layer returns 0 only after verification.
    let t = tempfile::tempdir().unwrap();
    let d = make_layout(t.path());
    let img = Image::open(&format!("oci:{}:t", d.display()), &opts()).unwrap();
    let mut r = img.layer_reader(0).unwrap();
    let mut all = Vec::new();
    r.read_to_end(&mut all).unwrap();
    assert_eq!(r.read(&mut [0u8; 16]).unwrap(), 0);
    assert!(img.layer_reader(2).is_err());
}

/// Adds to layout `d` an index tagged `multi` naming the image `t` for linux/amd64 and a
/// variant of its manifest (an annotation more) for linux/arm64/v8. Returns both
/// manifests' digests (amd64, arm64).
fn add_multi(d: &Path) -> (String, String) {
    use super::manifest::{sha256_digest, OCI_INDEX, OCI_MANIFEST};
    let index_path = d.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let m1 = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = |digest: &str| {
        d.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let put = |data: &[u8]| {
        let digest = sha256_digest(data);
        std::fs::write(blob(&digest), data).unwrap();
        digest
    };
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&m1)).unwrap()).unwrap();
    m["annotations"] = serde_json::json!({"which": "arm64"});
    let m2_bytes = serde_json::to_vec(&m).unwrap();
    let m2 = put(&m2_bytes);
    let m1_size = std::fs::metadata(blob(&m1)).unwrap().len();
    let idx = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": m2, "size": m2_bytes.len(),
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": OCI_MANIFEST, "digest": m1, "size": m1_size,
             "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    });
    let idx_bytes = serde_json::to_vec(&idx).unwrap();
    let idx_digest = put(&idx_bytes);
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": OCI_INDEX, "digest": idx_digest, "size": idx_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"}
        }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    (m1, m2)
}

fn on(platform: &str) -> FetchOptions {
    FetchOptions {
        platform: Platform::parse(platform).unwrap(),
        ..opts()
    }
}

#[test]
fn multi_platform_index() {
    let t = tempfile::tempdir().unwrap();
    let d = make_layout(t.path());
    let (m1, m2) = add_multi(&d);
    let r = format!("oci:{}:multi", d.display());
    let img = Image::open(&r, &on("linux/amd64")).unwrap();
    assert_eq!(img.manifest_digest, m1);
    check_two_layers(&img);
    assert_eq!(
        Image::open(&r, &on("linux/arm64")).unwrap().manifest_digest,
        m2
    );
    let e = Image::open(&r, &on("linux/s390x")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(
        e.msg.contains("linux/s390x") && e.msg.contains("linux/arm64/v8, linux/amd64"),
        "{}",
        e.msg
    );

    // The same index in a registry.
    let reg = Registry::start(None);
    let rr = format!("docker://127.0.0.1:{}/m:multi", reg.port);
    run(
        "skopeo",
        &["copy", "--all", "--dest-tls-verify=false", &r, &rr],
    );
    let img = Image::open(&rr, &on("linux/arm64/v8")).unwrap();
    assert_eq!(img.manifest_digest, m2);
    check_two_layers(&img);
    let img = Image::open(&rr, &on("linux/amd64")).unwrap();
    assert_eq!(img.manifest_digest, m1);
    let e = Image::open(&rr, &on("linux/riscv64")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[test]
fn registry_that_never_answers_times_out() {
    // A listening socket nobody reads from: the kernel accepts the connection, no reply
    // ever comes.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let o = FetchOptions {
        timeout: Duration::from_millis(300),
        ..opts()
    };
    let t0 = Instant::now();
    let e = Image::open(&format!("127.0.0.1:{port}/n:t"), &o).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{}", e.msg);
    assert!(e.msg.contains(&format!("127.0.0.1:{port}")), "{}", e.msg);
    assert!(t0.elapsed() < Duration::from_secs(5));
    drop(l);
}

/// A token issuer for `docker-registry`'s token auth, as Docker Hub's auth service
/// works: `GET /token?service=..&scope=..` with basic credentials `user:pass` answers
/// `{"token": JWT}`, a JWT (RS256, signed with `openssl`) whose `x5c` certificate is the
/// registry's root bundle; other credentials get 401. It counts the tokens it issued.
struct TokenIssuer {
    port: u16,
    issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    scopes: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    cert: PathBuf,
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

use base64::Engine as _;

impl TokenIssuer {
    fn start(dir: &Path) -> TokenIssuer {
        let key = dir.join("key.pem");
        let cert = dir.join("cert.pem");
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=zvfs-test",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
        );
        let pem = std::fs::read_to_string(&cert).unwrap();
        let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [der_b64]});
        let claims = serde_json::json!({
            "iss": "zvfs-test", "sub": "user", "aud": "svc",
            "exp": now + 3600, "nbf": now - 10, "iat": now, "jti": "1",
            "access": [{"type": "repository", "name": "a/n", "actions": ["pull", "push"]}],
        });
        let input = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&header).unwrap()),
            b64url(&serde_json::to_vec(&claims).unwrap())
        );
        let input_file = dir.join("jwt-input");
        std::fs::write(&input_file, &input).unwrap();
        let sig = Command::new("openssl")
            .args([
                "dgst",
                "-sha256",
                "-sign",
                key.to_str().unwrap(),
                input_file.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(sig.status.success());
        let jwt = format!("{input}.{}", b64url(&sig.stdout));
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("user:pass")
        );

        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let scopes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (i2, s2) = (issued.clone(), scopes.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { return };
                let mut req = Vec::new();
                let mut b = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match std::io::Read::read(&mut c, &mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).into_owned();
                let line = text.lines().next().unwrap_or("").to_string();
                s2.lock().unwrap().push(line);
                let authorized = text.lines().any(|l| {
                    l.split_once(':').is_some_and(|(k, v)| {
                        k.eq_ignore_ascii_case("authorization") && v.trim() == good
                    })
                });
                let reply = if authorized {
                    i2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = serde_json::json!({"token": jwt, "expires_in": 3600}).to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                };
                let _ = std::io::Write::write_all(&mut c, reply.as_bytes());
            }
        });
        TokenIssuer {
            port,
            issued,
            scopes,
            cert,
        }
    }
}

#[test]
fn registry_bearer_tokens() {
    let t = tempfile::tempdir().unwrap();
    let d = make_layout(t.path());
    let issuer = TokenIssuer::start(t.path());
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: svc\n    issuer: zvfs-test\n    rootcertbundle: {}\n",
        issuer.port,
        issuer.cert.display()
    );
    let reg = Registry::start_with(&auth);
    let r = format!("docker://127.0.0.1:{}/a/n:t", reg.port);
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "user:pass",
            &format!("oci:{}:t", d.display()),
            &r,
        ],
    );
    let empty = t.path().join("auth.json");
    std::fs::write(&empty, "{}").unwrap();
    let mut o = opts();
    o.authfile = Some(empty);
    let e = Image::open(&r, &o).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Credentials, "{}", e.msg);
    // The token issuer refused: named with its port.
    let refused = format!("authentication refused by 127.0.0.1:{} (401)", issuer.port);
    assert!(e.msg.contains(&refused), "{}", e.msg);
    o.creds = Some(Credentials::parse("user:wrong").unwrap());
    let e = Image::open(&r, &o).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Credentials, "{}", e.msg);
    assert!(
        e.msg.contains(&refused) && !e.msg.contains("wrong"),
        "{}",
        e.msg
    );
    o.creds = Some(Credentials::parse("user:pass").unwrap());
    let before = issuer.issued.load(std::sync::atomic::Ordering::SeqCst);
    let img = Image::open(&r, &o).unwrap();
    check_two_layers(&img);
    // One token for the manifest, the config and every layer.
    assert_eq!(
        issuer.issued.load(std::sync::atomic::Ordering::SeqCst) - before,
        1
    );
    let scopes = issuer.scopes.lock().unwrap();
    let last = scopes.last().unwrap();
    assert!(
        last.contains("scope=repository%3Aa%2Fn%3Apull") && last.contains("service=svc"),
        "{last}"
    );
}
