//! The stores end to end, through the real commands: `zvfs pack` into a real
//! `redis-server` (over TCP and over a unix socket), then `zvfs unpack` and `zvfs mount`
//! from it; and `unpack`/`mount` through a real HTTP server serving a dir store in both
//! the two-level and the flat layout. Every comparison is byte for byte.

use std::path::Path;

use crate::common::{
    self, dir_url, fuse_available, http_server, noise, redis_server, zvfs_ok, Mount,
};

/// A small tree: a multi-chunk file, a chunk-sized one, small files, a symlink, a subdir.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("big.bin"), noise(1, 1_300_000)).unwrap();
    std::fs::write(root.join("exact.bin"), noise(2, 524_288)).unwrap();
    std::fs::write(root.join("hello.txt"), b"hello world\n").unwrap();
    std::fs::write(root.join("sub/deeper/small.txt"), b"small").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("link")).unwrap();
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Unpack and mount `meta` from `store`, both byte-exact against `src`.
fn unpack_and_mount_match(meta: &Path, store: &str, src: &Path, work: &Path) {
    let out = work.join("unpacked");
    zvfs_ok(&["unpack", "-m", &s(meta), "-s", store, &s(&out)]);
    // unpack from `store`
    crate::common::assert_same_entries(src, &out);
    if fuse_available() {
        let mnt = work.join("mnt");
        let (meta, cache) = (s(meta), s(&work.join("cache")));
        let args = ["-m", &meta, "-c", &cache, "-s", store, "--deadline", "10"];
        let m = Mount::daemon(&mnt, &args);
        // mount from `store`
        crate::common::assert_same_entries(src, &m.target);
    }
}

#[test]
fn pack_into_redis_then_unpack_and_mount_over_tcp() {
    let redis = redis_server(false);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let url = format!("zdb://127.0.0.1:{}", redis.port);
    let meta = work.path().join("t.fl");
    common::pack(&meta, &url, &[], &src);
    // Every chunk is in redis and nothing in the flist points elsewhere.
    let routes = zvfs_ok(&["config", "-m", &s(&meta), "store", "list"]);
    assert!(routes.contains(&url), "{routes}");
    zvfs_ok(&["verify", "-m", &s(&meta), "--deep"]);
    unpack_and_mount_match(&meta, &url, &src, work.path());
}

#[test]
fn pack_into_redis_then_unpack_and_mount_over_a_unix_socket() {
    let redis = redis_server(true);
    let sock = redis.socket.clone().expect("unix socket");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let url = format!("zdb://{}", sock.display());
    let meta = work.path().join("t.fl");
    common::pack(&meta, &url, &[], &src);
    unpack_and_mount_match(&meta, &url, &src, work.path());
}

/// Move every `<hh>/<hex>` object of a dir store to `<hex>` at its top.
fn flatten(store: &Path) {
    for e in std::fs::read_dir(store).unwrap() {
        let dir = e.unwrap().path();
        if dir.is_dir() {
            for o in std::fs::read_dir(&dir).unwrap() {
                let o = o.unwrap().path();
                std::fs::rename(&o, store.join(o.file_name().unwrap())).unwrap();
            }
            std::fs::remove_dir(&dir).unwrap();
        }
    }
}

#[test]
fn unpack_and_mount_through_http_in_both_layouts() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let store = work.path().join("store");
    let meta = work.path().join("t.fl");
    common::pack(
        &meta,
        &format!("{}?layout=sharded", dir_url(&store)),
        &[],
        &src,
    );

    let http = http_server(&store);
    let url = format!("http://127.0.0.1:{}", http.port);
    let two_level = work.path().join("two-level");
    unpack_and_mount_match(&meta, &url, &src, &two_level);

    flatten(&store);
    assert!(std::fs::read_dir(&store)
        .unwrap()
        .all(|e| e.unwrap().path().is_file()));
    let flat = work.path().join("flat");
    unpack_and_mount_match(&meta, &url, &src, &flat);
}
