//! `zdb://` (and the legacy alias `redis://`) store: 0-db or any Redis-protocol server.
//!
//! URL forms (formats.md section 3):
//! - `zdb://[user[:pass]@]host[:port][/namespace]`, port 9900 by default (6379 for
//!   `redis://`);
//! - `zdb://[user[:pass]@]/path/to/unix.sock[?ns=namespace]` for a unix socket.
//!
//! Each new connection sends `SELECT namespace [password]` unless the namespace is absent
//! or `default`. Requests are RESP2 arrays, encoded and parsed with the `redis` crate's
//! codec over our own sockets (no client-info handshake, which 0-db would refuse). Writes
//! are `EXISTS` then `SET` when missing, accepting any non-error `SET` reply; reads are
//! `GET` (nil = missing). Values above [`MAX_OBJECT`] are refused before anything is sent.
//! Connections live in a bounded pool; a connection that fails is dropped and the request
//! is retried once on a fresh one. Every socket operation is bounded by the I/O timeout
//! (time without progress) and the whole request (connect, send, every byte of the reply)
//! by the caller's deadline, so a server trickling its reply cannot hold a request past
//! it. This module never decodes objects and never logs credentials.

use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use redis::Value;

use super::http::io_kind;
use super::{redact, Store, StoreConfig};
use crate::codec::{hex_bytes, MAX_OBJECT};
use crate::error::{Error, ErrorKind, Result};

/// Most connections one store keeps open (busy and idle together).
pub const POOL_SIZE: usize = 8;

/// Where a zdb store lives and how to select its namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZdbTarget {
    /// The server's address.
    pub addr: Addr,
    /// `None` for no namespace or `default`: no `SELECT` is sent.
    pub namespace: Option<String>,
    /// The namespace password, sent with `SELECT`, if any.
    pub password: Option<String>,
}

/// How to reach a zdb (or redis) server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// TCP to host and port.
    Tcp(String, u16),
    /// A Unix socket at this path.
    Unix(PathBuf),
}

/// Parse a `zdb://` or `redis://` URL (see the module documentation).
pub fn parse_url(url: &str) -> Result<ZdbTarget> {
    let bad = |why: &str| Error::invalid(format!("bad zdb store URL {}: {why}", redact(url)));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let default_port = match scheme {
        "zdb" => 9900,
        "redis" => 6379,
        _ => return Err(bad("expected zdb:// or redis://")),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    // userinfo ends at the last '@' before the path starts
    let auth_end = rest.find('/').unwrap_or(rest.len());
    let (userinfo, hostpath) = match rest[..auth_end].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let password = userinfo
        .and_then(|u| u.split_once(':').map(|(_, p)| p))
        .filter(|p| !p.is_empty())
        .map(percent_decode)
        .transpose()
        .map_err(|_| bad("bad percent-encoding in the password"))?;
    let mut query_ns = None;
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("ns", v)) | Some(("namespace", v)) => {
                    query_ns = Some(percent_decode(v).map_err(|_| bad("bad namespace"))?)
                }
                _ => return Err(bad("unknown query parameter (only ns=NAME is known)")),
            }
        }
    }
    let (addr, path_ns) = if let Some(path) = hostpath.strip_prefix('/') {
        // no host: a unix socket path
        if path.is_empty() {
            return Err(bad("empty unix socket path"));
        }
        (Addr::Unix(PathBuf::from(format!("/{path}"))), None)
    } else {
        let (hostport, ns) = match hostpath.split_once('/') {
            Some((h, n)) => (h, Some(n)),
            None => (hostpath, None),
        };
        let (host, port) = split_host_port(hostport, default_port)
            .ok_or_else(|| bad("bad host or port (IPv6 goes in brackets: [::1]:9900)"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let ns = ns
            .map(|n| n.trim_end_matches('/'))
            .filter(|n| !n.is_empty())
            .map(percent_decode)
            .transpose()
            .map_err(|_| bad("bad namespace"))?;
        (Addr::Tcp(host, port), ns)
    };
    let namespace = query_ns.or(path_ns).filter(|n| n != "default");
    if namespace
        .as_deref()
        .is_some_and(|n| n.contains('/') || n.len() > 255)
    {
        return Err(bad("bad namespace"));
    }
    Ok(ZdbTarget {
        addr,
        namespace,
        password,
    })
}

fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(inner) = s.strip_prefix('[') {
        // [v6]:port
        let (host, after) = inner.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((s.to_string(), default_port)),
    }
}

