//! `zvfs mount`: serve an flist read-only over FUSE, in the foreground or as a daemon.
//!
//! `-d` re-executes the binary in a new session (setsid) with a pipe whose write end it
//! passes in `ZVFS_READY_FD`; the child mounts and writes `ready` (once the kernel's FUSE
//! handshake is done) or `error <reason>` on it. The parent exits 0 only after `ready`;
//! on an error, an early exit or a timeout it reaps (or kills) the child, so no stray
//! daemon is left behind. SIGTERM, SIGINT and SIGHUP unmount cleanly and exit 0; an
//! external unmount ends the daemon too.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::{parse_size, ChunkCache};
use crate::error::{Context, Error, Result};
use crate::fs::mount::{MountOpts, Unmounter};
use crate::fs::{FsConfig, ZvfsFs};
use crate::store::router::Router;

const READY_ENV: &str = "ZVFS_READY_FD";
/// How long `-d` waits for the daemon to be ready.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Flist to mount.
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// Chunk cache directory (rfs layout, shareable between mounts).
    #[arg(short = 'c', long = "cache")]
    pub cache: PathBuf,
    /// Bound of the cache directory (K, M, G suffixes), shared by every process using it.
    #[arg(long = "cache-size", default_value = "4G")]
    pub cache_size: String,
    /// Store URL overriding the flist's routes (`[xx-xx=]URL`, repeatable).
    #[arg(short = 's', long = "store")]
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
    /// Chunks fetched ahead of sequential readers.
    #[arg(long = "readahead", default_value_t = 2)]
    pub readahead: usize,
    #[command(flatten)]
    pub store_flags: super::StoreFlags,
    /// Mountpoint (an existing directory).
    pub target: PathBuf,
}

pub fn run(args: Args) -> Result<i32> {
    let ready_fd = std::env::var(READY_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok());
    if args.daemon && ready_fd.is_none() {
        return daemonize(&args);
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
    match serve(&args, &mut ready) {
        Ok(()) => Ok(0),
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

fn serve(args: &Args, ready: &mut Option<std::fs::File>) -> Result<()> {
    // Block the signals before any thread starts, so only `sigwait` below sees them.
    let set = signal_set();
    // SAFETY: changes this thread's mask; threads spawned later inherit it.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let max = parse_size(&args.cache_size)?;
    let threads = args.threads.clamp(1, 64);
    let flist = crate::flist::open(&args.meta)?;
    let routes = flist.routes()?;
    let router = Router::for_flist(&routes, &args.stores, &args.store_flags.config())
        .with_ctx(|| format!("stores of {}", args.meta.display()))?;
    let cache = ChunkCache::open(&args.cache, max, threads + 2)?;
    let mut fs = ZvfsFs::new(
        flist,
        cache,
        router,
        FsConfig {
            threads,
            readahead_chunks: args.readahead,
        },
    )?;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    fs.on_ready(move || {
        let _ = tx.send(());
    });
    let opts = MountOpts::default();
    let mounted = crate::fs::mount::mount(fs, &args.target, &opts)?;
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
            args.target.display()
        )));
    }
    log::info!(
        "mounted {} on {} (fuse.{} source {}); cache {} bounded to {} bytes; ready",
        args.meta.display(),
        args.target.display(),
        opts.subtype,
        opts.fsname,
        args.cache.display(),
        max
    );
    if let Some(mut p) = ready.take() {
        let _ = p.write_all(b"ready\n");
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
                log::info!("{} was unmounted; exiting", args.target.display());
                let _ = session_thread.join();
                return Ok(());
            }
            continue;
        }
        log::info!("signal {sig}: unmounting {}", args.target.display());
        stop(&mut unmounter, &done_rx);
        return Ok(());
    }
}

/// Unmount and give the session a moment to wind down (a lazily detached mount with open
/// files would keep it alive; exiting then aborts the connection).
fn stop(unmounter: &mut Unmounter, done: &std::sync::mpsc::Receiver<()>) {
    if let Err(e) = unmounter.unmount() {
        log::error!("{e}");
    }
    if done.recv_timeout(Duration::from_secs(5)).is_err() {
        log::warn!("the FUSE session did not end within 5 s; exiting anyway");
    }
}

/// `-d`: start the daemon and wait until it reports.
fn daemonize(args: &Args) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let (r, w) = std::io::pipe().ctx("creating the daemon's report pipe")?;
    // dup() drops close-on-exec: this end goes to the child.
    let w_child = rustix::io::dup(&w).map_err(|e| Error::io(format!("dup: {e}")))?;
    drop(w);
    let exe = std::env::current_exe().ctx("finding the zvfs executable")?;
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(argv)
        .env(READY_ENV, w_child.as_raw_fd().to_string())
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
    let mut child = cmd.spawn().ctx("starting the zvfs daemon")?;
    drop(w_child);
    let pid = child.id();
    match read_report(r, DAEMON_TIMEOUT) {
        Report::Ready => {
            log::debug!("daemon {pid} is ready");
            Ok(0)
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
            cleanup_mount(&args.target, pid);
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

/// After killing a daemon that never got ready, detach its mount if it made one.
fn cleanup_mount(target: &Path, pid: u32) {
    let Ok(target) = target.canonicalize() else {
        return;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let want = target.to_string_lossy();
    let ours = info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-");
        matches!(sep, Some(i) if f.get(4) == Some(&want.as_ref())
            && f.get(i + 2) == Some(&pid.to_string().as_str()))
    });
    if ours {
        let _ = crate::fs::mount::unmount_path(&target);
    }
}
