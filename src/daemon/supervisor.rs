//! A mount's supervisor: the process whose pid is the mount's source and the registry
//! entry's. It keeps the FUSE connection (the `/dev/fuse` descriptor) and serves through
//! a worker process (`serve`, this binary re-executed): when the worker dies, a new one
//! takes the same connection within a second; on SIGHUP it executes the binary now at
//! the path it was started from, handing itself over (same pid, same connection); on
//! SIGTERM or SIGINT it takes the mount down. Besides what needs no flist, store or
//! cache I/O (the read-ahead knob, the overlay of a writable mount, the flist's md5, the
//! registry entry, readiness), it does nothing itself: it never reads the filesystem's
//! data and answers no FUSE request. Formats: `control`, docs/supervisor.md.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::control::{self, Handoff, Msg, WorkerWire};
use super::serve::READY_TIMEOUT;
use super::MountOptions;
use crate::error::{Context, Error, ExitCode, Result};
use crate::sys::{mountinfo, registry};

/// A worker that dies within this time of its start counts towards the crash loop
/// (unless it was serving and got SIGKILLed).
const QUICK_DEATH: Duration = Duration::from_secs(1);
/// This many quick deaths in a row: give up (the mount goes stale).
const CRASH_LOOP: u32 = 5;
/// How long a worker may take to end once its filesystem was unmounted (it gives its
/// session 5 s itself).
const STOP_WAIT: Duration = Duration::from_secs(6);
/// The wait for a signal wakes this often to look at the worker.
const TICK: Duration = Duration::from_millis(200);

/// Supervise a new mount of `opts` (its flist a local file, downloaded from `url`) until
/// signalled or unmounted: start the first worker, report `ready` on `ready` (the pipe
/// of a daemon started by [`super::start`]) or the error, log a failure.
pub(super) fn run(
    opts: &MountOptions,
    url: Option<String>,
    mut ready: Option<std::fs::File>,
) -> Result<()> {
    let result = Supervisor::new(opts.clone(), url).and_then(|mut s| {
        block_signals();
        let worker = s.start(&mut ready)?;
        s.supervise(worker)
    });
    if let Err(e) = &result {
        log::error!(
            "mount of {} on {}: {e}",
            opts.flist.display(),
            opts.target.display()
        );
        if let Some(mut p) = ready.take() {
            let _ = p.write_all(super::spawn::error_report(e).as_bytes());
        }
    }
    result
}

/// The entry point of a supervisor executed by an upgrade: `None` when this process is
/// not one (no `ZVFS_HANDOFF`), else its exit code once it stops supervising.
pub(super) fn handoff_main() -> Option<ExitCode> {
    let text = std::env::var(control::HANDOFF_ENV).ok()?;
    std::env::remove_var(control::HANDOFF_ENV);
    let h = serde_json::from_str::<Handoff>(&text)
        .map_err(|e| Error::invalid(format!("decoding the supervisor handoff: {e}")));
    let debug = h.as_ref().is_ok_and(|h| h.debug);
    crate::sys::logger::init_logging(debug);
    let h = match h {
        Ok(h) if h.v == control::HANDOFF_VERSION => h,
        Ok(h) => {
            log::error!(
                "supervisor handoff version {} (this zvfs reads {}): the mount goes stale",
                h.v,
                control::HANDOFF_VERSION
            );
            return Some(ExitCode::Failure);
        }
        Err(e) => {
            log::error!("{e}: the mount goes stale");
            return Some(ExitCode::Failure);
        }
    };
    if let Some(l) = &h.options.log {
        if let Err(e) = crate::sys::logger::log_to_file(l) {
            log::error!("{e}");
        }
    }
    Some(match adopt(h) {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            log::error!("supervisor after upgrade: {e}");
            ExitCode::Failure
        }
    })
}

/// Become the supervisor `h` describes: take its descriptor, start a worker resuming it.
fn adopt(h: Handoff) -> Result<()> {
    block_signals();
    let fd = control::take_fd(h.fd, control::HANDOFF_ENV)?;
    let mut s = Supervisor::new(h.options, h.url)?;
    s.fd = Some(fd);
    s.restarts = h.restarts;
    s.generation = h.generation;
    let mut state = h.state;
    state.started_exe = Some(s.exe.clone());
    s._registered = registry::register(&state)
        .map_err(|e| log::warn!("{e}; `zvfs mounts` will know less about this mount"))
        .ok();
    s.state = Some(state);
    log::info!(
        "supervisor {} now runs {}; resuming {}",
        std::process::id(),
        s.exe.display(),
        s.home.display()
    );
    let worker = s.restart()?;
    s.supervise(worker)
}

