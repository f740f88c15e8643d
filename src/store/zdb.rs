//! `zdb://` (and the legacy alias `redis://`) store: 0-db or any Redis-protocol server.
//!
//! URL forms (formats.md section 3):
//! - `zdb://[user[:pass]@]host[:port][/namespace]`, port 9900 by default (6379 for
//!   `redis://`);
//! - `zdb://[user[:pass]@]/path/to/unix.sock[?ns=namespace]` for a unix socket.
//!
//! Requests are RESP2 arrays, encoded and parsed with the `redis` crate's codec over our
//! own sockets (no client-info handshake, which 0-db would refuse). Writes are `EXISTS`
//! then `SET` when missing, accepting any non-error `SET` reply; reads are `GET` (nil =
//! missing). Values above [`MAX_OBJECT`] are refused before anything is sent.
//!
//! This module owns a bounded pool of at most [`POOL_SIZE`] connections, pipelined: a
//! request takes an idle connection, else opens a new one while the pool has room, else
//! writes its command onto the busy connection with the fewest requests (at most
//! [`PIPELINE_DEPTH`] each; beyond that it waits). A new connection to a namespace
//! (other than `default`) starts with `SELECT namespace [password]`, written together
//! with its first command when that only reads (`GET`, `EXISTS`; both replies read in
//! order), before it otherwise (a `SET` waits for the reply: it must never run in
//! another namespace). A refused `SELECT` fails the request and the connection, the
//! command's reply unread; a connection joins the pool (for others to pipeline onto)
//! only once its namespace is selected. Replies come back in the order the commands went out; each request
//! holds a ticket, its place in that order, and the request whose ticket is at the head
//! reads the next reply itself (blocking I/O, no thread per connection, see [`Line`]).
//!
//! What it must not do: hand a reply to another request than its own. A request whose
//! deadline passes while it waits gives up its ticket, and its reply is read and dropped
//! by whoever reads next; any read or write error or timeout breaks the connection, every
//! request on it fails and is retried once on a fresh one (unless its own deadline
//! passed). Every socket operation is bounded by the I/O timeout (time without progress)
//! and every request (connect, send, waiting its turn, every byte of the reply) by its
//! caller's deadline, so a server trickling a reply cannot hold a request past it. It
//! never decodes objects and never logs credentials (messages name the redacted URL and
//! the command, never its arguments).

use std::collections::VecDeque;
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::Value;

use super::http::io_kind;
use super::{redact, Store, StoreConfig};
use crate::codec::{hex_bytes, MAX_OBJECT};
use crate::error::{Error, ErrorKind, Result};

/// Most connections one store keeps open (busy and idle together).
pub const POOL_SIZE: usize = 8;

/// Most requests sharing one connection at once (their commands written, their replies
/// not yet read) once the pool is full.
pub const PIPELINE_DEPTH: usize = 8;

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

/// The socket of one connection, or one of its two handles (see [`Sock::try_clone`]).
enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Which way a [`Wire`] moves bytes; each way has its own socket timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

impl Sock {
    /// A second handle on the same socket, for the other direction.
    fn try_clone(&self) -> io::Result<Sock> {
        Ok(match self {
            Sock::Tcp(s) => Sock::Tcp(s.try_clone()?),
            Sock::Unix(s) => Sock::Unix(s.try_clone()?),
        })
    }

