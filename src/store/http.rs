//! `http://` and `https://` stores, read-only: an object is fetched from
//! `<url>/<hh>/<hex id>` and, on 404, from the flat `<url>/<hex id>`; 404 on both means
//! missing. Uses ureq 2 (blocking, rustls with the bundled webpki roots, so TLS works in a
//! static binary without system certificates). Connect, read and total times are bounded;
//! responses above [`MAX_OBJECT`] are refused. Credentials in the URL are sent as HTTP
//! basic auth by ureq and never appear in messages (URLs are redacted).

use std::io::Read;
use std::time::Instant;

use super::{redact, Store, StoreConfig};
use crate::codec::{hex_bytes, MAX_OBJECT};
use crate::error::{Error, ErrorKind, Result};

/// A read-only `http://` or `https://` store: objects fetched with GET from
/// `<base URL>/<hex id>`.
pub struct HttpStore {
    base: String,
    name: String,
    agent: ureq::Agent,
    cfg: StoreConfig,
}

impl HttpStore {
    /// A store for `url` with `cfg`'s timeouts; it connects on first use. An `Invalid`
    /// error when the URL has no host.
    pub fn open(url: &str, cfg: &StoreConfig) -> Result<HttpStore> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| Error::invalid(format!("bad http store URL {}", redact(url))))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(Error::invalid(format!(
                "bad http store URL {}: no host",
                redact(url)
            )));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(cfg.connect_timeout)
            .timeout_read(cfg.io_timeout)
            .timeout_write(cfg.io_timeout)
            .redirects(3)
            // Reads run in parallel (fetch pool, read-ahead, prefetch): keep a connection
            // for each, so none pays a new handshake (a round trip or more) per chunk.
            .max_idle_connections_per_host(32)
            .build();
        let base = url.trim_end_matches('/').to_string();
        Ok(HttpStore {
            name: redact(&base),
            base,
            agent,
            cfg: cfg.clone(),
        })
    }

    /// One GET: `Ok(None)` on 404.
    fn fetch(&self, url: &str, deadline: Instant) -> Result<Option<Vec<u8>>> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::timeout(format!(
                "GET {}: deadline passed",
                redact(url)
            )));
        }
        let started = Instant::now();
        // Named after how long it took, not after the socket error (EAGAIN).
        let timed_out = |detail: &str| {
            Error::timeout(format!(
                "GET {}: timed out after {:.1} s ({detail})",
                redact(url),
                started.elapsed().as_secs_f64()
            ))
        };
        // `timeout` bounds the whole request, the body included (ureq shrinks the socket
        // timeout to the time left before every read).
        crate::error::no_panic(
            || format!("GET {}", redact(url)),
            || response_body(url, self.agent.get(url).timeout(left).call(), &timed_out),
        )
    }

    /// Handle `raw`, a whole HTTP response (status line, headers, body, parsed by ureq),
    /// as the answer to one GET of this store: what a read does with a server's reply
    /// (404 is `Ok(None)`, other failures are typed errors, bodies are bounded), without
    /// a network. An unparsable response is a store error. For the fuzz targets
    /// (`fuzz/`) and tests.
    pub fn handle_response(&self, raw: &str) -> Result<Option<Vec<u8>>> {
        let url = format!("{}/00/{}", self.base, "00".repeat(32));
        let timed_out = |detail: &str| Error::timeout(format!("GET {}: {detail}", redact(&url)));
        crate::error::no_panic(
            || format!("GET {}", redact(&url)),
            || response_body(&url, parse_response(raw), &timed_out),
        )
    }

    fn default_deadline(&self) -> Instant {
        Instant::now() + self.cfg.connect_timeout + self.cfg.io_timeout * 2
    }
}

/// What a GET of `url` gives, from ureq's outcome of the request: the body (bounded by
/// [`MAX_OBJECT`]), `None` on 404, or a typed error (`timed_out` names a timeout).
fn response_body(
    url: &str,
    outcome: std::result::Result<ureq::Response, ureq::Error>,
    timed_out: &dyn Fn(&str) -> Error,
) -> Result<Option<Vec<u8>>> {
    let resp = match outcome {
        Ok(r) => r,
        Err(ureq::Error::Status(404, _)) => return Ok(None),
        Err(ureq::Error::Status(code, r)) => {
            return Err(Error::store(format!(
                "GET {}: HTTP {code} {}",
                redact(url),
                r.status_text()
            )))
        }
        Err(ureq::Error::Transport(t)) => {
            let e = transport_error(url, &t);
            if e.kind == ErrorKind::Timeout {
                return Err(timed_out(&describe_transport(&t).1));
            }
            return Err(e);
        }
    };
    if let Some(len) = resp
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if len > MAX_OBJECT as u64 {
            return Err(Error::corrupt(format!(
                "GET {}: object of {len} bytes, more than the {MAX_OBJECT} allowed",
                redact(url)
            )));
        }
    }
    let mut buf = Vec::new();
    resp.into_reader()
        .take(MAX_OBJECT as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| match io_kind(&e) {
            ErrorKind::Timeout => timed_out(&format!("reading the body: {e}")),
            kind => Error::new(kind, format!("GET {}: reading the body: {e}", redact(url))),
        })?;
    if buf.len() > MAX_OBJECT {
        return Err(Error::corrupt(format!(
            "GET {}: object larger than the {MAX_OBJECT} bytes allowed",
            redact(url)
        )));
    }
    Ok(Some(buf))
}

