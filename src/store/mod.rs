//! Chunk stores: where stored objects live, addressed by chunk id. Each kind (dir, zdb,
//! http, s3) implements [`Store`]; [`router::Router`] picks stores by the id's first byte,
//! with replicas, failover and deadlines. Stores move opaque bytes: they never decode
//! chunks and never cache.

pub mod dir;
pub mod http;
pub mod latency;
pub mod link;
pub mod router;
pub mod s3;
pub mod zdb;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Timeouts and failover settings shared by every store kind.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for one read or write on an established connection.
    pub io_timeout: Duration,
    /// Total time for one chunk across every replica tried.
    pub deadline: Duration,
    /// How long a store that failed is skipped while other replicas exist.
    pub cooldown: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(30),
            cooldown: Duration::from_secs(30),
        }
    }
}

/// A place that keeps stored chunk objects under their id.
pub trait Store: Send + Sync {
    /// The object stored under `id`, or `None` when the store does not have it.
    fn get(&self, id: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Like [`Store::get`], but gives up once `deadline` passes: network stores bound
    /// their connect and socket timeouts by the time left. The default ignores the
    /// deadline (local stores answer quickly or fail).
    fn get_before(&self, id: &[u8], deadline: Instant) -> Result<Option<Vec<u8>>> {
        let _ = deadline;
        self.get(id)
    }
    /// Whether the store has an object under `id` (without fetching it).
    fn exists(&self, id: &[u8]) -> Result<bool>;
    /// Like [`Store::exists`], bounded by `deadline` (see [`Store::get_before`]).
    fn exists_before(&self, id: &[u8], deadline: Instant) -> Result<bool> {
        let _ = deadline;
        self.exists(id)
    }
    /// Store `data` under `id`; an existing object is left as it is. The object may not
    /// be durable before [`Store::flush`].
    fn set(&self, id: &[u8], data: &[u8]) -> Result<()>;
    /// Make every object set so far durable (stores that write synchronously: nothing).
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    /// The URL with credentials removed, for messages and logs.
    fn name(&self) -> &str;
}

/// Open a store from its URL.
pub fn open(url: &str, cfg: &StoreConfig) -> Result<Arc<dyn Store>> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    match scheme {
        "dir" => Ok(Arc::new(dir::DirStore::open(url)?)),
        "zdb" | "redis" => Ok(Arc::new(zdb::ZdbStore::open(url, cfg)?)),
        "http" | "https" => Ok(Arc::new(http::HttpStore::open(url, cfg)?)),
        "s3" | "s3s" => Ok(Arc::new(s3::S3Store::open(url, cfg)?)),
        _ => Err(Error::invalid(format!(
            "unsupported store URL {} (known: dir://, zdb://, redis://, http://, https://, \
             s3://, s3s://)",
            redact(url)
        ))),
    }
}

/// Check a store URL as given on a command line (`-s`, `config store add`) without
/// connecting: its scheme is known and it parses the way its store will read it. The
/// error names the URL (password redacted) and what is wrong. Stricter than [`open`],
/// which also reads the routes of existing flists: here a `dir://` path must be absolute.
pub fn check_url(url: &str) -> Result<()> {
    let bad = |why: &str| Error::invalid(format!("bad store URL {}: {why}", redact(url)));
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(bad(
            "no scheme (expected dir:///path, zdb://host[:port]/ns, http(s)://host/path or \
             s3://key:secret@host:port/bucket)",
        ));
    };
    match scheme {
        "dir" => check_dir_url(rest).map_err(|why| bad(&why))?,
        "zdb" | "redis" => {
            let target = zdb::parse_url(url)?;
            if let zdb::Addr::Tcp(host, _) = &target.addr {
                check_host(host).map_err(|why| bad(&why))?;
            }
        }
        "http" | "https" => check_http_url(url).map_err(|why| bad(&why))?,
        "s3" | "s3s" => {
            s3::parse_url(url)?;
        }
        _ => {}
    }
    // What every kind's own parser says (e.g. an S3 endpoint that does not parse); no
    // store connects when opened.
    open(url, &StoreConfig::default()).map(drop)
}