fn percent_decode(s: &str) -> std::result::Result<String, ()> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3).ok_or(())?;
            let h = std::str::from_utf8(h).map_err(|_| ())?;
            out.push(u8::from_str_radix(h, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// The socket of one connection.
enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s
                .set_read_timeout(Some(t))
                .and(s.set_write_timeout(Some(t))),
            Sock::Unix(s) => s
                .set_read_timeout(Some(t))
                .and(s.set_write_timeout(Some(t))),
        }
    }
}

/// Which bound stopped a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expired {
    /// The request's deadline (its whole time) ran out.
    Deadline,
    /// Nothing moved for the I/O timeout.
    Idle,
}

/// A socket whose every read and write is bounded twice: by the I/O timeout (time without
/// progress) and by the request's deadline (its whole time). Before each syscall the
/// socket timeout is shrunk to the time left, so a server trickling a byte at a time
/// cannot hold a request past its deadline.
struct Wire {
    sock: Sock,
    io_timeout: Duration,
    deadline: Instant,
    /// Set when a read or write stopped on one of the bounds.
    expired: Option<Expired>,
}

impl Wire {
    /// Set the socket timeout for the next syscall; which bound it stands for.
    fn bound(&mut self) -> io::Result<Expired> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.expired = Some(Expired::Deadline);
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        let (t, why) = if left <= self.io_timeout {
            (left, Expired::Deadline)
        } else {
            (self.io_timeout, Expired::Idle)
        };
        // a zero timeout means "none" to the kernel and is refused by std
        self.sock.set_timeouts(t.max(Duration::from_millis(1)))?;
        Ok(why)
    }

    fn outcome<T>(&mut self, why: Expired, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                self.expired = Some(why);
            }
        }
        r
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let why = self.bound()?;
        let r = match &mut self.sock {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        };
        self.outcome(why, r)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let why = self.bound()?;
        let r = match &mut self.sock {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        };
        self.outcome(why, r)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One RESP2 connection: requests are written and replies parsed (by the `redis`
/// crate's parser) through a [`Wire`].
struct Conn {
    reader: BufReader<Wire>,
    parser: redis::Parser,
}

struct Pool {
    idle: Vec<Conn>,
    /// Connections handed out and not yet returned or dropped.
    busy: usize,
}

/// A `zdb://` / `redis://` store: objects as keys of a 0-db namespace (or redis), over
/// a bounded pool of [`POOL_SIZE`] connections.
pub struct ZdbStore {
    target: ZdbTarget,
    name: String,
    cfg: StoreConfig,
    pool: Mutex<Pool>,
    freed: Condvar,
}

impl ZdbStore {
    /// A store for `url`; it connects on first use. An `Invalid` error for a malformed
    /// URL.
    pub fn open(url: &str, cfg: &StoreConfig) -> Result<ZdbStore> {
        let target = parse_url(url)?;
        Ok(ZdbStore {
            target,
            name: redact(url),
            cfg: cfg.clone(),
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                busy: 0,
            }),
            freed: Condvar::new(),
        })
    }

    /// The parsed URL.
    pub fn target(&self) -> &ZdbTarget {
        &self.target
    }

    fn timeout_err(&self, what: &str, started: Instant) -> Error {
        Error::timeout(format!(
            "{}: {what}: timed out after {:.1} s (deadline)",
            self.name,
            started.elapsed().as_secs_f64()
        ))
    }

    /// A pooled connection (`true` when reused) or a slot for a new one; waits while the
    /// pool is full, up to `deadline`.
    fn checkout(&self, deadline: Instant) -> Result<Option<Conn>> {
        let started = Instant::now();
        let mut g = self
            .pool
            .lock()
            .map_err(|_| Error::store(format!("{}: connection pool poisoned", self.name)))?;
        loop {
            if let Some(c) = g.idle.pop() {
                g.busy += 1;
                return Ok(Some(c));
            }
            if g.busy < POOL_SIZE {
                g.busy += 1;
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timeout_err("waiting for a free connection", started));
            }
            g = self
                .freed
                .wait_timeout(g, left)
                .map_err(|_| Error::store(format!("{}: connection pool poisoned", self.name)))?
                .0;
        }
    }

    fn checkin(&self, conn: Option<Conn>) {
        if let Ok(mut g) = self.pool.lock() {
            g.busy = g.busy.saturating_sub(1);
            if let Some(c) = conn {
                if g.idle.len() < POOL_SIZE {
                    g.idle.push(c);
                }
            }
        }
        self.freed.notify_one();
    }

    /// Open a socket to the store, bounded by the connect timeout and `deadline`.
    fn dial(&self, deadline: Instant) -> Result<Sock> {
        let started = Instant::now();
        let left = deadline.saturating_duration_since(started);
        if left.is_zero() {
            return Err(self.timeout_err("connecting", started));
        }
        let t = self.cfg.connect_timeout.min(left);
        match &self.target.addr {
            Addr::Unix(p) => UnixStream::connect(p).map(Sock::Unix).map_err(|e| {
                Error::new(
                    io_kind(&e),
                    format!("{}: connecting to {}: {e}", self.name, p.display()),
                )
            }),
            Addr::Tcp(h, port) => {
                let addrs = (h.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| Error::store(format!("{}: resolving {h}: {e}", self.name)))?;
                let mut last = None;
                for a in addrs {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match TcpStream::connect_timeout(&a, t.min(left)) {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            return Ok(Sock::Tcp(s));
                        }
                        Err(e) => last = Some((a, e)),
                    }
                }
                Err(match last {
                    Some((a, e)) if io_kind(&e) == ErrorKind::Timeout => Error::timeout(format!(
                        "{}: connecting to {a}: timed out after {:.1} s",
                        self.name,
                        started.elapsed().as_secs_f64()
                    )),
                    Some((a, e)) => Error::store(format!("{}: connecting to {a}: {e}", self.name)),
                    None if Instant::now() >= deadline => self.timeout_err("connecting", started),
                    None => Error::store(format!("{}: {h} has no address", self.name)),
                })
            }
        }
    }

    fn connect(&self, deadline: Instant) -> Result<Conn> {
        let sock = self.dial(deadline)?;
        let mut conn = Conn {
            reader: BufReader::with_capacity(
                64 * 1024,
                Wire {
                    sock,
                    io_timeout: self.cfg.io_timeout,
                    deadline,
                    expired: None,
                },
            ),
            parser: redis::Parser::new(),
        };
        if let Some(ns) = &self.target.namespace {
            let mut cmd = redis::cmd("SELECT");
            cmd.arg(ns.as_bytes());
            if let Some(pw) = &self.target.password {
                cmd.arg(pw.as_bytes());
            }
            select_reply(&self.name, ns, self.send(&mut conn, &cmd, deadline)?)?;
        }
        Ok(conn)
    }

    /// Send one command and read its reply, the whole exchange bounded by `deadline`
    /// (and each read or write by the I/O timeout). Error replies are returned as
    /// [`Value::ServerError`]; an `Err` means the connection is unusable.
    fn send(&self, conn: &mut Conn, cmd: &redis::Cmd, deadline: Instant) -> Result<Value> {
        let started = Instant::now();
        let what = cmd_name(cmd);
        {
            let wire = conn.reader.get_mut();
            wire.deadline = deadline;
            wire.io_timeout = self.cfg.io_timeout.max(Duration::from_millis(1));
            wire.expired = None;
        }
        let wrote = conn.reader.get_mut().write_all(&cmd.get_packed_command());
        let failed = match wrote {
            Ok(()) => match conn.parser.parse_value(&mut conn.reader) {
                Ok(v) => return Ok(v),
                Err(e) => format!("reading the reply: {e}"),
            },
            Err(e) => format!("sending: {e}"),
        };
        let msg = match conn.reader.get_ref().expired {
            Some(Expired::Deadline) => format!(
                "{}: {what}: timed out after {:.1} s (deadline)",
                self.name,
                started.elapsed().as_secs_f64()
            ),
            Some(Expired::Idle) => format!(
                "{}: {what}: timed out after {:.1} s (nothing received for the {:.1} s I/O \
                 timeout)",
                self.name,
                started.elapsed().as_secs_f64(),
                self.cfg.io_timeout.as_secs_f64()
            ),
            None => return Err(Error::store(format!("{}: {what}: {failed}", self.name))),
        };
        Err(Error::timeout(msg))
    }

    /// Run one command on a pooled connection; on a connection failure, retry once on a
    /// fresh connection (unless the failure was the deadline itself).
    fn request(&self, cmd: &redis::Cmd, deadline: Instant) -> Result<Value> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let pooled = self.checkout(deadline)?;
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => match self.connect(deadline) {
                    Ok(c) => c,
                    Err(e) => {
                        self.checkin(None);
                        if attempt == 1
                            && e.kind != ErrorKind::Timeout
                            && e.kind != ErrorKind::Credentials
                            && Instant::now() < deadline
                        {
                            log::debug!("{e}; retrying on a fresh connection");
                            continue;
                        }
                        return Err(e);
                    }
                },
            };
            match self.send(&mut conn, cmd, deadline) {
                Ok(v) => {
                    self.checkin(Some(conn));
                    return Ok(v);
                }
                Err(e) => {
                    drop(conn);
                    self.checkin(None);
                    let retry = attempt == 1
                        && (reused || e.kind != ErrorKind::Timeout)
                        && Instant::now() < deadline;
                    if retry {
                        log::debug!("{e}; retrying on a fresh connection");
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    fn io_deadline(&self) -> Instant {
        Instant::now() + self.cfg.connect_timeout + self.cfg.io_timeout * 2
    }
}

/// The command's name (its first argument), for messages; never its other arguments
/// (a `SELECT` carries the password).
fn cmd_name(cmd: &redis::Cmd) -> String {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => "request".into(),
    }
}

/// The text of an error reply (0-db errors have no `ERR` prefix: the whole line is the
/// message, split by the crate into a code and details).
fn server_msg(v: &Value) -> String {
    match v {
        Value::ServerError(e) => match e.details() {
            Some(d) => format!("{} {d}", e.code()),
            None => e.code().to_string(),
        },
        _ => String::new(),
    }
}

fn key_err(name: &str, id: &[u8], what: &str, reply: &Value) -> Error {
    let detail = match reply {
        Value::ServerError(_) => server_msg(reply),
        other => format!("unexpected reply {}", short_reply(other)),
    };
    Error::store(format!("{name}: {what} {}: {detail}", hex_bytes(id)))
}

fn short_reply(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Int(i) => format!(":{i}"),
        Value::BulkString(b) => format!("bulk of {} bytes", b.len()),
        Value::SimpleString(s) => format!("+{}", s.chars().take(40).collect::<String>()),
        Value::Okay => "+OK".into(),
        Value::Array(a) => format!("array of {}", a.len()),
        _ => "of another type".into(),
    }
}

