//! Readiness for supervisors: the systemd notify protocol (`READY=1` on the unix datagram
//! socket named by `NOTIFY_SOCKET`, abstract when it starts with `@`). zinit uses a `test:`
//! command instead (`zvfs mounts --check TARGET`). Sends nothing when no socket is set.

use std::os::unix::net::UnixDatagram;

use crate::error::{Context, Result};

/// Send `state` (e.g. `READY=1`) to the supervisor, if one asked for it.
pub fn notify(state: &str) -> Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let sock = UnixDatagram::unbound().ctx("creating the notify socket")?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)
            .ctx("bad abstract NOTIFY_SOCKET")?;
        sock.send_to_addr(state.as_bytes(), &addr)
            .with_ctx(|| format!("notifying {}", path.to_string_lossy()))?;
    } else {
        sock.send_to(state.as_bytes(), &path)
            .with_ctx(|| format!("notifying {}", path.to_string_lossy()))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_a_real_datagram_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        // The environment is process-wide: set and use it within this one test.
        std::env::set_var("NOTIFY_SOCKET", &path);
        assert!(notify("READY=1").unwrap());
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(!notify("READY=1").unwrap());
    }
}
