//! Serving an flist: the FUSE session, the overlay of a writable mount, the stats
//! socket, the registry entry and readiness (a report on the pipe of [`super::start`], `READY=1` to a
//! supervisor), then the wait for a signal or an external unmount and the orderly take
//! down (overlays, then binds, then the FUSE mount). It runs in the process that serves;
//! it does not fork, parse arguments or decide whether to share another daemon's mount.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::MountOptions;
use crate::cache::ChunkCache;
use crate::error::{Context, Error, Result};
use crate::fs::mount::Unmounter;
use crate::fs::{FsConfig, ZvfsFs};
use crate::store::router::Router;
use crate::sys::{mountinfo, registry};

/// How long the kernel may take to complete the FUSE handshake.
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Chunks fetched (and held in memory, object and plaintext: about 1 MiB each) at once.
/// Decoding is CPU-bound, so more than a few only add memory on a small node.
const MAX_FETCHES: usize = 6;

/// Serve `opts` (its flist a local file, downloaded from `url` if any) until signalled:
/// tune the allocator, mount, report `ready` on `ready` (the pipe of a daemon started by
/// [`super::start`]) or the error, log a failure.
pub(super) fn run(
    opts: &MountOptions,
    url: Option<String>,
    mut ready: Option<std::fs::File>,
) -> Result<()> {
    tune_allocator();
    match serve(opts, url, &mut ready) {
        Ok(()) => Ok(()),
        Err(e) => {
            log::error!(
                "mount of {} on {}: {e}",
                opts.flist.display(),
                opts.target.display()
            );
            if let Some(mut p) = ready.take() {
                let _ = p.write_all(super::spawn::error_report(&e).as_bytes());
            }
            Err(e)
        }
    }
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

/// Signals that end the mount, plus SIGUSR1 which the session thread raises when the
/// filesystem was unmounted from outside.
pub(super) fn signal_set() -> libc::sigset_t {
    // SAFETY: plain libc calls on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn serve(
    args: &MountOptions,
    url: Option<String>,
    ready: &mut Option<std::fs::File>,
) -> Result<()> {
    // Block the signals before any thread starts, so only `sigwait` below sees them.
    let set = signal_set();
    // SAFETY: changes this thread's mask; threads spawned later inherit it.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let max = args.cache_size;
    let threads = args.threads.clamp(1, 64);
    let layer = args.layer();
    if let Some(l) = &layer {
        l.prepare(args.reset)?;
    }
    let home = args.fuse_target();
    // The md5 (for the registry) reads the whole flist: overlap it with the mount.
    let md5 = {
        let meta = args.flist.clone();
        std::thread::spawn(move || crate::flist::download::md5_of_file(&meta))
    };
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
            prefetch_parallel: args.prefetch_parallel,
            record_trace: args.record_trace.clone(),
            generation: 0,
        },
    )?;
    let answering = fs.answering();
    let stats = fs.stats_handle();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    fs.on_ready(move || {
        let _ = tx.send(());
    });
    let opts = args.mount_opts();
    let mounted = crate::fs::mount::mount(fs, &home, &opts)?;
    let mut unmounter = mounted.unmounter;
    let mut session = mounted.session;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let session_thread = std::thread::Builder::new()
        .name("zvfs-session".into())
        .spawn(move || {
            if let Err(e) = session.run() {
                log::error!("FUSE session ended with an error: {e}");
            }
            log::debug!("FUSE session loop ended");
            drop(session);
            log::debug!("FUSE session closed");
            let _ = done_tx.send(());
            // Wake the main thread if it is still waiting for a signal.
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::USR1,
            );
        })
        .map_err(|e| Error::io(format!("starting the FUSE session thread: {e}")))?;

    if rx.recv_timeout(READY_TIMEOUT).is_err() {
        let _ = unmounter.unmount();
        return Err(Error::timeout(format!(
            "{}: the kernel did not complete the FUSE handshake",
            home.display()
        )));
    }
    let home = mountinfo::absolute(&home);
    crate::fs::mount::raise_readahead(&home);
    let target = mountinfo::absolute(&args.target);
    if let Some(l) = &layer {
        if let Err(e) = crate::sys::mounts::mount_overlay(&home, l, &target, opts.flags()) {
            stop(&mut unmounter, &done_rx, &answering);
            return Err(e);
        }
    }
    log::info!(
        "mounted {} on {} (fuse.{} source {}){}; cache {} bounded to {} bytes; ready",
        args.flist.display(),
        home.display(),
        opts.subtype,
        opts.fsname,
        match &layer {
            Some(l) => format!(", overlay with {} on {}", l.rw.display(), target.display()),
            None => String::new(),
        },
        args.cache.display(),
        max
    );
    let md5 = md5
        .join()
        .map_err(|_| Error::io("the flist md5 thread panicked"))??;
    // Stats are an extra: a mount without them still serves.
    let stats_server = match super::stats::serve_stats(stats) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!("{e}; `zvfs mounts --stats` will not know this mount");
            None
        }
    };
    let state = registry::State {
        pid: std::process::id(),
        start: registry::start_time(std::process::id()).unwrap_or(0),
        fuse_target: home.clone(),
        overlay: layer.as_ref().map(|l| registry::Overlay {
            target: target.clone(),
            upper: l.rw.clone(),
        }),
        flist: mountinfo::absolute(&args.flist),
        url,
        md5,
        cache: mountinfo::absolute(&args.cache),
        cache_size: max,
        stores: args.redacted_stores(),
        socket: stats_server.as_ref().map(|s| s.path().to_path_buf()),
        worker: None,
        restarts: 0,
        started_exe: None,
        generation: 0,
    };
    let _registered = match registry::register(&state) {
        Ok(r) => Some(r),
        Err(e) => {
            log::warn!("{e}; `zvfs mounts` will know less about this mount");
            None
        }
    };
    if let Some(mut p) = ready.take() {
        let _ = p.write_all(b"ready\n");
    }
    match crate::sys::notify::notify("READY=1") {
        Ok(true) => log::debug!("sent READY=1 to the supervisor"),
        Ok(false) => {}
        Err(e) => log::warn!("{e}"),
    }

    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: waits on a valid, initialised signal set.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc != 0 {
            continue;
        }
        if sig == libc::SIGUSR1 {
            if done_rx.try_recv().is_ok() {
                log::info!("{} was unmounted; exiting", home.display());
                let _ = session_thread.join();
                return Ok(());
            }
            continue;
        }
        log::info!("signal {sig}: unmounting {}", home.display());
        take_down_users(&home);
        stop(&mut unmounter, &done_rx, &answering);
        return Ok(());
    }
}

