//! Legacy `.flist` support (issue 10): reading the real zflist fixture through the `Flist`
//! trait with chunks from real stores, corruption detection, `zvfs convert`, and format
//! detection by content.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common::{self, dir_url, fixture, redis_server, s, untar, zvfs, zvfs_bin, Mount};
use zvfs::codec::{self, ChunkRef, CHUNK_SIZE};
use zvfs::flist::{self, Flist, Kind};
use zvfs::store::router::Router;
use zvfs::store::StoreConfig;

fn legacy_fixture(name: &str) -> PathBuf {
    fixture("legacy-flist").join(name)
}

/// A writable copy of the fixture's `chunks/` directory (flat `<hex>` files).
fn copy_chunks(dest: &Path) -> PathBuf {
    let out = dest.join("chunks");
    std::fs::create_dir_all(&out).unwrap();
    for e in std::fs::read_dir(legacy_fixture("chunks")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), out.join(e.file_name())).unwrap();
    }
    out
}

/// What one path of a tree looks like, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    perm: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    /// File content or symlink target.
    data: Vec<u8>,
}

/// The tree on disk (as extracted from tree.tar), keyed by relative path.
fn disk_tree(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), Vec::new())];
    while let Some((p, rel)) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let (kind, data) = if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                let mut r: Vec<u8> = rel.clone();
                if !r.is_empty() {
                    r.push(b'/');
                }
                r.extend_from_slice(e.file_name().as_bytes());
                stack.push((e.path(), r));
            }
            ("dir", Vec::new())
        } else if ft.is_symlink() {
            (
                "symlink",
                std::fs::read_link(&p)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        } else if ft.is_file() {
            ("file", std::fs::read(&p).unwrap())
        } else {
            use std::os::unix::fs::FileTypeExt;
            assert!(ft.is_fifo(), "unexpected special file {}", p.display());
            ("fifo", Vec::new())
        };
        out.insert(
            rel,
            Node {
                kind,
                perm: m.permissions().mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: m.mtime(),
                data,
            },
        );
    }
    out
}

/// The tree as the flist describes it, file contents fetched through `router`.
fn flist_tree(fl: &dyn Flist, router: &Router) -> zvfs::error::Result<BTreeMap<Vec<u8>, Node>> {
    let mut out = BTreeMap::new();
    let root = fl.get(flist::ROOT_INO)?;
    flist::walk(fl, &root, Vec::new(), &mut |e, path| {
        let (kind, data) = match e.kind() {
            Kind::Dir => ("dir", Vec::new()),
            Kind::Symlink => ("symlink", fl.link_target(e.ino)?),
            Kind::File => {
                let mut data = Vec::new();
                for c in fl.blocks(e.ino)? {
                    data.extend_from_slice(&router.fetch(&c)?);
                }
                assert_eq!(data.len() as u64, e.size, "size of {path:?}");
                ("file", data)
            }
            Kind::Fifo => ("fifo", Vec::new()),
            other => (other.name(), Vec::new()),
        };
        out.insert(
            path.to_vec(),
            Node {
                kind,
                perm: e.mode & 0o7777,
                uid: e.uid,
                gid: e.gid,
                mtime: e.mtime,
                data,
            },
        );
        Ok(())
    })?;
    Ok(out)
}

/// Compare the flist's tree with tree.tar. The root directory's times are not recorded
/// by zflist (its `Dir` holds 0), so the root's mtime is left out.
fn assert_same_tree(got: &BTreeMap<Vec<u8>, Node>, want: &BTreeMap<Vec<u8>, Node>) {
    let names = |t: &BTreeMap<Vec<u8>, Node>| {
        t.keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(got), names(want));
    for (path, w) in want {
        let mut g = got[path].clone();
        if path.is_empty() {
            g.mtime = w.mtime;
        }
        assert_eq!(
            &g,
            w,
            "entry {:?} differs from tree.tar",
            String::from_utf8_lossy(path)
        );
    }
}

/// `flist::open(p)` must fail (it would accept `what`); returns the error message.
fn open_err(p: &Path, what: &str) -> String {
    match flist::open(p) {
        Ok(_) => panic!("accepted {what}"),
        Err(e) => e.msg,
    }
}

