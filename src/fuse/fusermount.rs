//! Mounting and unmounting without root, through the setuid `fusermount3` helper: it
//! opens `/dev/fuse`, mounts, and passes the descriptor back over a socket
//! (`_FUSE_COMMFD`, one `SCM_RIGHTS` message). It knows nothing of filesystems.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;

use rustix::net::{
    recvmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    SocketFlags, SocketType,
};

use crate::error::{Error, Result};

/// The helper's name (found on `PATH`).
const FUSERMOUNT: &str = "fusermount3";

/// Mount a FUSE filesystem on `target` with mount options `options` (`ro,fsname=..`);
/// returns the connection's descriptor.
pub fn mount(target: &Path, options: &str) -> Result<OwnedFd> {
    let (ours, theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io(format!("socketpair for {FUSERMOUNT}: {e}")))?;
    // The helper's end must survive the exec: a copy without CLOEXEC.
    let inherited = rustix::io::fcntl_dupfd_cloexec(&theirs, 3)
        .map_err(|e| Error::io(format!("dup for {FUSERMOUNT}: {e}")))?;
    rustix::io::fcntl_setfd(&inherited, rustix::io::FdFlags::empty())
        .map_err(|e| Error::io(format!("fcntl for {FUSERMOUNT}: {e}")))?;
    let status = Command::new(FUSERMOUNT)
        .arg("-o")
        .arg(options)
        .arg("--")
        .arg(target)
        .env("_FUSE_COMMFD", inherited.as_raw_fd().to_string())
        .status()
        .map_err(|e| Error::io(format!("running {FUSERMOUNT}: {e}")))?;
    drop(inherited);
    drop(theirs);
    if !status.success() {
        return Err(Error::io(format!(
            "{FUSERMOUNT} could not mount {} ({status})",
            target.display()
        )));
    }
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    recvmsg(&ours, &mut iov, &mut cmsg, RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| Error::io(format!("receiving the descriptor from {FUSERMOUNT}: {e}")))?;
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = m {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(Error::io(format!(
        "{FUSERMOUNT} mounted {} but passed no descriptor",
        target.display()
    )))
}

/// Unmount `target` (lazily: a busy mount is detached).
pub fn unmount(target: &Path) -> Result<()> {
    let status = Command::new(FUSERMOUNT)
        .args(["-u", "-z", "--"])
        .arg(target)
        .status()
        .map_err(|e| Error::io(format!("running {FUSERMOUNT} -u: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::io(format!(
            "{FUSERMOUNT} -u could not unmount {} ({status})",
            target.display()
        )))
    }
}
