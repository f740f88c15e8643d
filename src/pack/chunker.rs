//! The content side of pack, shared with import: a byte stream (a file, a tar entry) is
//! cut into 512 KiB chunks read into a small pool of buffers and fed to the encoder
//! workers ([`super::encode`]); its identity is computed as it streams past; once all its
//! chunks are stored, the stream is handed back as [`Completed`] (blocks in order and
//! identity). Memory is the buffer pool; no stream is ever held whole. It writes no flist
//! row and decides nothing about trees: the caller (pack's walker, import) does.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::encode::{self, Counters, Done, Job};
use crate::codec::{v2, ChunkRef, CHUNK_SIZE};
use crate::error::{Error, Result};
use crate::flist::Identity;
use crate::identity::StreamIdentity;
use crate::pipeline::{self, Feed};
use crate::store::router::Router;

/// What a whole run stored.
#[derive(Debug, Default, Clone, Copy)]
pub struct Uploaded {
    /// Unique chunks uploaded.
    pub chunks: u64,
    /// Their encoded bytes.
    pub bytes: u64,
}

/// One stream whose chunks are all stored.
pub struct Completed {
    /// The caller's key for it.
    pub key: u64,
    /// Its chunks, in order.
    pub blocks: Vec<ChunkRef>,
    /// Its content identity.
    pub identity: Identity,
}

/// Running totals of what was fed, for progress lines.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fed {
    /// Content bytes read.
    pub bytes: u64,
    /// Chunks fed to the workers.
    pub chunks: u64,
}

struct Pending {
    path: Arc<Path>,
    chunks: Vec<Option<ChunkRef>>,
    received: usize,
    /// Number of chunks, known once the stream was read to its end.
    total: Option<usize>,
    identity: Option<Identity>,
}

/// Feeds streams to the encoder workers (see the module doc).
pub struct Chunker<'a, 'f, 'p> {
    feed: &'f mut Feed<'p, Job, Done>,
    pool_rx: &'a mpsc::Receiver<Vec<u8>>,
    pool_tx: &'a mpsc::SyncSender<Vec<u8>>,
    pending: HashMap<u64, Pending>,
    completed: Vec<Completed>,
    /// What was fed so far.
    pub fed: Fed,
    /// What a failed read of a stream becomes (default: an I/O error).
    read_error: fn(std::io::Error) -> Error,
}

