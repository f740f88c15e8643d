//! Container-image fixtures for the `zvfs import` tests: a real registry (Debian's
//! `docker-registry`, with or without htpasswd auth) on loopback, `skopeo` copies (push,
//! zstd / uncompressed / docker-archive variants), OCI layouts built with `umoci` (new,
//! unpack / modify / repack, raw add-layer, config), hand-made layer tars (python3
//! `tarfile`, so any name, header or PAX record can be written, hostile ones included),
//! the reference tree (`umoci unpack` as root), and direct edits of a layout's blobs
//! (a layer replaced, the manifest and index rewritten to match; an image index).
//! Nothing here mocks a part: every tool is the real one, installed by scripts/test.sh.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{free_port, s};

// ---------------------------------------------------------------- running the tools

/// Runs `prog args..`, which must succeed (the message says which tool, args and stderr).
pub fn tool<A: AsRef<std::ffi::OsStr>>(prog: &str, args: &[A]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog} cannot run ({e}): scripts/test.sh installs it"));
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert!(
        out.status.success(),
        "{prog} {shown:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `umoci ARGS..`, which must succeed.
pub fn umoci<A: AsRef<std::ffi::OsStr>>(args: &[A]) -> String {
    tool("umoci", args)
}

/// `skopeo copy --insecure-policy EXTRA.. SRC DST`, which must succeed.
pub fn skopeo_copy(src: &str, dst: &str, extra: &[&str]) {
    let mut args = vec!["--insecure-policy", "copy"];
    args.extend_from_slice(extra);
    args.push(src);
    args.push(dst);
    tool("skopeo", &args);
}

/// `oci:DIR:TAG`, the image reference of a layout's tag (for zvfs, umoci and skopeo).
pub fn oci_ref(layout: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", layout.display())
}

// ---------------------------------------------------------------- the registry

/// A `docker-registry serve` on a free loopback port, plain HTTP, storage in a temporary
/// directory; killed (and reaped) on drop.
pub struct Registry {
    pub port: u16,
    /// The address it listens on (127.0.0.1 unless started in a network namespace).
    pub ip: String,
    /// `(user, password)` when it was started with htpasswd auth.
    pub creds: Option<(String, String)>,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// An open registry (no auth).
    pub fn start() -> Registry {
        Registry::spawn(None, "127.0.0.1", None)
    }

    /// An open registry listening on `ip` inside the network namespace `netns` (run with
    /// `ip netns exec`).
    pub fn start_in_netns(netns: &str, ip: &str) -> Registry {
        Registry::spawn(None, ip, Some(netns))
    }

    /// A registry that wants HTTP basic auth (htpasswd, bcrypt) for `user:pass`.
    pub fn start_htpasswd(user: &str, pass: &str) -> Registry {
        Registry::spawn(
            Some((user.to_string(), pass.to_string())),
            "127.0.0.1",
            None,
        )
    }

    fn spawn(creds: Option<(String, String)>, ip: &str, netns: Option<&str>) -> Registry {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let mut config = format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {ip}:{port}\n",
                dir.path().join("data").display()
            );
            if let Some((user, pass)) = &creds {
                let line = tool("htpasswd", &["-Bbn", user, pass]);
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, line.trim_end().to_string() + "\n").unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: zvfs\n    path: {}\n",
                    file.display()
                ));
            }
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut cmd = match netns {
                Some(ns) => {
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", ns, "docker-registry"]);
                    c
                }
                None => Command::new("docker-registry"),
            };
            let child = cmd
                .arg("serve")
                .arg(&cfg)
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("docker-registry cannot run: scripts/test.sh installs it");
            let mut reg = Registry {
                port,
                ip: ip.to_string(),
                creds: creds.clone(),
                child,
                _dir: dir,
            };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = reg.child.try_wait() {
                    break; // the port was taken meanwhile: try another
                }
                if let Some(status) = reg.get_v2() {
                    let want = if reg.creds.is_some() { 401 } else { 200 };
                    assert_eq!(status, want, "GET /v2/ of the fresh registry");
                    return reg;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("docker-registry did not start");
    }

    /// The status of `GET /v2/` (no credentials), None when nothing answers yet.
    fn get_v2(&self) -> Option<u16> {
        use std::io::Read;
        let mut c = TcpStream::connect((self.ip.as_str(), self.port)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            c,
            "GET /v2/ HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
            self.ip, self.port
        )
        .ok()?;
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).ok()?;
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        head.split_whitespace().nth(1)?.parse().ok()
    }

    /// `IP:PORT`.
    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// `docker://127.0.0.1:PORT/NAME:TAG` (or `...@sha256:..` when `tag` starts with `@`).
    pub fn image(&self, name: &str, tag: &str) -> String {
        if tag.starts_with('@') {
            format!("docker://{}/{name}{tag}", self.host())
        } else {
            format!("docker://{}/{name}:{tag}", self.host())
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `skopeo copy oci:LAYOUT:TAG docker://127.0.0.1:PORT/NAME:TAG` (with the registry's
/// credentials when it has some).
pub fn push(layout: &Path, tag: &str, registry: &Registry, name: &str) {
    push_with(layout, tag, registry, name, &[]);
}

/// [`push`] with more `skopeo copy` flags (`--format v2s2`: Docker media types; `--all`:
/// an image index with every platform).
pub fn push_with(layout: &Path, tag: &str, registry: &Registry, name: &str, more: &[&str]) {
    let dst = registry.image(name, tag);
    let creds = registry.creds.as_ref().map(|(u, p)| format!("{u}:{p}"));
    let mut extra = vec!["--dest-tls-verify=false"];
    if let Some(c) = &creds {
        extra.push("--dest-creds");
        extra.push(c);
    }
    extra.extend_from_slice(more);
    skopeo_copy(&oci_ref(layout, tag), &dst, &extra);
}

// ---------------------------------------------------------------- umoci layouts

/// `umoci init --layout LAYOUT` and `umoci new --image LAYOUT:TAG` (an image with no layer).
pub fn new_layout(layout: &Path, tag: &str) {
    umoci(&["init", "--layout", s(layout)]);
    umoci(&["new", "--image", &format!("{}:{tag}", layout.display())]);
}

/// `umoci unpack --image LAYOUT:TAG BUNDLE` (as root: owners, devices, xattrs kept);
/// returns `BUNDLE/rootfs`, the reference tree.
pub fn reference_tree(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    umoci(&[
        "unpack",
        "--image",
        &format!("{}:{tag}", layout.display()),
        s(bundle),
    ]);
    bundle.join("rootfs")
}

/// Unpacks `LAYOUT:FROM` into a scratch bundle, lets `edit` change its rootfs, and
/// `umoci repack`s it as `LAYOUT:TO` (one new layer; umoci writes per-file whiteouts for
/// what `edit` deleted).
pub fn repack(layout: &Path, from: &str, to: &str, edit: impl FnOnce(&Path)) {
    let scratch = tempfile::tempdir().unwrap();
    let bundle = scratch.path().join("bundle");
    let rootfs = reference_tree(layout, from, &bundle);
    edit(&rootfs);
    umoci(&[
        "repack",
        "--image",
        &format!("{}:{to}", layout.display()),
        s(&bundle),
    ]);
}

/// `umoci raw add-layer --image LAYOUT:FROM --tag TO TAR`: a hand-made layer on top.
pub fn add_layer(layout: &Path, from: &str, to: &str, tar: &Path) {
    umoci(&[
        "raw",
        "add-layer",
        "--image",
        &format!("{}:{from}", layout.display()),
        "--tag",
        to,
        s(tar),
    ]);
}

/// `umoci config --image LAYOUT:TAG ARGS..` (in place: the tag moves to the new config).
pub fn config(layout: &Path, tag: &str, args: &[&str]) {
    let mut all = vec![
        "config".to_string(),
        "--image".to_string(),
        format!("{}:{tag}", layout.display()),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    umoci(&all);
}

// ---------------------------------------------------------------- hand-made layer tars

/// One entry of a hand-made layer tar. Names and link targets are raw bytes, written as
/// given (absolute, `..`, not UTF-8, longer than 100 bytes: PAX records as needed).
#[derive(Clone, Debug)]
pub struct Entry {
    name: Vec<u8>,
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    data: Vec<u8>,
    link: Vec<u8>,
    dev: (u32, u32),
    xattrs: Vec<(String, Vec<u8>)>,
}

fn entry(name: impl AsRef<[u8]>, kind: &'static str, mode: u32) -> Entry {
    Entry {
        name: name.as_ref().to_vec(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: 1_500_000_000,
        data: Vec::new(),
        link: Vec::new(),
        dev: (0, 0),
        xattrs: Vec::new(),
    }
}

/// A regular file (0644, root, mtime 1,500,000,000 unless changed).
pub fn file(name: impl AsRef<[u8]>, data: &[u8]) -> Entry {
    let mut e = entry(name, "file", 0o644);
    e.data = data.to_vec();
    e
}

/// A directory (0755).
pub fn dir(name: impl AsRef<[u8]>) -> Entry {
    entry(name, "dir", 0o755)
}

/// A symlink to `target`.
pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
    let mut e = entry(name, "symlink", 0o777);
    e.link = target.as_ref().to_vec();
    e
}

/// A hardlink to `target` (a path in the image).
pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
    let mut e = entry(name, "hardlink", 0o644);
    e.link = target.as_ref().to_vec();
    e
}

/// A fifo (0644).
pub fn fifo(name: impl AsRef<[u8]>) -> Entry {
    entry(name, "fifo", 0o644)
}

/// A character device `major,minor` (0620).
pub fn chardev(name: impl AsRef<[u8]>, major: u32, minor: u32) -> Entry {
    let mut e = entry(name, "chardev", 0o620);
    e.dev = (major, minor);
    e
}

/// A block device `major,minor` (0660).
pub fn blockdev(name: impl AsRef<[u8]>, major: u32, minor: u32) -> Entry {
    let mut e = entry(name, "blockdev", 0o660);
    e.dev = (major, minor);
    e
}

/// `DIR/.wh.NAME`: deletes `DIR/NAME` of the layers below.
pub fn whiteout(path: &str) -> Entry {
    let (parent, name) = match path.rsplit_once('/') {
        Some((p, n)) => (format!("{p}/"), n),
        None => (String::new(), path),
    };
    file(format!("{parent}.wh.{name}"), b"")
}

/// `DIR/.wh..wh..opq`: hides everything of the layers below in `DIR`.
pub fn opaque(dir: &str) -> Entry {
    file(format!("{dir}/.wh..wh..opq"), b"")
}

impl Entry {
    /// Permission bits (setuid/setgid/sticky included).
    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }
    /// Numeric owner.
    pub fn owner(mut self, uid: u32, gid: u32) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }
    /// Modification time (whole seconds).
    pub fn mtime(mut self, mtime: i64) -> Entry {
        self.mtime = mtime;
        self
    }
    /// An xattr, as a PAX `SCHILY.xattr.KEY` record.
    pub fn xattr(mut self, key: &str, value: &[u8]) -> Entry {
        self.xattrs.push((key.to_string(), value.to_vec()));
        self
    }
}

/// The python3 `tarfile` writer of [`write_tar`]: reads the entries as JSON (names, data,
/// link targets, xattr values in hex) and writes a PAX tar, raw bytes kept
/// (surrogateescape, `hdrcharset=BINARY` where needed).
const TAR_WRITER: &str = r#"
import io, json, sys, tarfile
spec = json.load(open(sys.argv[1]))
raw = lambda h: bytes.fromhex(h).decode("utf-8", "surrogateescape")
kinds = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
         "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "chardev": tarfile.CHRTYPE,
         "blockdev": tarfile.BLKTYPE}