fn tree_tar(dir: &Path) -> BTreeMap<Vec<u8>, Node> {
    let t = dir.join("tree");
    untar(&legacy_fixture("tree.tar"), &t);
    disk_tree(&t)
}

fn dir_router(url: &str) -> Router {
    Router::for_flist(&[], &[url.to_string()], &StoreConfig::default()).unwrap()
}

#[test]
fn fixture_reads_like_tree_tar_with_a_dir_store() {
    let d = tempfile::tempdir().unwrap();
    let want = tree_tar(d.path());
    // Spot-check what the fixture promises, so the comparison below cannot be vacuous.
    assert_eq!(want[&b"suid-bin"[..]].perm, 0o4755);
    assert_eq!(want[&b"private"[..]].perm, 0o700);
    assert_eq!(
        (want[&b"owned"[..]].uid, want[&b"owned"[..]].gid),
        (1000, 2000)
    );
    let chunks = copy_chunks(d.path());
    let fl = flist::open(&legacy_fixture("sample.flist")).unwrap();
    assert_eq!(fl.format(), "legacy");
    // The flist's own backend route, overridden by -s.
    let routes = fl.routes().unwrap();
    assert_eq!(routes[0].url, "zdb://127.0.0.1:59429");
    let router = Router::for_flist(&routes, &[dir_url(&chunks)], &StoreConfig::default()).unwrap();
    let got = flist_tree(&*fl, &router).unwrap();
    assert_same_tree(&got, &want);
    assert_eq!(got[&b"link-absolute"[..]].data, b"/etc/hostname");
}

#[test]
fn flipped_bit_in_a_stored_chunk_is_an_error_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let chunks = copy_chunks(d.path());
    let hash = "a5147f6e7cac3a7076f942cb5e00d896"; // hello.txt
    let p = chunks.join(hash);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[3] ^= 0x04;
    std::fs::write(&p, bytes).unwrap();
    let fl = flist::open(&legacy_fixture("sample.flist")).unwrap();
    let router = dir_router(&dir_url(&chunks));
    let hello = flist::resolve(&*fl, b"hello.txt").unwrap();
    let chunk = fl.blocks(hello.ino).unwrap()[0];
    let err = router.fetch(&chunk).unwrap_err();
    assert_eq!(err.kind, zvfs::error::ErrorKind::Corrupt, "{err}");
    assert!(
        err.msg.contains(hash) && err.msg.contains("corrupt"),
        "{err}"
    );
    // The rest of the tree still reads; the damaged file never yields wrong bytes.
    let notes = flist::resolve(&*fl, b"notes.txt").unwrap();
    assert_eq!(
        router
            .fetch(&fl.blocks(notes.ino).unwrap()[0])
            .unwrap()
            .len(),
        29
    );
    assert_eq!(
        flist_tree(&*fl, &router).err().map(|e| e.kind),
        Some(zvfs::error::ErrorKind::Corrupt)
    );
}

