//! The convert engine: rewrite an flist (typically a legacy `.flist`) as a v2 `.fl` whose
//! chunks are re-encoded with the v2 pipeline and stored in the `-s` stores. The tree and
//! its metadata are copied as they are; each file's content is streamed chunk by chunk
//! (fetch + verify through the source router, re-cut into 512 KiB pieces, encode, put),
//! so the new block list is exactly what rfs/zvfs `pack` would produce for that content.
//! Content identity (partial checksum and SHA-256) is recorded on the way.
//!
//! Files are converted by the workers of a [`crate::pipeline`] fed through its bounded
//! queue; each worker holds at most one fetched chunk and one 512 KiB piece. The output
//! is written to a temporary file next to it and renamed into place only on success
//! ([`crate::sys::atomic`]). It parses no command line and prints nothing.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::codec::{self, ChunkRef, CHUNK_SIZE};
use crate::content::{FileContent, Layout};
use crate::error::{Error, Result};
use crate::flist::v2::{NewEntry, V2Writer, VERSION_TAG};
use crate::flist::{self, Flist, Identity, Ino, Kind, Route};
use crate::identity::StreamIdentity;
use crate::pipeline::{self, Config};
use crate::store::router::Router;
use crate::store::{redact, strip_password};
use crate::sys::atomic::AtomicFile;

/// What a conversion did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Entries written (the root included).
    pub entries: u64,
    /// Regular files converted (a hardlink's later paths not counted).
    pub files: u64,
    /// Their content bytes.
    pub bytes: u64,
    /// Source chunks fetched.
    pub chunks_read: u64,
    /// New chunks stored (each distinct one once).
    pub chunks_written: u64,
    /// Files whose source chunks were not all 512 KiB (but the last), so they were re-cut.
    pub rechunked_files: u64,
}

/// Convert `src` into a new `.fl` at `output` (atomically: temp file + rename).
pub fn convert_to(
    src: &dyn Flist,
    from: &Router,
    dest: &Router,
    dest_routes: &[Route],
    output: &Path,
    jobs: usize,
) -> Result<Summary> {
    let out = AtomicFile::new(output)?;
    let summary = convert(src, from, dest, dest_routes, out.path(), jobs)?;
    dest.flush()?;
    out.commit()?;
    Ok(summary)
}

/// One regular file to convert.
struct Job {
    new_ino: Ino,
    path: String,
    content: FileContent,
}

struct Done {
    new_ino: Ino,
    chunks: Vec<ChunkRef>,
    identity: Identity,
    rechunked: bool,
}

/// Shared state of the workers.
struct Pool<'a> {
    from: &'a Router,
    dest: &'a Router,
    /// Set at the first failure: the other workers stop at their next chunk.
    failed: AtomicBool,
    stored: Mutex<HashSet<ChunkRef>>,
    chunks_read: AtomicU64,
    chunks_written: AtomicU64,
}

impl Pool<'_> {
    /// Encode and store one 512 KiB (or final) piece.
    fn put(&self, piece: &[u8]) -> Result<ChunkRef> {
        let (chunk, stored) = codec::v2::encode(piece)?;
        let fresh = match self.stored.lock() {
            Ok(mut s) => s.insert(chunk),
            Err(_) => true,
        };
        if fresh {
            self.dest.put(chunk.id(), &stored)?;
            self.chunks_written.fetch_add(1, Ordering::Relaxed);
        }
        Ok(chunk)
    }

    /// Convert one file; `None` when it stopped because another one failed. The source
    /// chunks may be cut in any sizes (legacy flists); they are re-cut into 512 KiB pieces.
    fn convert_file(&self, job: &Job) -> Result<Option<Done>> {
        let mut id = StreamIdentity::new(job.content.size());
        let mut chunks = Vec::with_capacity(job.content.chunks().len());
        let mut buf: Vec<u8> = Vec::new();
        let mut total = 0u64;
        let mut rechunked = false;
        let n = job.content.chunks().len();
        let read = job.content.read(self.from, Layout::Any, |i, plain| {
            if self.failed.load(Ordering::Relaxed) {
                return Err(Error::invalid("stopped after another failure"));
            }
            self.chunks_read.fetch_add(1, Ordering::Relaxed);
            if plain.len() != CHUNK_SIZE && i + 1 < n {
                rechunked = true;
            }
            id.update(total, plain);
            total += plain.len() as u64;
            if buf.is_empty() && plain.len() == CHUNK_SIZE {
                chunks.push(self.put(plain)?);
                return Ok(());
            }
            let mut rest = plain;
            while !rest.is_empty() {
                let take = (CHUNK_SIZE - buf.len()).min(rest.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() == CHUNK_SIZE {
                    chunks.push(self.put(&buf)?);
                    buf.clear();
                }
            }
            Ok(())
        });
        if self.failed.load(Ordering::Relaxed) {
            return Ok(None);
        }
        read?;
        if !buf.is_empty() {
            chunks.push(self.put(&buf)?);
        }
        Ok(Some(Done {
            new_ino: job.new_ino,
            chunks,
            identity: id.finish(),
            rechunked,
        }))
    }
}