with tarfile.open(sys.argv[2], "w", format=tarfile.PAX_FORMAT) as t:
    for e in spec:
        ti = tarfile.TarInfo(raw(e["name"]))
        ti.type = kinds[e["kind"]]
        ti.mode = e["mode"]
        ti.uid, ti.gid = e["uid"], e["gid"]
        ti.uname = ti.gname = ""
        ti.mtime = e["mtime"]
        ti.linkname = raw(e["link"])
        ti.devmajor, ti.devminor = e["dev"]
        ti.pax_headers = {"SCHILY.xattr." + k: raw(v) for k, v in e["xattrs"]}
        data = bytes.fromhex(e["data"])
        if ti.type == tarfile.REGTYPE:
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        else:
            t.addfile(ti)
"#;

/// Writes `entries`, in order, as an uncompressed PAX tar at `out` (python3 `tarfile`).
pub fn write_tar(out: &Path, entries: &[Entry]) {
    let spec: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "name": hex::encode(&e.name),
                "kind": e.kind,
                "mode": e.mode,
                "uid": e.uid,
                "gid": e.gid,
                "mtime": e.mtime,
                "data": hex::encode(&e.data),
                "link": hex::encode(&e.link),
                "dev": [e.dev.0, e.dev.1],
                "xattrs": e.xattrs.iter().map(|(k, v)| json!([k, hex::encode(v)])).collect::<Vec<_>>(),
            })
        })
        .collect();
    let scratch = tempfile::tempdir().unwrap();
    let spec_file = scratch.path().join("spec.json");
    std::fs::write(&spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
    let script = scratch.path().join("writer.py");
    std::fs::write(&script, TAR_WRITER).unwrap();
    tool("python3", &[s(&script), s(&spec_file), s(out)]);
}