/// What a `SELECT ns` reply means: an error reply refuses the connection (a credentials
/// error when the server says access is denied or the namespace protected).
fn select_reply(name: &str, ns: &str, reply: Value) -> Result<()> {
    if let Value::ServerError(_) = reply {
        let msg = server_msg(&reply);
        let kind = if msg.contains("denied") || msg.contains("protected") {
            ErrorKind::Credentials
        } else {
            ErrorKind::Store
        };
        return Err(Error::new(
            kind,
            format!("{name}: SELECT {ns} refused: {msg}"),
        ));
    }
    Ok(())
}

/// What a `GET id` reply means: nil is missing, a bulk string is the object (bounded by
/// [`MAX_OBJECT`]), anything else an error.
fn get_reply(name: &str, id: &[u8], reply: Value) -> Result<Option<Vec<u8>>> {
    match reply {
        Value::Nil => Ok(None),
        Value::BulkString(b) if b.len() > MAX_OBJECT => Err(Error::corrupt(format!(
            "{name}: object {} is {} bytes, more than the {MAX_OBJECT} allowed",
            hex_bytes(id),
            b.len()
        ))),
        Value::BulkString(b) => Ok(Some(b)),
        other => Err(key_err(name, id, "GET", &other)),
    }
}

/// What an `EXISTS id` reply means: an integer, anything else an error.
fn exists_reply(name: &str, id: &[u8], reply: Value) -> Result<bool> {
    match reply {
        Value::Int(n) => Ok(n > 0),
        other => Err(key_err(name, id, "EXISTS", &other)),
    }
}