/// Run `body` with a [`Chunker`] whose `jobs` workers encode and upload through `router`;
/// returns what `body` returned and what was uploaded. Every stream fed is complete (or
/// the run failed) when this returns.
pub fn run<T>(
    jobs: usize,
    router: &Router,
    body: impl FnOnce(&mut Chunker<'_, '_, '_>) -> Result<T>,
) -> Result<(T, Uploaded)> {
    let jobs = jobs.max(1);
    let counters = Counters::default();
    let nbufs = encode::buffers(jobs);
    let (pool_tx, pool_rx) = mpsc::sync_channel::<Vec<u8>>(nbufs);
    for _ in 0..nbufs {
        // Capacity only: pages are touched when first filled.
        let _ = pool_tx.send(Vec::with_capacity(CHUNK_SIZE));
    }
    let out = pipeline::run_batched(
        encode::config(jobs),
        v2::Encoder::new,
        |enc, batch| encode::encode_batch(enc, batch, &pool_tx, &counters, router),
        |feed| {
            let mut c = Chunker {
                feed,
                pool_rx: &pool_rx,
                pool_tx: &pool_tx,
                pending: HashMap::new(),
                completed: Vec::new(),
                fed: Fed::default(),
                read_error: Error::from,
            };
            let out = body(&mut c)?;
            c.wait_all()?;
            Ok(out)
        },
    )?;
    let up = Uploaded {
        chunks: counters.uploaded.load(Ordering::Relaxed),
        bytes: counters.uploaded_bytes.load(Ordering::Relaxed),
    };
    Ok((out, up))
}

impl Chunker<'_, '_, '_> {
    /// Feed `r` to its end as the content `key` (`size` bytes expected; `path` names it in
    /// errors). Returns the bytes read, which the caller compares with what it expected.
    /// `tick` is called after each chunk with the running totals.
    pub fn add(
        &mut self,
        key: u64,
        r: &mut dyn Read,
        size: u64,
        path: &Arc<Path>,
        tick: &mut dyn FnMut(&Fed),
    ) -> Result<u64> {
        let what = || format!("reading {}", path.display());
        let mut ident = StreamIdentity::new(size);
        self.pending.insert(
            key,
            Pending {
                path: path.clone(),
                chunks: Vec::new(),
                received: 0,
                total: None,
                identity: None,
            },
        );
        let mut index = 0;
        let mut read_total: u64 = 0;
        loop {
            self.poll()?;
            let mut buf = self.buffer()?;
            if buf.len() < CHUNK_SIZE {
                buf.resize(CHUNK_SIZE, 0);
            }
            let len = match fill(r, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = self.pool_tx.send(buf);
                    return Err((self.read_error)(e).context(what()));
                }
            };
            if len == 0 {
                let _ = self.pool_tx.send(buf);
                break;
            }
            ident.update(read_total, &buf[..len]);
            read_total += len as u64;
            self.fed.bytes += len as u64;
            self.fed.chunks += 1;
            tick(&self.fed);
            self.feed.push(Job {
                ino: key,
                index,
                buf,
                len,
                path: path.clone(),
            })?;
            index += 1;
            if len < CHUNK_SIZE {
                break;
            }
        }
        if let Some(p) = self.pending.get_mut(&key) {
            p.total = Some(index);
            p.identity = Some(ident.finish());
        }
        self.maybe_complete(key)?;
        Ok(read_total)
    }

    /// Make failed reads of the streams fed from now on `f(error)` (e.g. the image
    /// source's classification of a layer stream's failure).
    pub fn set_read_error(&mut self, f: fn(std::io::Error) -> Error) {
        self.read_error = f;
    }

    /// Whether `key` was fed and is not complete yet.
    pub fn is_pending(&self, key: u64) -> bool {
        self.pending.contains_key(&key)
    }

    /// The streams completed since the last call.
    pub fn take_completed(&mut self) -> Vec<Completed> {
        std::mem::take(&mut self.completed)
    }

    /// Handle every result already available, without waiting.
    pub fn poll(&mut self) -> Result<()> {
        while let Some(d) = self.feed.try_next()? {
            self.on_done(d)?;
        }
        Ok(())
    }

    /// Wait for every outstanding chunk.
    pub fn wait_all(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            match self.feed.next()? {
                Some(d) => self.on_done(d)?,
                None => {
                    return Err(Error::io(format!(
                        "encoder workers ended with {} files unfinished",
                        self.pending.len()
                    )))
                }
            }
        }
        Ok(())
    }

    /// A free plaintext buffer, waiting for a worker to return one if needed.
    fn buffer(&mut self) -> Result<Vec<u8>> {
        loop {
            match self.pool_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(b) => return Ok(b),
                Err(mpsc::RecvTimeoutError::Timeout) => self.poll()?,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::io("encoder buffer pool closed"))
                }
            }
        }
    }

    fn on_done(&mut self, d: Done) -> Result<()> {
        let Done { ino, index, chunk } = d;
        let Some(p) = self.pending.get_mut(&ino) else {
            return Ok(());
        };
        if p.chunks.len() <= index {
            p.chunks.resize(index + 1, None);
        }
        p.chunks[index] = Some(chunk);
        p.received += 1;
        self.maybe_complete(ino)
    }

    fn maybe_complete(&mut self, key: u64) -> Result<()> {
        let ready = matches!(self.pending.get(&key), Some(p) if p.total == Some(p.received));
        if !ready {
            return Ok(());
        }
        let Some(p) = self.pending.remove(&key) else {
            return Ok(());
        };
        let blocks = p
            .chunks
            .into_iter()
            .collect::<Option<Vec<ChunkRef>>>()
            .ok_or_else(|| Error::io(format!("{}: a chunk result is missing", p.path.display())))?;
        let identity = p
            .identity
            .ok_or_else(|| Error::io(format!("{}: identity missing", p.path.display())))?;
        self.completed.push(Completed {
            key,
            blocks,
            identity,
        });
        Ok(())
    }
}

/// Read until `buf` is full or the stream ends; returns the bytes read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
