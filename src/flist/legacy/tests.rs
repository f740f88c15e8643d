//! Tests of the legacy reader, and the builders of legacy flists (Cap'n Proto messages in
//! a gzip'd tar) that other modules' tests use to make hostile or odd inputs.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::container::{extract_db, DB_MEMBER};
use super::decode::{decode_aci, owner_id, read_message};
use super::legacy_flist_capnp::{aci, dir, inode, special};
use super::*;
use crate::codec::ChunkRef;
use crate::flist::{resolve, walk};
use crate::flist::{Flist, Kind, ROOT_INO, S_IFBLK, S_IFCHR, S_IFDIR, S_IFREG};

fn fixture() -> PathBuf {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    for rel in ["../shared/fixtures", "../../shared/fixtures"] {
        let p = base.join(rel).join("legacy-flist/sample.flist");
        if p.exists() {
            return p;
        }
    }
    panic!("legacy-flist fixture not found");
}

/// Write a legacy flist (gzip'd tar without end blocks, like zflist) holding the given
/// `entries` and `metadata` rows.
pub(crate) fn write_flist(out: &Path, entries: &[(String, Vec<u8>)], meta: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(DB_MEMBER);
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE entries (key VARCHAR(64) PRIMARY KEY, value BLOB);
         CREATE TABLE metadata (key VARCHAR(64) PRIMARY KEY, value TEXT);",
    )
    .unwrap();
    for (k, v) in entries {
        c.execute(
            "INSERT INTO entries VALUES (?1, ?2)",
            rusqlite::params![k, v],
        )
        .unwrap();
    }
    for (k, v) in meta {
        c.execute("INSERT INTO metadata VALUES (?1, ?2)", [k, v])
            .unwrap();
    }
    drop(c);
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(out).unwrap(),
        flate2::Compression::default(),
    );
    let mut b = tar::Builder::new(gz);
    b.append_path_with_name(&db, "./flistdb.sqlite3").unwrap();
    // No finish(): no end-of-archive blocks, as zflist writes them.
    let gz = b.into_inner().unwrap();
    gz.finish().unwrap();
}

fn words(b: &capnp::message::Builder<capnp::message::HeapAllocator>) -> Vec<u8> {
    capnp::serialize::write_message_to_words(b)
}

pub(crate) fn aci_msg(uid: i64, gid: i64, mode: u16) -> Vec<u8> {
    let mut m = capnp::message::Builder::new_default();
    let mut a = m.init_root::<aci::Builder<'_>>();
    a.set_uname("u");
    a.set_gname("g");
    a.set_mode(mode);
    a.set_uid(uid);
    a.set_gid(gid);
    words(&m)
}

/// One child of a test directory.
pub(crate) enum T<'a> {
    Dir(&'a str, &'a str),
    File(&'a str, u64, Vec<ChunkRef>),
    Link(&'a str, &'a str),
    Special(&'a str, special::Type, &'a str),
}

