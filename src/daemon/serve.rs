//! The worker process of a mount: it builds the [`ZvfsFs`] (flist, stores, cache),
//! mounts it (first worker) or resumes the supervisor's connection (later ones), hands
//! the `/dev/fuse` descriptor to its supervisor, serves the stats socket and runs the
//! FUSE session until the filesystem is unmounted; it reports on the control channel
//! (`control`). It dies with its supervisor (`PR_SET_PDEATHSIG`). It registers nothing,
//! makes no overlay and does not decide about restarts: that is `supervisor`'s.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::TryRecvError;
use std::time::Duration;

use super::control::{self, WorkerWire};
use crate::cache::ChunkCache;
use crate::error::{Context, Error, ExitCode, Result};
use crate::fs::{FsConfig, ZvfsFs};
use crate::store::router::Router;
use crate::sys::mountinfo;

/// How long the kernel may take to complete the FUSE handshake.
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Chunks fetched (and held in memory, object and plaintext: about 1 MiB each) at once.
/// Decoding is CPU-bound, so more than a few only add memory on a small node.
const MAX_FETCHES: usize = 6;

/// A panic in any thread of a worker ends the worker (exit code 70) once the panicking
/// thread has unwound (its request answered EIO by the dropped reply, so a request that
/// panics is not resent to the next worker over and over); the supervisor then starts a
/// healthy worker. Without this a panic in a pool thread would leave a worker serving
/// with a thread less.
fn exit_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        log::error!("worker: {info}; exiting so that the supervisor starts a new worker");
        let _ = std::thread::Builder::new().spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            // The only way out of a process some thread of which panicked: nothing of
            // this worker's state is to be saved, the supervisor starts a fresh one.
            #[allow(clippy::exit)]
            std::process::exit(70);
        });
    }));
}

/// The entry point of a worker process: `None` when this process is not one (no
/// `ZVFS_WORKER_FD`), else its exit code: 0 once the filesystem was unmounted.
pub(super) fn worker_main() -> Option<ExitCode> {
    let ctl = control::inherited_fd(control::WORKER_ENV)?;
    let ctl = match ctl {
        Ok(c) => c,
        Err(e) => {
            crate::sys::logger::init_logging(false);
            log::error!("{e}");
            return Some(ExitCode::Failure);
        }
    };
    let fuse = control::inherited_fd(control::FUSE_FD_ENV);
    let wire = read_wire();
    let wire = match wire {
        Ok(w) => w,
        Err(e) => {
            crate::sys::logger::init_logging(false);
            log::error!("{e}");
            control::send_error(ctl.as_fd(), &e);
            return Some(ExitCode::Failure);
        }
    };
    crate::sys::logger::init_logging(wire.debug);
    if let Some(l) = &wire.opts.log {
        if let Err(e) = crate::sys::logger::log_to_file(l) {
            control::send_error(ctl.as_fd(), &e);
            return Some(ExitCode::Failure);
        }
    }
    // Die with the supervisor; if it is gone already, the death signal came too early.
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    {
        log::warn!("worker: PR_SET_PDEATHSIG: {e}");
    }
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(wire.supervisor)
    {
        log::error!("worker: supervisor {} is gone; exiting", wire.supervisor);
        return Some(ExitCode::Failure);
    }
    tune_allocator();
    exit_on_panic();
    // SIGTERM (from the supervisor taking the mount down) is waited for, so block it
    // before any thread starts.
    let term = term_set();
    // SAFETY: changes this thread's mask on a valid set; threads spawned later inherit it.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &term, std::ptr::null_mut());
    }
    let fuse = match fuse.transpose() {
        Ok(f) => f,
        Err(e) => {
            log::error!("worker: {e}");
            control::send_error(ctl.as_fd(), &e);
            return Some(ExitCode::Failure);
        }
    };
    match serve(&wire, ctl.as_fd(), fuse, &term) {
        Ok(Ended::Unmounted) => {
            let _ = control::send(ctl.as_fd(), "unmounted", None);
            Some(ExitCode::Ok)
        }
        Ok(Ended::Stopped) => Some(ExitCode::Ok),
        Err(e) => {
            log::error!(
                "worker (generation {}) of {} on {}: {e}",
                wire.generation,
                wire.opts.flist.display(),
                wire.opts.target.display()
            );
            control::send_error(ctl.as_fd(), &e);
            Some(ExitCode::Failure)
        }
    }
}