/// Convert `src` into a new `.fl` written at `out` (not atomic; see [`convert_to`]).
pub fn convert(
    src: &dyn Flist,
    from: &Router,
    dest: &Router,
    dest_routes: &[Route],
    out: &Path,
    jobs: usize,
) -> Result<Summary> {
    let jobs = jobs.clamp(1, 64);
    let writer = V2Writer::create(out)?;
    let pool = Pool {
        from,
        dest,
        failed: AtomicBool::new(false),
        stored: Mutex::new(HashSet::new()),
        chunks_read: AtomicU64::new(0),
        chunks_written: AtomicU64::new(0),
    };
    let mut summary = Summary::default();
    let mut map: HashMap<Ino, Ino> = HashMap::new();
    let mut hardlinks: Vec<(Ino, Ino)> = Vec::new();
    let done: Vec<Done> = pipeline::run(
        Config::new(jobs).queue(jobs * 2),
        |job: Job| {
            pool.convert_file(&job).map_err(|e| {
                pool.failed.store(true, Ordering::SeqCst);
                e.context(format!("converting {:?}", job.path))
            })
        },
        |feed| {
            let mut done = Vec::new();
            let root = src.get(flist::ROOT_INO)?;
            flist::walk(src, &root, Vec::new(), &mut |e, path| {
                while let Some(d) = feed.try_next()? {
                    done.extend(d);
                }
                let is_root = e.ino == root.ino;
                let parent = if is_root {
                    0
                } else {
                    *map.get(&e.parent).ok_or_else(|| {
                        Error::format(format!(
                            "{:?}: parent inode {} not seen before",
                            String::from_utf8_lossy(path),
                            e.parent
                        ))
                    })?
                };
                let new_ino = writer.add_entry(&NewEntry {
                    parent,
                    name: if is_root { b"/" } else { &e.name },
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    size: e.size,
                    rdev: e.rdev,
                    mtime: e.mtime,
                    ctime: e.ctime,
                })?;
                map.insert(e.ino, new_ino);
                summary.entries += 1;
                for (k, v) in src.xattrs(e.ino)? {
                    writer.add_xattr(new_ino, &k, &v)?;
                }
                match e.kind() {
                    Kind::Symlink => writer.set_link_target(new_ino, &src.link_target(e.ino)?)?,
                    Kind::File if e.link_of.is_some() => hardlinks.push((new_ino, e.content_ino())),
                    Kind::File => {
                        summary.files += 1;
                        summary.bytes += e.size;
                        let job = Job {
                            new_ino,
                            path: String::from_utf8_lossy(path).into_owned(),
                            // Named by the caller's context ("converting PATH").
                            content: FileContent::new(
                                e.size,
                                Arc::new(src.blocks(e.ino)?),
                                String::new(),
                            ),
                        };
                        feed.push(job)?;
                    }
                    _ => {}
                }
                Ok(())
            })?;
            while let Some(d) = feed.next()? {
                done.extend(d);
            }
            Ok(done)
        },
    )?;

    let mut by_ino: HashMap<Ino, Vec<ChunkRef>> = HashMap::new();
    for d in done {
        writer.add_blocks(d.new_ino, &d.chunks)?;
        writer.set_identity(d.new_ino, &d.identity)?;
        if d.rechunked {
            summary.rechunked_files += 1;
        }
        by_ino.insert(d.new_ino, d.chunks);
    }
    for (new_ino, old_target) in hardlinks {
        let target = *map
            .get(&old_target)
            .ok_or_else(|| Error::format(format!("hardlink to unknown inode {old_target}")))?;
        writer.add_hardlink(new_ino, target)?;
        if let Some(chunks) = by_ino.get(&target) {
            writer.add_blocks(new_ino, chunks)?;
        }
    }
    for (k, v) in src.tags()? {
        if k != VERSION_TAG {
            writer.set_tag(&k, &v)?;
        }
    }
    for r in dest_routes {
        writer.add_route(&Route {
            start: r.start,
            end: r.end,
            url: strip_password(&r.url),
        })?;
    }
    writer.finish()?;
    summary.chunks_read = pool.chunks_read.load(Ordering::Relaxed);
    summary.chunks_written = pool.chunks_written.load(Ordering::Relaxed);
    log::info!(
        "converted into {} stores: {}",
        dest_routes.len(),
        dest_routes
            .iter()
            .map(|r| redact(&r.url))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flist::legacy::tests::{aci_msg, dir_msg, write_flist, T};
    use crate::flist::legacy::ROOT_KEY;
    use crate::identity::FullChecksum;
    use crate::store::StoreConfig;

    #[test]
    fn stream_identity_matches_the_identity_module() {
        for size in [0usize, 1, 50_000, 50_001, 1_300_000] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 1000) as u8).collect();
            let mut s = StreamIdentity::new(size as u64);
            let mut off = 0;
            for piece in data.chunks(33_333) {
                s.update(off as u64, piece);
                off += piece.len();
            }
            let id = s.finish();
            assert_eq!(
                id.partial,
                crate::identity::partial_checksum_bytes(&data),
                "{size}"
            );
            let mut f = FullChecksum::new();
            f.update(&data);
            assert_eq!(id.checksum, f.finish());
        }
    }

    /// Legacy chunks that are not 512 KiB are re-cut, so the result equals a v2 pack.
    #[test]
    fn odd_sized_legacy_chunks_are_recut_to_512k() {
        let d = tempfile::tempdir().unwrap();
        let old_store = d.path().join("old");
        let new_store = d.path().join("new");
        let data: Vec<u8> = (0..1_100_000u32).map(|i| (i % 251) as u8).collect();
        let cfg = StoreConfig::default();
        let old_url = format!("dir://{}", old_store.display());
        let old = Router::for_flist(&[], std::slice::from_ref(&old_url), &cfg).unwrap();
        let mut blocks = Vec::new();
        for piece in data.chunks(300_000) {
            let (c, stored) = codec::legacy::encode(piece).unwrap();
            old.put(c.id(), &stored).unwrap();
            blocks.push(c);
        }
        let acl = "00000000000000aa";
        let fl = d.path().join("odd.flist");
        write_flist(
            &fl,
            &[
                (
                    ROOT_KEY.into(),
                    dir_msg(
                        "",
                        ROOT_KEY,
                        acl,
                        &[T::File("big", data.len() as u64, blocks)],
                    ),
                ),
                (acl.into(), aci_msg(0, 0, 0o644)),
            ],
            &[("readme", "hi")],
        );
        let src = flist::open(&fl).unwrap();
        let routes = vec![Route::parse(&format!("dir://{}", new_store.display())).unwrap()];
        let dest = Router::new(&routes, &cfg).unwrap();
        let out = d.path().join("new.fl");
        let s = convert_to(&*src, &old, &dest, &routes, &out, 2).unwrap();
        assert_eq!((s.files, s.chunks_read, s.chunks_written), (1, 4, 3));
        assert_eq!(s.rechunked_files, 1);
        let v2 = flist::open(&out).unwrap();
        let e = flist::resolve(&*v2, b"big").unwrap();
        let want: Vec<ChunkRef> = data
            .chunks(CHUNK_SIZE)
            .map(|p| codec::v2::encode(p).unwrap().0)
            .collect();
        assert_eq!(v2.blocks(e.ino).unwrap(), want);
        assert!(v2.tags().unwrap().contains(&("readme".into(), "hi".into())));
        let id = v2.identity(e.ino).unwrap().unwrap();
        assert_eq!(id.partial, crate::identity::partial_checksum_bytes(&data));
    }

    /// A file whose chunks disagree with its recorded size fails, leaving no output.
    #[test]
    fn size_mismatch_fails_without_output() {
        let d = tempfile::tempdir().unwrap();
        let old_store = d.path().join("old");
        let cfg = StoreConfig::default();
        let old_url = format!("dir://{}", old_store.display());
        let old = Router::for_flist(&[], &[old_url], &cfg).unwrap();
        let (c, stored) = codec::legacy::encode(b"short").unwrap();
        old.put(c.id(), &stored).unwrap();
        let acl = "00000000000000aa";
        let fl = d.path().join("bad.flist");
        write_flist(
            &fl,
            &[
                (
                    ROOT_KEY.into(),
                    dir_msg("", ROOT_KEY, acl, &[T::File("f", 99, vec![c])]),
                ),
                (acl.into(), aci_msg(0, 0, 0o644)),
            ],
            &[],
        );
        let src = flist::open(&fl).unwrap();
        let routes =
            vec![Route::parse(&format!("dir://{}", d.path().join("new").display())).unwrap()];
        let dest = Router::new(&routes, &cfg).unwrap();
        let out = d.path().join("new.fl");
        let err = convert_to(&*src, &old, &dest, &routes, &out, 1).unwrap_err();
        assert!(err.msg.contains("\"f\"") && err.msg.contains("99"), "{err}");
        assert!(!out.exists());
        let leftovers: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains("zvfs-tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
