//! The wire between a mount's supervisor and its worker process, and the handoff of a
//! supervisor to the binary it executes on an upgrade (format in docs/supervisor.md).
//!
//! The worker is this binary re-executed with `ZVFS_WORKER_FD` naming its end of a
//! `SOCK_SEQPACKET` socket pair (the control channel) and its [`WorkerWire`] as JSON on
//! its stdin; a resumed worker also inherits the `/dev/fuse` descriptor, numbered in
//! `ZVFS_FUSE_FD`. Worker to supervisor, one message per packet: `fd` (carrying the
//! connection's descriptor with `SCM_RIGHTS`, first worker only), `ready`, `error <Kind>
//! <reason>`, `unmounted`. The supervisor sends nothing; it signals.
//!
//! This file owns these formats only: it spawns, mounts and serves nothing.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};

use super::MountOptions;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::registry;

/// Marks a worker process and numbers its control socket.
pub(super) const WORKER_ENV: &str = "ZVFS_WORKER_FD";
/// A resumed worker's inherited `/dev/fuse` descriptor.
pub(super) const FUSE_FD_ENV: &str = "ZVFS_FUSE_FD";
/// Marks a supervisor executed by an upgrade and carries its [`Handoff`] as JSON.
pub(super) const HANDOFF_ENV: &str = "ZVFS_HANDOFF";
/// The version of the [`Handoff`] format this binary writes and reads.
pub(super) const HANDOFF_VERSION: u32 = 1;

/// What the supervisor tells a worker on its stdin.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct WorkerWire {
    /// The mount's options (`flist` a local file).
    pub opts: MountOptions,
    /// Debug logging.
    pub debug: bool,
    /// This worker's generation: 0 for the first, one more for each new worker.
    pub generation: u64,
    /// The supervisor's pid: the mount's source, and the worker's expected parent.
    pub supervisor: u32,
    /// Where to serve the stats socket (`<run dir>/<supervisor pid>.sock`).
    pub stats_socket: PathBuf,
    /// Serve the connection inherited in `ZVFS_FUSE_FD` instead of mounting.
    pub resume: bool,
}

/// What a supervisor passes to the binary it executes on an upgrade (`ZVFS_HANDOFF`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Handoff {
    /// Format version ([`HANDOFF_VERSION`]).
    pub v: u32,
    /// The inherited `/dev/fuse` descriptor (close-on-exec cleared).
    pub fd: i32,
    /// The mount's options.
    pub options: MountOptions,
    /// The URL the flist was downloaded from, if any.
    pub url: Option<String>,
    /// The registry entry as the old supervisor last wrote it.
    pub state: registry::State,
    /// Worker restarts so far.
    pub restarts: u32,
    /// The generation of the last worker (the next one is one more).
    pub generation: u64,
    /// Debug logging.
    #[serde(default)]
    pub debug: bool,
}

/// One message from the worker, or the end of the channel.
#[derive(Debug)]
pub(super) enum Msg {
    /// The connection's `/dev/fuse` descriptor.
    Fd(OwnedFd),
    /// Serving (the kernel's handshake done, or the session resumed).
    Ready,
    /// Failed before it was ready.
    Error(ErrorKind, String),
    /// The filesystem was unmounted: the session ended; the worker exits 0.
    Unmounted,
    /// The worker's end is closed (it exited or died).
    Closed,
}

/// A control channel: (the supervisor's end, the worker's end), both close-on-exec.
pub(super) fn pair() -> Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::from(e).context("creating the worker's control socket"))
}

/// Send one message (`line`), with `fd` attached when given.
pub(super) fn send(sock: BorrowedFd<'_>, line: &str, fd: Option<BorrowedFd<'_>>) -> Result<()> {
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !anc.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(Error::io("control message: no room for the descriptor"));
    }
    loop {
        match rustix::net::sendmsg(
            sock,
            &[IoSlice::new(line.as_bytes())],
            &mut anc,
            SendFlags::NOSIGNAL,
        ) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(Error::from(e).context(format!(
                    "sending `{}` to the supervisor",
                    line.split(' ').next().unwrap_or("")
                )))
            }
        }
    }
}

/// Send the report of a failure: `error <Kind> <reason>`.
pub(super) fn send_error(sock: BorrowedFd<'_>, e: &Error) {
    let line = super::spawn::error_report(e);
    let _ = send(sock, line.trim_end(), None);
}

/// Wait for the next message on `sock`.
pub(super) fn recv(sock: BorrowedFd<'_>) -> Msg {
    let mut buf = [0u8; 8192];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    loop {
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut buf)],
            &mut anc,
            RecvFlags::CMSG_CLOEXEC,
        );
        let n = match got {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                log::debug!("worker control socket: {e}");
                return Msg::Closed;
            }
            Ok(m) => m.bytes,
        };
        let mut fd = None;
        for m in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                for f in fds {
                    // The first one; any other is closed when dropped.
                    fd.get_or_insert(f);
                }
            }
        }
        if n == 0 {
            return Msg::Closed;
        }
        return parse(&buf[..n.min(buf.len())], fd);
    }
}