/// `zvfs convert` then reading the new `.fl` gives the same tree, and its block list is
/// exactly what `codec::v2::encode` gives for each file's 512 KiB chunks (what rfs packs).
#[test]
fn convert_to_v2_preserves_the_tree_and_packs_like_rfs() {
    let d = tempfile::tempdir().unwrap();
    let want = tree_tar(d.path());
    let chunks = copy_chunks(d.path());
    let new_store = d.path().join("v2store");
    let out = d.path().join("sample.fl");
    let o = zvfs(&[
        "convert",
        "-m",
        legacy_fixture("sample.flist").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-s",
        &dir_url(&new_store),
        "--from-store",
        &dir_url(&chunks),
        "-j",
        "3",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Every legacy chunk but a file's last is 512 KiB: nothing had to be re-cut.
    assert!(stdout.contains("17 chunks read"), "{stdout}");
    assert!(!stdout.contains("re-cut"), "{stdout}");

    let v2 = flist::v2::V2Reader::open(&out).unwrap();
    assert_eq!(v2.format(), "zvfs-1");
    let routes = v2.routes().unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].url, dir_url(&new_store));
    // Read through the new flist's own routes: the chunks are in the new store.
    let router = Router::for_flist(&routes, &[], &StoreConfig::default()).unwrap();
    let got = flist_tree(&v2, &router).unwrap();
    assert_same_tree(&got, &want);
    // The root's times are carried over as recorded (0 in zflist flists).
    assert_eq!(v2.get(flist::ROOT_INO).unwrap().mtime, 0);

    let root = v2.get(flist::ROOT_INO).unwrap();
    let mut files = 0;
    flist::walk(&v2, &root, Vec::new(), &mut |e, path| {
        if e.kind() == Kind::File {
            files += 1;
            let content = &want[path].data;
            let expect: Vec<ChunkRef> = content
                .chunks(CHUNK_SIZE)
                .map(|p| codec::v2::encode(p).unwrap().0)
                .collect();
            assert_eq!(v2.blocks(e.ino)?, expect, "blocks of {path:?}");
            let id = v2.identity(e.ino)?.expect("identity recorded");
            assert_eq!(id.partial, zvfs::identity::partial_checksum_bytes(content));
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(files, 13);
    // 17 legacy chunks became 17 v2 chunks (no duplicate content in the fixture).
    let stored: usize = walk_files(&new_store);
    assert_eq!(stored, 17);
}

fn walk_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += walk_files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

#[test]
fn convert_failure_leaves_no_output() {
    let d = tempfile::tempdir().unwrap();
    let chunks = copy_chunks(d.path());
    // One chunk missing from the source store.
    std::fs::remove_file(chunks.join("a5147f6e7cac3a7076f942cb5e00d896")).unwrap();
    let out = d.path().join("new.fl");
    let (code, _, err) = convert(
        &legacy_fixture("sample.flist"),
        &out,
        &dir_url(&d.path().join("v2")),
        &["--from-store", &dir_url(&chunks)],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("hello.txt") && err.contains("a5147f6e7cac3a7076f942cb5e00d896"),
        "{err}"
    );
    let left = common::names_containing(d.path(), "new.fl");
    assert!(left.is_empty(), "output or temp file left: {left:?}");
}

/// Rewrite the fixture's database with a different `backend` and repack it like zflist.
fn fixture_with_backend(dir: &Path, backend: &str) -> PathBuf {
    let tmp = dir.join("db");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(legacy_fixture("sample.flist")).unwrap(),
    ));
    ar.unpack(&tmp).unwrap();
    let db = tmp.join("flistdb.sqlite3");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute(
        "INSERT OR REPLACE INTO metadata (key, value) VALUES ('backend', ?1)",
        [backend],
    )
    .unwrap();
    drop(c);
    let out = dir.join("with-backend.flist");
    gz_tar(&out, &[("./flistdb.sqlite3", std::fs::read(&db).unwrap())]);
    out
}

/// Write a gzip'd tar holding `members`, without end-of-archive blocks (as zflist does).
fn gz_tar(out: &Path, members: &[(&str, Vec<u8>)]) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(out).unwrap(),
        flate2::Compression::default(),
    );
    let mut b = tar::Builder::new(gz);
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
}

#[test]
fn backend_password_never_shows_in_errors() {
    let d = tempfile::tempdir().unwrap();
    // A closed loopback port: the backend cannot be reached.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let fl = fixture_with_backend(
        d.path(),
        &format!(
            r#"{{"host": "127.0.0.1", "port": {port}, "namespace": "ns", "password": "hunter2"}}"#
        ),
    );
    let opened = flist::open(&fl).unwrap();
    let routes = opened.routes().unwrap();
    assert_eq!(routes[0].url, format!("zdb://:hunter2@127.0.0.1:{port}/ns"));
    assert!(opened.tags().unwrap().iter().all(|(k, _)| k != "backend"));
    let out = d.path().join("x.fl");
    let (code, o, e) = convert(
        &fl,
        &out,
        &dir_url(&d.path().join("v2")),
        &["--connect-timeout", "1", "--deadline", "2"],
    );
    let all = format!("{o}{e}");
    assert_ne!(code, 0, "{all}");
    assert!(!all.contains("hunter2"), "password leaked: {all}");
    assert!(all.contains("127.0.0.1"), "{all}");
    assert!(!out.exists());
}