/// Block the signals the supervisor waits for, before any thread starts (threads
/// inherit the mask, so only its `sigtimedwait` sees them).
fn block_signals() {
    let set = supervisor_set();
    // SAFETY: changes this thread's mask on a valid, initialised set.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Signals that end the mount, plus SIGUSR1 which wakes the supervisor's wait (a control
/// message arrived). A holder of a shared mount (`share::hold`) waits on these too.
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

/// [`signal_set`] plus SIGCHLD (a worker ended).
fn supervisor_set() -> libc::sigset_t {
    let mut set = signal_set();
    // SAFETY: adds a valid signal to an initialised set.
    unsafe {
        libc::sigaddset(&mut set, libc::SIGCHLD);
    }
    set
}

/// One worker process and what it said.
struct Worker {
    child: Child,
    generation: u64,
    started: Instant,
    msgs: Receiver<Msg>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// It said the filesystem was unmounted.
    unmounted: bool,
    /// It is serving.
    ready: bool,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL it and reap it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finish_reading();
    }

    /// After it exited: the rest of its messages (its end of the channel is closed, so
    /// the reader thread ends).
    fn finish_reading(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        while let Ok(m) = self.msgs.try_recv() {
            match m {
                Msg::Unmounted => self.unmounted = true,
                Msg::Ready => self.ready = true,
                _ => {}
            }
        }
    }
}

/// What a supervisor holds.
struct Supervisor {
    /// This binary, as recorded at the start (an upgrade executes the file now there).
    exe: PathBuf,
    opts: MountOptions,
    url: Option<String>,
    /// Where the FUSE filesystem is mounted (absolute).
    home: PathBuf,
    /// The connection: the `/dev/fuse` descriptor (none for a mount through fusermount3).
    fd: Option<OwnedFd>,
    generation: u64,
    restarts: u32,
    state: Option<registry::State>,
    _registered: Option<registry::Registered>,
    debug: bool,
}

impl Supervisor {
    fn new(opts: MountOptions, url: Option<String>) -> Result<Supervisor> {
        // Recorded before anything could replace the file: an upgrade executes this path.
        let exe = std::env::current_exe().ctx("finding the zvfs executable")?;
        let home = mountinfo::absolute(&opts.fuse_target());
        Ok(Supervisor {
            exe,
            opts,
            url,
            home,
            fd: None,
            generation: 0,
            restarts: 0,
            state: None,
            _registered: None,
            debug: log::max_level() >= log::LevelFilter::Debug,
        })
    }

