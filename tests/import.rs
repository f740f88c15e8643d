//! `zvfs import`: Docker/OCI image -> flist, tested end to end against the command-line
//! contract with real parts only: OCI layouts built by `umoci` (repacked trees and
//! hand-made layer tars with whiteouts, opaque directories, hardlinks, PAX xattrs,
//! devices, odd names and modes), their `skopeo` copies (zstd, uncompressed,
//! docker-archive, pushed to a `docker-registry` on loopback, with and without htpasswd
//! auth). The reference tree of an image is what `umoci unpack` (as root) makes of it: the
//! imported flist, mounted, must equal it entry for entry (lstat fields, content, xattrs,
//! hardlink groups, directory mtimes included), plus `/.startup.toml`. Chunks must be the
//! ones `zvfs pack` gives, the store must hold exactly the chunks the flist references,
//! base layers must be reused from the layer index without being read, and every failure
//! must name the image (and blob) and leave no flist behind.
//!
//! Fixture facts (umoci 0.4.7, checked while writing these tests) that shape them:
//! `umoci unpack` keeps a directory's mtime when a layer adds
//! or whites out entries in it without listing the directory itself, but the parent
//! directories it must create implicitly (no entry for them in the layer) get mode 0755,
//! root:root and the time of the unpack, and so does the existing directory they are
//! created in; the rootfs of an image without a `.` entry is 0755 root:root with mtime 0;
//! `/abs/x`, `../../escape` and `a/../../b` land at `abs/x`, `escape` and `b` inside the
//! root; a hardlink to a missing target and a name over 255 bytes make it fail.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::image::*;
use crate::common::*;

// ---------------------------------------------------------------- running zvfs import

/// The outputs of one import: the flist, its `dir://` store and cache directory.
struct Target {
    fl: PathBuf,
    store: PathBuf,
    cache: PathBuf,
}

impl Target {
    /// `DIR/NAME.fl`, store `DIR/store`, cache `DIR/cache` (shared by every target of DIR).
    fn new(dir: &Path, name: &str) -> Target {
        std::fs::create_dir_all(dir.join("out")).unwrap();
        Target {
            fl: dir.join("out").join(format!("{name}.fl")),
            store: dir.join("store"),
            cache: dir.join("cache"),
        }
    }
}

/// `zvfs import IMAGE -m FL -s dir://STORE -c CACHE EXTRA..` with `env` set.
fn import_cmd(image: &str, t: &Target, extra: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(zvfs_bin());
    cmd.args(["import", image, "-m", s(&t.fl), "-s"])
        .arg(dir_url(&t.store))
        .args(["-c", s(&t.cache)])
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running zvfs import")
}

/// The import must succeed; returns its stdout, after checking the summary line's form.
fn import_ok_env(image: &str, t: &Target, extra: &[&str], env: &[(&str, &Path)]) -> String {
    let out = import_cmd(image, t, extra, env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "zvfs import {image} {extra:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_imported(&stdout, image, &t.fl);
    assert!(t.fl.exists());
    stdout
}

fn import_ok(image: &str, t: &Target, extra: &[&str]) -> String {
    import_ok_env(image, t, extra, &[])
}

/// The import must fail: non-zero exit, stderr naming every string of `names`, and no
/// flist (nor a temporary of it) left in its directory. Returns stderr.
fn import_fails(image: &str, t: &Target, extra: &[&str], names: &[&str]) -> String {
    import_fails_env(image, t, extra, &[], names)
}

fn import_fails_env(
    image: &str,
    t: &Target,
    extra: &[&str],
    env: &[(&str, &Path)],
    names: &[&str],
) -> String {
    let out = import_cmd(image, t, extra, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "zvfs import {image} {extra:?} should have failed:\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    for n in names {
        assert!(
            stderr.contains(n),
            "zvfs import {image}: stderr should name {n:?}:\n{stderr}"
        );
    }
    assert!(!t.fl.exists(), "a failed import left {}", t.fl.display());
    let dir = t.fl.parent().unwrap();
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "a failed import left {left:?} in {}",
        dir.display()
    );
    stderr
}

/// Mounts `fl` and checks its tree against `rootfs` (the umoci reference): every entry's
/// lstat fields, content, target and xattrs, the root's included, and the hardlink
/// groups; `/.startup.toml` must be there exactly when `startup` (and is not compared).
fn assert_flist_is_tree(dir: &Path, fl: &Path, rootfs: &Path, startup: bool) {
    let mnt = dir.join(format!("mnt-{}", fl.file_stem().unwrap().to_string_lossy()));
    let cache = dir.join("mount-cache");
    let _m = Mount::daemon(&mnt, &["-m", s(fl), "-c", s(&cache)]);
    let mut got = snapshot(&mnt);
    assert_eq!(
        got.remove(b".startup.toml".as_slice()).is_some(),
        startup,
        "/.startup.toml present in the mount of {}",
        fl.display()
    );
    assert_same_snapshots(snapshot(rootfs), got);
    let mut groups = hardlink_groups(&mnt);
    groups.retain(|g| !g.contains(&b".startup.toml".to_vec()));
    assert_eq!(hardlink_groups(rootfs), groups, "hardlink groups");
}

