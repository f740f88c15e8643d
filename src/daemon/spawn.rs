//! The background daemon (a mount's supervisor, see `supervisor`): [`spawn`] re-executes
//! the binary (`/proc/self/exe`) in a new
//! session (setsid) with two pipes: the options ([`MountOptions`] as JSON) on its stdin,
//! and a report pipe whose write end it passes in `ZVFS_READY_FD`. The child
//! ([`child_main`], called by the CLI before it parses anything) reads its options,
//! mounts and writes `ready` (once the kernel's FUSE handshake is done) or
//! `error <kind> <reason>` on the report pipe. [`spawn`] returns only after `ready`; on
//! an error, an early exit or a timeout it reaps (or kills) the child, so no stray daemon
//! is left behind. The child's argv is `ARGV0 mount -d -m FLIST TARGET` (the caller's
//! argv[0]) for `ps`; it is never parsed.
//!
//! This file owns the wire format between the two processes; it does not mount (that is
//! `serve`) nor decide whether a daemon is needed (that is [`super::start`]).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::MountOptions;
use crate::error::{Context, Error, ErrorKind, ExitCode, Result};
use crate::sys::mountinfo;

/// The environment variable that marks a daemon child and names its report pipe.
const READY_ENV: &str = "ZVFS_READY_FD";
/// How long [`spawn`] waits for the daemon to be ready.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(60);

/// A daemon serving a mount, as [`super::start`] left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// The daemon serving the mount (the source of its FUSE mount in mountinfo).
    pub pid: u32,
    /// The mountpoint, absolute.
    pub target: PathBuf,
    /// The target is a bind (or overlay) of a daemon that already served the flist, not
    /// a daemon of its own.
    pub shared: bool,
}

/// What the parent sends the child on its stdin.
#[derive(Serialize, Deserialize)]
struct Wire {
    /// The options, `flist` already a local file.
    opts: MountOptions,
    /// The URL the flist was downloaded from, for the registry.
    url: Option<String>,
    /// Debug logging.
    debug: bool,
}

/// Start a daemon serving `opts` (its flist a local file, downloaded from `url`) and wait
/// until it reports.
pub(super) fn spawn(opts: &MountOptions, url: Option<&str>) -> Result<Started> {
    use std::os::unix::process::CommandExt;
    let wire = serde_json::to_vec(&Wire {
        opts: MountOptions {
            flist: mountinfo::absolute(&opts.flist),
            record_trace: opts.record_trace.as_deref().map(mountinfo::absolute),
            ..opts.clone()
        },
        url: url.map(str::to_string),
        debug: log::max_level() >= log::LevelFilter::Debug,
    })
    .map_err(|e| Error::invalid(format!("encoding the daemon's options: {e}")))?;
    let (r, w) = std::io::pipe().ctx("creating the daemon's report pipe")?;
    // dup() drops close-on-exec: this end goes to the child.
    let w_child = rustix::io::dup(&w).map_err(|e| Error::io(format!("dup: {e}")))?;
    drop(w);
    let (opts_r, mut opts_w) = std::io::pipe().ctx("creating the daemon's options pipe")?;
    let exe = std::env::current_exe().ctx("finding the zvfs executable")?;
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("zvfs"));
    let mut cmd = std::process::Command::new(exe);
    cmd.arg0(argv0)
        .arg("mount")
        .arg("-d")
        .arg("-m")
        .arg(mountinfo::absolute(&opts.flist))
        .arg(&opts.target)
        .env(READY_ENV, w_child.as_raw_fd().to_string())
        .stdin(std::process::Stdio::from(opts_r))
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
    // The child reads its options first; if it died already, its report tells.
    let _ = opts_w.write_all(&wire);
    drop(opts_w);
    let pid = child.id();
    match read_report(r, DAEMON_TIMEOUT) {
        Report::Ready => {
            log::debug!("daemon {pid} is ready");
            Ok(Started {
                pid,
                target: mountinfo::absolute(&opts.target),
                shared: false,
            })
        }
        Report::Error(kind, msg) => {
            let _ = child.wait();
            Err(Error::new(kind, msg))
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
            cleanup_mount(opts, pid);
            Err(Error::timeout(format!(
                "the zvfs daemon was not ready within {} s; killed it",
                DAEMON_TIMEOUT.as_secs()
            )))
        }
    }
}

/// The entry point of a daemon child, of a mount's worker process and of a supervisor
/// executed by an upgrade: `None` when this process is none of them (no `ZVFS_READY_FD`,
/// `ZVFS_WORKER_FD` or `ZVFS_HANDOFF`), else its exit code once it stops serving. The CLI
/// calls it before parsing the command line; it installs the logger itself.
pub fn child_main() -> Option<ExitCode> {
    // A supervisor executed by an upgrade, or a mount's worker process.
    if let Some(code) = super::supervisor::handoff_main() {
        return Some(code);
    }
    if let Some(code) = super::serve::worker_main() {
        return Some(code);
    }
    let fd = std::env::var(READY_ENV).ok()?.parse::<i32>().ok()?;
    // Keep the pipe from our own children.
    std::env::remove_var(READY_ENV);
    // SAFETY: the parent passed this descriptor to us for our exclusive use.
    let mut ready = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut text = Vec::new();
    let wire = std::io::stdin()
        .read_to_end(&mut text)
        .ctx("reading the daemon's options")
        .and_then(|_| {
            serde_json::from_slice::<Wire>(&text)
                .map_err(|e| Error::invalid(format!("decoding the daemon's options: {e}")))
        });
    let wire = match wire {
        Ok(w) => w,
        Err(e) => {
            crate::sys::logger::init_logging(false);
            log::error!("{e}");
            let _ = ready.write_all(error_report(&e).as_bytes());
            return Some(ExitCode::Failure);
        }
    };
    crate::sys::logger::init_logging(wire.debug);
    if let Some(l) = &wire.opts.log {
        if let Err(e) = crate::sys::logger::log_to_file(l) {
            let _ = ready.write_all(error_report(&e).as_bytes());
            return Some(ExitCode::Failure);
        }
    }
    Some(
        match super::supervisor::run(&wire.opts, wire.url, Some(ready)) {
            Ok(()) => ExitCode::Ok,
            Err(_) => ExitCode::Failure,
        },
    )
}