/// Unmount everything that uses this daemon's filesystem besides its own mount at
/// `home`: overlays over it first, then binds of it.
fn take_down_users(home: &Path) {
    let me = std::process::id();
    let Ok(all) = mountinfo::read() else {
        return;
    };
    let found = super::mounts::zvfs_mounts(&all, &registry::list());
    for kind in [super::mounts::Kind::Overlay, super::mounts::Kind::Bind] {
        for m in found.iter().rev() {
            if m.pid == Some(me) && m.kind == kind && m.target != home {
                log::info!("unmounting {} {}", kind.name(), m.target.display());
                if let Err(err) = crate::fs::mount::unmount_path(&m.target) {
                    log::error!("{err}");
                }
                registry::remove_user(&m.target);
            }
        }
    }
}

/// Unmount and give the session a moment to wind down (a lazily detached mount with open
/// files would keep it alive; exiting then aborts the connection). Requests the workers
/// hold are waited for (up to 5 s); reads waiting on a store are not (they could take the
/// whole deadline): exiting answers them with an error.
fn stop(unmounter: &mut Unmounter, done: &std::sync::mpsc::Receiver<()>, answering: &AtomicUsize) {
    use std::sync::mpsc::RecvTimeoutError;
    if let Err(e) = unmounter.unmount() {
        log::error!("{e}");
    }
    let start = std::time::Instant::now();
    loop {
        match done.recv_timeout(Duration::from_millis(50)) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if start.elapsed() >= Duration::from_secs(5) {
            log::warn!("the FUSE session did not end within 5 s; exiting anyway");
            return;
        }
        if start.elapsed() >= Duration::from_millis(200) && answering.load(Ordering::Relaxed) == 0 {
            log::info!(
                "detached, files still open, nothing in flight but reads waiting on stores; exiting"
            );
            return;
        }
    }
}