fn read_wire() -> Result<WorkerWire> {
    use std::io::Read;
    let mut text = Vec::new();
    std::io::stdin()
        .read_to_end(&mut text)
        .ctx("reading the worker's options")?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::invalid(format!("decoding the worker's options: {e}")))
}

/// Chunk-sized buffers (512 KiB objects and plaintexts, reply buffers) come from the
/// heap and are reused: with glibc's default they would be mmap'd and unmapped for every
/// chunk, and the page faults and zeroing of fresh pages cost more than the decoding.
/// A fixed threshold also stops glibc from raising it on its own; memory above the trim
/// threshold at the top of the heap goes back to the system. Peak RSS is bounded by the
/// chunks in flight either way (fetch slots and workers).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before worker threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 2 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 * 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// SIGTERM alone: what a worker waits for.
fn term_set() -> libc::sigset_t {
    // SAFETY: plain libc calls on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// How a worker's serving ended.
enum Ended {
    /// The filesystem was unmounted: the session ended.
    Unmounted,
    /// SIGTERM: it stopped waiting for the session (the supervisor unmounted, and what is
    /// left is at most reads waiting on stores, or a detached mount with open files).
    Stopped,
}

/// Build the filesystem, mount or resume, report, serve until the session ends (the
/// filesystem was unmounted) or SIGTERM.
fn serve(
    wire: &WorkerWire,
    ctl: std::os::fd::BorrowedFd<'_>,
    fuse: Option<OwnedFd>,
    term: &libc::sigset_t,
) -> Result<Ended> {
    let args = &wire.opts;
    let max = args.cache_size;
    let threads = args.threads.clamp(1, 64);
    let home = args.fuse_target();
    let flist = crate::flist::open(&args.flist)?;
    let routes = flist.routes()?;
    let router = Router::for_flist(&routes, &args.stores, &args.store_config)
        .with_ctx(|| format!("stores of {}", args.flist.display()))?;
    let cache = ChunkCache::open(&args.cache, max, (threads + 2).min(MAX_FETCHES))?;
    let mut fs = ZvfsFs::new(
        flist,
        cache,
        router,
        FsConfig {
            threads,
            readahead_chunks: args.readahead,
            whole_file_chunks: args.whole_file,
            prefetch_parallel: args.prefetch_parallel,
            max_inflight: args.max_inflight,
            record_trace: args.record_trace.clone(),
            generation: wire.generation,
        },
    )?;
    let stats = fs.stats_handle();
    let answering = fs.answering();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    fs.on_ready(move || {
        let _ = tx.send(());
    });
    let mut opts = args.mount_opts();
    // The mount's source is the supervisor: it outlives this worker.
    opts.fsname = wire.supervisor.to_string();
    let mounted = match (wire.resume, fuse) {
        (true, Some(fd)) => crate::fs::mount::resume(fs, fd, &mountinfo::absolute(&home))?,
        (true, None) => {
            return Err(Error::invalid(format!(
                "a resumed worker needs the connection in {}",
                control::FUSE_FD_ENV
            )))
        }
        (false, _) => crate::fs::mount::mount(fs, &home, &opts)?,
    };
    // The connection goes to the supervisor once the handshake said the kernel can resend
    // what a dead worker had read (below); a copy taken now, before the session owns it.
    let keep = if wire.resume {
        None
    } else {
        match mounted.fuse_fd() {
            Ok(fd) => Some(fd),
            Err(e) => {
                log::warn!(
                    "{e}: a crash of this worker will leave {} stale",
                    home.display()
                );
                None
            }
        }
    };
    let init = mounted.init.clone();
    let mut unmounter = mounted.unmounter;
    let mut session = mounted.session;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<bool>();
    let session_thread = std::thread::Builder::new()
        .name("zvfs-session".into())
        .spawn(move || {
            let clean = match session.run() {
                Ok(()) => true,
                Err(e) => {
                    log::error!("FUSE session ended with an error: {e}");
                    false
                }
            };
            log::debug!("FUSE session loop ended");
            drop(session);
            let _ = done_tx.send(clean);
        })
        .map_err(|e| Error::io(format!("starting the FUSE session thread: {e}")))?;
    // A resumed session had its handshake with an earlier worker.
    if !wire.resume && rx.recv_timeout(READY_TIMEOUT).is_err() {
        let _ = unmounter.unmount();
        return Err(Error::timeout(format!(
            "{}: the kernel did not complete the FUSE handshake",
            home.display()
        )));
    }
    if let Some(fd) = keep {
        match init.get() {
            Some(i) if i.can_resend() => control::send(ctl, "fd", Some(fd.as_fd()))?,
            _ => log::warn!(
                "{}: the kernel cannot resend the requests a dead worker had read                  (FUSE_NOTIFY_RESEND needs Linux 6.9): this mount ends with its worker,                  as it did before the supervisor",
                home.display()
            ),
        }
    }
    // Stats are an extra: a mount without them still serves.
    let _stats_server = match super::stats::serve_stats(stats, &wire.stats_socket) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!("{e}; `zvfs mounts --stats` will not know this mount");
            None
        }
    };
    log::info!(
        "worker {} (generation {}) serves {} on {}{}",
        std::process::id(),
        wire.generation,
        args.flist.display(),
        home.display(),
        if wire.resume { " (resumed)" } else { "" }
    );
    control::send(ctl, "ready", None)?;
    let tick = libc::timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    loop {
        match done_rx.try_recv() {
            Ok(true) => {
                let _ = session_thread.join();
                log::info!("{} was unmounted; worker exiting", home.display());
                return Ok(Ended::Unmounted);
            }
            Ok(false) | Err(TryRecvError::Disconnected) => {
                return Err(Error::io(format!(
                    "{}: the FUSE session failed",
                    home.display()
                )))
            }
            Err(TryRecvError::Empty) => {}
        }
        // SAFETY: waits on a valid signal set with a valid timeout; no siginfo wanted.
        let sig = unsafe { libc::sigtimedwait(term, std::ptr::null_mut(), &tick) };
        if sig == libc::SIGTERM {
            return Ok(wind_down(&done_rx, &answering));
        }
    }
}

/// After SIGTERM (the supervisor unmounted): give the session a moment to end (a
/// lazily detached mount with open files keeps it alive). Requests being answered are
/// waited for (up to 5 s); reads waiting on a store are not (they could take the whole
/// deadline): exiting answers them with an error.
fn wind_down(done: &std::sync::mpsc::Receiver<bool>, answering: &AtomicUsize) -> Ended {
    use std::sync::mpsc::RecvTimeoutError;
    let start = std::time::Instant::now();
    loop {
        match done.recv_timeout(Duration::from_millis(50)) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(true) => return Ended::Unmounted,
            Ok(false) | Err(RecvTimeoutError::Disconnected) => return Ended::Stopped,
        }
        if start.elapsed() >= Duration::from_secs(5) {
            log::warn!("the FUSE session did not end within 5 s; exiting anyway");
            return Ended::Stopped;
        }
        if start.elapsed() >= Duration::from_millis(200) && answering.load(Ordering::Relaxed) == 0 {
            log::info!(
                "detached, files still open, nothing in flight but reads waiting on stores; exiting"
            );
            return Ended::Stopped;
        }
    }
}