    /// Start a worker of generation `generation`; a resumed one gets the connection.
    fn spawn_worker(&self, generation: u64, resume: bool) -> Result<Worker> {
        use std::os::unix::process::CommandExt;
        let me = std::process::id();
        let wire = serde_json::to_vec(&WorkerWire {
            opts: self.opts.clone(),
            debug: self.debug,
            generation,
            supervisor: me,
            stats_socket: super::stats::socket_path(me),
            resume,
        })
        .map_err(|e| Error::invalid(format!("encoding the worker's options: {e}")))?;
        let (mine, theirs) = control::pair()?;
        // dup() drops close-on-exec: these go to the worker only.
        let theirs = rustix::io::dup(&theirs).map_err(|e| Error::from(e).context("dup"))?;
        let fuse = match (resume, &self.fd) {
            (true, Some(fd)) => {
                Some(rustix::io::dup(fd).map_err(|e| Error::from(e).context("dup"))?)
            }
            (true, None) => return Err(Error::invalid("no FUSE connection to resume")),
            (false, _) => None,
        };
        let (opts_r, mut opts_w) = std::io::pipe().ctx("creating the worker's options pipe")?;
        let argv0 = std::env::args_os()
            .next()
            .unwrap_or_else(|| std::ffi::OsString::from("zvfs"));
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg0(argv0)
            .arg("mount-worker")
            .arg(me.to_string())
            .env(control::WORKER_ENV, theirs.as_raw_fd().to_string())
            .stdin(Stdio::from(opts_r))
            .stdout(Stdio::null());
        match &fuse {
            Some(f) => cmd.env(control::FUSE_FD_ENV, f.as_raw_fd().to_string()),
            None => cmd.env_remove(control::FUSE_FD_ENV),
        };
        // SAFETY: setpgid is async-signal-safe and touches no memory of the parent. A
        // process group of its own: a terminal's ^C goes to the supervisor only.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setpgid(None, None).map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let child = cmd.spawn().ctx("starting a zvfs worker")?;
        drop(theirs);
        drop(fuse);
        // It reads its options first; if it died already, its end of the channel tells.
        let _ = opts_w.write_all(&wire);
        drop(opts_w);
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("zvfs-control".into())
            .spawn(move || loop {
                let m = control::recv(mine.as_fd());
                let end = matches!(m, Msg::Closed);
                let _ = tx.send(m);
                // Wake the supervisor's wait.
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::USR1,
                );
                if end {
                    return;
                }
            })
            .map_err(|e| Error::io(format!("starting the control thread: {e}")))?;
        log::debug!(
            "started worker {} (generation {generation}{})",
            child.id(),
            if resume { ", resuming" } else { "" }
        );
        Ok(Worker {
            child,
            generation,
            started: Instant::now(),
            msgs: rx,
            reader: Some(reader),
            unmounted: false,
            ready: false,
        })
    }

    /// The first worker: it mounts; once it is ready, what needs no fs I/O, then
    /// `ready` on the pipe and `READY=1`.
    fn start(&mut self, ready: &mut Option<std::fs::File>) -> Result<Worker> {
        let layer = self.opts.layer();
        if let Some(l) = &layer {
            l.prepare(self.opts.reset)?;
        }
        // The md5 (for the registry) reads the whole flist: overlap it with the mount.
        let md5 = {
            let meta = self.opts.flist.clone();
            std::thread::spawn(move || crate::flist::download::md5_of_file(&meta))
        };
        let mut worker = self.spawn_worker(0, false)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match worker.msgs.recv_timeout(left) {
                Ok(Msg::Fd(fd)) => self.fd = Some(fd),
                Ok(Msg::Ready) => break,
                Ok(Msg::Error(kind, msg)) => {
                    let _ = worker.child.wait();
                    return Err(Error::new(kind, msg));
                }
                Ok(Msg::Unmounted) => {
                    let _ = worker.child.wait();
                    return Err(Error::io(format!(
                        "{} was unmounted before the mount was ready",
                        self.home.display()
                    )));
                }
                Ok(Msg::Closed) | Err(RecvTimeoutError::Disconnected) => {
                    let status = worker
                        .child
                        .wait()
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    self.unmount_if_ours();
                    return Err(Error::io(format!(
                        "the zvfs worker exited before the mount was ready ({status}); see its log"
                    )));
                }
                Err(RecvTimeoutError::Timeout) => {
                    worker.kill();
                    self.unmount_if_ours();
                    return Err(Error::timeout(format!(
                        "the zvfs worker was not ready within {} s; killed it",
                        READY_TIMEOUT.as_secs()
                    )));
                }
            }
        }
        worker.ready = true;
        if self.fd.is_none() {
            log::warn!(
                "{}: no /dev/fuse descriptor (not mounted by root): the mount cannot outlive its worker",
                self.home.display()
            );
        }
        let home = self.home.clone();
        crate::fs::mount::raise_readahead(&home);
        let target = mountinfo::absolute(&self.opts.target);
        if let Some(l) = &layer {
            let flags = self.opts.mount_opts().flags();
            if let Err(e) = crate::sys::mounts::mount_overlay(&home, l, &target, flags) {
                self.stop(&mut worker);
                return Err(e);
            }
        }
        let md5 = match md5.join() {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                self.stop(&mut worker);
                return Err(e);
            }
            Err(_) => {
                self.stop(&mut worker);
                return Err(Error::io("the flist md5 thread panicked"));
            }
        };
        let opts = self.opts.mount_opts();
        log::info!(
            "mounted {} on {} (fuse.{} source {}, worker {}){}; cache {} bounded to {} bytes; ready",
            self.opts.flist.display(),
            home.display(),
            opts.subtype,
            std::process::id(),
            worker.pid(),
            match &layer {
                Some(l) => format!(", overlay with {} on {}", l.rw.display(), target.display()),
                None => String::new(),
            },
            self.opts.cache.display(),
            self.opts.cache_size
        );
        let me = std::process::id();
        let state = registry::State {
            pid: me,
            start: registry::start_time(me).unwrap_or(0),
            fuse_target: home.clone(),
            overlay: layer.as_ref().map(|l| registry::Overlay {
                target: target.clone(),
                upper: l.rw.clone(),
            }),
            flist: mountinfo::absolute(&self.opts.flist),
            url: self.url.clone(),
            md5,
            cache: mountinfo::absolute(&self.opts.cache),
            cache_size: self.opts.cache_size,
            stores: self.opts.redacted_stores(),
            socket: Some(super::stats::socket_path(me)),
            worker: Some(worker.pid()),
            restarts: 0,
            started_exe: Some(self.exe.clone()),
            generation: 0,
        };
        self._registered = match registry::register(&state) {
            Ok(r) => Some(r),
            Err(e) => {
                log::warn!("{e}; `zvfs mounts` will know less about this mount");
                None
            }
        };
        self.state = Some(state);
        if let Some(mut p) = ready.take() {
            let _ = p.write_all(b"ready\n");
        }
        match crate::sys::notify::notify("READY=1") {
            Ok(true) => log::debug!("sent READY=1 to the supervisor"),
            Ok(false) => {}
            Err(e) => log::warn!("{e}"),
        }
        Ok(worker)
    }

    /// Unmount the FUSE mount on `home` when it is this supervisor's (after a failed
    /// start).
    fn unmount_if_ours(&self) {
        let me = std::process::id();
        let ours = mountinfo::read()
            .map(|all| mountinfo::at(&all, &self.home).and_then(|m| m.daemon_pid()) == Some(me))
            .unwrap_or(false);
        if ours {
            let _ = crate::fs::mount::unmount_path(&self.home);
        }
    }

    /// Serve through `worker` (and its successors) until signalled or unmounted.
    fn supervise(&mut self, mut worker: Worker) -> Result<()> {
        let set = supervisor_set();
        let tick = libc::timespec {
            tv_sec: 0,
            tv_nsec: TICK.as_nanos() as libc::c_long,
        };
        let mut quick_deaths = 0u32;
        loop {
            // SAFETY: waits on a valid signal set with a valid timeout; no siginfo wanted.
            let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &tick) };
            while let Ok(m) = worker.msgs.try_recv() {
                self.on_message(&mut worker, m);
            }
            if sig == libc::SIGTERM || sig == libc::SIGINT {
                log::info!("signal {sig}: unmounting {}", self.home.display());
                self.stop(&mut worker);
                return Ok(());
            }
            if sig == libc::SIGHUP {
                worker = self.upgrade(worker)?;
                continue;
            }
            let status = match worker.child.try_wait() {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    log::warn!("waiting for worker {}: {e}", worker.pid());
                    continue;
                }
            };
            worker.finish_reading();
            let mounted = mountinfo::read()
                .map(|all| mountinfo::at(&all, &self.home).is_some())
                .unwrap_or(true);
            if status.success() && (worker.unmounted || !mounted) {
                log::info!("{} was unmounted; exiting", self.home.display());
                take_down_users(&self.home);
                self.cleanup();
                return Ok(());
            }
            // A serving worker SIGKILLed from outside (an operator, the OOM killer) is no
            // crash of its own: the mount must survive kills in any number.
            let killed =
                std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGKILL);
            let quick = worker.started.elapsed() < QUICK_DEATH && !(worker.ready && killed);
            quick_deaths = if quick { quick_deaths + 1 } else { 0 };
            log::error!(
                "worker {} (generation {}) of {} died ({status})",
                worker.pid(),
                worker.generation,
                self.home.display()
            );
            if self.fd.is_none() {
                self.cleanup();
                return Err(Error::io(format!(
                    "{}: no FUSE connection to give a new worker; the mount is stale",
                    self.home.display()
                )));
            }
            if quick_deaths >= CRASH_LOOP {
                self.fd = None;
                self.cleanup();
                return Err(Error::io(format!(
                    "{}: {CRASH_LOOP} workers in a row died within {} s of their start; giving \
                     up (the mount is stale)",
                    self.home.display(),
                    QUICK_DEATH.as_secs()
                )));
            }
            if quick {
                // A short pause so a crash loop does not spin; still well within 1 s.
                std::thread::sleep(Duration::from_millis(100) * quick_deaths);
            }
            self.restarts += 1;
            worker = self.restart()?;
        }
    }

    /// Start the next worker, resuming the connection.
    fn restart(&mut self) -> Result<Worker> {
        self.generation += 1;
        let w = self.spawn_worker(self.generation, true)?;
        log::info!(
            "worker {} (generation {}) resumes {}",
            w.pid(),
            w.generation,
            self.home.display()
        );
        Ok(w)
    }

    fn on_message(&mut self, worker: &mut Worker, m: Msg) {
        match m {
            Msg::Ready => {
                worker.ready = true;
                self.publish(worker);
            }
            Msg::Unmounted => worker.unmounted = true,
            Msg::Error(kind, msg) => {
                log::error!("worker {}: {msg} ({kind:?})", worker.pid())
            }
            // Only the first worker sends the descriptor; a later one's is a duplicate.
            Msg::Fd(_) | Msg::Closed => {}
        }
    }

    /// Record the serving worker in the registry.
    fn publish(&mut self, worker: &Worker) {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        state.worker = Some(worker.pid());
        state.generation = worker.generation;
        state.restarts = self.restarts;
        state.started_exe = Some(self.exe.clone());
        let state = state.clone();
        if let Err(e) = registry::update(&state) {
            log::warn!("{e}");
        }
    }

    /// The orderly take down: what uses the mount, the mount, then the worker (SIGTERM:
    /// it ends once its session did or nothing but reads waiting on stores is in flight,
    /// within 5 s; after [`STOP_WAIT`] it is killed).
    fn stop(&mut self, worker: &mut Worker) {
        take_down_users(&self.home);
        if let Err(e) = crate::fs::mount::unmount_path(&self.home) {
            log::debug!("{e}; trying fusermount3");
            let ok = std::process::Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.home)
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                log::error!("{e}");
            }
        }
        if let Some(p) = i32::try_from(worker.pid())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
        }
        let start = Instant::now();
        loop {
            match worker.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => {}
            }
            if start.elapsed() >= STOP_WAIT {
                log::warn!(
                    "worker {} did not end within {} s; killing it",
                    worker.pid(),
                    STOP_WAIT.as_secs()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        worker.kill();
        self.cleanup();
    }

    /// What a worker that died leaves: its stats socket file.
    fn cleanup(&self) {
        let _ = std::fs::remove_file(super::stats::socket_path(std::process::id()));
    }

    /// SIGHUP: kill the worker (the next one gets its pending requests again), execute
    /// the binary now at [`Supervisor::exe`] with the handoff. Returns only when that
    /// failed, with a new worker of this binary.
    fn upgrade(&mut self, mut worker: Worker) -> Result<Worker> {
        use std::os::unix::process::CommandExt;
        let Some(fd) = self.fd.as_ref() else {
            log::error!(
                "SIGHUP: {}: no FUSE connection to hand over (not mounted by root); not upgrading",
                self.home.display()
            );
            return Ok(worker);
        };
        if let Err(e) = std::fs::metadata(&self.exe) {
            log::error!("SIGHUP: {}: {e}; not upgrading", self.exe.display());
            return Ok(worker);
        }
        let state = match &self.state {
            Some(s) => s.clone(),
            None => {
                log::error!("SIGHUP: no registry state yet; not upgrading");
                return Ok(worker);
            }
        };
        let handoff = Handoff {
            v: control::HANDOFF_VERSION,
            fd: fd.as_raw_fd(),
            options: self.opts.clone(),
            url: self.url.clone(),
            state,
            restarts: self.restarts,
            generation: self.generation,
            debug: self.debug,
        };
        let text = match serde_json::to_string(&handoff) {
            Ok(t) => t,
            Err(e) => {
                log::error!("SIGHUP: encoding the handoff: {e}; not upgrading");
                return Ok(worker);
            }
        };
        log::info!(
            "SIGHUP: upgrading: stopping worker {} and executing {}",
            worker.pid(),
            self.exe.display()
        );
        worker.kill();
        if let Err(e) = control::set_cloexec(fd.as_fd(), false) {
            log::error!("{e}; not upgrading");
            return self.restart();
        }
        let err = std::process::Command::new(&self.exe)
            .arg0(std::env::args_os().next().unwrap_or_else(|| "zvfs".into()))
            .args(std::env::args_os().skip(1))
            .env(control::HANDOFF_ENV, text)
            .exec();
        // Still here: the exec failed; carry on with this binary.
        log::error!("executing {}: {err}; not upgraded", self.exe.display());
        if let Err(e) = control::set_cloexec(fd.as_fd(), true) {
            log::warn!("{e}");
        }
        self.restart()
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
