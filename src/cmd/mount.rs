//! `zvfs mount`: serve an flist read-only over FUSE, in the foreground or as a daemon;
//! optionally writable through an overlay, and shared between targets.
//!
//! `-m` may be an http(s) URL: the flist is downloaded into `CACHE/flist/<md5>` first
//! (`flist::download`). With `--rw --upper DIR` the FUSE mount goes on `DIR/ro` and an
//! overlay (`upperdir=DIR/rw`, `workdir=DIR/wd`) on the target; `--reset` empties `DIR/rw`
//! first. A mount of an flist that a live daemon already serves (same md5, cache and
//! store overrides, per the registry in `sys::registry`) starts no second daemon: the
//! target becomes a read-only bind of the existing mount (or, with `--rw`, an overlay over
//! it); `--new-daemon` opts out. With `-d` the command then returns; in the foreground it
//! stays as the target's holder until signalled. A target that already holds a healthy
//! zvfs mount is refused; a stale one (daemon gone) is detached first.
//!
//! `-d` re-executes the binary in a new session (setsid) with a pipe whose write end it
//! passes in `ZVFS_READY_FD`; the child mounts and writes `ready` (once the kernel's FUSE
//! handshake is done) or `error <reason>` on it. The parent exits 0 only after `ready`;
//! on an error, an early exit or a timeout it reaps (or kills) the child, so no stray
//! daemon is left behind. The child keeps argv[0], so an `rfs`/`g8ufs` command line is
//! translated again the same way. Once mounted, the serving process registers itself in
//! `/run/zvfs` and sends `READY=1` to `NOTIFY_SOCKET` when a supervisor set one. SIGTERM,
//! SIGINT and SIGHUP take down what uses the mount (overlays, then binds), then the FUSE
//! mount, and exit 0; an external unmount ends the daemon too.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::cache::{parse_size, ChunkCache};
use crate::error::{Context, Error, ExitCode, Result};
use crate::fs::mount::{MountOpts, Unmounter};
use crate::fs::{FsConfig, ZvfsFs};
use crate::store::router::Router;
use crate::sys::mounts::Layer;
use crate::sys::{mountinfo, registry};

const READY_ENV: &str = "ZVFS_READY_FD";
/// The daemon child gets the local flist (after a download) and its URL through these.
const META_ENV: &str = "ZVFS_MOUNT_META";
const URL_ENV: &str = "ZVFS_MOUNT_URL";
/// How long `-d` waits for the daemon to be ready.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(60);

/// Chunks fetched (and held in memory, object and plaintext: about 1 MiB each) at once.
/// Decoding is CPU-bound, so more than a few only add memory on a small node.
const MAX_FETCHES: usize = 6;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Flist to mount: a file, or an http(s) URL (downloaded into CACHE/flist/<md5>,
    /// checked against <URL>.md5 when the server has one, reused while it is unchanged).
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// Chunk cache directory (rfs layout, shareable between mounts).
    #[arg(short = 'c', long = "cache")]
    pub cache: PathBuf,
    /// Bound of the cache directory (K, M, G suffixes), shared by every process using it.
    #[arg(long = "cache-size", default_value = "4G")]
    pub cache_size: String,
    /// Store URL overriding the flist's routes (`[xx-xx=]URL`, repeatable).
    #[arg(short = 's', long = "store", value_parser = super::StoreSpec)]
    pub stores: Vec<String>,
    /// Run as a daemon: return once the mount is ready.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Log file (appended).
    #[arg(short = 'l', long = "log")]
    pub log: Option<PathBuf>,
    /// Worker threads serving reads.
    #[arg(short = 't', long = "threads", default_value_t = 8)]
    pub threads: usize,
    /// Chunks fetched ahead of sequential readers (cached ones are paged in ahead).
    #[arg(long = "readahead", default_value_t = 2)]
    pub readahead: usize,
    /// Writable: the flist is mounted on UPPER/ro and an overlay with upperdir UPPER/rw
    /// and workdir UPPER/wd on the target; writes land in UPPER/rw.
    #[arg(long, requires = "upper")]
    pub rw: bool,
    /// Backend directory of the writable layer (created).
    #[arg(long, value_name = "DIR", requires = "rw")]
    pub upper: Option<PathBuf>,
    /// Empty the writable layer (UPPER/rw) before mounting.
    #[arg(long, requires = "rw")]
    pub reset: bool,
    /// Start a daemon of its own even when a live daemon already serves this flist.
    #[arg(long)]
    pub new_daemon: bool,
    /// Let device nodes of the flist open the host devices they name. By default the
    /// mount is `nodev`: they keep their type and numbers in `stat` but cannot be opened.
    #[arg(long)]
    pub dev: bool,
    /// Ignore setuid and setgid bits (a `nosuid` mount). By default they take effect, as
    /// container root filesystems need (`su`, `ping`, `sudo`).
    #[arg(long)]
    pub nosuid: bool,
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    /// Mountpoint (a directory, created when missing).
    pub target: PathBuf,
}