    /// Set the timeout of `dir` only (`SO_RCVTIMEO` or `SO_SNDTIMEO`): the reader and
    /// the writer of one socket never change each other's.
    fn set_timeout(&self, dir: Dir, t: Duration) -> io::Result<()> {
        match (self, dir) {
            (Sock::Tcp(s), Dir::Read) => s.set_read_timeout(Some(t)),
            (Sock::Tcp(s), Dir::Write) => s.set_write_timeout(Some(t)),
            (Sock::Unix(s), Dir::Read) => s.set_read_timeout(Some(t)),
            (Sock::Unix(s), Dir::Write) => s.set_write_timeout(Some(t)),
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

/// One direction of a socket whose every read or write is bounded twice: by the I/O
/// timeout (time without progress) and by the deadline of the request using it (its
/// whole time). Before each syscall the socket timeout is shrunk to the time left, so a
/// server trickling a byte at a time cannot hold a request past its deadline.
struct Wire {
    sock: Sock,
    dir: Dir,
    io_timeout: Duration,
    deadline: Instant,
    /// Set when a read or write stopped on one of the bounds.
    expired: Option<Expired>,
}

impl Wire {
    fn new(sock: Sock, dir: Dir) -> Wire {
        Wire {
            sock,
            dir,
            io_timeout: Duration::from_secs(1),
            deadline: Instant::now(),
            expired: None,
        }
    }

    /// Bound the next operations by `req`.
    fn arm(&mut self, req: &Req) {
        self.deadline = req.deadline;
        self.io_timeout = req.io_timeout.max(Duration::from_millis(1));
        self.expired = None;
    }

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
        self.sock
            .set_timeout(self.dir, t.max(Duration::from_millis(1)))?;
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

/// One request's bounds and names: what its socket operations obey and its messages say.
struct Req<'a> {
    /// The store's name (redacted).
    name: &'a str,
    /// The command's name (never its arguments).
    what: &'a str,
    started: Instant,
    deadline: Instant,
    io_timeout: Duration,
}

impl Req<'_> {
    /// The deadline passed while the request waited (for its turn to write or read).
    fn timed_out(&self) -> Error {
        Error::timeout(format!(
            "{}: {}: timed out after {:.1} s (deadline)",
            self.name,
            self.what,
            self.started.elapsed().as_secs_f64()
        ))
    }

    /// A read or write of this request failed: a timeout naming the bound that stopped
    /// it, else a store error saying `failed`.
    fn io_failed(&self, expired: Option<Expired>, failed: String) -> Error {
        let took = self.started.elapsed().as_secs_f64();
        match expired {
            Some(Expired::Deadline) => self.timed_out(),
            Some(Expired::Idle) => Error::timeout(format!(
                "{}: {}: timed out after {took:.1} s (nothing received for the {:.1} s I/O \
                 timeout)",
                self.name,
                self.what,
                self.io_timeout.as_secs_f64()
            )),
            None => Error::store(format!("{}: {}: {failed}", self.name, self.what)),
        }
    }

    /// The connection broke, under this request or another on it, for `why`.
    fn broken(&self, why: &str) -> Error {
        Error::store(format!(
            "{}: {}: the connection failed under a pipelined request ({why})",
            self.name, self.what
        ))
    }
}

/// The reading end of a connection: replies parsed by the `redis` crate's parser (which
/// keeps what it read ahead, so it lives as long as the connection).
struct Rx {
    reader: BufReader<Wire>,
    parser: redis::Parser,
}

/// The order of a connection: who may write or read, and which replies are owed.
/// Commands are written one whole command at a time by the holder of `writing`; each
/// takes a ticket, the place of its reply in the stream. A reply is read only by the
/// holder of `reading`: the owner of the ticket at the head, or, when the head's owner
/// gave up, any later owner, which reads that reply away before its own.
#[derive(Default)]
struct Line {
    /// The ticket of `owed[0]`, the next reply on the wire.
    head: u64,
    /// One entry per reply not yet read, in wire order: `true` once its request gave
    /// up (its reply is read and dropped by whoever reads next).
    owed: VecDeque<bool>,
    /// A command is being written.
    writing: bool,
    /// A reply is being read.
    reading: bool,
    /// Why the connection is unusable (set once): every request on it fails.
    broken: Option<String>,
}

/// One RESP2 connection shared by up to [`PIPELINE_DEPTH`] requests: their commands go
/// out one after the other on `tx` and their replies come back in the same order on
/// `rx`, each handed to its own request by ticket (see [`Line`]). No thread of its own.
struct Conn {
    line: Mutex<Line>,
    /// Signalled whenever `line` changes.
    moved: Condvar,
    /// `line.broken` is set (readable without the lock, for the pool).
    dead: AtomicBool,
    /// Held only by the holder of `line.writing` (never contended).
    tx: Mutex<Wire>,
    /// Held only by the holder of `line.reading` (never contended).
    rx: Mutex<Rx>,
}

/// Lock `m`; a lock poisoned by a panic elsewhere is still usable here (the state it
/// guards is updated in single steps).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Conn {
    fn new(sock: Sock) -> io::Result<Conn> {
        let tx = Wire::new(sock.try_clone()?, Dir::Write);
        Ok(Conn {
            line: Mutex::new(Line::default()),
            moved: Condvar::new(),
            dead: AtomicBool::new(false),
            tx: Mutex::new(tx),
            rx: Mutex::new(Rx {
                reader: BufReader::with_capacity(64 * 1024, Wire::new(sock, Dir::Read)),
                parser: redis::Parser::new(),
            }),
        })
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Mark the connection unusable after `e` (from a request of store `name`).
    fn break_off(&self, g: &mut Line, name: &str, e: &Error) {
        if g.broken.is_none() {
            let why = e.msg.strip_prefix(name).unwrap_or(&e.msg);
            g.broken = Some(why.trim_start_matches(": ").to_string());
            self.dead.store(true, Ordering::SeqCst);
        }
    }

    /// Wait for `line` to change, at most until the deadline of `req`.
    fn wait<'g>(&self, g: MutexGuard<'g, Line>, req: &Req) -> MutexGuard<'g, Line> {
        let left = req.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return g;
        }
        self.moved
            .wait_timeout(g, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    /// Write `packed` (`replies` commands) after the commands already written; returns
    /// the ticket of its first reply and how many replies are then owed.
    fn send(&self, packed: &[u8], replies: usize, req: &Req) -> Result<(u64, usize)> {
        let mut g = lock(&self.line);
        loop {
            if Instant::now() >= req.deadline {
                return Err(req.timed_out());
            }
            if let Some(why) = &g.broken {
                return Err(req.broken(why));
            }
            if !g.writing {
                break;
            }
            g = self.wait(g, req);
        }
        g.writing = true;
        let ticket = g.head + g.owed.len() as u64;
        g.owed.extend(std::iter::repeat_n(false, replies));
        let owed = g.owed.len();
        drop(g);
        let sent = {
            let mut tx = lock(&self.tx);
            tx.arm(req);
            tx.write_all(packed)
                .map_err(|e| req.io_failed(tx.expired, format!("sending: {e}")))
        };
        let mut g = lock(&self.line);
        g.writing = false;
        if let Err(e) = &sent {
            // part of a command may be out: nothing after it can be trusted
            self.break_off(&mut g, req.name, e);
        }
        self.moved.notify_all();
        sent.map(|()| (ticket, owed))
    }

    /// The reply of `ticket`: waits for its turn, reading away the replies of requests
    /// that gave up before it. When the deadline of `req` passes while it waits, the
    /// ticket is given up (its reply will be read and dropped by whoever reads next).
    fn recv(&self, ticket: u64, req: &Req) -> Result<Value> {
        let mut g = lock(&self.line);
        loop {
            if Instant::now() >= req.deadline {
                // unread, and read by no one else: give it up to the next reader
                if let Some(gave_up) = ticket
                    .checked_sub(g.head)
                    .and_then(|i| g.owed.get_mut(i as usize))
                {
                    *gave_up = true;
                }
                self.moved.notify_all();
                return Err(req.timed_out());
            }
            if let Some(why) = &g.broken {
                return Err(req.broken(why));
            }
            if !g.reading && (g.head == ticket || g.owed.front() == Some(&true)) {
                let mine = g.head == ticket;
                g.reading = true;
                drop(g);
                let read = self.read_reply(req);
                g = lock(&self.line);
                g.reading = false;
                match &read {
                    Ok(_) => {
                        g.owed.pop_front();
                        g.head += 1;
                    }
                    // a reply may be cut in the middle: the stream is lost
                    Err(e) => self.break_off(&mut g, req.name, e),
                }
                self.moved.notify_all();
                if mine || read.is_err() {
                    return read;
                }
                continue;
            }
            g = self.wait(g, req);
        }
    }

    /// Read the next reply off the wire, bounded by `req`.
    fn read_reply(&self, req: &Req) -> Result<Value> {
        let mut rx = lock(&self.rx);
        let Rx { reader, parser } = &mut *rx;
        reader.get_mut().arm(req);
        parser
            .parse_value(&mut *reader)
            .map_err(|e| req.io_failed(reader.get_ref().expired, format!("reading the reply: {e}")))
    }
}

/// A connection of the pool and how many requests use it now.
struct Slot {
    conn: Arc<Conn>,
    leased: usize,
}

struct Pool {
    slots: Vec<Slot>,
    /// Connections being opened (they count against [`POOL_SIZE`]).
    dialing: usize,
}

/// What [`ZdbStore::checkout`] grants a request.
enum Lease {
    /// A connection of the pool, idle or (when the pool is full) busy.
    Shared(Arc<Conn>),
    /// A place in the pool for a new connection, to open.
    Dial,
}

/// A `zdb://` / `redis://` store: objects as keys of a 0-db namespace (or redis), over
/// a bounded pool of [`POOL_SIZE`] pipelined connections.
pub struct ZdbStore {
    target: ZdbTarget,
    name: String,
    cfg: StoreConfig,
    pool: Mutex<Pool>,
    freed: Condvar,
    /// The most replies ever owed at once on one connection.
    peak_owed: AtomicUsize,
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
                slots: Vec::new(),
                dialing: 0,
            }),
            freed: Condvar::new(),
            peak_owed: AtomicUsize::new(0),
        })
    }

    /// The parsed URL.
    pub fn target(&self) -> &ZdbTarget {
        &self.target
    }

    /// The most replies ever owed at once on one connection of this store (a new
    /// connection's `SELECT` counts): 1 when nothing was ever pipelined. For tests.
    #[doc(hidden)]
    pub fn peak_pipeline(&self) -> usize {
        self.peak_owed.load(Ordering::SeqCst)
    }

    fn timeout_err(&self, what: &str, started: Instant) -> Error {
        Error::timeout(format!(
            "{}: {what}: timed out after {:.1} s (deadline)",
            self.name,
            started.elapsed().as_secs_f64()
        ))
    }

    fn req<'a>(&'a self, what: &'a str, deadline: Instant) -> Req<'a> {
        Req {
            name: &self.name,
            what,
            started: Instant::now(),
            deadline,
            io_timeout: self.cfg.io_timeout,
        }
    }

    fn lock_pool(&self) -> Result<MutexGuard<'_, Pool>> {
        self.pool
            .lock()
            .map_err(|_| Error::store(format!("{}: connection pool poisoned", self.name)))
    }

    /// A connection for one request, in this order: an idle one; a place for a new one
    /// while the pool has fewer than [`POOL_SIZE`]; the busy one with the fewest requests
    /// when that is under [`PIPELINE_DEPTH`]. Otherwise waits, up to `deadline`.
    fn checkout(&self, deadline: Instant) -> Result<Lease> {
        let started = Instant::now();
        let mut g = self.lock_pool()?;
        loop {
            let pool = &mut *g;
            let open = pool.slots.len() + pool.dialing;
            let least = pool
                .slots
                .iter_mut()
                .filter(|s| !s.conn.is_dead())
                .min_by_key(|s| s.leased);
            match least {
                Some(s) if s.leased == 0 || (open >= POOL_SIZE && s.leased < PIPELINE_DEPTH) => {
                    s.leased += 1;
                    return Ok(Lease::Shared(s.conn.clone()));
                }
                _ if open < POOL_SIZE => {
                    pool.dialing += 1;
                    return Ok(Lease::Dial);
                }
                _ => {}
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

    /// A request is done with `conn`; a broken connection leaves the pool once no
    /// request uses it.
    fn checkin(&self, conn: &Arc<Conn>) {
        if let Ok(mut g) = self.pool.lock() {
            if let Some(i) = g.slots.iter().position(|s| Arc::ptr_eq(&s.conn, conn)) {
                let s = &mut g.slots[i];
                s.leased = s.leased.saturating_sub(1);
                if s.leased == 0 && s.conn.is_dead() {
                    g.slots.swap_remove(i);
                }
            }
        }
        self.freed.notify_all();
    }

    /// A new connection joins the pool, used by the request that opened it (`conn:
    /// None`: opening it failed, its place is free again).
    fn adopt(&self, conn: Option<Arc<Conn>>) {
        if let Ok(mut g) = self.pool.lock() {
            g.dialing = g.dialing.saturating_sub(1);
            if let Some(conn) = conn {
                g.slots.push(Slot { conn, leased: 1 });
            }
        }
        self.freed.notify_all();
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
        Conn::new(sock).map_err(|e| Error::store(format!("{}: connecting: {e}", self.name)))
    }

    /// The `SELECT namespace [password]` a new connection starts with, if any.
    fn select_cmd(&self) -> Option<(&str, redis::Cmd)> {
        let ns = self.target.namespace.as_deref()?;
        let mut cmd = redis::cmd("SELECT");
        cmd.arg(ns.as_bytes());
        if let Some(pw) = &self.target.password {
            cmd.arg(pw.as_bytes());
        }
        Some((ns, cmd))
    }

    /// Send `packed` on a shared connection and wait for its reply. Error replies are
    /// returned as [`Value::ServerError`]; an `Err` means the request failed on the
    /// connection (and, unless only its own wait ran out, broke it).
    fn exchange(&self, conn: &Conn, packed: &[u8], req: &Req) -> Result<Value> {
        let (ticket, owed) = conn.send(packed, 1, req)?;
        self.peak_owed.fetch_max(owed, Ordering::SeqCst);
        conn.recv(ticket, req)
    }

    /// Open a connection and run `packed` on it (see [`ZdbStore::first_exchange`]). The
    /// connection joins the pool once its namespace is selected, so that others may
    /// pipeline behind.
    fn dial_and_exchange(&self, packed: &[u8], read_only: bool, req: &Req) -> Result<Value> {
        let conn = match self.connect(req.deadline) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                self.adopt(None);
                return Err(e);
            }
        };
        let mut unjoined = Some(conn.clone());
        let mut join = || {
            if let Some(c) = unjoined.take() {
                self.adopt(Some(c));
            }
        };
        let got = self.first_exchange(&conn, packed, read_only, req, &mut join);
        join();
        self.checkin(&conn);
        got
    }

    /// Select the namespace of the new connection `conn`, if any, and run `packed`;
    /// `join()` once the namespace is selected. A read-only command is written with the
    /// `SELECT` (one write, both replies read in order): a round trip saved. A write
    /// waits for the `SELECT`'s reply, so that a refused `SELECT` never lets it run in
    /// another namespace. A refused (or unconfirmed) `SELECT` fails the request and the
    /// connection; the command's reply, if it was sent, is never read.
    fn first_exchange(
        &self,
        conn: &Conn,
        packed: &[u8],
        read_only: bool,
        req: &Req,
        join: &mut dyn FnMut(),
    ) -> Result<Value> {
        let Some((ns, sel)) = self.select_cmd() else {
            let (ticket, owed) = conn.send(packed, 1, req)?;
            join();
            self.peak_owed.fetch_max(owed, Ordering::SeqCst);
            return conn.recv(ticket, req);
        };
        let sel_req = Req {
            what: "SELECT",
            ..*req
        };
        let mut out = sel.get_packed_command();
        if read_only {
            out.extend_from_slice(packed);
        }
        let selected = conn
            .send(&out, 1 + usize::from(read_only), &sel_req)
            .and_then(|(ticket, owed)| {
                self.peak_owed.fetch_max(owed, Ordering::SeqCst);
                let reply = conn.recv(ticket, &sel_req)?;
                select_reply(&self.name, ns, reply).map(|()| ticket + 1)
            });
        let next = match selected {
            Ok(t) => t,
            Err(e) => {
                // whatever follows would run in the wrong namespace, or not at all
                conn.break_off(&mut lock(&conn.line), &self.name, &e);
                conn.moved.notify_all();
                return Err(e);
            }
        };
        join();
        if read_only {
            return conn.recv(next, req);
        }
        let (ticket, owed) = conn.send(packed, 1, req)?;
        self.peak_owed.fetch_max(owed, Ordering::SeqCst);
        conn.recv(ticket, req)
    }

    /// Run one command on a pooled connection; on a connection failure, retry once on a
    /// fresh connection (unless the failure was the deadline itself).
    fn request(&self, cmd: &redis::Cmd, deadline: Instant) -> Result<Value> {
        let packed = cmd.get_packed_command();
        let what = cmd_name(cmd);
        let read_only = matches!(what.as_str(), "GET" | "EXISTS");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = self.req(&what, deadline);
            let (got, reused) = match self.checkout(deadline)? {
                Lease::Shared(conn) => {
                    let got = self.exchange(&conn, &packed, &req);
                    self.checkin(&conn);
                    (got, true)
                }
                Lease::Dial => (self.dial_and_exchange(&packed, read_only, &req), false),
            };
            let e = match got {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let retry = attempt == 1
                && e.kind != ErrorKind::Credentials
                && (reused || e.kind != ErrorKind::Timeout)
                && Instant::now() < deadline;
            if !retry {
                return Err(e);
            }
            log::debug!("{e}; retrying on a fresh connection");
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
    use std::io::{Read, Write};

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

    /// A request of the test store `zdb://test`, its deadline `ms` from now.
    fn req(ms: u64) -> Req<'static> {
        Req {
            name: "zdb://test",
            what: "GET",
            started: Instant::now(),
            deadline: Instant::now() + Duration::from_millis(ms),
            io_timeout: Duration::from_secs(5),
        }
    }

    fn get(key: &str) -> Vec<u8> {
        redis::cmd("GET").arg(key).get_packed_command()
    }

    /// A connection over one end of a socket pair; the other end plays the server.
    fn pair() -> (Arc<Conn>, UnixStream) {
        let (client, server) = UnixStream::pair().unwrap();
        (Arc::new(Conn::new(Sock::Unix(client)).unwrap()), server)
    }

    /// Three commands on one connection: the second gives up before any reply came;
    /// its reply is read away by the third, and each live request gets its own.
    #[test]
    fn pipelined_replies_go_to_their_own_requests() {
        let (conn, mut server) = pair();
        let (t1, _) = conn.send(&get("a"), 1, &req(10_000)).unwrap();
        let (t2, _) = conn.send(&get("b"), 1, &req(10_000)).unwrap();
        let (t3, owed) = conn.send(&get("c"), 1, &req(10_000)).unwrap();
        assert_eq!((t1, t2, t3, owed), (0, 1, 2, 3));
        let e = conn.recv(t2, &req(50)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert!(e.msg.starts_with("zdb://test: GET: timed out"), "{e}");
        let c = conn.clone();
        let third = std::thread::spawn(move || c.recv(t3, &req(10_000)));
        let mut wanted = [get("a"), get("b"), get("c")].concat();
        let mut sent = vec![0u8; wanted.len()];
        server.read_exact(&mut sent).unwrap();
        assert_eq!(sent, wanted);
        server
            .write_all(b"$1\r\nA\r\n$1\r\nB\r\n$1\r\nC\r\n")
            .unwrap();
        let first = conn.recv(t1, &req(10_000)).unwrap();
        assert_eq!(first, Value::BulkString(b"A".to_vec()));
        assert_eq!(
            third.join().unwrap().unwrap(),
            Value::BulkString(b"C".to_vec())
        );
        // the connection is still in order: a fourth command gets its own reply
        let (t4, owed) = conn.send(&get("d"), 1, &req(10_000)).unwrap();
        assert_eq!((t4, owed), (3, 1));
        wanted = get("d");
        sent = vec![0u8; wanted.len()];
        server.read_exact(&mut sent).unwrap();
        server.write_all(b"$-1\r\n").unwrap();
        assert_eq!(conn.recv(t4, &req(10_000)).unwrap(), Value::Nil);
    }

    /// A reply cut short breaks the connection: the request reading it and every one
    /// behind it fail, none gets bytes of another.
    #[test]
    fn cut_reply_fails_every_pending_request() {
        let (conn, mut server) = pair();
        let (t1, _) = conn.send(&get("a"), 1, &req(10_000)).unwrap();
        let (t2, _) = conn.send(&get("b"), 1, &req(10_000)).unwrap();
        let c = conn.clone();
        let second = std::thread::spawn(move || c.recv(t2, &req(10_000)));
        server.write_all(b"$5\r\nAA").unwrap();
        drop(server);
        let e = conn.recv(t1, &req(10_000)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Store, "{e}");
        assert!(e.msg.contains("reading the reply"), "{e}");
        let e = second.join().unwrap().unwrap_err();
        assert!(
            e.msg
                .contains("connection failed under a pipelined request"),
            "{e}"
        );
        assert!(conn.is_dead());
        assert!(conn.send(&get("c"), 1, &req(10_000)).is_err());
    }

    /// A request whose deadline passes while it reads its own reply breaks the
    /// connection (the rest of the reply is still on the wire): it fails with a
    /// timeout, the next one with a connection error.
    #[test]
    fn deadline_mid_reply_breaks_the_connection() {
        let (conn, mut server) = pair();
        let (t1, _) = conn.send(&get("a"), 1, &req(10_000)).unwrap();
        let (t2, _) = conn.send(&get("b"), 1, &req(10_000)).unwrap();
        server.write_all(b"$5\r\nAA").unwrap();
        let e = conn.recv(t1, &req(100)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert!(e.msg.contains("(deadline)"), "{e}");
        server.write_all(b"AAA\r\n$1\r\nB\r\n").unwrap();
        let e = conn.recv(t2, &req(10_000)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Store, "{e}");
    }

    /// A unix socket server played by `serve` (given each accepted connection in turn,
    /// `conns` of them) and a store on it, namespace `ns1`, password `s3kr1t`.
    fn served(
        conns: usize,
        serve: impl Fn(UnixStream) + Send + 'static,
    ) -> (ZdbStore, std::thread::JoinHandle<()>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zdb.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            for c in l.incoming().take(conns) {
                let c = c.unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                serve(c);
            }
        });
        let url = format!("zdb://:s3kr1t@{}?ns=ns1", path.display());
        (
            ZdbStore::open(&url, &StoreConfig::default()).unwrap(),
            server,
            dir,
        )
    }

    fn select() -> Vec<u8> {
        redis::cmd("SELECT")
            .arg("ns1")
            .arg("s3kr1t")
            .get_packed_command()
    }

    /// Read exactly `want` from `c` (the commands a client sent).
    fn expect(c: &mut UnixStream, want: &[u8]) {
        let mut got = vec![0u8; want.len()];
        c.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    }

    /// A new connection's GET goes out with its SELECT: the server has both before it
    /// answers anything.
    #[test]
    fn select_goes_out_with_the_first_get() {
        let (s, server, _dir) = served(1, |mut c| {
            expect(&mut c, &[select(), get("k")].concat());
            c.write_all(b"+OK\r\n$3\r\nabc\r\n").unwrap();
            let _ = c.read(&mut [0u8; 1]);
        });
        assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(s.peak_pipeline(), 2);
        drop(s);
        server.join().unwrap();
    }

    /// A refused SELECT fails a GET pipelined with it with the SELECT's error; the GET's
    /// reply (from another namespace) is never returned, also not on the retry.
    #[test]
    fn refused_select_discards_the_pipelined_reply() {
        let (s, server, _dir) = served(2, |mut c| {
            expect(&mut c, &[select(), get("k")].concat());
            c.write_all(b"-Namespace not found\r\n$3\r\nabc\r\n")
                .unwrap();
        });
        let e = s.get(b"k").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Store, "{e}");
        assert!(
            e.msg.contains("SELECT ns1 refused: Namespace not found"),
            "{e}"
        );
        assert!(!e.msg.contains("s3kr1t"), "{e}");
        server.join().unwrap();
    }

    /// A SET on a new connection waits for the SELECT's reply: refused, the SET is
    /// never sent (it would run in another namespace).
    #[test]
    fn set_waits_for_the_select() {
        let (s, server, _dir) = served(1, |mut c| {
            expect(&mut c, &select());
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let early = c.read(&mut [0u8; 1]);
            assert!(early.is_err(), "the SET went out before the SELECT's reply");
            c.write_all(b"-Access denied\r\n").unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).unwrap();
            assert_eq!(String::from_utf8_lossy(&rest), "");
        });
        let mut cmd = redis::cmd("SET");
        cmd.arg(&b"k"[..]).arg(&b"v"[..]);
        let e = s
            .request(&cmd, Instant::now() + Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Credentials, "{e}");
        assert!(e.msg.contains("SELECT ns1 refused: Access denied"), "{e}");
        drop(s);
        server.join().unwrap();
    }
}