pub(crate) fn dir_msg(location: &str, parent: &str, aclkey: &str, kids: &[T<'_>]) -> Vec<u8> {
    let mut m = capnp::message::Builder::new_default();
    let mut d = m.init_root::<dir::Builder<'_>>();
    d.set_name(location.rsplit('/').next().unwrap_or(""));
    d.set_location(location);
    d.set_parent(parent);
    d.set_size(4096);
    d.set_aclkey(aclkey);
    let mut list = d.init_contents(kids.len() as u32);
    for (i, k) in kids.iter().enumerate() {
        let mut n = list.reborrow().get(i as u32);
        n.set_aclkey(aclkey);
        n.set_modification_time(1_700_000_000);
        n.set_creation_time(1_700_000_001);
        match k {
            T::Dir(name, key) => {
                n.set_name(*name);
                n.set_size(4096);
                n.init_attributes().init_dir().set_key(*key);
            }
            T::File(name, size, blocks) => {
                n.set_name(*name);
                n.set_size(*size);
                let mut f = n.init_attributes().init_file();
                f.set_block_size(128);
                if !blocks.is_empty() {
                    let mut bl = f.init_blocks(blocks.len() as u32);
                    for (j, b) in blocks.iter().enumerate() {
                        let mut e = bl.reborrow().get(j as u32);
                        e.set_hash(b.id());
                        e.set_key(b.key());
                    }
                }
            }
            T::Link(name, target) => {
                n.set_name(*name);
                n.set_size(target.len() as u64);
                n.init_attributes().init_link().set_target(*target);
            }
            T::Special(name, ty, data) => {
                n.set_name(*name);
                let mut s = n.init_attributes().init_special();
                s.set_type(*ty);
                s.set_data(data.as_bytes());
            }
        }
    }
    words(&m)
}

pub(crate) fn key_of(path: &str) -> String {
    hex::encode(crate::codec::legacy::blake2b_128(path.as_bytes()))
}

fn open_err(entries: &[(String, Vec<u8>)]) -> String {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.flist");
    write_flist(&p, entries, &[]);
    match LegacyReader::open(&p) {
        Ok(_) => panic!("hostile flist accepted"),
        Err(e) => {
            assert!(
                e.msg.contains("bad.flist"),
                "error does not name the file: {e}"
            );
            e.msg
        }
    }
}

#[test]
fn root_key_is_blake2b_128_of_empty_path() {
    assert_eq!(key_of(""), ROOT_KEY);
}

#[test]
fn capnp_decode_of_fixture_entries() {
    let tmp = extract_db(&fixture()).unwrap();
    let c = Connection::open(&tmp.path).unwrap();
    let v: Vec<u8> = c
        .query_row(
            "SELECT value FROM entries WHERE key = '9ebe3b93851ab9cd'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let a = decode_aci(&v).unwrap();
    assert_eq!((a.uid, a.gid, a.perm), (1000, 2000, 0o755));
    let v: Vec<u8> = c
        .query_row(
            "SELECT value FROM entries WHERE key = ?1",
            [ROOT_KEY],
            |r| r.get(0),
        )
        .unwrap();
    let msg = read_message(&v).unwrap();
    let d = msg.get_root::<dir::Reader<'_>>().unwrap();
    assert_eq!(d.get_location().unwrap().to_str().unwrap(), "");
    assert_eq!(d.get_parent().unwrap().to_str().unwrap(), ROOT_KEY);
    let names: Vec<String> = d
        .get_contents()
        .unwrap()
        .iter()
        .map(|n| n.get_name().unwrap().to_string().unwrap())
        .collect();
    // Subdirectories first, then the rest, each in byte order.
    assert_eq!(&names[..3], ["owned", "private", "café-ünïcødé-日本.txt"]);
    assert_eq!(names.len(), 15);
    let hello = d
        .get_contents()
        .unwrap()
        .iter()
        .find(|n| n.get_name().unwrap() == "hello.txt")
        .unwrap();
    let inode::attributes::File(f) = hello.get_attributes().which().unwrap() else {
        panic!("hello.txt is not a file")
    };
    let b = f.unwrap().get_blocks().unwrap().get(0);
    assert_eq!(
        hex::encode(b.get_hash().unwrap()),
        "a5147f6e7cac3a7076f942cb5e00d896"
    );
    assert_eq!(
        hex::encode(b.get_key().unwrap()),
        "c0cdb4699cdaa9eea4c563a934f1d52b"
    );
}

#[test]
fn fixture_tree_through_the_flist_trait() {
    let fl = crate::flist::open(&fixture()).unwrap();
    assert_eq!(fl.format(), "legacy");
    let e = |p: &str| resolve(&*fl, p.as_bytes()).unwrap();
    let root = e("/");
    assert_eq!(root.mode, S_IFDIR | 0o755);
    assert_eq!(root.nlink, 4);
    let owned = e("owned");
    assert_eq!(
        (owned.uid, owned.gid, owned.mode),
        (1000, 2000, S_IFDIR | 0o755)
    );
    assert_eq!(owned.mtime, 1704164645);
    let uf = e("owned/user-file.txt");
    assert_eq!(
        (uf.uid, uf.gid, uf.mode, uf.size),
        (1000, 2000, S_IFREG | 0o644, 19)
    );
    assert_eq!(e("suid-bin").mode, S_IFREG | 0o4755);
    assert_eq!(e("private").mode, S_IFDIR | 0o700);
    assert_eq!(e("private").nlink, 3);
    assert_eq!(e("fifo0").kind(), Kind::Fifo);
    assert_eq!(e("run.sh").mode, S_IFREG | 0o755);
    let l = e("private/link-up");
    assert_eq!(l.kind(), Kind::Symlink);
    assert_eq!(fl.link_target(l.ino).unwrap(), b"../hello.txt");
    let h = e("hello.txt");
    let blocks = fl.blocks(h.ino).unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(
        hex::encode(blocks[0].id()),
        "a5147f6e7cac3a7076f942cb5e00d896"
    );
    assert_eq!(
        hex::encode(blocks[0].key()),
        "c0cdb4699cdaa9eea4c563a934f1d52b"
    );
    assert_eq!(fl.blocks(e("empty.txt").ino).unwrap().len(), 0);
    assert_eq!(fl.blocks(e("random-1300000.bin").ino).unwrap().len(), 3);
    assert!(fl.lookup(ROOT_INO, b"nope").unwrap().is_none());
    let mut count = 0;
    walk(&*fl, &root, Vec::new(), &mut |_, _| {
        count += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(count, 23);
    let t = fl.totals().unwrap();
    assert_eq!((t.files, t.dirs, t.symlinks, t.specials), (13, 6, 3, 1));
    assert_eq!((t.blocks, t.unique_blocks), (17, 17));
    let routes = fl.routes().unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].url, "zdb://127.0.0.1:59429");
    assert!(fl.tags().unwrap().is_empty());
}

#[test]
fn backend_urls() {
    assert_eq!(
        backend_url(r#"{"host":"h","port":9900,"namespace":"ns","password":"p@s/s"}"#).unwrap(),
        "zdb://:p%40s%2Fs@h:9900/ns"
    );
    assert_eq!(
        backend_url(r#"{"host":"::1","port":"1234"}"#).unwrap(),
        "zdb://[::1]:1234"
    );
    assert!(backend_url(r#"{"port":1}"#).is_err());
    assert!(backend_url("nope").is_err());
    let url = backend_url(r#"{"host":"h","port":1,"password":"secret"}"#).unwrap();
    assert!(!crate::flist::redact(&url).contains("secret"));
}

#[test]
fn specials_are_typed_by_their_data() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.flist");
    let acl = "0000000000000001".to_string();
    let kids = [
        T::Special("null", special::Type::Socket, "1,3"),
        T::Special("sda", special::Type::Block, "8,0"),
        T::Special("pipe", special::Type::Socket, "(nothing)"),
        T::Special("pipe2", special::Type::Fifopipe, ""),
    ];
    write_flist(
        &p,
        &[
            (ROOT_KEY.into(), dir_msg("", ROOT_KEY, &acl, &kids)),
            (acl.clone(), aci_msg(0, 0, 0o640)),
        ],
        &[],
    );
    let fl = LegacyReader::open(&p).unwrap();
    let e = |n: &str| fl.lookup(ROOT_INO, n.as_bytes()).unwrap().unwrap();
    assert_eq!(e("null").mode, S_IFCHR | 0o640);
    assert_eq!(e("null").rdev, libc::makedev(1, 3));
    assert_eq!(e("sda").mode, S_IFBLK | 0o640);
    assert_eq!(e("sda").rdev, libc::makedev(8, 0));
    assert_eq!(e("pipe").kind(), Kind::Fifo);
    assert_eq!(e("pipe2").kind(), Kind::Fifo);
    // An ACI written by an old zflist (no uid/gid fields) reads as -1: numeric names
    // are used, else 0.
    assert_eq!(owner_id(-1, Ok("1234".into())), 1234);
    assert_eq!(owner_id(-1, Ok("root".into())), 0);
}

#[test]
fn hostile_flists_give_errors_naming_the_entry() {
    let acl = "00000000000000aa".to_string();
    let aci = (acl.clone(), aci_msg(0, 0, 0o755));
    // A missing subdirectory.
    let msg = open_err(&[
        (
            ROOT_KEY.into(),
            dir_msg("", ROOT_KEY, &acl, &[T::Dir("gone", &key_of("gone"))]),
        ),
        aci.clone(),
    ]);
    assert!(msg.contains("\"gone\"") && msg.contains("missing"), "{msg}");
    // A cycle: a subdirectory pointing back at the root.
    let msg = open_err(&[
        (
            ROOT_KEY.into(),
            dir_msg("", ROOT_KEY, &acl, &[T::Dir("loop", ROOT_KEY)]),
        ),
        aci.clone(),
    ]);
    assert!(msg.contains("\"loop\"") && msg.contains("twice"), "{msg}");
    // A name with a slash.
    let msg = open_err(&[
        (
            ROOT_KEY.into(),
            dir_msg("", ROOT_KEY, &acl, &[T::Link("a/b", "x")]),
        ),
        aci.clone(),
    ]);
    assert!(msg.contains("a/b"), "{msg}");
    // `..` as a name.
    let msg = open_err(&[
        (
            ROOT_KEY.into(),
            dir_msg("", ROOT_KEY, &acl, &[T::Link("..", "x")]),
        ),
        aci.clone(),
    ]);
    assert!(msg.contains("unsafe name"), "{msg}");
    // Bad Cap'n Proto in a subdirectory.
    let sub = key_of("sub");
    let msg = open_err(&[
        (
            ROOT_KEY.into(),
            dir_msg("", ROOT_KEY, &acl, &[T::Dir("sub", &sub)]),
        ),
        (sub.clone(), vec![0xff; 40]),
        aci.clone(),
    ]);
    assert!(
        msg.contains("\"sub\"") && msg.contains("Cap'n Proto"),
        "{msg}"
    );
    // Garbage as the root and as an ACI.
    let msg = open_err(&[(ROOT_KEY.into(), b"garbage!".to_vec())]);
    assert!(msg.contains("root directory"), "{msg}");
    let msg = open_err(&[
        (
            ROOT_KEY.into(),
            dir_msg("", ROOT_KEY, &acl, &[T::Link("l", "x")]),
        ),
        (acl.clone(), vec![1, 2, 3]),
    ]);
    assert!(msg.contains(&acl), "{msg}");
    // A missing ACI.
    let msg = open_err(&[(
        ROOT_KEY.into(),
        dir_msg("", ROOT_KEY, &acl, &[T::Link("l", "x")]),
    )]);
    assert!(msg.contains("missing"), "{msg}");
    // Duplicate names.
    let msg = open_err(&[
        (
            ROOT_KEY.into(),
            dir_msg("", ROOT_KEY, &acl, &[T::Link("l", "x"), T::Link("l", "y")]),
        ),
        aci.clone(),
    ]);
    assert!(msg.contains("twice"), "{msg}");
    // Block ids of the wrong size: truncated id in a hand-made message.
    let mut m = capnp::message::Builder::new_default();
    {
        let mut d = m.init_root::<dir::Builder<'_>>();
        let mut n = d.reborrow().init_contents(1).get(0);
        n.set_name("f");
        let mut b = n.init_attributes().init_file().init_blocks(1).get(0);
        b.set_hash(&[1, 2, 3]);
        b.set_key(&[0; 16]);
    }
    let msg = open_err(&[(ROOT_KEY.into(), words(&m))]);
    assert!(msg.contains("\"f\"") && msg.contains("3-byte"), "{msg}");
    // No root at all.
    let msg = open_err(&[aci]);
    assert!(msg.contains("no root directory"), "{msg}");
}

#[test]
fn truncated_and_oversized_messages_are_refused() {
    let acl = "00000000000000aa";
    let full = dir_msg("", ROOT_KEY, acl, &[T::Link("l", "x"), T::Link("m", "y")]);
    for cut in [0, 4, 8, full.len() / 2, full.len() - 8] {
        let r = read_message(&full[..cut]).and_then(|msg| {
            let d = msg.get_root::<dir::Reader<'_>>()?;
            for n in d.get_contents()?.iter() {
                n.get_name()?;
            }
            Ok(())
        });
        assert!(r.is_err(), "truncated message of {cut} bytes accepted");
    }
    // A segment table claiming 2^28 words.
    let mut huge = vec![0u8; 16];
    huge[4..8].copy_from_slice(&(1u32 << 28).to_le_bytes());
    assert!(read_message(&huge).is_err());
}