/// `zvfs diff --mtime A B` must say identical (exit 0).
fn assert_same_flists(a: &Path, b: &Path) {
    let out = zvfs(&["diff", "--mtime", s(a), s(b)]);
    assert!(
        out.status.success(),
        "{} and {} differ:\n{}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(block_rows(a), block_rows(b), "block rows");
}

// ---------------------------------------------------------------- the images

const MIB: usize = 1024 * 1024;
/// 1.3 MiB: three chunks of 512 KiB, the last one partial.
const BIG: usize = 13 * MIB / 10;

fn set_xattr(p: &Path, k: &str, v: &[u8]) {
    rustix::fs::lsetxattr(p, k, v, rustix::fs::XattrFlags::empty()).unwrap();
}

/// The base tree (layer 1, made by `umoci repack`): files of several sizes, owners,
/// special modes, symlinks, a hardlink pair, a fifo, devices, xattrs, and what the upper
/// layers delete, replace or hide.
fn base_tree(r: &Path) {
    use rustix::fs::FileType;
    for d in [
        "etc",
        "bin",
        "tmp",
        "big",
        "home/user",
        "usr/lib",
        "opaq/sub",
        "d2f",
        "data",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("etc/hostname"), b"zvfs\n").unwrap();
    std::fs::write(r.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(r.join("etc/gone"), b"deleted by layer 2\n").unwrap();
    set_xattr(&r.join("etc/hostname"), "user.color", b"blue");
    set_xattr(&r.join("etc"), "user.dir", b"\x00\x01binary");
    std::fs::write(r.join("bin/tool"), noise(1, 70_000)).unwrap();
    std::fs::hard_link(r.join("bin/tool"), r.join("bin/tool-link")).unwrap();
    std::os::unix::fs::symlink("tool", r.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
    std::fs::write(r.join("usr/lib/libz.so"), noise(3, 300_000)).unwrap();
    std::fs::write(r.join("bin/suid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(r.join("bin/suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::write(r.join("bin/sgid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(r.join("bin/sgid"), std::fs::Permissions::from_mode(0o2711)).unwrap();
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(r.join("big/blob"), noise(5, BIG)).unwrap();
    std::fs::write(r.join("big/keep"), noise(7, BIG)).unwrap();
    std::fs::write(r.join("big/replace"), noise(9, 600_000)).unwrap();
    std::fs::write(r.join("home/user/secret"), b"mine\n").unwrap();
    std::fs::set_permissions(
        r.join("home/user/secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::lchown(r.join("home/user"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::lchown(r.join("home/user/secret"), Some(1000), Some(1000)).unwrap();
    std::fs::write(r.join("empty"), b"").unwrap();
    mknod(&r.join("fifo"), FileType::Fifo, 0o640, 0);
    mknod(
        &r.join("null"),
        FileType::CharacterDevice,
        0o666,
        rustix::fs::makedev(1, 3),
    );
    std::fs::write(r.join("opaq/old1"), b"hidden by the opaque dir\n").unwrap();
    std::fs::write(r.join("opaq/sub/old2"), b"hidden too\n").unwrap();
    std::fs::write(r.join("f2d"), b"a file, a dir above\n").unwrap();
    std::os::unix::fs::symlink("etc", r.join("s2d")).unwrap();
    std::fs::write(r.join("d2f/child"), b"a dir, a file above\n").unwrap();
    let mut all: Vec<_> = snapshot(r).into_keys().collect();
    all.sort_by_key(|k| std::cmp::Reverse(k.len()));
    for (i, rel) in all.iter().enumerate() {
        if !rel.is_empty() {
            set_mtime(
                &r.join(OsStr::from_bytes(rel)),
                1_400_000_000 + i as i64 * 100,
            );
        }
    }
}

/// Layer 2 (umoci repack): deletes (umoci writes whiteouts), replaces, adds.
fn mid_edit(r: &Path) {
    std::fs::remove_file(r.join("big/blob")).unwrap();
    std::fs::remove_file(r.join("etc/gone")).unwrap();
    std::fs::remove_file(r.join("big/replace")).unwrap();
    std::fs::write(r.join("big/replace"), noise(11, 900_000)).unwrap();
    std::fs::write(r.join("new-in-mid"), b"layer 2\n").unwrap();
}

/// Layer 3, by hand: whiteout, opaque directory, hardlinks within the layer and to a
/// lower file, PAX xattrs, a non-UTF-8 name, devices, a fifo, special modes, owners,
/// times, file->dir, symlink->dir and dir->file replacements, a 1.3 MiB file, an empty
/// file, a 255-byte name, a file added to a directory the layer does not list.
fn top_entries() -> Vec<Entry> {
    let mut cap = Vec::new();
    cap.extend_from_slice(&0x0200_0001u32.to_le_bytes());
    cap.extend_from_slice(&(1u32 << 10).to_le_bytes());
    cap.extend_from_slice(&[0u8; 12]);
    let long = format!("data/{}", "n".repeat(255));
    vec![
        whiteout("etc/passwd"),
        file("etc/added", b"etc is not listed in this layer\n"),
        dir("opaq").mtime(1_450_000_000),
        opaque("opaq"),
        file("opaq/new", b"the only child left\n"),
        dir("data").mtime(1_450_000_100),
        file("data/f1", b"linked twice\n").mtime(1_450_000_200),
        hardlink("data/f1-link", "data/f1"),
        hardlink("data/lower-link", "bin/tool"),
        file("data/xa", b"xattrs\n")
            .xattr("user.k", b"v")
            .xattr("user.bin", b"\x00\xff\xfe")
            .xattr("security.capability", &cap),
        file(b"data/caf\xe9".as_slice(), b"latin-1 name\n"),
        chardev("data/zero", 1, 5),
        blockdev("data/loop", 7, 42),
        fifo("data/pipe").mode(0o600),
        file("data/suid", b"#!/bin/sh\n").mode(0o4755),
        file("data/sgid", b"#!/bin/sh\n").mode(0o2755),
        dir("data/sticky").mode(0o1777),
        file("data/owned", b"owned\n").owner(1234, 5678).mode(0o640),
        file("data/old", b"old mtime\n").mtime(1_000_000_000),
        file("data/big", &noise(13, BIG)),
        file("data/empty", b""),
        file(long.as_str(), b"a 255-byte name\n"),
        symlink("data/link", "../etc/hostname").owner(42, 43),
        dir("f2d").mode(0o750),
        file("f2d/inside", b"f2d is a dir now\n"),
        dir("s2d").mode(0o700).owner(7, 8),
        file("s2d/inside", b"s2d is a dir now\n"),
        file("d2f", b"d2f is a file now\n").mode(0o600),
    ]
}

/// An OCI layout at `dir/NAME` with tags `base` (1 layer), `mid` (2) and `rich` (3
/// layers, with an image config: entrypoint, cmd, env, working dir, user, ports).
fn rich_image(dir: &Path, name: &str) -> PathBuf {
    let layout = dir.join(name);
    new_layout(&layout, "empty");
    repack(&layout, "empty", "base", base_tree);
    repack(&layout, "base", "mid", mid_edit);
    add_tar_layer(&layout, "mid", "rich", &top_entries());
    config(
        &layout,
        "rich",
        &[
            "--config.entrypoint",
            "/entry",
            "--config.entrypoint",
            "a",
            "--config.cmd",
            "b",
            "--config.cmd",
            "c d",
            "--config.env",
            "KEY=VALUE",
            "--config.env",
            "PATH=/usr/bin:/bin",
            "--config.workingdir",
            "/work",
            "--config.user",
            "1000:1000",
            "--config.exposedports",
            "80/tcp",
            "--config.exposedports",
            "53/udp",
        ],
    );
    assert_eq!(layers(&layout, "rich").len(), 3);
    layout
}

/// The reference tree of `layout:tag`, unpacked into `dir/ref-TAG`.
fn reference(dir: &Path, layout: &Path, tag: &str) -> PathBuf {
    reference_tree(layout, tag, &dir.join(format!("ref-{tag}")))
}

/// The image config of `layout:tag`.
fn image_config(layout: &Path, tag: &str) -> Value {
    let m = manifest(layout, tag);
    read_json_blob(layout, m["config"]["digest"].as_str().unwrap())
}

// ---------------------------------------------------------------- the fixture itself

fuse_test! {
    /// What the other tests rely on, checked on umoci's own unpack of the rich image (so
    /// a change of umoci shows here, not as a zvfs failure), and the comparison itself
    /// checked on `zvfs pack` of that tree, mounted.
    fn the_rich_image_unpacks_as_the_tests_expect() {
        let d = tmp();
        let layout = rich_image(d.path(), "img");
        let r = reference(d.path(), &layout, "rich");
        let tree = snapshot(&r);
        let has = |p: &str| tree.contains_key(p.as_bytes());
        for gone in ["big/blob", "etc/gone", "etc/passwd", "opaq/old1", "opaq/sub", "d2f/child"] {
            assert!(!has(gone), "{gone} should be deleted");
        }
        for kept in [
            "big/keep", "big/replace", "etc/added", "opaq/new", "f2d/inside", "s2d/inside",
            "data/xa", "data/zero", "data/loop", "data/pipe", "new-in-mid", "empty",
        ] {
            assert!(has(kept), "{kept} should be there");
        }
        assert!(tree.keys().any(|k| k.len() == 5 + 255), "the 255-byte name");
        assert!(tree.contains_key(b"data/caf\xe9".as_slice()), "the latin-1 name");
        let md = |p: &str| std::fs::symlink_metadata(r.join(p)).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert!(md("f2d").is_dir() && md("s2d").is_dir() && md("d2f").is_file());
        // the directory that replaced the symlink s2d -> etc was not made through it
        assert!(!has("etc/inside"));
        assert_eq!(md("big/replace").len(), 900_000);
        assert_eq!(md("data/big").len(), BIG as u64);
        assert_eq!(md("data/suid").mode(), 0o104755);
        assert_eq!(md("data/sticky").mode(), 0o41777);
        assert_eq!(md("bin/suid").mode(), 0o104755);
        assert_eq!((md("data/owned").uid(), md("data/owned").gid()), (1234, 5678));
        assert_eq!((md("home/user/secret").uid(), md("home/user").gid()), (1000, 1000));
        assert_eq!(md("data/zero").rdev(), rustix::fs::makedev(1, 5));
        assert_eq!(md("data/old").mtime(), 1_000_000_000);
        assert_eq!(md("opaq").mtime(), 1_450_000_000);
        // layer 3 adds to and whites out in etc without listing it: etc keeps the mtime
        // layer 2 (a repack, which lists etc with the time of the deletion) gave it
        let etc_mid = {
            let b = reference(d.path(), &layout, "mid");
            std::fs::symlink_metadata(b.join("etc")).unwrap().mtime()
        };
        assert_eq!(md("etc").mtime(), etc_mid);
        let x = |p: &str, k: &str| {
            let mut v = vec![0u8; 256];
            let n = rustix::fs::lgetxattr(r.join(p), k, &mut v)
                .unwrap_or_else(|e| panic!("{p} {k}: {e}"));
            v.truncate(n);
            v
        };
        assert_eq!(x("data/xa", "user.k"), b"v");
        assert_eq!(x("data/xa", "user.bin"), b"\x00\xff\xfe");
        assert_eq!(x("data/xa", "security.capability").len(), 20);
        assert_eq!(x("etc/hostname", "user.color"), b"blue");
        assert_eq!(x("etc", "user.dir"), b"\x00\x01binary");
        let groups = hardlink_groups(&r);
        let g = |v: &[&str]| v.iter().map(|p| p.as_bytes().to_vec()).collect::<Vec<_>>();
        assert!(groups.contains(&g(&["bin/tool", "bin/tool-link", "data/lower-link"])), "{groups:?}");
        assert!(groups.contains(&g(&["data/f1", "data/f1-link"])), "{groups:?}");
        // the comparison, on a tree that certainly equals the reference
        let fl = d.path().join("packed.fl");
        pack(&fl, &dir_url(&d.path().join("pstore")), &[], &r);
        assert_flist_is_tree(d.path(), &fl, &r, false);
    }
}

// ---------------------------------------------------------------- equality with umoci

fuse_test! {
    /// The core of the contract: an oci layout of three layers (umoci's and hand-made)
    /// imports into the tree umoci unpacks, plus /.startup.toml; the summary's figures
    /// match the flist.
    fn import_of_an_oci_layout_equals_umoci_unpack() {
        let d = tmp();
        let layout = rich_image(d.path(), "img");
        let rootfs = reference(d.path(), &layout, "rich");
        let t = Target::new(d.path(), "rich");
        let image = oci_ref(&layout, "rich");
        let out = import_ok(&image, &t, &[]);
        let sum = parse_imported(&out, &image, &t.fl);
        assert_eq!((sum.layers, sum.reused), (3, 0), "{out}");
        let tree = snapshot(&rootfs);
        let files = tree.values().filter(|n| n.mode & 0o170000 == 0o100000).count() as u64;
        assert_eq!(sum.entries, tree.len() as u64 + 1, "entries (root and startup file included): {out}");
        assert_eq!(sum.files, files + 1, "files (startup file included): {out}");
        assert_eq!(sum.chunks, block_rows(&t.fl).len() as u64, "{out}");
        assert_eq!(sum.uploaded, store_objects(&t.store).len() as u64, "{out}");
        assert!(!out.lines().any(|l| l.starts_with("reused ")), "{out}");
        assert_flist_is_tree(d.path(), &t.fl, &rootfs, true);
    }
}

fuse_test! {
    /// Each intermediate tag too (repacked layers only: umoci's own whiteouts).
    fn import_of_each_layer_prefix_equals_umoci_unpack() {
        let d = tmp();
        let layout = rich_image(d.path(), "img");
        for tag in ["base", "mid"] {
            let rootfs = reference(d.path(), &layout, tag);
            let t = Target::new(d.path(), tag);
            import_ok(&oci_ref(&layout, tag), &t, &["--no-startup-file"]);
            assert_flist_is_tree(d.path(), &t.fl, &rootfs, false);
        }
    }
}

/// zstd and uncompressed copies of the image (skopeo) import into the same flist as the
/// gzip original.
#[test]
fn import_of_zstd_and_uncompressed_layers_equals_the_gzip_one() {
    let d = tmp();
    let layout = rich_image(d.path(), "img");
    let zstd = d.path().join("zstd");
    skopeo_copy(
        &oci_ref(&layout, "rich"),
        &oci_ref(&zstd, "rich"),
        &["--dest-compress-format", "zstd"],
    );
    // skopeo decompresses only into a `dir:` copy; from there into an oci layout that
    // accepts uncompressed layers
    let plain = d.path().join("plain");
    let plain_dir = format!("dir:{}", d.path().join("plain-dir").display());
    skopeo_copy(
        &oci_ref(&layout, "rich"),
        &plain_dir,
        &["--dest-decompress"],
    );
    skopeo_copy(
        &plain_dir,
        &oci_ref(&plain, "rich"),
        &["--dest-oci-accept-uncompressed-layers"],
    );
    for (variant, want) in [(&zstd, "tar+zstd"), (&plain, "tar")] {
        for l in layers(variant, "rich") {
            assert!(
                l["mediaType"].as_str().unwrap().ends_with(want),
                "the {want} copy has a layer {l}"
            );
        }
    }
    let gz = Target::new(d.path(), "gzip");
    import_ok(&oci_ref(&layout, "rich"), &gz, &["--no-startup-file"]);
    for (variant, want) in [(&zstd, "tar+zstd"), (&plain, "tar")] {
        let t = Target::new(d.path(), want.replace('+', "-").as_str());
        import_ok(&oci_ref(variant, "rich"), &t, &["--no-startup-file"]);
        assert_same_flists(&gz.fl, &t.fl);
    }
}

/// `docker-archive:F.tar` (skopeo's `docker save` form) imports into the same flist.
#[test]
fn import_of_a_docker_archive_equals_the_oci_layout() {
    let d = tmp();
    let layout = rich_image(d.path(), "img");
    let archive = d.path().join("rich.tar");
    skopeo_copy(
        &oci_ref(&layout, "rich"),
        &format!("docker-archive:{}:zvfs/rich:latest", archive.display()),
        &[],
    );
    let listing = tool("tar", &["-tf", s(&archive)]);
    assert!(listing.lines().any(|l| l == "manifest.json"), "{listing}");
    let oci = Target::new(d.path(), "oci");
    import_ok(&oci_ref(&layout, "rich"), &oci, &["--no-startup-file"]);
    let t = Target::new(d.path(), "archive");
    import_ok(
        &format!("docker-archive:{}", archive.display()),
        &t,
        &["--no-startup-file"],
    );
    assert_same_flists(&oci.fl, &t.fl);
}

/// Pushed to a registry, the image imports by tag and by digest into the same flist; the
/// `image.digest` tag is the registry's manifest digest.
#[test]
fn import_from_a_registry_equals_the_oci_layout() {
    let d = tmp();
    let layout = rich_image(d.path(), "img");
    let reg = Registry::start();
    push(&layout, "rich", &reg, "zvfs/rich");
    push_with(&layout, "rich", &reg, "zvfs/docker", &["--format", "v2s2"]);
    let oci = Target::new(d.path(), "oci");
    import_ok(&oci_ref(&layout, "rich"), &oci, &["--no-startup-file"]);
    let by_tag = Target::new(d.path(), "by-tag");
    let image = reg.image("zvfs/rich", "rich");
    import_ok(&image, &by_tag, &["--no-startup-file"]);
    assert_same_flists(&oci.fl, &by_tag.fl);
    let tg = tags(&by_tag.fl);
    assert_eq!(tg.get("image"), Some(&image));
    let digest = tg.get("image.digest").expect("image.digest tag").clone();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let by_digest = Target::new(d.path(), "by-digest");
    import_ok(
        &reg.image("zvfs/rich", &format!("@{digest}")),
        &by_digest,
        &["--no-startup-file"],
    );
    assert_same_flists(&oci.fl, &by_digest.fl);
    // Docker media types (schema 2 manifest, rootfs.diff.tar.gzip layers)
    let docker = Target::new(d.path(), "docker");
    import_ok(
        &reg.image("zvfs/docker", "rich"),
        &docker,
        &["--no-startup-file"],
    );
    assert_same_flists(&oci.fl, &docker.fl);
}

// ---------------------------------------------------------------- chunks and the store

/// Upper layers delete a 1.3 MiB file and replace another: a fresh store ends up with
/// exactly the chunks the flist references, nothing of the deleted or replaced content.
#[test]
fn the_store_holds_exactly_the_chunks_the_flist_references() {
    let d = tmp();
    let layout = rich_image(d.path(), "img");
    let t = Target::new(d.path(), "rich");
    let out = import_ok(&oci_ref(&layout, "rich"), &t, &[]);
    let ids = block_ids(&t.fl);
    assert!(ids.len() > 5, "{ids:?}");
    assert_eq!(store_objects(&t.store), ids);
    let sum = parse_imported(&out, &oci_ref(&layout, "rich"), &t.fl);
    assert_eq!(sum.uploaded, ids.len() as u64);
}

/// `zvfs pack` of the umoci rootfs gives the same chunks (ids and keys) as the import.
#[test]
fn imported_chunks_are_the_ones_pack_gives() {
    let d = tmp();
    let layout = rich_image(d.path(), "img");
    let rootfs = reference(d.path(), &layout, "rich");
    let t = Target::new(d.path(), "rich");
    import_ok(
        &oci_ref(&layout, "rich"),
        &t,
        &["--no-startup-file", "-j", "1"],
    );
    let packed = d.path().join("packed.fl");
    let pstore = d.path().join("pack-store");
    pack(&packed, &dir_url(&pstore), &[], &rootfs);
    assert_eq!(block_rows(&packed), block_rows(&t.fl));
    assert_eq!(store_objects(&pstore), store_objects(&t.store));
    // the flists agree on everything but the tags
    assert_same_flists(&packed, &t.fl);
}

/// Image B = A + one layer, imported after A into the same store and cache: A's layers
/// come from the layer index (B's layout no longer even holds their blobs) and only B's
/// new chunks are added to the store; B's flist is the one a fresh import gives.
#[test]
fn a_second_image_reuses_the_base_layers() {
    let d = tmp();
    let layout = rich_image(d.path(), "img");
    // A = mid (2 layers); B = rich (3 layers), copied alone into its own layout
    let b_layout = d.path().join("b");
    skopeo_copy(&oci_ref(&layout, "rich"), &oci_ref(&b_layout, "rich"), &[]);
    // the base layers' blobs are gone from B's layout: nothing may read them
    let b_layers = layers(&b_layout, "rich");
    let a_layers = layers(&layout, "mid");
    for (la, lb) in a_layers.iter().zip(&b_layers) {
        assert_eq!(la["digest"], lb["digest"], "B's base layers are A's");
        std::fs::remove_file(blob_path(&b_layout, lb["digest"].as_str().unwrap())).unwrap();
    }
    let a = Target::new(d.path(), "a");
    let out_a = import_ok(&oci_ref(&layout, "mid"), &a, &[]);
    let sum_a = parse_imported(&out_a, &oci_ref(&layout, "mid"), &a.fl);
    assert_eq!((sum_a.layers, sum_a.reused), (2, 0), "{out_a}");
    let after_a = store_objects(&a.store);
    let index = a.cache.join("layers");
    assert!(
        index.is_dir() && std::fs::read_dir(&index).unwrap().next().is_some(),
        "the layer index is under CACHE/layers"
    );
    let b = Target::new(d.path(), "b");
    let image_b = oci_ref(&b_layout, "rich");
    let out_b = import_ok(&image_b, &b, &[]);
    let sum_b = parse_imported(&out_b, &image_b, &b.fl);
    assert_eq!((sum_b.layers, sum_b.reused), (3, 2), "{out_b}");
    let second = out_b.lines().nth(1).unwrap_or("");
    assert!(
        second.starts_with("reused 2 layers (") && second.contains("from the layer index"),
        "second line: {out_b}"
    );
    let after_b = store_objects(&b.store);
    let mut want: std::collections::BTreeSet<String> = after_a.clone();
    want.extend(block_ids(&b.fl));
    assert_eq!(
        after_b, want,
        "the store holds A's chunks and B's, nothing else"
    );
    // Every new object was uploaded by B; B may also have sent chunks A had already stored
    // (content its own layers share with A's): stores are not asked first, as with pack.
    let new: Vec<_> = after_b.difference(&after_a).collect();
    assert!(sum_b.uploaded >= new.len() as u64, "{out_b}");
    // Nothing was uploaded for the reused layers' files: at most B's other chunks.
    let reused_chunks: u64 = second
        .split(" bytes, ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no chunk count in {second}"));
    assert!(reused_chunks > 0, "{second}");
    assert!(
        sum_b.uploaded <= sum_b.chunks - reused_chunks,
        "the reused layers' chunks were not uploaded again: {out_b}"
    );
    // the same flist as a fresh import of B (from the full layout, new store and cache:
    // nothing reused)
    let fresh_dir = d.path().join("fresh");
    let fresh = Target::new(&fresh_dir, "b");
    let out = import_ok(&oci_ref(&layout, "rich"), &fresh, &[]);
    let sum = parse_imported(&out, &oci_ref(&layout, "rich"), &fresh.fl);
    assert_eq!((sum.layers, sum.reused), (3, 0), "{out}");
    assert_same_flists(&fresh.fl, &b.fl);
}

/// A's import (tag `mid`: layer 2 deletes `big/blob` of layer 1) never uploads the
/// deleted file's chunks; importing `base` (layer 1 alone) afterwards reuses layer 1 from
/// the index, yet its flist needs `big/blob`: every chunk it references must be in the
/// store (`zvfs verify`), and the store holds exactly the chunks of the two flists.
#[test]
fn a_reused_layer_brings_the_chunks_the_first_image_deleted() {
    let d = tmp();
    let layout = rich_image(d.path(), "img");
    let a = Target::new(d.path(), "mid");
    import_ok(&oci_ref(&layout, "mid"), &a, &[]);
    let c = Target::new(d.path(), "base");
    import_ok(&oci_ref(&layout, "base"), &c, &[]);
    zvfs_ok(&["verify", "-m", s(&c.fl)]);
    let mut want = block_ids(&a.fl);
    want.extend(block_ids(&c.fl));
    assert_eq!(store_objects(&c.store), want);
}

// ---------------------------------------------------------------- config, tags, startup

/// The contract's tags and `/.startup.toml` (parsed with python3's tomllib), and user
/// `--tag k=v`.
#[test]
fn image_config_becomes_tags_and_startup_toml() {
    let d = tmp();
    let layout = rich_image(d.path(), "img");
    let cfg = image_config(&layout, "rich");
    let env: Vec<String> = cfg["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(env.contains(&"KEY=VALUE".to_string()), "{cfg}");
    let t = Target::new(d.path(), "rich");
    let image = oci_ref(&layout, "rich");
    import_ok(&image, &t, &["--tag", "owner=me", "--tag", "purpose=test"]);
    let tg = tags(&t.fl);
    let json = |k: &str| -> Value {
        serde_json::from_str(tg.get(k).unwrap_or_else(|| panic!("no tag {k}: {tg:?}")))
            .unwrap_or_else(|e| panic!("tag {k} is not JSON ({e}): {tg:?}"))
    };
    assert_eq!(tg.get("image"), Some(&image));
    assert_eq!(
        tg.get("image.digest"),
        Some(&manifest_digest(&layout, "rich"))
    );
    assert_eq!(json("image.entrypoint"), serde_json::json!(["/entry", "a"]));
    assert_eq!(json("image.cmd"), serde_json::json!(["b", "c d"]));
    assert_eq!(json("image.env"), serde_json::json!(env));
    assert_eq!(tg.get("image.workdir").map(|s| s.as_str()), Some("/work"));
    assert_eq!(tg.get("image.user").map(|s| s.as_str()), Some("1000:1000"));
    let mut ports: Vec<String> = serde_json::from_value(json("image.ports")).unwrap();
    ports.sort();
    assert_eq!(ports, ["53/udp", "80/tcp"]);
    assert_eq!(tg.get("owner").map(|s| s.as_str()), Some("me"));
    assert_eq!(tg.get("purpose").map(|s| s.as_str()), Some("test"));

    // /.startup.toml: mode 0644, root:root, in the root directory
    let c = rusqlite::Connection::open(&t.fl).unwrap();
    let (mode, uid, gid): (u32, u32, u32) = c
        .query_row(
            "SELECT mode, uid, gid FROM inode WHERE parent = 1 AND name = '.startup.toml'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("/.startup.toml in the flist");
    assert_eq!((mode, uid, gid), (0o100644, 0, 0));
    let toml = zvfs_ok(&["cat", "-m", s(&t.fl), "/.startup.toml"]);
    let parsed = toml_to_json(&toml);
    let mut env_table = serde_json::Map::new();
    for kv in &env {
        let (k, v) = kv.split_once('=').unwrap();
        env_table.insert(k.to_string(), Value::String(v.to_string()));
    }
    assert_eq!(
        parsed,
        serde_json::json!({"startup": {"entry": {
            "name": "core.system",
            "args": {
                "name": "/entry",
                "args": ["a", "b", "c d"],
                "dir": "/work",
                "env": env_table,
            },
        }}}),
        "/.startup.toml:\n{toml}"
    );
}

/// python3's tomllib, TOML -> JSON.
fn toml_to_json(text: &str) -> Value {
    let d = tmp();
    let f = d.path().join("startup.toml");
    std::fs::write(&f, text).unwrap();
    let out = tool(
        "python3",
        &[
            "-c",
            "import json,sys,tomllib; print(json.dumps(tomllib.load(open(sys.argv[1],'rb'))))",
            s(&f),
        ],
    );
    serde_json::from_str(&out).unwrap()
}

/// Without an entrypoint: cmd[0] is the program; without cmd either, `/bin/sh`; no
/// working dir: `/`.
#[test]
fn startup_toml_defaults() {
    let d = tmp();
    let layout = d.path().join("img");
    new_layout(&layout, "t");
    add_tar_layer(&layout, "t", "cmd", &[file("hello", b"hi\n")]);
    config(
        &layout,
        "cmd",
        &["--config.cmd", "/bin/echo", "--config.cmd", "hi"],
    );
    add_tar_layer(&layout, "t", "none", &[file("hello", b"hi\n")]);
    for (tag, name, args) in [
        ("cmd", "/bin/echo", serde_json::json!(["hi"])),
        ("none", "/bin/sh", serde_json::json!([])),
    ] {
        let t = Target::new(d.path(), tag);
        import_ok(&oci_ref(&layout, tag), &t, &[]);
        let toml = zvfs_ok(&["cat", "-m", s(&t.fl), "/.startup.toml"]);
        let v = toml_to_json(&toml);
        let a = &v["startup"]["entry"]["args"];
        assert_eq!(v["startup"]["entry"]["name"], "core.system", "{toml}");
        assert_eq!(a["name"], name, "{toml}");
        assert_eq!(a["args"], args, "{toml}");
        assert_eq!(a["dir"], "/", "{toml}");
    }
}

/// `--no-startup-file`: no `/.startup.toml`, the tags are still there.
#[test]
fn no_startup_file() {
    let d = tmp();
    let layout = rich_image(d.path(), "img");
    let t = Target::new(d.path(), "rich");
    import_ok(&oci_ref(&layout, "rich"), &t, &["--no-startup-file"]);
    let c = rusqlite::Connection::open(&t.fl).unwrap();
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM inode WHERE name = '.startup.toml'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
    assert!(tags(&t.fl).contains_key("image.entrypoint"));
}

/// `--prefetch TRACE`: the trace is in the imported flist (its paths resolved against the
/// image's tree); a path the image lacks is skipped with a warning.
#[test]
fn prefetch_trace_goes_into_the_imported_flist() {
    let d = tmp();
    let layout = d.path().join("img");
    new_layout(&layout, "t");
    add_tar_layer(&layout, "t", "t", &[file("hello", b"hi\n")]);
    let trace = d.path().join("t.trace");
    std::fs::write(&trace, "# zvfs trace v1\n5 0 /hello\n9 0 /not/there\n").unwrap();
    let t = Target::new(d.path(), "pf");
    let out = import_cmd(&oci_ref(&layout, "t"), &t, &["--prefetch", s(&trace)], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("/not/there"), "{err}");
    let shown = zvfs_ok(&["prefetch", "show", "-m", s(&t.fl)]);
    assert_eq!(shown.trim(), "5 0 /hello", "{shown}");
}

// ---------------------------------------------------------------- registry auth

/// A small image pushed to a registry that wants `zvfs:s3cret`.
fn auth_registry(dir: &Path) -> (Registry, String) {
    let layout = dir.join("img");
    new_layout(&layout, "t");
    add_tar_layer(&layout, "t", "t", &[file("hello", b"hi\n")]);
    let reg = Registry::start_htpasswd("zvfs", "s3cret");
    push(&layout, "t", &reg, "private/img");
    let image = reg.image("private/img", "t");
    (reg, image)
}

fn docker_config_json(reg: &Registry, user: &str, pass: &str) -> String {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    serde_json::json!({"auths": {reg.host(): {"auth": auth}}}).to_string()
}

/// An empty HOME, so no credentials are found by accident.
fn empty_home(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

#[test]
fn registry_auth_refused_without_credentials() {
    let d = tmp();
    let (_reg, image) = auth_registry(d.path());
    let home = empty_home(d.path());
    let t = Target::new(d.path(), "none");
    import_fails_env(&image, &t, &[], &[("HOME", &home)], &["private/img"]);
}

#[test]
fn registry_auth_refused_with_wrong_credentials() {
    let d = tmp();
    let (reg, image) = auth_registry(d.path());
    let home = empty_home(d.path());
    let t = Target::new(d.path(), "wrong");
    let out = import_cmd(
        &image,
        &t,
        &["--creds", "zvfs:Wr0ngPa55"],
        &[("HOME", &home)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "refused credentials: exit 1\n{stderr}"
    );
    assert!(stderr.contains("private/img"), "{stderr}");
    assert!(
        !stderr.contains("Wr0ngPa55"),
        "the password is shown: {stderr}"
    );
    assert!(!t.fl.exists());
    // a wrong authfile too
    let f = d.path().join("bad-auth.json");
    std::fs::write(&f, docker_config_json(&reg, "zvfs", "nope")).unwrap();
    import_fails_env(
        &image,
        &t,
        &["--authfile", s(&f)],
        &[("HOME", &home)],
        &["private/img"],
    );
}

#[test]
fn registry_auth_with_creds() {
    let d = tmp();
    let (_reg, image) = auth_registry(d.path());
    let home = empty_home(d.path());
    let t = Target::new(d.path(), "creds");
    import_ok_env(&image, &t, &["--creds", "zvfs:s3cret"], &[("HOME", &home)]);
    assert_eq!(zvfs_ok(&["cat", "-m", s(&t.fl), "/hello"]), "hi\n");
}

#[test]
fn registry_auth_with_authfile() {
    let d = tmp();
    let (reg, image) = auth_registry(d.path());
    let home = empty_home(d.path());
    let f = d.path().join("auth.json");
    std::fs::write(&f, docker_config_json(&reg, "zvfs", "s3cret")).unwrap();
    let t = Target::new(d.path(), "authfile");
    import_ok_env(&image, &t, &["--authfile", s(&f)], &[("HOME", &home)]);
}

#[test]
fn registry_auth_from_home_docker_config_json() {
    let d = tmp();
    let (reg, image) = auth_registry(d.path());
    let home = empty_home(d.path());
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    std::fs::write(
        home.join(".docker/config.json"),
        docker_config_json(&reg, "zvfs", "s3cret"),
    )
    .unwrap();
    let t = Target::new(d.path(), "home");
    import_ok_env(&image, &t, &[], &[("HOME", &home)]);
}

// ---------------------------------------------------------------- errors

/// A tag the registry (404) or the layout does not have.
#[test]
fn errors_unknown_tag() {
    let d = tmp();
    let layout = d.path().join("img");
    new_layout(&layout, "t");
    add_tar_layer(&layout, "t", "t", &[file("hello", b"hi\n")]);
    let reg = Registry::start();
    push(&layout, "t", &reg, "zvfs/img");
    let t = Target::new(d.path(), "x");
    import_fails(
        &reg.image("zvfs/img", "nope"),
        &t,
        &[],
        &["zvfs/img", "nope"],
    );
    import_fails(&reg.image("zvfs/absent", "t"), &t, &[], &["zvfs/absent"]);
    import_fails(&oci_ref(&layout, "nope"), &t, &[], &[s(&layout), "nope"]);
}

/// An image index without the requested platform; the ones it has import.
#[test]
fn errors_platform_missing_from_the_index() {
    let d = tmp();
    let layout = d.path().join("img");
    new_layout(&layout, "t");
    add_tar_layer(&layout, "t", "multi", &[file("hello", b"hi\n")]);
    make_index(
        &layout,
        "multi",
        &[("linux", "amd64", ""), ("linux", "arm64", "v8")],
    );
    let image = oci_ref(&layout, "multi");
    // the index is a real one: skopeo picks the arm64/v8 manifest from it
    skopeo_copy(
        &image,
        &oci_ref(&d.path().join("picked"), "t"),
        &["--override-arch", "arm64", "--override-variant", "v8"],
    );
    let reg = Registry::start();
    push_with(&layout, "multi", &reg, "zvfs/multi", &["--all"]);
    let remote = reg.image("zvfs/multi", "multi");
    let t = Target::new(d.path(), "x");
    import_fails(
        &image,
        &t,
        &["--platform", "linux/s390x"],
        &[s(&layout), "linux/s390x"],
    );
    import_ok(&image, &t, &["--platform", "linux/arm64/v8"]);
    std::fs::remove_file(&t.fl).unwrap();
    import_ok(&image, &t, &["--platform", "linux/amd64"]);
    // the same index served by a registry
    let r = Target::new(&d.path().join("remote"), "x");
    import_fails(
        &remote,
        &r,
        &["--platform", "linux/s390x"],
        &["zvfs/multi", "linux/s390x"],
    );
    import_ok(&remote, &r, &["--platform", "linux/arm64/v8"]);
}

/// `umoci unpack` of `layout:tag` must fail too (the fixture is really broken).
fn assert_umoci_refuses(layout: &Path, tag: &str) {
    let scratch = tmp();
    let out = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:{tag}", layout.display())])
        .arg(scratch.path().join("bundle"))
        .output()
        .expect("umoci cannot run: scripts/test.sh installs it");
    assert!(!out.status.success(), "umoci unpacks the broken {tag}");
}

/// A copy of a one-layer image (two files, one of 1.3 MiB) to break; returns the layout
/// and its layer's descriptor.
fn breakable(dir: &Path) -> (PathBuf, Value) {
    let layout = dir.join("img");
    new_layout(&layout, "t");
    add_tar_layer(
        &layout,
        "t",
        "t",
        &[file("small", b"hi\n"), file("big", &noise(21, BIG))],
    );
    let l = layers(&layout, "t").remove(0);
    (layout, l)
}

/// A byte of the layer blob flipped: the digest does not match.
#[test]
fn errors_layer_digest_mismatch() {
    let d = tmp();
    let (layout, l) = breakable(d.path());
    let digest = l["digest"].as_str().unwrap();
    let p = blob_path(&layout, digest);
    let mut b = std::fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x55;
    std::fs::write(&p, b).unwrap();
    assert_umoci_refuses(&layout, "t");
    let t = Target::new(d.path(), "x");
    import_fails(&oci_ref(&layout, "t"), &t, &[], &[s(&layout), digest]);
}

/// The layer blob truncated (its descriptor unchanged): a size or digest error.
#[test]
fn errors_truncated_layer_blob() {
    let d = tmp();
    let (layout, l) = breakable(d.path());
    let digest = l["digest"].as_str().unwrap();
    let p = blob_path(&layout, digest);
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    assert_umoci_refuses(&layout, "t");
    let t = Target::new(d.path(), "x");
    import_fails(&oci_ref(&layout, "t"), &t, &[], &[s(&layout), digest]);
}

/// A truncated gzip stream whose digest matches (manifest and index rewritten): the
/// decompression error names the layer.
#[test]
fn errors_truncated_gzip_with_a_matching_digest() {
    let d = tmp();
    let (layout, l) = breakable(d.path());
    let b = std::fs::read(blob_path(&layout, l["digest"].as_str().unwrap())).unwrap();
    let bad = &b[..b.len() / 2];
    let digest = replace_layer(
        &layout,
        "t",
        0,
        bad,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    assert_umoci_refuses(&layout, "t");
    let t = Target::new(d.path(), "x");
    import_fails(&oci_ref(&layout, "t"), &t, &[], &[s(&layout), &digest]);
}

/// Corrupt deflate data inside a well-framed gzip, digest matching.
#[test]
fn errors_corrupt_gzip_with_a_matching_digest() {
    let d = tmp();
    let (layout, _) = breakable(d.path());
    let scratch = d.path().join("layer.tar");
    write_tar(
        &scratch,
        &[file("small", b"hi\n"), file("big", &noise(21, BIG))],
    );
    let mut gz = gzip(&std::fs::read(&scratch).unwrap());
    let n = gz.len();
    for b in &mut gz[n / 3..n / 3 + 64] {
        *b ^= 0xa5;
    }
    let digest = replace_layer(
        &layout,
        "t",
        0,
        &gz,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    assert_umoci_refuses(&layout, "t");
    let t = Target::new(d.path(), "x");
    import_fails(&oci_ref(&layout, "t"), &t, &[], &[s(&layout), &digest]);
}

/// A layer media type zvfs does not know.
#[test]
fn errors_unknown_layer_media_type() {
    let d = tmp();
    let (layout, l) = breakable(d.path());
    let b = std::fs::read(blob_path(&layout, l["digest"].as_str().unwrap())).unwrap();
    let mt = "application/vnd.example.layer.v1.tar+lz4";
    let digest = replace_layer(&layout, "t", 0, &b, mt);
    let t = Target::new(d.path(), "x");
    import_fails(&oci_ref(&layout, "t"), &t, &[], &[s(&layout), &digest, mt]);
}

/// A hardlink whose target no layer has: an error naming the link and the target
/// (umoci fails too).
#[test]
fn errors_hardlink_to_a_missing_target() {
    let d = tmp();
    let layout = d.path().join("img");
    new_layout(&layout, "t");
    add_tar_layer(
        &layout,
        "t",
        "t",
        &[file("ok", b"ok\n"), hardlink("the-link", "missing/target")],
    );
    assert_umoci_refuses(&layout, "t");
    let t = Target::new(d.path(), "x");
    import_fails(
        &oci_ref(&layout, "t"),
        &t,
        &[],
        &[s(&layout), "the-link", "missing/target"],
    );
}

/// A name of 256 bytes: an error naming it (umoci fails too).
#[test]
fn errors_name_longer_than_255_bytes() {
    let d = tmp();
    let layout = d.path().join("img");
    new_layout(&layout, "t");
    let long = format!("dir/{}", "x".repeat(256));
    add_tar_layer(
        &layout,
        "t",
        "t",
        &[dir("dir"), file(long.as_str(), b"too long\n")],
    );
    assert_umoci_refuses(&layout, "t");
    let t = Target::new(d.path(), "x");
    import_fails(
        &oci_ref(&layout, "t"),
        &t,
        &[],
        &[s(&layout), &"x".repeat(256)],
    );
}

// ---------------------------------------------------------------- hostile tar entries

fuse_test! {
    /// Absolute names and `..` resolve inside the root as umoci resolves them
    /// (`/etc/x` -> `etc/x`, `../../escape` -> `escape`, `a/../../b` -> `b`, hardlinks to
    /// `/etc/hello` and `../../etc/hello` -> `etc/hello`); nothing lands outside.
    fn hostile_tar_paths_stay_inside_the_root() {
        let d = tmp();
        let layout = d.path().join("work/img");
        new_layout(&layout, "t");
        add_tar_layer(
            &layout,
            "t",
            "base",
            &[dir("etc"), file("etc/hello", b"hello\n").mtime(1_600_000_000)],
        );
        add_tar_layer(
            &layout,
            "base",
            "hostile",
            &[
                dir("abs").mtime(1_400_000_000),
                file("/abs/x", b"abs\n"),
                file("/etc/x", b"etc x\n"),
                file("../../escape", b"escape\n"),
                file("a/../../b", b"b\n"),
                file("./dot/../c", b"c\n"),
                hardlink("hl-abs", "/etc/hello"),
                hardlink("hl-up", "../../etc/hello"),
                symlink("sym-out", "../../../etc/shadow"),
            ],
        );
        let rootfs = reference(d.path(), &layout, "hostile");
        for name in ["abs/x", "etc/x", "escape", "b", "c", "hl-abs", "hl-up"] {
            assert!(rootfs.join(name).exists(), "umoci put {name} elsewhere");
        }
        let t = Target::new(d.path(), "hostile");
        let cwd = d.path().join("work/deep/er");
        std::fs::create_dir_all(&cwd).unwrap();
        let out = Command::new(zvfs_bin())
            .current_dir(&cwd)
            .args(["import", &oci_ref(&layout, "hostile"), "-m", s(&t.fl), "-s"])
            .arg(dir_url(&t.store))
            .args(["-c", s(&t.cache), "--no-startup-file"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for p in [d.path().to_path_buf(), d.path().join("work"), d.path().join("work/deep")] {
            for name in ["escape", "b", "c", "x"] {
                assert!(!p.join(name).exists(), "{} was written", p.join(name).display());
            }
        }
        // umoci gives the root the time of its unpack here (an entry it rewrote in place:
        // nothing an import can reproduce), so the root's mtime is not compared.
        let mnt = d.path().join("mnt");
        let _m = Mount::daemon(&mnt, &["-m", s(&t.fl), "-c", s(&d.path().join("mc"))]);
        let (mut want, mut got) = (snapshot(&rootfs), snapshot(&mnt));
        want.get_mut(&b""[..]).expect("root").clear_mtime();
        got.get_mut(&b""[..]).expect("root").clear_mtime();
        assert_same_snapshots(want, got);
        assert_eq!(hardlink_groups(&rootfs), hardlink_groups(&mnt), "hardlink groups");
    }
}

fuse_test! {
    /// Parents a layer does not list are created 0755 root:root, as umoci does; their
    /// mtimes (umoci: the time of its unpack, also for the existing directory they are
    /// made in) are not compared.
    fn implicit_parent_directories_are_made_as_umoci_makes_them() {
        let d = tmp();
        let layout = d.path().join("img");
        new_layout(&layout, "t");
        add_tar_layer(&layout, "t", "base", &[dir("top").mtime(1_300_000_000)]);
        add_tar_layer(
            &layout,
            "base",
            "implicit",
            &[file("top/a/b/file", b"deep\n"), file("x/y", b"y\n")],
        );
        let rootfs = reference(d.path(), &layout, "implicit");
        let t = Target::new(d.path(), "implicit");
        import_ok(&oci_ref(&layout, "implicit"), &t, &["--no-startup-file"]);
        let mnt = d.path().join("mnt");
        let _m = Mount::daemon(&mnt, &["-m", s(&t.fl), "-c", s(&d.path().join("mc"))]);
        let (mut want, mut got) = (snapshot(&rootfs), snapshot(&mnt));
        for k in ["", "top", "top/a", "top/a/b", "x"] {
            let k = k.as_bytes().to_vec();
            want.get_mut(&k).expect("in umoci's tree").clear_mtime();
            got.get_mut(&k).unwrap_or_else(|| panic!("{:?} missing", k)).clear_mtime();
        }
        for k in ["top/a", "top/a/b", "x"] {
            assert_eq!(want[k.as_bytes()].mode, 0o40755, "umoci's {k}");
        }
        assert_same_snapshots(want, got);
    }
}

/// On a terminal (a pty from `script`), stderr shows the progress line (pass and layer);
/// with stderr a pipe it stays quiet, and stdout has only the summary either way.
#[test]
fn progress_shows_on_a_terminal_only() {
    let d = tmp();
    let layout = rich_image(d.path(), "img");
    let image = oci_ref(&layout, "rich");
    let t = Target::new(d.path(), "tty");
    let cmd = format!(
        "{} import {image} -m {} -s {} -c {} 2>&1",
        zvfs_bin().display(),
        t.fl.display(),
        dir_url(&t.store),
        t.cache.display()
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .output()
        .expect("script (util-linux) runs a command on a pty");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("listing 3 layers, encoding the top one"),
        "{text}"
    );
    assert!(text.contains("encoding layer 1/3"), "{text}");
    assert!(text.contains("imported "), "{text}");
    let t2 = Target::new(&d.path().join("other"), "pipe");
    let out = import_cmd(&image, &t2, &[], &[]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

/// A network namespace of the test joined to this one by a veth pair (host side
/// `10.213.77.1`, namespace side `10.213.77.2`); removed on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let ns = format!("zvfs-imp-{}", std::process::id());
        let host_if = format!("vzh{}", std::process::id() % 100_000);
        let ns_if = format!("vzn{}", std::process::id() % 100_000);
        let n = Netns(ns.clone());
        for args in [
            vec!["netns", "add", &ns],
            vec![
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ],
            vec!["link", "set", &ns_if, "netns", &ns],
            vec!["addr", "add", "10.213.77.1/30", "dev", &host_if],
            vec!["link", "set", &host_if, "up"],
            vec!["-n", &ns, "addr", "add", "10.213.77.2/30", "dev", &ns_if],
            vec!["-n", &ns, "link", "set", &ns_if, "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip")
                .args(&args)
                .output()
                .expect("ip (iproute2)");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        n
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A registry at a non-loopback address (in a network namespace of the test) is spoken to
/// over HTTPS, so a plain-HTTP registry is refused naming it; `--insecure` makes it plain
/// HTTP and the import succeeds.
#[test]
fn insecure_speaks_plain_http_to_a_non_loopback_registry() {
    let d = tmp();
    let layout = rich_image(d.path(), "img");
    let ns = Netns::new();
    let reg = Registry::start_in_netns(&ns.0, "10.213.77.2");
    push(&layout, "rich", &reg, "far/img");
    let image = reg.image("far/img", "rich");
    let t = Target::new(d.path(), "far");
    let err = import_fails(&image, &t, &[], &["10.213.77.2"]);
    assert!(!err.contains("panicked"), "{err}");
    let out = import_ok(&image, &t, &["--insecure"]);
    assert!(out.starts_with(&format!("imported {image} ")), "{out}");
}

/// How often each layer blob is read (the debug line `N layer reads`): the top layer and
/// the bottom one once (an upper layer's files are final; the bottom layer's files that no
/// upper entry may hide are encoded as they stream past), the middle one twice (listed,
/// then its files read). The result is still the umoci unpack of the image and the store
/// holds no unused chunk.
#[test]
fn the_top_and_bottom_layers_are_read_once() {
    let d = tmp();
    let layout = d.path().join("img");
    new_layout(&layout, "empty");
    repack(&layout, "empty", "base", base_tree);
    repack(&layout, "base", "mid", |rootfs| {
        std::fs::write(rootfs.join("mid-file"), b"from the middle layer\n").unwrap();
    });
    add_tar_layer(
        &layout,
        "mid",
        "top",
        &[file("top-file", b"from the top\n")],
    );
    let t = Target::new(d.path(), "reads");
    let debug = [("RUST_LOG", Path::new("debug"))];
    let out = import_cmd(&oci_ref(&layout, "top"), &t, &["--no-startup-file"], &debug);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let reads = err
        .lines()
        .find_map(|l| {
            let head = l
                .split(" layer reads, ")
                .next()
                .filter(|h| h.len() < l.len())?;
            head.rsplit(' ').next()?.parse::<usize>().ok()
        })
        .unwrap_or_else(|| panic!("no reads line in {err}"));
    assert_eq!(reads, 4, "base once, mid twice, top once: {err}");
    let mut want = std::collections::BTreeSet::new();
    want.extend(block_ids(&t.fl));
    assert_eq!(store_objects(&t.store), want, "no unused chunk");
    let rootfs = reference(d.path(), &layout, "top");
    assert_flist_is_tree(d.path(), &t.fl, &rootfs, false);
}