/// A message from its text (and the descriptor that came with it).
fn parse(text: &[u8], fd: Option<OwnedFd>) -> Msg {
    let text = String::from_utf8_lossy(text);
    let line = text.trim_end();
    match (line, fd) {
        ("fd", Some(fd)) => Msg::Fd(fd),
        ("fd", None) => Msg::Error(
            ErrorKind::Io,
            "the worker sent no /dev/fuse descriptor".into(),
        ),
        ("ready", _) => Msg::Ready,
        ("unmounted", _) => Msg::Unmounted,
        (l, _) => match l.strip_prefix("error ") {
            Some(rest) => {
                let (kind, msg) = super::spawn::parse_error(rest);
                Msg::Error(kind, msg)
            }
            None => Msg::Error(ErrorKind::Io, format!("unexpected worker message `{l}`")),
        },
    }
}

/// The descriptor numbered in the environment variable `var`, taken over (the variable
/// is removed, so our own children do not see it); `None` when it is unset.
pub(super) fn inherited_fd(var: &str) -> Option<Result<OwnedFd>> {
    let text = std::env::var(var).ok()?;
    std::env::remove_var(var);
    Some(match text.parse::<i32>() {
        Ok(n) => take_fd(n, var),
        Err(_) => Err(Error::invalid(format!("{var}={text}: not a descriptor"))),
    })
}

/// Take over descriptor `n`, passed to this process (named in `what`), close-on-exec.
pub(super) fn take_fd(n: i32, what: &str) -> Result<OwnedFd> {
    if n < 0
        || rustix::io::fcntl_getfd(
            // SAFETY: only borrowed for the check; `n` is not closed here.
            unsafe { BorrowedFd::borrow_raw(n) },
        )
        .is_err()
    {
        return Err(Error::invalid(format!(
            "{what}: descriptor {n} is not open"
        )));
    }
    // SAFETY: our parent (or our previous image, across exec) passed descriptor `n` to
    // this process for its exclusive use, and it is open (checked above); nothing else
    // owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(n) };
    set_cloexec(fd.as_fd(), true)?;
    Ok(fd)
}

/// Set or clear close-on-exec on `fd`.
pub(super) fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
    use rustix::io::FdFlags;
    let flags = if on {
        FdFlags::CLOEXEC
    } else {
        FdFlags::empty()
    };
    rustix::io::fcntl_setfd(fd, flags).map_err(|e| Error::from(e).context("fcntl(F_SETFD)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn messages_and_a_descriptor_cross_a_real_socket_pair() {
        let (a, b) = pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send(b.as_fd(), "fd", Some(file.as_fd())).unwrap();
        send(b.as_fd(), "ready", None).unwrap();
        let e = Error::not_found("flist /x: gone\nreally");
        send_error(b.as_fd(), &e);
        send(b.as_fd(), "unmounted", None).unwrap();
        drop(b);
        match recv(a.as_fd()) {
            Msg::Fd(fd) => {
                assert_ne!(fd.as_raw_fd(), file.as_raw_fd());
                let a = rustix::fs::fstat(&fd).unwrap();
                let b = rustix::fs::fstat(&file).unwrap();
                assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
            }
            m => panic!("not the descriptor: {m:?}"),
        }
        assert!(matches!(recv(a.as_fd()), Msg::Ready));
        match recv(a.as_fd()) {
            Msg::Error(kind, msg) => {
                assert_eq!(kind, ErrorKind::NotFound);
                assert_eq!(msg, "flist /x: gone; really");
            }
            m => panic!("not an error: {m:?}"),
        }
        assert!(matches!(recv(a.as_fd()), Msg::Unmounted));
        assert!(matches!(recv(a.as_fd()), Msg::Closed));
    }

    #[test]
    fn a_handoff_keeps_state_and_options() {
        let opts = MountOptions::new(
            std::path::Path::new("/f.fl"),
            std::path::Path::new("/t"),
            std::path::Path::new("/c"),
        );
        let old = r#"{"pid":7,"start":1,"fuse_target":"/t","overlay":null,
            "flist":"/f.fl","url":null,"md5":"00","cache":"/c","cache_size":1,"stores":[]}"#;
        let state: registry::State = serde_json::from_str(old).unwrap();
        let h = Handoff {
            v: HANDOFF_VERSION,
            fd: 9,
            options: opts,
            url: Some("http://h/f.fl".into()),
            state: state.clone(),
            restarts: 2,
            generation: 5,
            debug: false,
        };
        let text = serde_json::to_string(&h).unwrap();
        assert!(text.starts_with(r#"{"v":1,"fd":9,"#), "{text}");
        let back: Handoff = serde_json::from_str(&text).unwrap();
        assert_eq!(back.state, state);
        assert_eq!((back.restarts, back.generation, back.fd), (2, 5, 9));
        assert_eq!(back.options.target, std::path::PathBuf::from("/t"));
    }
}