/// `raw` parsed by ureq as a response, with the outcome ureq's `call` gives for it: a
/// status of 400 or more is an `Error::Status` (as on the wire).
// The same outcome type as ureq's `call` (whose error is that large), on purpose.
#[allow(clippy::result_large_err)]
pub(crate) fn parse_response(raw: &str) -> std::result::Result<ureq::Response, ureq::Error> {
    let resp: ureq::Response = raw.parse()?;
    if resp.status() >= 400 {
        return Err(ureq::Error::Status(resp.status(), resp));
    }
    Ok(resp)
}

/// The error kind of a failed socket operation: a timeout, else a store failure.
pub(crate) fn io_kind(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
        _ => ErrorKind::Store,
    }
}

/// A transport failure's kind and description, without ureq's own rendering (which
/// would print the URL as given: credentials, or an S3 request's signature).
pub(crate) fn describe_transport(t: &ureq::Transport) -> (ErrorKind, String) {
    let mut kind = ErrorKind::Store;
    let kind_text = t.kind().to_string();
    let mut detail = match t.message() {
        Some(m) if m.starts_with(&kind_text) => m.to_string(),
        Some(m) => format!("{kind_text}: {m}"),
        None => kind_text,
    };
    let mut src = std::error::Error::source(t);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            kind = io_kind(io);
            detail = format!("{detail}: {io}");
            break;
        }
        src = s.source();
    }
    (kind, detail)
}

fn transport_error(url: &str, t: &ureq::Transport) -> Error {
    let (kind, detail) = describe_transport(t);
    Error::new(kind, format!("GET {}: {detail}", redact(url)))
}

impl Store for HttpStore {
    fn get(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_before(id, self.default_deadline())
    }

    fn get_before(&self, id: &[u8], deadline: Instant) -> Result<Option<Vec<u8>>> {
        let hex = hex_bytes(id);
        let nested = format!("{}/{}/{}", self.base, &hex[..2], hex);
        if let Some(d) = self.fetch(&nested, deadline)? {
            return Ok(Some(d));
        }
        self.fetch(&format!("{}/{}", self.base, hex), deadline)
    }

    fn exists(&self, id: &[u8]) -> Result<bool> {
        // A HEAD would do, but static servers and CDNs answer GET more uniformly; objects
        // are small (<= 8 MiB) and the body is discarded.
        Ok(self.get(id)?.is_some())
    }

    fn exists_before(&self, id: &[u8], deadline: Instant) -> Result<bool> {
        Ok(self.get_before(id, deadline)?.is_some())
    }

    fn set(&self, id: &[u8], _data: &[u8]) -> Result<()> {
        Err(Error::invalid(format!(
            "{}: http stores are read-only; cannot store chunk {}",
            self.name,
            hex_bytes(id)
        )))
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> HttpStore {
        HttpStore::open("http://127.0.0.1:9/store", &StoreConfig::default()).unwrap()
    }

    #[test]
    fn responses_map_to_bodies_missing_objects_and_errors() {
        let s = store();
        let ok = s.handle_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(ok.unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(
            s.handle_response("HTTP/1.1 404 Not Found\r\n\r\n").unwrap(),
            None
        );
        let e = s.handle_response("HTTP/1.1 503 Busy\r\n\r\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Store);
        assert!(e.msg.contains("HTTP 503 Busy"), "{e}");
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_OBJECT + 1
        );
        assert_eq!(
            s.handle_response(&big).unwrap_err().kind,
            ErrorKind::Corrupt
        );
    }

    /// Found by the `http_response` fuzz target: a header line without `:` named
    /// Content-Length made ureq 2.12 panic while building the response (slicing past the
    /// line's end); a server could crash any reader. It is now a store error.
    #[test]
    fn header_line_without_colon_is_an_error_not_a_panic() {
        let s = store();
        let e = s
            .handle_response("HTTP/1.1 200 OK\r\nContent-Length\n\r\nhello")
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Store);
        assert!(e.msg.contains("malformed reply"), "{e}");
    }
}
