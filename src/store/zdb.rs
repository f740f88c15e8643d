//! `zdb://` (and the legacy alias `redis://`) store: 0-db or any Redis-protocol server.
//!
//! URL forms (formats.md section 3):
//! - `zdb://[user[:pass]@]host[:port][/namespace]`, port 9900 by default (6379 for
//!   `redis://`);
//! - `zdb://[user[:pass]@]/path/to/unix.sock[?ns=namespace]` for a unix socket.
//!
//! Each new connection sends `SELECT namespace [password]` unless the namespace is absent
//! or `default`. Requests are RESP2 arrays (the `redis` crate, with its client-info
//! handshake disabled because 0-db refuses unknown commands). Writes are `EXISTS` then
//! `SET` when missing, accepting any non-error `SET` reply; reads are `GET` (nil = missing).
//! Values above [`MAX_OBJECT`] are refused before anything is sent. Connections live in a
//! bounded pool; a connection that fails is dropped and the request is retried once on a
//! fresh one. Every socket operation is bounded by the I/O timeout and, for reads, by the
//! caller's deadline. This module never decodes objects and never logs credentials.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use redis::{ConnectionAddr, ConnectionInfo, ConnectionLike, ProtocolVersion, RedisConnectionInfo};
use redis::{ErrorKind as RedisKind, Value};

use super::{redact, Store, StoreConfig};
use crate::codec::{hex_bytes, MAX_OBJECT};
use crate::error::{Error, ErrorKind, Result};

/// Most connections one store keeps open (busy and idle together).
pub const POOL_SIZE: usize = 8;

/// Where a zdb store lives and how to select its namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZdbTarget {
    pub addr: Addr,
    /// `None` for no namespace or `default`: no `SELECT` is sent.
    pub namespace: Option<String>,
    pub password: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Tcp(String, u16),
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

struct Pool {
    idle: Vec<redis::Connection>,
    /// Connections handed out and not yet returned or dropped.
    busy: usize,
}

pub struct ZdbStore {
    target: ZdbTarget,
    client: redis::Client,
    name: String,
    cfg: StoreConfig,
    pool: Mutex<Pool>,
    freed: Condvar,
}

/// Why a request failed: the connection is unusable, or the server answered an error
/// (the connection is fine and goes back to the pool).
enum Fail {
    Conn(Error),
    Server(Error),
}

