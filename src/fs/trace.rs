//! `zvfs mount --record-trace FILE`: the first read of each (file, chunk) of a mount,
//! written to FILE in the `flist::trace` format, in the order the reads came. A read
//! records its chunks on the session thread into a set of those seen (bounded by the
//! flist's chunks) and a bounded channel; one writer thread turns the file's content
//! inode into its path and writes through a buffer flushed at least every second and when
//! the filesystem is taken down. A full channel drops the record (counted, logged at the
//! end): tracing never slows reads down. This module must not read content nor answer
//! requests.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Context, Result};
use crate::flist::trace::{format_line, TraceLine, HEADER};
use crate::flist::Ino;

/// Records waiting for the writer.
const QUEUE: usize = 4096;
/// Longest time a written record waits in the buffer.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Turns a content inode into its absolute path in the flist.
pub(super) type PathOf = Box<dyn Fn(Ino) -> Option<Vec<u8>> + Send>;

/// The (content inode, chunk) pairs recorded, and the writer while it runs.
struct Recording {
    seen: HashSet<(Ino, u32)>,
    running: Option<Running>,
}

struct Running {
    tx: SyncSender<(u64, Ino, u32)>,
    thread: JoinHandle<()>,
}

/// The trace of one mount.
pub(super) struct Tracer {
    path: PathBuf,
    /// The file, until the writer thread takes it.
    file: Mutex<Option<BufWriter<File>>>,
    /// When the mount was ready (set by `start`).
    ready: OnceLock<Instant>,
    /// (content inode, chunk) already recorded; the sender, under the same lock so the
    /// channel holds records in the order of the reads.
    seen: Mutex<Recording>,
    dropped: AtomicU64,
}

impl Tracer {
    /// Create (truncate) the trace file and write its header.
    pub(super) fn create(path: &Path) -> Result<Tracer> {
        let what = || format!("creating trace file {}", path.display());
        let mut w = BufWriter::new(File::create(path).with_ctx(what)?);
        writeln!(w, "{HEADER}").with_ctx(what)?;
        w.flush().with_ctx(what)?;
        Ok(Tracer {
            path: path.to_path_buf(),
            file: Mutex::new(Some(w)),
            ready: OnceLock::new(),
            seen: Mutex::new(Recording {
                seen: HashSet::new(),
                running: None,
            }),
            dropped: AtomicU64::new(0),
        })
    }

    /// The mount is ready: start the clock and the writer thread.
    pub(super) fn start(&self, path_of: PathOf) {
        let _ = self.ready.set(Instant::now());
        let Some(mut w) = self.file.lock().ok().and_then(|mut f| f.take()) else {
            return;
        };
        let (tx, rx) = sync_channel::<(u64, Ino, u32)>(QUEUE);
        let name = self.path.clone();
        let spawned = std::thread::Builder::new()
            .name("zvfs-trace".into())
            .spawn(move || {
                let mut failed = false;
                let mut last_flush = Instant::now();
                loop {
                    let rec = rx.recv_timeout(FLUSH_EVERY);
                    match rec {
                        Ok((ms, ino, chunk)) if !failed => {
                            let Some(path) = path_of(ino) else {
                                log::warn!("trace: no path for inode {ino}, record left out");
                                continue;
                            };
                            let line = format_line(&TraceLine { ms, chunk, path });
                            if let Err(e) = writeln!(w, "{line}") {
                                log::error!("writing trace {}: {e}", name.display());
                                failed = true;
                            }
                        }
                        Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    if last_flush.elapsed() >= FLUSH_EVERY && !failed {
                        if let Err(e) = w.flush() {
                            log::error!("writing trace {}: {e}", name.display());
                            failed = true;
                        }
                        last_flush = Instant::now();
                    }
                }
                if let Err(e) = w.flush().and_then(|()| w.get_ref().sync_all()) {
                    log::error!("writing trace {}: {e}", name.display());
                }
            });
        match spawned {
            Ok(thread) => {
                if let Ok(mut s) = self.seen.lock() {
                    s.running = Some(Running { tx, thread });
                }
            }
            Err(e) => log::error!("starting the trace writer: {e}; no trace recorded"),
        }
    }

    /// A read of chunks `chunks` of content inode `ino`: record those read for the first
    /// time. Never blocks on the writer.
    pub(super) fn read(&self, ino: Ino, chunks: std::ops::Range<u64>) {
        let Some(ready) = self.ready.get() else {
            return;
        };
        let ms = ready.elapsed().as_millis() as u64;
        let Ok(mut s) = self.seen.lock() else { return };
        let Recording { seen, running } = &mut *s;
        let Some(running) = running.as_ref() else {
            return;
        };
        for idx in chunks {
            let Ok(idx) = u32::try_from(idx) else { break };
            if !seen.insert((ino, idx)) {
                continue;
            }
            if running.tx.try_send((ms, ino, idx)).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Stop recording: write what is queued, flush and close the file (idempotent).
    pub(super) fn finish(&self) {
        let running = self.seen.lock().ok().and_then(|mut s| s.running.take());
        let Some(Running { tx, thread }) = running else {
            return;
        };
        drop(tx);
        let _ = thread.join();
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            log::warn!(
                "trace {}: {dropped} first reads not recorded (the writer fell behind)",
                self.path.display()
            );
        } else {
            log::info!("trace {} written", self.path.display());
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.finish();
    }
}
