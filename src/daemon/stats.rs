//! The daemon's stats socket and its client. A serving worker listens on
//! `<run dir>/<supervisor pid>.sock` (recorded in its registry entry; each new worker
//! binds it again) on one thread of its own; each
//! connection gets one line of JSON, a [`MountStats`] snapshot, and is closed. A
//! snapshot reads only atomic counters, so answering never waits for, nor holds up, the
//! reads the mount serves. [`stats`] asks the daemons of the host's mounts, each within
//! [`QUERY_TIMEOUT`]. This module reports; it changes nothing in the mount.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::mounts::Kind;
use crate::error::{Context, Error, Result};
use crate::fs::stats::{MountStats, StatsHandle};
use crate::sys::{mountinfo, registry};

/// How long a client waits for a daemon's answer (connect, read), in all.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// What a daemon whose registry entry names no stats socket (an older zvfs, or no
/// registry entry at all: rfs) shows instead of stats.
pub const NO_SOCKET: &str = "no stats (daemon predates --stats)";

/// The listening stats socket of this daemon; the socket file is removed on drop (the
/// daemon's exit path). The serving thread ends with the process.
pub(super) struct StatsServer {
    path: PathBuf,
}

impl Drop for StatsServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The stats socket of the mount whose supervisor is `pid`: `<run dir>/<pid>.sock`.
pub(super) fn socket_path(pid: u32) -> PathBuf {
    registry::run_dir().join(format!("{pid}.sock"))
}

/// Listen on `path` (see [`socket_path`]; a file left there by a previous worker or a
/// dead process is replaced) and answer each connection with a snapshot of `handle`, on
/// a thread of its own.
pub(super) fn serve_stats(handle: StatsHandle, path: &Path) -> Result<StatsServer> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_ctx(|| format!("creating {}", dir.display()))?;
    }
    let path = path.to_path_buf();
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing stale {}: {e}", path.display()))),
    }
    let listener =
        UnixListener::bind(&path).with_ctx(|| format!("listening on {}", path.display()))?;
    let server = StatsServer { path };
    std::thread::Builder::new()
        .name("zvfs-stats".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(s) => answer(s, &handle),
                    Err(e) => {
                        log::debug!("stats socket: {e}");
                        // e.g. out of file descriptors: do not spin
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })
        .map_err(|e| Error::io(format!("starting the stats thread: {e}")))?;
    Ok(server)
}

/// Send one snapshot line; a client that does not read gets dropped after a second.
fn answer(mut s: UnixStream, handle: &StatsHandle) {
    let _ = s.set_write_timeout(Some(QUERY_TIMEOUT));
    match serde_json::to_vec(&handle.snapshot()) {
        Ok(mut line) => {
            line.push(b'\n');
            if let Err(e) = s.write_all(&line) {
                log::debug!("stats socket: answering: {e}");
            }
        }
        Err(e) => log::warn!("stats socket: encoding the snapshot: {e}"),
    }
}

/// The snapshot of the daemon listening on `socket`, within `timeout` (connect and read
/// included: a daemon that does not answer cannot hold the caller).
pub fn query(socket: &Path, timeout: Duration) -> Result<MountStats> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = socket.to_path_buf();
    // A thread, because a connect to a socket whose backlog is full blocks without a
    // timeout; a thread still waiting when we give up ends with the process.
    std::thread::Builder::new()
        .name("zvfs-stats-query".into())
        .spawn(move || {
            let _ = tx.send(query_now(&path, timeout));
        })
        .map_err(|e| Error::io(format!("starting the stats query thread: {e}")))?;
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => Err(Error::timeout(format!(
            "{}: no answer within {:.1} s",
            socket.display(),
            timeout.as_secs_f64()
        ))),
    }
}

fn query_now(path: &Path, timeout: Duration) -> Result<MountStats> {
    let s = UnixStream::connect(path).with_ctx(|| format!("connecting to {}", path.display()))?;
    s.set_read_timeout(Some(timeout))
        .with_ctx(|| format!("setting a timeout on {}", path.display()))?;
    // A snapshot is a few KiB: a line of a MiB is not one.
    let mut line = String::new();
    BufReader::new(s.take(1 << 20))
        .read_line(&mut line)
        .with_ctx(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&line)
        .map_err(|e| Error::format(format!("stats from {}: {e}", path.display())))
}

/// One mount's stats, or why there are none.
#[derive(Clone, Debug, Serialize)]
pub struct MountStatsReport {
    /// The mountpoint.
    pub target: PathBuf,
    /// The daemon serving it.
    pub pid: Option<u32>,
    /// Its daemon's snapshot.
    pub stats: Option<MountStats>,
    /// Why `stats` is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The stats of every zvfs FUSE mount of the host, or of the one mount at `target` (any
/// kind: a bind or overlay reports its daemon's stats); an error when `target` is no
/// zvfs mount. Each daemon is given [`QUERY_TIMEOUT`].
pub fn stats(target: Option<&Path>) -> Result<Vec<MountStatsReport>> {
    let mounts = super::list()?;
    let chosen: Vec<&super::Mounted> = match target {
        Some(t) => {
            let t = mountinfo::absolute(t);
            let m =
                mounts.iter().rev().find(|m| m.target == t).ok_or_else(|| {
                    Error::invalid(format!("{} is not a zvfs mount", t.display()))
                })?;
            vec![m]
        }
        None => mounts.iter().filter(|m| m.kind == Kind::Fuse).collect(),
    };
    Ok(chosen
        .into_iter()
        .map(|m| {
            let socket = m.state.as_ref().and_then(|s| s.socket.as_deref());
            let (stats, problem) = match socket {
                None => (None, Some(NO_SOCKET.to_string())),
                Some(p) => match query(p, QUERY_TIMEOUT) {
                    Ok(s) => (Some(s), None),
                    Err(e) => (None, Some(e.to_string())),
                },
            };
            MountStatsReport {
                target: m.target.clone(),
                pid: m.pid,
                stats,
                problem,
            }
        })
        .collect())
}
