//! Chunk stores: where stored objects live, addressed by chunk id. Each kind (dir, zdb,
//! http, s3) implements [`Store`]; [`router::Router`] picks stores by the id's first byte,
//! with replicas, failover and deadlines. Stores move opaque bytes: they never decode
//! chunks and never cache.

pub mod dir;
pub mod http;
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

/// The URL with any password (the part after `user:` before `@`) replaced by `***`.
pub fn redact(url: &str) -> String {
    strip_password_with(url, "***")
}

/// The URL with its password removed, as written into flists (rfs strips it too).
pub fn strip_password(url: &str) -> String {
    strip_password_with(url, "")
}

fn strip_password_with(url: &str, replacement: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // Credentials end before the path; in S3 URLs (whose bucket names never hold '/' or
    // '@') they end at the last '@' before the query, so an AWS secret with an unencoded
    // '/' is still found.
    let auth_end = if matches!(scheme, "s3" | "s3s") {
        rest.find('?').unwrap_or(rest.len())
    } else {
        rest.find('/').unwrap_or(rest.len())
    };
    let Some(at) = rest[..auth_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let user = match userinfo.split_once(':') {
        Some((u, _)) if replacement.is_empty() => u.to_string(),
        Some((u, _)) => format!("{u}:{replacement}"),
        None => return url.to_string(),
    };
    if user.is_empty() {
        format!("{scheme}://{}", &rest[at + 1..])
    } else {
        format!("{scheme}://{user}@{}", &rest[at + 1..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