/// The report line of a failure: `error <kind> <reason>`.
pub(super) fn error_report(e: &Error) -> String {
    format!("error {:?} {}\n", e.kind, e.msg.replace('\n', "; "))
}

/// The kind named in a report (as `{:?}` prints it).
fn kind_named(name: &str) -> Option<ErrorKind> {
    ErrorKind::ALL
        .into_iter()
        .find(|k| format!("{k:?}") == name)
}

/// The kind and reason of a report line's `<kind> <reason>` (an unknown kind: `Io`,
/// the whole text the reason).
pub(super) fn parse_error(rest: &str) -> (ErrorKind, String) {
    match rest
        .split_once(' ')
        .and_then(|(k, m)| Some((kind_named(k)?, m)))
    {
        Some((kind, msg)) => (kind, msg.to_string()),
        None => (ErrorKind::Io, rest.to_string()),
    }
}

/// What the daemon child reported.
enum Report {
    Ready,
    Error(ErrorKind, String),
    Closed,
    Timeout,
}

/// Wait (up to `timeout`) for the child's report line.
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
    } else if let Some(rest) = line.strip_prefix("error ") {
        let (kind, msg) = parse_error(rest);
        Report::Error(kind, msg)
    } else {
        Report::Closed
    }
}

/// After killing a daemon that never got ready, take off what it mounted, if anything.
fn cleanup_mount(args: &MountOptions, pid: u32) {
    let Ok(all) = mountinfo::read() else {
        return;
    };
    let home = mountinfo::absolute(&args.fuse_target());
    if args.upper.is_some() {
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

/// [`StoreConfig`](crate::store::StoreConfig) on the wire: its four durations.
pub(super) mod store_config {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::store::StoreConfig;

    pub fn serialize<S: Serializer>(c: &StoreConfig, s: S) -> Result<S::Ok, S::Error> {
        [c.connect_timeout, c.io_timeout, c.deadline, c.cooldown].serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StoreConfig, D::Error> {
        let [connect_timeout, io_timeout, deadline, cooldown] = <[Duration; 4]>::deserialize(d)?;
        Ok(StoreConfig {
            connect_timeout,
            io_timeout,
            deadline,
            cooldown,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the child writes on a real pipe is what the parent reads back.
    fn through_pipe(line: &[u8]) -> Report {
        let (r, mut w) = std::io::pipe().unwrap();
        w.write_all(line).unwrap();
        drop(w);
        read_report(r, Duration::from_secs(5))
    }

    #[test]
    fn a_reported_failure_keeps_its_kind_and_whole_reason() {
        let e = Error::not_found("flist /x/y.fl: no such file\nsecond line");
        match through_pipe(error_report(&e).as_bytes()) {
            Report::Error(kind, msg) => {
                assert_eq!(kind, ErrorKind::NotFound);
                assert_eq!(msg, "flist /x/y.fl: no such file; second line");
            }
            _ => panic!("not an error report"),
        }
        assert!(matches!(through_pipe(b"ready\n"), Report::Ready));
        assert!(matches!(through_pipe(b""), Report::Closed));
        match through_pipe(b"error something odd\n") {
            Report::Error(kind, msg) => {
                assert_eq!(kind, ErrorKind::Io);
                assert_eq!(msg, "something odd");
            }
            _ => panic!("not an error report"),
        }
    }

    #[test]
    fn options_survive_the_wire() {
        let mut opts = MountOptions::new(
            std::path::Path::new("/f.fl"),
            std::path::Path::new("/t"),
            std::path::Path::new("/c"),
        );
        opts.store_config.deadline = Duration::from_millis(1500);
        opts.stores = vec!["00-7f=dir:///a".into()];
        opts.upper = Some("/u".into());
        opts.cache_size = 12345;
        let text = serde_json::to_vec(&Wire {
            opts: opts.clone(),
            url: Some("http://h/f.fl".into()),
            debug: true,
        })
        .unwrap();
        let back: Wire = serde_json::from_slice(&text).unwrap();
        assert_eq!(back.opts.store_config.deadline, Duration::from_millis(1500));
        assert_eq!(
            back.opts.store_config.io_timeout,
            opts.store_config.io_timeout
        );
        assert_eq!(back.opts.stores, opts.stores);
        assert_eq!(back.opts.upper, opts.upper);
        assert_eq!(back.opts.cache_size, 12345);
        assert_eq!(back.url.as_deref(), Some("http://h/f.fl"));
        assert!(back.debug);
    }
}