#[test]
fn format_detection_by_content_with_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.fl", Vec::new(), "empty"),
        (
            "random.flist",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761u32) >> 13) as u8)
                .collect(),
            "not an flist",
        ),
    ];
    for (name, data, expect) in &cases {
        let p = d.path().join(name);
        std::fs::write(&p, data).unwrap();
        let err = open_err(&p, "garbage");
        assert!(
            err.contains(p.to_str().unwrap()) && err.contains(expect),
            "{err}"
        );
    }
    // A gzip that is not a tar.
    let p = d.path().join("notar.flist");
    {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&p).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(&[0x5a; 3000]).unwrap();
        gz.finish().unwrap();
    }
    let err = open_err(&p, "a gzip of garbage");
    assert!(
        err.contains("notar.flist") && err.contains("not a legacy flist"),
        "{err}"
    );
    // A tar without flistdb.sqlite3.
    let p = d.path().join("nodb.flist");
    gz_tar(&p, &[("./readme.txt", b"hello".to_vec())]);
    let err = open_err(&p, "a tar without db");
    assert!(
        err.contains("nodb.flist") && err.contains("flistdb.sqlite3"),
        "{err}"
    );
    // A flistdb.sqlite3 that is not SQLite.
    let p = d.path().join("baddb.flist");
    gz_tar(&p, &[("./flistdb.sqlite3", vec![7u8; 2048])]);
    let err = open_err(&p, "a bad db");
    assert!(err.contains("baddb.flist"), "{err}");
    // A truncated legacy flist.
    let p = d.path().join("cut.flist");
    let full = std::fs::read(legacy_fixture("sample.flist")).unwrap();
    std::fs::write(&p, &full[..full.len() / 2]).unwrap();
    let err = open_err(&p, "a truncated flist");
    assert!(err.contains("cut.flist"), "{err}");
    // The name does not matter: a legacy flist called .fl and a v2 one called .flist.
    let p = d.path().join("legacy-named.fl");
    std::fs::copy(legacy_fixture("sample.flist"), &p).unwrap();
    assert_eq!(flist::open(&p).unwrap().format(), "legacy");
    // Through the CLI: the error names the file.
    let p = d.path().join("random.flist");
    let (code, _, err) = convert(&p, Path::new("/nonexistent/x.fl"), "dir:///tmp/x", &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains(p.to_str().unwrap()) && err.contains("not an flist"),
        "{err}"
    );
    let _ = zvfs_bin();
}

/// `SET` every `chunks/<hex>` file in the redis-server on `port` under its 16 raw key
/// bytes (RESP arrays).
fn load_chunks(port: u16, chunks: &Path) -> usize {
    use std::io::{BufRead, BufReader, Write};
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut n = 0;
    for e in std::fs::read_dir(chunks).unwrap() {
        let e = e.unwrap();
        let key = hex::decode(e.file_name().to_str().unwrap()).unwrap();
        assert_eq!(key.len(), 16);
        let val = std::fs::read(e.path()).unwrap();
        let mut req = Vec::new();
        req.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
        for part in [&key[..], &val[..]] {
            req.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
            req.extend_from_slice(part);
            req.extend_from_slice(b"\r\n");
        }
        w.write_all(&req).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "+OK\r\n");
        n += 1;
    }
    n
}