/// What a `SET id value` reply means: any non-error reply is success (0-db answers the
/// key, or nil when unchanged; Redis answers +OK).
fn set_reply(name: &str, id: &[u8], reply: Value) -> Result<()> {
    match reply {
        reply @ Value::ServerError(_) => Err(key_err(name, id, "SET", &reply)),
        _ => Ok(()),
    }
}

/// Read the RESP replies in `bytes` one after the other as a connection does (the
/// `redis` crate's parser over a buffered reader), handling each as the reply to a
/// `SELECT`, a `GET`, an `EXISTS` and a `SET`, until the first unreadable one; returns
/// the results of the replies read. For the fuzz targets (`fuzz/`) and tests: the reply
/// handling of this store, without a server.
pub fn handle_replies(bytes: &[u8]) -> Vec<Result<Option<Vec<u8>>>> {
    let mut reader = BufReader::with_capacity(64 * 1024, bytes);
    let mut parser = redis::Parser::new();
    let (name, id) = ("zdb://fuzz", [0u8; 32]);
    let mut out = Vec::new();
    while let Ok(v) = parser.parse_value(&mut reader) {
        let _ = select_reply(name, "ns", v.clone());
        let _ = exists_reply(name, &id, v.clone());
        let _ = set_reply(name, &id, v.clone());
        out.push(get_reply(name, &id, v));
    }
    out
}