/// `write_tar` into a scratch file, then [`add_layer`] it as `LAYOUT:TO` on `LAYOUT:FROM`.
pub fn add_tar_layer(layout: &Path, from: &str, to: &str, entries: &[Entry]) {
    let scratch = tempfile::tempdir().unwrap();
    let tar = scratch.path().join("layer.tar");
    write_tar(&tar, entries);
    add_layer(layout, from, to, &tar);
}

// ---------------------------------------------------------------- layout internals

/// `LAYOUT/blobs/sha256/HEX` of `sha256:HEX`.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// Reads a JSON blob.
pub fn read_json_blob(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&std::fs::read(blob_path(layout, digest)).unwrap()).unwrap()
}

/// Writes `bytes` as a blob; returns its `sha256:..` digest.
pub fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    std::fs::write(blob_path(layout, &digest), bytes).unwrap();
    digest
}

/// The layout's `index.json`.
pub fn index(layout: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap()
}

fn index_entry_of(idx: &Value, tag: &str) -> usize {
    idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .position(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in the layout"))
}

/// The digest of the manifest (or index) that `tag` names in `index.json`.
pub fn manifest_digest(layout: &Path, tag: &str) -> String {
    let idx = index(layout);
    idx["manifests"][index_entry_of(&idx, tag)]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The image manifest `tag` names.
pub fn manifest(layout: &Path, tag: &str) -> Value {
    read_json_blob(layout, &manifest_digest(layout, tag))
}

/// The layer descriptors (`mediaType`, `digest`, `size`) of `tag`'s manifest.
pub fn layers(layout: &Path, tag: &str) -> Vec<Value> {
    manifest(layout, tag)["layers"].as_array().unwrap().clone()
}

/// Points `tag` at a manifest with `edit` applied (the manifest written as a new blob,
/// `index.json` rewritten with its digest and size). Returns the new manifest digest.
pub fn edit_manifest(layout: &Path, tag: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut m = manifest(layout, tag);
    edit(&mut m);
    let bytes = serde_json::to_vec(&m).unwrap();
    let digest = put_blob(layout, &bytes);
    let mut idx = index(layout);
    let i = index_entry_of(&idx, tag);
    idx["manifests"][i]["digest"] = json!(digest);
    idx["manifests"][i]["size"] = json!(bytes.len());
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    digest
}

/// Replaces layer `n` of `tag` with `bytes` (as a new blob of media type `media_type`),
/// manifest and index digests rewritten so every digest matches. Returns the new layer's
/// digest.
pub fn replace_layer(layout: &Path, tag: &str, n: usize, bytes: &[u8], media_type: &str) -> String {
    let digest = put_blob(layout, bytes);
    let d = digest.clone();
    edit_manifest(layout, tag, |m| {
        m["layers"][n] = json!({"mediaType": media_type, "digest": d, "size": bytes.len()});
    });
    digest
}

/// Makes `tag` name an image index (a new blob) listing `tag`'s manifest once per
/// `(os, architecture, variant)` in `platforms` (variant "" for none).
pub fn make_index(layout: &Path, tag: &str, platforms: &[(&str, &str, &str)]) -> String {
    let mut idx = index(layout);
    let i = index_entry_of(&idx, tag);
    let desc = &idx["manifests"][i];
    let manifests: Vec<Value> = platforms
        .iter()
        .map(|(os, arch, variant)| {
            let mut platform = json!({"os": os, "architecture": arch});
            if !variant.is_empty() {
                platform["variant"] = json!(variant);
            }
            json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": desc["digest"],
                "size": desc["size"],
                "platform": platform,
            })
        })
        .collect();
    let image_index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&image_index).unwrap();
    let digest = put_blob(layout, &bytes);
    idx["manifests"][i] = json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": digest,
        "size": bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    digest
}