impl ZdbStore {
    pub fn open(url: &str, cfg: &StoreConfig) -> Result<ZdbStore> {
        let target = parse_url(url)?;
        let addr = match &target.addr {
            Addr::Tcp(h, p) => ConnectionAddr::Tcp(h.clone(), *p),
            Addr::Unix(p) => ConnectionAddr::Unix(p.clone()),
        };
        let info = ConnectionInfo {
            addr,
            redis: RedisConnectionInfo {
                db: 0,
                username: None,
                password: None,
                protocol: ProtocolVersion::RESP2,
            },
        };
        let client = redis::Client::open(info)
            .map_err(|e| Error::invalid(format!("bad zdb store URL {}: {e}", redact(url))))?;
        Ok(ZdbStore {
            target,
            client,
            name: redact(url),
            cfg: cfg.clone(),
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                busy: 0,
            }),
            freed: Condvar::new(),
        })
    }

    pub fn target(&self) -> &ZdbTarget {
        &self.target
    }

    fn timeout_err(&self, what: &str) -> Error {
        Error::timeout(format!("{}: {what}: deadline passed", self.name))
    }

    /// A pooled connection (`true` when reused) or a slot for a new one; waits while the
    /// pool is full, up to `deadline`.
    fn checkout(&self, deadline: Instant) -> Result<Option<redis::Connection>> {
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
                return Err(self.timeout_err("waiting for a free connection"));
            }
            g = self
                .freed
                .wait_timeout(g, left)
                .map_err(|_| Error::store(format!("{}: connection pool poisoned", self.name)))?
                .0;
        }
    }

    fn checkin(&self, conn: Option<redis::Connection>) {
        if let Ok(mut g) = self.pool.lock() {
            g.busy = g.busy.saturating_sub(1);
            if let Some(c) = conn {
                if c.is_open() && g.idle.len() < POOL_SIZE {
                    g.idle.push(c);
                }
            }
        }
        self.freed.notify_one();
    }

    fn connect(&self, deadline: Instant) -> Result<redis::Connection> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timeout_err("connecting"));
        }
        let t = self.cfg.connect_timeout.min(left);
        let mut conn = self
            .client
            .get_connection_with_timeout(t)
            .map_err(|e| self.conn_error("connecting", &e))?;
        if let Some(ns) = &self.target.namespace {
            let mut cmd = redis::cmd("SELECT");
            cmd.arg(ns.as_bytes());
            if let Some(pw) = &self.target.password {
                cmd.arg(pw.as_bytes());
            }
            match self.send(&mut conn, &cmd, deadline) {
                Ok(reply @ Value::ServerError(_)) => {
                    let msg = server_msg(&reply);
                    let kind = if msg.contains("denied") || msg.contains("protected") {
                        ErrorKind::Credentials
                    } else {
                        ErrorKind::Store
                    };
                    return Err(Error::new(
                        kind,
                        format!("{}: SELECT {ns} refused: {msg}", self.name),
                    ));
                }
                Ok(_) => {}
                Err(Fail::Conn(e)) | Err(Fail::Server(e)) => return Err(e),
            }
        }
        Ok(conn)
    }

    fn conn_error(&self, what: &str, e: &redis::RedisError) -> Error {
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Store
        };
        // RedisError messages name the address at most, never our password (it is only
        // ever sent inside SELECT, which the crate does not echo).
        Error::new(kind, format!("{}: {what}: {e}", self.name))
    }

    fn send(
        &self,
        conn: &mut redis::Connection,
        cmd: &redis::Cmd,
        deadline: Instant,
    ) -> Result<Value, Fail> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Fail::Conn(self.timeout_err("request")));
        }
        let t = Some(self.cfg.io_timeout.min(left));
        conn.set_read_timeout(t)
            .and_then(|_| conn.set_write_timeout(t))
            .map_err(|e| Fail::Conn(self.conn_error("setting timeouts", &e)))?;
        match conn.req_command(cmd) {
            Ok(v) => Ok(v),
            Err(e)
                if e.kind() == RedisKind::IoError
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_unrecoverable_error() =>
            {
                Err(Fail::Conn(self.conn_error("request", &e)))
            }
            Err(e) if e.kind() == RedisKind::ParseError => {
                Err(Fail::Conn(self.conn_error("request", &e)))
            }
            Err(e) => Err(Fail::Server(Error::store(format!("{}: {e}", self.name)))),
        }
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
                Err(Fail::Server(e)) => {
                    self.checkin(Some(conn));
                    return Err(e);
                }
                Err(Fail::Conn(e)) => {
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

impl Store for ZdbStore {
    fn get(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_before(id, self.io_deadline())
    }

    fn get_before(&self, id: &[u8], deadline: Instant) -> Result<Option<Vec<u8>>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(id);
        match self.request(&cmd, deadline)? {
            Value::Nil => Ok(None),
            Value::BulkString(b) if b.len() > MAX_OBJECT => Err(Error::corrupt(format!(
                "{}: object {} is {} bytes, more than the {MAX_OBJECT} allowed",
                self.name,
                hex_bytes(id),
                b.len()
            ))),
            Value::BulkString(b) => Ok(Some(b)),
            other => Err(key_err(&self.name, id, "GET", &other)),
        }
    }

    fn exists(&self, id: &[u8]) -> Result<bool> {
        self.exists_before(id, self.io_deadline())
    }

    fn exists_before(&self, id: &[u8], deadline: Instant) -> Result<bool> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(id);
        match self.request(&cmd, deadline)? {
            Value::Int(n) => Ok(n > 0),
            other => Err(key_err(&self.name, id, "EXISTS", &other)),
        }
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
        match self.request(&cmd, deadline)? {
            reply @ Value::ServerError(_) => Err(key_err(&self.name, id, "SET", &reply)),
            // 0-db answers the key (or nil when unchanged), Redis answers +OK
            _ => Ok(()),
        }
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
        assert!(parse_url("zdb://h:notaport/ns").is_err());
        assert!(parse_url("zdb://h/ns?bogus=1").is_err());
        assert!(parse_url("zdb:///").is_err());
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
}