/// The fixture served by a real redis-server loaded from `chunks/`, reached through the
/// flist's own `backend` route (a `zdb://` URL) and through `-s redis://` overrides.
#[test]
fn fixture_reads_like_tree_tar_from_redis() {
    let d = tempfile::tempdir().unwrap();
    let want = tree_tar(d.path());
    let redis = redis_server(false);
    assert_eq!(load_chunks(redis.port, &legacy_fixture("chunks")), 17);
    // The backend metadata points at the server: no override needed.
    let fl_path = fixture_with_backend(
        d.path(),
        &format!(r#"{{"host": "127.0.0.1", "port": {}}}"#, redis.port),
    );
    let fl = flist::open(&fl_path).unwrap();
    let routes = fl.routes().unwrap();
    assert_eq!(routes[0].url, format!("zdb://127.0.0.1:{}", redis.port));
    let router = Router::for_flist(&routes, &[], &StoreConfig::default()).unwrap();
    assert_same_tree(&flist_tree(&*fl, &router).unwrap(), &want);
    // The original fixture (backend long gone) with a redis:// override.
    let fl = flist::open(&legacy_fixture("sample.flist")).unwrap();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let router = Router::for_flist(&fl.routes().unwrap(), &[url], &StoreConfig::default()).unwrap();
    assert_same_tree(&flist_tree(&*fl, &router).unwrap(), &want);
    // convert reading from the backend route, writing to a dir store.
    let out = d.path().join("from-redis.fl");
    let v2store = d.path().join("v2");
    let (code, _, err) = convert(&fl_path, &out, &dir_url(&v2store), &[]);
    assert_eq!(code, 0, "{err}");
    let v2 = flist::open(&out).unwrap();
    let router = Router::for_flist(&v2.routes().unwrap(), &[], &StoreConfig::default()).unwrap();
    assert_same_tree(&flist_tree(&*v2, &router).unwrap(), &want);
}

/// A `zvfs mount -d` of an flist from `store`, unmounted on drop.
fn legacy_mount(flist: &Path, store: &str, cache: &Path, target: &Path) -> Mount {
    std::fs::create_dir_all(cache).unwrap();
    let args = [
        "-m",
        s(flist),
        "-c",
        s(cache),
        "-s",
        store,
        "--deadline",
        "5",
    ];
    Mount::daemon(target, &args)
}

fuse_test! {
    /// A legacy flist mounts over FUSE like tree.tar; a corrupted chunk gives EIO for its
    /// file only, never wrong bytes.
    fn legacy_flist_mounts_like_tree_tar_and_corruption_is_eio() {
        let d = tempfile::tempdir().unwrap();
        let want = tree_tar(d.path());
        let chunks = copy_chunks(d.path());
        let flist = legacy_fixture("sample.flist");
        {
            let m = legacy_mount(
                &flist,
                &dir_url(&chunks),
                &d.path().join("c1"),
                &d.path().join("m1"),
            );
            assert_same_tree(&disk_tree(&m.target), &want);
        }
        let p = chunks.join("a5147f6e7cac3a7076f942cb5e00d896"); // hello.txt
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[3] ^= 0x04;
        std::fs::write(&p, bytes).unwrap();
        let m = legacy_mount(
            &flist,
            &dir_url(&chunks),
            &d.path().join("c2"),
            &d.path().join("m2"),
        );
        let err = std::fs::read(m.target.join("hello.txt")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
        assert_eq!(
            std::fs::read(m.target.join("notes.txt")).unwrap(),
            want[&b"notes.txt"[..]].data
        );
    }
}

// ------------------------------------------------- every command on a legacy flist

/// Run zvfs: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let o = zvfs(args);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `zvfs convert -m <fl> -o <out> -s <store> <extra..>`: (exit code, stdout, stderr).
fn convert(fl: &Path, out: &Path, store: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["convert", "-m", s(fl), "-o", s(out), "-s", store];
    args.extend_from_slice(extra);
    run(&args)
}

/// `zvfs convert` of the fixture into `dir/sample.fl` with its chunks in `dir/v2store`.
fn convert_fixture(dir: &Path, chunks: &Path) -> PathBuf {
    let out = dir.join("sample.fl");
    let (code, o, e) = convert(
        &legacy_fixture("sample.flist"),
        &out,
        &dir_url(&dir.join("v2store")),
        &["--from-store", &dir_url(chunks)],
    );
    assert_eq!(code, 0, "{o}\n{e}");
    out
}

/// `zvfs pack` of a directory into `dir/<name>.fl` (chunks in `dir/packstore`).
fn pack(dir: &Path, tree: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.fl"));
    common::pack(&out, &dir_url(&dir.join("packstore")), &[], tree);
    out
}

/// Issue 10: `convert` then unpack of the new `.fl` equals the tree, and `diff` of the two
/// flists reports no content difference. The legacy side has no checksums and other chunk
/// keys, so diff fetches its files (12: every non-empty one) from `--store-a` and hashes
/// them; the converted side records checksums and is not fetched.
#[test]
fn convert_then_diff_reports_no_difference_and_unpack_equals_the_tree() {
    let d = tempfile::tempdir().unwrap();
    let want = tree_tar(d.path());
    let chunks = copy_chunks(d.path());
    let new = convert_fixture(d.path(), &chunks);
    let legacy = legacy_fixture("sample.flist");

    let target = d.path().join("unpacked");
    let (code, o, e) = run(&["unpack", "-p", "-m", s(&new), s(&target)]);
    assert_eq!(code, 0, "{o}\n{e}");
    assert_same_tree(&disk_tree(&target), &want);

    let store_a = dir_url(&chunks);
    for extra in [&[][..], &["--mtime"][..]] {
        let mut args = vec!["diff", s(&legacy), s(&new), "--store-a", &store_a];
        args.extend_from_slice(extra);
        let (code, out, err) = run(&args);
        assert_eq!((code, out.as_str()), (0, ""), "{args:?}: {err}");
        assert!(
            err.contains("fetched 12 files (17 chunks, 3824449 bytes)"),
            "{err}"
        );
    }
    // Either order: the legacy side is B now.
    let (code, out, err) = run(&["diff", s(&new), s(&legacy), "--store-b", &store_a]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("fetched 12 files"), "{err}");
    // Flists of one generation never fetch: no store given, none reachable, nothing said.
    assert_eq!(
        run(&["diff", s(&new), s(&new)]),
        (0, String::new(), String::new())
    );
    assert_eq!(
        run(&["diff", s(&legacy), s(&legacy)]),
        (0, String::new(), String::new())
    );
    // Without a store for the legacy side its own backend (long gone) is tried: exit 2
    // with the chunk and the store named.
    let (code, out, err) = run(&[
        "diff",
        "--connect-timeout",
        "1",
        "--deadline",
        "3",
        s(&legacy),
        s(&new),
    ]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("zdb://127.0.0.1:59429"), "{err}");
    assert!(
        err.contains("chunk ") && err.contains("flist A"),
        "no chunk named: {err}"
    );
    // A missing chunk in the given store: also exit 2, naming the chunk.
    std::fs::remove_file(chunks.join("a5147f6e7cac3a7076f942cb5e00d896")).unwrap();
    let (code, _, err) = run(&["diff", s(&legacy), s(&new), "--store-a", &store_a]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("/hello.txt") && err.contains("a5147f6e7cac3a7076f942cb5e00d896"),
        "{err}"
    );
}

/// The legacy fixture against a `zvfs pack` of its tree.tar extracted with `tar -xp
/// --numeric-owner` (modes, owners and mtimes restored): no difference at all but the
/// root's mtime, which zflist records as 0 (`--mtime` only). A file changed in the packed
/// tree is reported as `M content` for exactly that path: a same-size change is found by
/// fetching, a size change without fetching that file.
#[test]
fn diff_legacy_against_a_pack_of_its_tree() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    untar(&legacy_fixture("tree.tar"), &tree);
    let chunks = copy_chunks(d.path());
    let legacy = legacy_fixture("sample.flist");
    let store_a = dir_url(&chunks);
    let packed = pack(d.path(), &tree, "same");
    let (code, out, err) = run(&["diff", s(&legacy), s(&packed), "--store-a", &store_a]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("fetched 12 files"), "{err}");
    let (code, out, _) = run(&[
        "diff",
        "--mtime",
        s(&legacy),
        s(&packed),
        "--store-a",
        &store_a,
    ]);
    assert_eq!((code, out.as_str()), (1, "M mtime /\n"));

    // Same size, other bytes; and another file one byte longer.
    std::fs::write(tree.join("hello.txt"), b"hello World\n").unwrap();
    let mut notes = std::fs::read(tree.join("notes.txt")).unwrap();
    notes.push(b'!');
    std::fs::write(tree.join("notes.txt"), notes).unwrap();
    let changed = pack(d.path(), &tree, "changed");
    let (code, out, err) = run(&["diff", s(&legacy), s(&changed), "--store-a", &store_a]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(out, "M content /hello.txt\nM content /notes.txt\n", "{err}");
    // notes.txt was decided by its size: only the 11 other files were fetched.
    assert!(err.contains("fetched 11 files"), "{err}");
}

/// Unpack of the legacy flist is byte-exact against tree.tar: contents, modes, owners
/// (`-p`), mtimes (but the root's, recorded as 0), symlinks, the fifo.
#[test]
fn unpack_legacy_equals_tree_tar() {
    let d = tempfile::tempdir().unwrap();
    let want = tree_tar(d.path());
    let chunks = copy_chunks(d.path());
    let target = d.path().join("out");
    let (code, o, e) = run(&[
        "unpack",
        "-p",
        "-m",
        s(&legacy_fixture("sample.flist")),
        "-s",
        &dir_url(&chunks),
        s(&target),
    ]);
    assert_eq!(code, 0, "{o}\n{e}");
    let got = disk_tree(&target);
    assert_same_tree(&got, &want);
    assert_eq!(got[&b"link-relative"[..]].data, b"hello.txt");
    assert_eq!(got[&b"fifo0"[..]].kind, "fifo");
    assert_eq!(got[&b"random-1300000.bin"[..]].data.len(), 1_300_000);
}

/// verify (presence) and `verify --deep` (fetched and checked) pass on the fixture's
/// chunks, and find a deleted chunk (naming it and its file) and a corrupted one.
#[test]
fn verify_legacy_finds_missing_and_corrupt_chunks() {
    let d = tempfile::tempdir().unwrap();
    let chunks = copy_chunks(d.path());
    let fl = legacy_fixture("sample.flist");
    let store = dir_url(&chunks);
    let verify = |deep: bool| {
        let mut args = vec!["verify", "-m", s(&fl), "-s", &store];
        if deep {
            args.push("--deep");
        }
        run(&args)
    };
    for deep in [false, true] {
        let (code, out, err) = verify(deep);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(
            format!("{out}{err}").contains("17 ok, 0 missing"),
            "{out}{err}"
        );
    }
    let hello = "a5147f6e7cac3a7076f942cb5e00d896";
    std::fs::remove_file(chunks.join(hello)).unwrap();
    for deep in [false, true] {
        let (code, out, err) = verify(deep);
        let all = format!("{out}{err}");
        assert_ne!(code, 0, "{all}");
        assert!(all.contains("16 ok, 1 missing"), "{all}");
        assert!(all.contains(hello) && all.contains("hello.txt"), "{all}");
    }
    // A flipped bit: present, so only --deep finds it.
    let notes = "b5c8c8e53f75db1d4eebe501532b0a2a";
    let p = chunks.join(notes);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[5] ^= 0x10;
    std::fs::write(&p, bytes).unwrap();
    let (code, out, err) = verify(true);
    let all = format!("{out}{err}");
    assert_ne!(code, 0);
    assert!(all.contains("1 missing, 1 corrupt"), "{all}");
}

/// inspect, ls, stat and cat on the legacy fixture.
#[test]
fn inspect_ls_stat_cat_on_legacy() {
    let d = tempfile::tempdir().unwrap();
    let want = tree_tar(d.path());
    let chunks = copy_chunks(d.path());
    let fl = legacy_fixture("sample.flist");
    let fl = s(&fl);
    let (code, out, err) = run(&["inspect", "-m", fl]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "format: legacy",
        "entries: 23",
        "file: 13",
        "dir: 6",
        "symlink: 3",
        "fifo: 1",
        "bytes: 3824449",
        "chunks: 17",
        "00-ff zdb://127.0.0.1:59429",
    ] {
        assert!(out.lines().any(|l| l.trim() == line), "{line:?} in\n{out}");
    }
    let (code, out, _) = run(&["ls", "-m", fl, "/private"]);
    assert_eq!((code, out.as_str()), (0, "a\nlink-up\n"));
    let (code, out, _) = run(&["ls", "-m", fl]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 15, "{out}");
    assert!(out.lines().any(|l| l == "café-ünïcødé-日本.txt"), "{out}");
    let stat = |p: &str| {
        let (code, out, err) = run(&["stat", "-m", fl, p]);
        assert_eq!(code, 0, "{p}: {err}");
        out
    };
    let o = stat("/suid-bin");
    assert!(o.contains("mode: 104755"), "{o}");
    let o = stat("/owned/user-file.txt");
    assert!(o.contains("uid: 1000") && o.contains("gid: 2000"), "{o}");
    assert!(o.contains("size: 19"), "{o}");
    let o = stat("/fifo0");
    assert!(o.contains("type: fifo"), "{o}");
    let o = stat("/private");
    assert!(o.contains("type: dir") && o.contains("mode: 40700"), "{o}");
    let o = stat("/link-absolute");
    assert!(o.contains("type: symlink"), "{o}");
    let (code, _, err) = run(&["stat", "-m", fl, "/nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("nope"), "{err}");
    let store = dir_url(&chunks);
    for path in ["hello.txt", "random-1300000.bin", "private/a/b/c/deep.txt"] {
        let o = zvfs(&["cat", "-m", fl, "-s", &store, &format!("/{path}")]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stdout == want[path.as_bytes()].data, "cat /{path}");
    }
}

/// Editing tags or routes of a legacy flist is refused with a clear error; the file and
/// its directory are left as they were.
#[test]
fn config_edit_of_legacy_is_refused_clearly() {
    let d = tempfile::tempdir().unwrap();
    let fl = d.path().join("s.flist");
    std::fs::copy(legacy_fixture("sample.flist"), &fl).unwrap();
    let mut perm = std::fs::metadata(&fl).unwrap().permissions();
    perm.set_mode(0o644);
    std::fs::set_permissions(&fl, perm).unwrap();
    let before = std::fs::read(&fl).unwrap();
    for args in [
        vec!["config", "-m", s(&fl), "tag", "add", "--tag", "a=b"],
        vec!["config", "-m", s(&fl), "store", "add", "-s", "dir:///tmp/x"],
    ] {
        let (code, _, err) = run(&args);
        assert_ne!(code, 0, "{args:?}");
        assert!(
            err.contains("legacy flists are read-only; use zvfs convert"),
            "{err}"
        );
        assert!(!err.contains("not a database"), "{err}");
    }
    assert_eq!(std::fs::read(&fl).unwrap(), before);
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    // Listing works.
    let (code, out, _) = run(&["config", "-m", s(&fl), "store", "list"]);
    assert_eq!((code, out.as_str()), (0, "00-ff=zdb://127.0.0.1:59429\n"));
}

/// dedup on legacy flists: grouped by size then chunk keys among legacy inputs; with other
/// generations the report says what it does not match.
#[test]
fn dedup_on_legacy_flists() {
    let d = tempfile::tempdir().unwrap();
    let chunks = copy_chunks(d.path());
    let legacy = legacy_fixture("sample.flist");
    let (code, out, err) = run(&["dedup", s(&legacy)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("files: 13 contents, 3824449 bytes"), "{out}");
    assert!(out.contains("file-level dedup: 0 groups"), "{out}");
    assert!(out.contains("17 chunk references"), "{out}");
    assert!(!out.contains("note:"), "{out}");
    // A copy of the flist: each of its 12 non-empty files forms a group with itself.
    let copy = d.path().join("copy.flist");
    std::fs::copy(&legacy, &copy).unwrap();
    let (code, out, _) = run(&["dedup", "--json", s(&legacy), s(&copy)]);
    assert_eq!(code, 0);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["groups"].as_array().unwrap().len(), 12, "{out}");
    assert_eq!(r["file_level_saves"], 3824449);
    assert_eq!(r["chunk_level"]["unique"], 17);
    assert!(r.get("notes").is_none());
    let big = r["groups"][0].clone();
    assert_eq!(big["size"], 2000000);
    assert_eq!(big["files"][0]["path"], "/compressible-2000000.txt");
    // With its converted v2 flist: not matched across generations, and said so.
    let new = convert_fixture(d.path(), &chunks);
    let (code, out, _) = run(&["dedup", s(&legacy), s(&new)]);
    assert_eq!(code, 0);
    assert!(out.contains("file-level dedup: 0 groups"), "{out}");
    assert!(
        out.contains("note: legacy flists are compared among themselves only"),
        "{out}"
    );
}