/// gzip of `data` (the `gzip` tool: real gzip framing).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(["-c", "-n"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

// ---------------------------------------------------------------- flist facts

/// Every block id (hex) the flist references.
pub fn block_ids(fl: &Path) -> BTreeSet<String> {
    let c = rusqlite::Connection::open(fl).unwrap();
    let mut st = c.prepare("SELECT id FROM block").unwrap();
    st.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|r| hex::encode(r.unwrap()))
        .collect()
}

/// Every block row (hex id, hex key), sorted, duplicates kept.
pub fn block_rows(fl: &Path) -> Vec<(String, String)> {
    let c = rusqlite::Connection::open(fl).unwrap();
    let mut st = c.prepare("SELECT id, key FROM block").unwrap();
    let mut v: Vec<(String, String)> = st
        .query_map([], |r| {
            Ok((
                hex::encode(r.get::<_, Vec<u8>>(0)?),
                hex::encode(r.get::<_, Vec<u8>>(1)?),
            ))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    v.sort();
    v
}

/// The names of the object files in a `dir://` store (either layout), temporaries aside.
pub fn store_objects(store: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if !store.exists() {
        return out;
    }
    let mut stack = vec![store.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if !name.starts_with('.') {
                out.insert(name);
            }
        }
    }
    out
}

/// The tags of an flist, as `zvfs config -m FL tag list` prints them (`k=v` lines).
pub fn tags(fl: &Path) -> std::collections::BTreeMap<String, String> {
    let out = super::zvfs_ok(&["config", "-m", s(fl), "tag", "list"]);
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The figures of `zvfs import`'s first stdout line: `imported IMAGE into OUT.fl: L layers
/// (R reused), E entries, F files, B bytes, C chunks, U unique chunks uploaded (X bytes),
/// S s, M MB/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub layers: u64,
    pub reused: u64,
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    pub chunks: u64,
    pub uploaded: u64,
    pub uploaded_bytes: u64,
}

/// Parses the summary line of `zvfs import IMAGE -m FL ..` (panics, quoting it, when it
/// does not have the contract's form).
pub fn parse_imported(stdout: &str, image: &str, fl: &Path) -> Imported {
    let line = stdout.lines().next().unwrap_or("");
    let head = format!("imported {image} into {}: ", fl.display());
    let rest = line
        .strip_prefix(&head)
        .unwrap_or_else(|| panic!("import's summary {line:?} does not start with {head:?}"));
    let words: Vec<&str> = rest.split_whitespace().collect();
    // L layers (R reused), E entries, F files, B bytes, C chunks, U unique chunks uploaded (X bytes), S s, M MB/s
    let num = |i: usize| -> u64 {
        words
            .get(i)
            .map(|w| w.trim_start_matches('('))
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("import's summary {line:?}: no number at word {i}"))
    };
    let expect = [
        (1, "layers"),
        (3, "reused),"),
        (5, "entries,"),
        (7, "files,"),
        (9, "bytes,"),
        (11, "chunks,"),
        (13, "unique"),
        (14, "chunks"),
        (15, "uploaded"),
        (17, "bytes),"),
        (19, "s,"),
        (21, "MB/s"),
    ];
    for (i, w) in expect {
        assert_eq!(
            words.get(i).copied(),
            Some(w),
            "import's summary {line:?}: word {i}"
        );
    }
    Imported {
        layers: num(0),
        reused: num(2),
        entries: num(4),
        files: num(6),
        bytes: num(8),
        chunks: num(10),
        uploaded: num(12),
        uploaded_bytes: num(16),
    }
}