/// `dir:///abs/path[?layout=flat|sharded]`: `rest` is what follows `dir://`.
fn check_dir_url(rest: &str) -> std::result::Result<(), String> {
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    if path.is_empty() {
        return Err("no path (expected dir:///absolute/path)".into());
    }
    if !path.starts_with('/') {
        // rfs reads `dir://a/b` as host `a` and path `/b`; zvfs once read it relative to
        // the working directory. Neither is what a route in an flist should depend on.
        let guess = std::env::current_dir()
            .map(|d| format!("; did you mean dir://{}?", d.join(path).display()))
            .unwrap_or_default();
        return Err(format!(
            "the path must be absolute: dir:///abs/path (three slashes); `{path}` after \
             dir:// is relative, which rfs reads as a host name{guess}"
        ));
    }
    // the query (`layout=`) is checked by the store's own parser, `dir::DirStore::open`
    Ok(())
}

/// A host name or IP address as URL parsers accept it (`[v6]` without its brackets).
fn check_host(host: &str) -> std::result::Result<(), String> {
    let parsed = if host.contains(':') {
        url::Host::parse(&format!("[{host}]"))
    } else {
        url::Host::parse(host)
    };
    parsed
        .map(drop)
        .map_err(|e| format!("bad host {host:?}: {e}"))
}

/// An http(s) URL as the HTTP client will parse it, with a host.
fn check_http_url(url: &str) -> std::result::Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("a query or fragment cannot be part of a store's base URL".into());
    }
    Ok(())
}

// Password redaction belongs to routes (flist), which hold the URLs; re-exported here
// for the stores' messages.
pub use crate::flist::{redact, strip_password};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_of_every_kind_are_checked_without_connecting() {
        for good in [
            "dir:///srv/store",
            "dir:///srv/store/",
            "dir:///srv/store?layout=flat",
            "dir:///srv/store?layout=sharded",
            "zdb://127.0.0.1",
            "zdb://u:p%40ss@127.0.0.1:9900/ns",
            "zdb://[::1]:9900/ns",
            "zdb:///run/zdb.sock",
            "zdb://u:p@/run/zdb.sock?ns=x",
            "redis://localhost",
            "http://[::1]:8080/store",
            "https://hub.example/x/",
            "http://u:p@h/x",
            "s3://AK:SK@127.0.0.1:3900/bucket?region=garage",
            "s3s://h/b",
        ] {
            check_url(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, why) in [
            ("http://[::1", "invalid IPv6"),
            ("https://u:sekrit@[::1/x", "invalid IPv6"),
            ("http://h:99999/x", "port"),
            ("http:///x", "host"),
            ("http://h/x?token=1", "query"),
            ("dir://relative/path", "absolute"),
            ("dir://", "no path"),
            ("dir:///s?layout=nested", "layout"),
            ("dir:///s?sync=1", "query parameter"),
            ("zdb://[::1", "port"),
            ("zdb://u:sekrit@h:99999/ns", "port"),
            ("zdb://h st/ns", "host"),
            ("s3://AK:sekrit@[::1/bucket", "S3"),
            ("s3://h:1", "bucket"),
            ("ftp://h/x", "unsupported"),
            ("noscheme", "no scheme"),
        ] {
            let e = check_url(bad).expect_err(bad);
            assert!(e.msg.contains(&redact(bad)), "{bad}: {e}");
            assert!(e.msg.contains(why), "{bad}: {e}");
            assert!(!e.msg.contains("sekrit"), "{bad}: {e}");
        }
    }

    #[test]
    fn passwords_are_redacted_and_stripped() {
        assert_eq!(redact("zdb://u:secret@h:9900/ns"), "zdb://u:***@h:9900/ns");
        assert_eq!(
            strip_password("zdb://u:secret@h:9900/ns"),
            "zdb://u@h:9900/ns"
        );
        assert_eq!(strip_password("zdb://:secret@h/ns"), "zdb://h/ns");
        assert_eq!(redact("dir:///a/b"), "dir:///a/b");
        assert_eq!(redact("zdb://user@h/ns"), "zdb://user@h/ns");
        assert_eq!(
            strip_password("s3://AK:SECRET@127.0.0.1:3900/b?region=garage"),
            "s3://AK@127.0.0.1:3900/b?region=garage"
        );
        assert_eq!(strip_password("s3s://AK:a/b+c@h/b"), "s3s://AK@h/b");
        assert_eq!(redact("s3://AK:a/b@c@h:1/b"), "s3://AK:***@h:1/b");
        assert_eq!(strip_password("s3://h:1/b?region=r"), "s3://h:1/b?region=r");
        assert_eq!(strip_password("s3://AK@h:1/b"), "s3://AK@h:1/b");
    }
}