impl Args {
    /// The writable layer, with `--rw`.
    fn layer(&self) -> Option<Layer> {
        match (&self.upper, self.rw) {
            (Some(u), true) => Some(Layer::new(&mountinfo::absolute(u))),
            _ => None,
        }
    }

    /// Where the FUSE filesystem goes: the target, or UPPER/ro in writable mode.
    fn fuse_target(&self) -> PathBuf {
        match self.layer() {
            Some(l) => l.ro,
            None => self.target.clone(),
        }
    }

    /// Mount options: the defaults plus `--dev` / `--nosuid`.
    fn mount_opts(&self) -> MountOpts {
        MountOpts {
            dev: self.dev,
            suid: !self.nosuid,
            ..MountOpts::default()
        }
    }

    fn redacted_stores(&self) -> Vec<String> {
        self.stores
            .iter()
            .map(|s| crate::store::redact(s))
            .collect()
    }
}

pub fn run(mut args: Args) -> Result<ExitCode> {
    let ready_fd = std::env::var(READY_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok());
    let mut url = None;
    if ready_fd.is_some() {
        // The daemon child: the parent resolved the flist and checked the target.
        if let Some(m) = std::env::var_os(META_ENV) {
            args.meta = PathBuf::from(m);
        }
        url = std::env::var(URL_ENV).ok();
        std::env::remove_var(META_ENV);
        std::env::remove_var(URL_ENV);
    } else {
        if let Some(u) = args
            .meta
            .to_str()
            .filter(|m| crate::flist::download::is_url(m))
        {
            let u = u.to_string();
            let timeout = Duration::from_secs_f64(args.store_flags.io_timeout.max(1.0));
            args.meta = crate::flist::download::fetch(&u, &args.cache.join("flist"), timeout)?;
            url = Some(u);
        }
        let missing = std::fs::symlink_metadata(&args.target)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        if missing {
            std::fs::create_dir_all(&args.target)
                .with_ctx(|| format!("creating mountpoint {}", args.target.display()))?;
        }
        // Without a writable run directory (not root) there is no registry to share by.
        let lock = registry::lock()
            .map_err(|e| log::debug!("{e}; mounting without the registry lock"))
            .ok();
        preflight(&args.target)?;
        let shared = if args.new_daemon { None } else { share(&args)? };
        drop(lock);
        if let Some(pid) = shared {
            return if args.daemon {
                Ok(ExitCode::Ok)
            } else {
                if let Some(l) = &args.log {
                    super::log_to_file(l)?;
                }
                hold(&args.target, pid)
            };
        }
        if args.daemon {
            return daemonize(&args, url.as_deref());
        }
    }
    // The daemon child: take the pipe and keep it from our own children.
    let mut ready = ready_fd.map(|fd| {
        std::env::remove_var(READY_ENV);
        // SAFETY: the parent passed this descriptor to us for our exclusive use.
        std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) })
    });
    if let Some(l) = &args.log {
        super::log_to_file(l)?;
    }
    tune_allocator();
    match serve(&args, url, &mut ready) {
        Ok(()) => Ok(ExitCode::Ok),
        Err(e) => {
            log::error!(
                "mount of {} on {}: {e}",
                args.meta.display(),
                args.target.display()
            );
            if let Some(mut p) = ready.take() {
                let _ = p.write_all(format!("error {e}\n").as_bytes());
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
fn signal_set() -> libc::sigset_t {
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

fn serve(args: &Args, url: Option<String>, ready: &mut Option<std::fs::File>) -> Result<()> {
    // Block the signals before any thread starts, so only `sigwait` below sees them.
    let set = signal_set();
    // SAFETY: changes this thread's mask; threads spawned later inherit it.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let max = parse_size(&args.cache_size)?;
    let threads = args.threads.clamp(1, 64);
    let layer = args.layer();
    if let Some(l) = &layer {
        l.prepare(args.reset)?;
    }
    let home = args.fuse_target();
    // The md5 (for the registry) reads the whole flist: overlap it with the mount.
    let md5 = {
        let meta = args.meta.clone();
        std::thread::spawn(move || crate::flist::download::md5_of_file(&meta))
    };
    let flist = crate::flist::open(&args.meta)?;
    let routes = flist.routes()?;
    let router = Router::for_flist(&routes, &args.stores, &args.store_flags.config())
        .with_ctx(|| format!("stores of {}", args.meta.display()))?;
    let cache = ChunkCache::open(&args.cache, max, (threads + 2).min(MAX_FETCHES))?;
    let mut fs = ZvfsFs::new(
        flist,
        cache,
        router,
        FsConfig {
            threads,
            readahead_chunks: args.readahead,
        },
    )?;
    let answering = fs.answering();
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

    if rx.recv_timeout(DAEMON_TIMEOUT).is_err() {
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
        args.meta.display(),
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
    let state = registry::State {
        pid: std::process::id(),
        start: registry::start_time(std::process::id()).unwrap_or(0),
        fuse_target: home.clone(),
        overlay: layer.as_ref().map(|l| registry::Overlay {
            target: target.clone(),
            upper: l.rw.clone(),
        }),
        flist: mountinfo::absolute(&args.meta),
        url,
        md5,
        cache: mountinfo::absolute(&args.cache),
        cache_size: max,
        stores: args.redacted_stores(),
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

/// A foreground mount that shares another daemon's mount stays in the foreground as
/// the target's holder (a supervisor tracks this process): ready at once; on SIGTERM,
/// SIGINT or SIGHUP it unmounts the target and lets the daemon go when that was its last
/// user; it exits too when the target is unmounted by someone else.
fn hold(target: &Path, daemon: u32) -> Result<ExitCode> {
    let set = signal_set();
    // SAFETY: changes this thread's mask; no other thread runs.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let target = mountinfo::absolute(target);
    if let Err(e) = crate::sys::notify::notify("READY=1") {
        log::warn!("{e}");
    }
    log::info!(
        "holding {} (shared mount of daemon {daemon})",
        target.display()
    );
    let tick = libc::timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: waits on a valid signal set with a valid timeout; no siginfo wanted.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &tick) };
        if sig > 0 && sig != libc::SIGUSR1 {
            log::info!("signal {sig}: unmounting {}", target.display());
            break;
        }
        let mounted = mountinfo::read()
            .map(|all| mountinfo::at(&all, &target).is_some())
            .unwrap_or(true);
        if !mounted {
            log::info!("{} was unmounted; exiting", target.display());
            registry::remove_user(&target);
            return Ok(ExitCode::Ok);
        }
    }
    crate::fs::mount::unmount_path(&target)?;
    registry::remove_user(&target);
    super::mounts::release(daemon, Duration::from_secs(10))?;
    Ok(ExitCode::Ok)
}

/// Before mounting on `target`: refuse a healthy zvfs mount there, detach a stale one.
fn preflight(target: &Path) -> Result<()> {
    let t = mountinfo::absolute(target);
    let all = mountinfo::read()?;
    let found = super::mounts::zvfs_mounts(&all, &registry::list());
    let Some(m) = found.iter().rev().find(|m| m.target == t) else {
        return Ok(());
    };
    match m.health() {
        Ok(()) => Err(Error::invalid(format!(
            "{} is already a mount point (zvfs {}, daemon {})",
            t.display(),
            m.kind.name(),
            m.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
        ))),
        Err(why) => {
            log::warn!("{}: stale zvfs mount ({why}); detaching it", t.display());
            super::mounts::detach_stale(m)
        }
    }
}

/// Without `--new-daemon`: when a live daemon serves the same flist with the same cache
/// and stores, bind its mount on the target (or overlay it with `--rw`) instead of
/// starting another daemon. Returns that daemon's pid when it did.
fn share(args: &Args) -> Result<Option<u32>> {
    let cache = mountinfo::absolute(&args.cache);
    let stores = args.redacted_stores();
    let candidates: Vec<_> = registry::list()
        .into_iter()
        .filter(|s| s.cache == cache && s.stores == stores)
        .collect();
    if candidates.is_empty() {
        // The md5 reads the whole flist (tens of ms for a big one): only when it matters.
        return Ok(None);
    }
    let md5 = crate::flist::download::md5_of_file(&args.meta)?;
    let target = mountinfo::absolute(&args.target);
    let all = mountinfo::read()?;
    for s in candidates {
        if s.md5 != md5 {
            continue;
        }
        // A healthy mount of that daemon's filesystem, its own first.
        let mut sources: Vec<&Path> = all
            .iter()
            .filter(|e| e.daemon_pid() == Some(s.pid) && e.target != target)
            .map(|e| e.target.as_path())
            .collect();
        sources.sort_by_key(|p| *p != s.fuse_target);
        let Some(src) = sources.into_iter().find(|p| std::fs::metadata(p).is_ok()) else {
            continue;
        };
        match args.layer() {
            Some(l) => {
                l.prepare(args.reset)?;
                crate::sys::mounts::mount_overlay(src, &l, &target, args.mount_opts().flags())?;
                if let Err(e) = registry::add_user(&s, &target) {
                    log::warn!("{e}");
                }
                log::info!(
                    "{}: overlay of {} (daemon {}, flist md5 {md5}) with {}",
                    target.display(),
                    src.display(),
                    s.pid,
                    l.rw.display()
                );
            }
            None => {
                crate::sys::mounts::bind_ro(src, &target, args.mount_opts().flags())?;
                log::info!(
                    "{}: bind of {} (daemon {}, flist md5 {md5})",
                    target.display(),
                    src.display(),
                    s.pid
                );
            }
        }
        return Ok(Some(s.pid));
    }
    Ok(None)
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

/// `-d`: start the daemon and wait until it reports.
fn daemonize(args: &Args, url: Option<&str>) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let (r, w) = std::io::pipe().ctx("creating the daemon's report pipe")?;
    // dup() drops close-on-exec: this end goes to the child.
    let w_child = rustix::io::dup(&w).map_err(|e| Error::io(format!("dup: {e}")))?;
    drop(w);
    let exe = std::env::current_exe().ctx("finding the zvfs executable")?;
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_else(|| OsString::from("zvfs"));
    let mut cmd = std::process::Command::new(exe);
    // Same argv[0]: an rfs or g8ufs command line is translated the same way again.
    cmd.arg0(argv0)
        .args(argv)
        .env(READY_ENV, w_child.as_raw_fd().to_string())
        .env(META_ENV, mountinfo::absolute(&args.meta))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    match url {
        Some(u) => cmd.env(URL_ENV, u),
        None => cmd.env_remove(URL_ENV),
    };
    let mut child = cmd.spawn().ctx("starting the zvfs daemon")?;
    drop(w_child);
    let pid = child.id();
    match read_report(r, DAEMON_TIMEOUT) {
        Report::Ready => {
            log::debug!("daemon {pid} is ready");
            Ok(ExitCode::Ok)
        }
        Report::Error(msg) => {
            let _ = child.wait();
            Err(Error::io(msg))
        }
        Report::Closed => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            Err(Error::io(format!(
                "the zvfs daemon exited before the mount was ready ({status}); see its log"
            )))
        }
        Report::Timeout => {
            let _ = child.kill();
            let _ = child.wait();
            cleanup_mount(args, pid);
            Err(Error::timeout(format!(
                "the zvfs daemon was not ready within {} s; killed it",
                DAEMON_TIMEOUT.as_secs()
            )))
        }
    }
}

enum Report {
    Ready,
    Error(String),
    Closed,
    Timeout,
}

fn read_report(mut pipe: std::io::PipeReader, timeout: Duration) -> Report {
    // A reader thread, so the wait can time out without non-blocking I/O.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.contains(&b'\n') {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(got);
    });
    let got = match rx.recv_timeout(timeout) {
        Ok(g) => g,
        // The reader thread stays blocked until the child is killed; it ends with it.
        Err(_) => return Report::Timeout,
    };
    let _ = reader.join();
    let text = String::from_utf8_lossy(&got);
    let line = text.lines().next().unwrap_or("");
    if line == "ready" {
        Report::Ready
    } else if let Some(msg) = line.strip_prefix("error ") {
        Report::Error(msg.to_string())
    } else {
        Report::Closed
    }
}

/// After killing a daemon that never got ready, take off what it mounted, if anything.
fn cleanup_mount(args: &Args, pid: u32) {
    let Ok(all) = mountinfo::read() else {
        return;
    };
    let home = mountinfo::absolute(&args.fuse_target());
    if args.rw {
        let t = mountinfo::absolute(&args.target);
        if let Some(m) = mountinfo::at(&all, &t) {
            if m.is_overlay() && m.lowerdirs().contains(&home) {
                let _ = crate::fs::mount::unmount_path(&t);
            }
        }
    }
    if mountinfo::at(&all, &home).and_then(|m| m.daemon_pid()) == Some(pid) {
        let _ = crate::fs::mount::unmount_path(&home);
    }
}