impl Store for ZdbStore {
    fn get(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_before(id, self.io_deadline())
    }

    fn get_before(&self, id: &[u8], deadline: Instant) -> Result<Option<Vec<u8>>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(id);
        get_reply(&self.name, id, self.request(&cmd, deadline)?)
    }

    fn exists(&self, id: &[u8]) -> Result<bool> {
        self.exists_before(id, self.io_deadline())
    }

    fn exists_before(&self, id: &[u8], deadline: Instant) -> Result<bool> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(id);
        exists_reply(&self.name, id, self.request(&cmd, deadline)?)
    }

    fn set(&self, id: &[u8], data: &[u8]) -> Result<()> {
        if data.len() > MAX_OBJECT {
            return Err(Error::invalid(format!(
                "{}: object {} is {} bytes, more than the {MAX_OBJECT} a zdb value may hold",
                self.name,
                hex_bytes(id),
                data.len()
            )));
        }
        if self.exists(id)? {
            return Ok(());
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(id).arg(data);
        // A large value needs time to cross the wire: allow one I/O timeout per MiB.
        let extra = self.cfg.io_timeout * (data.len() / (1 << 20)) as u32;
        let deadline = self.io_deadline() + extra;
        set_reply(&self.name, id, self.request(&cmd, deadline)?)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(h: &str, p: u16) -> Addr {
        Addr::Tcp(h.to_string(), p)
    }

    #[test]
    fn url_forms() {
        let t = parse_url("zdb://h").unwrap();
        assert_eq!(
            (t.addr, t.namespace, t.password),
            (tcp("h", 9900), None, None)
        );
        let t = parse_url("zdb://u:p%40ss@h:1234/ns1").unwrap();
        assert_eq!(t.addr, tcp("h", 1234));
        assert_eq!(t.namespace.as_deref(), Some("ns1"));
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        let t = parse_url("zdb://h:1/default").unwrap();
        assert_eq!(t.namespace, None);
        let t = parse_url("redis://hub.grid.tf:9900").unwrap();
        assert_eq!(t.addr, tcp("hub.grid.tf", 9900));
        assert_eq!(parse_url("redis://h").unwrap().addr, tcp("h", 6379));
        let t = parse_url("zdb://[::1]:9901/x").unwrap();
        assert_eq!(t.addr, tcp("::1", 9901));
        let t = parse_url("zdb:///run/zdb.sock?ns=files").unwrap();
        assert_eq!(t.addr, Addr::Unix("/run/zdb.sock".into()));
        assert_eq!(t.namespace.as_deref(), Some("files"));
        let t = parse_url("zdb://:pw@/run/zdb.sock?ns=files").unwrap();
        assert_eq!(t.password.as_deref(), Some("pw"));
        assert_eq!(t.addr, Addr::Unix("/run/zdb.sock".into()));
        assert_eq!(
            parse_url("zdb://h:notaport/ns").err().map(|e| e.kind),
            Some(crate::error::ErrorKind::Invalid)
        );
        assert_eq!(
            parse_url("zdb://h/ns?bogus=1").err().map(|e| e.kind),
            Some(crate::error::ErrorKind::Invalid)
        );
        assert_eq!(
            parse_url("zdb:///").err().map(|e| e.kind),
            Some(crate::error::ErrorKind::Invalid)
        );
        let e = parse_url("zdb://u:secret@h:x/ns").unwrap_err();
        assert!(!e.msg.contains("secret"), "{e}");
    }

    #[test]
    fn oversized_value_is_refused_before_connecting() {
        // nothing listens on this unix socket: a connection attempt would fail differently
        let s = ZdbStore::open("zdb:///nonexistent/zvfs.sock", &StoreConfig::default()).unwrap();
        let big = vec![0u8; MAX_OBJECT + 1];
        let e = s.set(&[1u8; 32], &big).unwrap_err();
        assert!(e.msg.contains("more than"), "{e}");
    }

    /// The reply handling the `resp` fuzz target drives: bulk is the object, nil is
    /// missing, any other reply to a GET an error naming it; a truncated reply ends the
    /// stream without a result.
    #[test]
    fn replies_read_from_bytes() {
        let out =
            handle_replies(b"$5\r\nhello\r\n:1\r\n-Namespace not found\r\n$-1\r\n$9\r\ntrunc");
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(out[0].as_ref().unwrap().as_deref(), Some(&b"hello"[..]));
        assert!(out[1]
            .as_ref()
            .unwrap_err()
            .msg
            .contains("unexpected reply :1"));
        assert!(out[2]
            .as_ref()
            .unwrap_err()
            .msg
            .contains("Namespace not found"));
        assert_eq!(out[3].as_ref().unwrap(), &None);
        let denied = redis::Parser::new()
            .parse_value(&b"-Access denied\r\n"[..])
            .unwrap();
        let e = select_reply("zdb://h", "ns", denied).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Credentials, "{e}");
        assert!(e.msg.contains("SELECT ns refused: Access denied"), "{e}");
    }
}
