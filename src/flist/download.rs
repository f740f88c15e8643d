//! Flists by URL, as a Zero-OS node gets them from the hub: `GET <url>` into a directory
//! under the file's md5, checked against `<url>.md5` when the server has one, reused when
//! the md5 is unchanged, written atomically (temp file + rename). Only the flist file is
//! downloaded here; chunks are the stores' business.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use crate::error::{Context, Error, Result};

/// Open the flist `meta` names: a local file, or an http(s) URL downloaded first
/// ([`fetch`]) into `CACHE/flist/` when a cache is given, else into
/// `<tmp>/zvfs-flists/`, under its md5.
pub fn open_flist(
    meta: &std::path::Path,
    cache: Option<&std::path::Path>,
) -> Result<Box<dyn super::Flist>> {
    let Some(url) = meta.to_str().filter(|m| is_url(m)) else {
        return crate::flist::open(meta);
    };
    let dir = match cache {
        Some(c) => c.join("flist"),
        None => std::env::temp_dir().join("zvfs-flists"),
    };
    let local = fetch(url, &dir, std::time::Duration::from_secs(30))?;
    crate::flist::open(&local)
}

/// Largest flist accepted from a server.
const MAX_FLIST: u64 = 1 << 30;

/// Whether an `-m` argument is an `http(s)://` URL to download rather than a local path.
pub fn is_url(meta: &str) -> bool {
    meta.starts_with("http://") || meta.starts_with("https://")
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(timeout)
        .timeout_read(timeout)
        .timeout_write(timeout)
        .build()
}

/// The md5 the server publishes next to the flist, if it has one.
fn published_md5(agent: &ureq::Agent, url: &str) -> Result<Option<String>> {
    let md5_url = format!("{url}.md5");
    let outcome = crate::error::no_panic(|| md5_url.clone(), || Ok(agent.get(&md5_url).call()))?;
    match outcome {
        Ok(resp) => {
            let mut body = String::new();
            resp.into_reader()
                .take(256)
                .read_to_string(&mut body)
                .with_ctx(|| format!("reading {md5_url}"))?;
            let sum = body
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            if sum.len() != 32 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::format(format!(
                    "{md5_url}: not an md5 sum: {:?}",
                    body.trim()
                )));
            }
            Ok(Some(sum))
        }
        Err(ureq::Error::Status(404, _)) => Ok(None),
        Err(ureq::Error::Status(code, _)) => {
            Err(Error::store(format!("{md5_url}: HTTP status {code}")))
        }
        Err(e) => Err(Error::store(format!("{md5_url}: {e}"))),
    }
}

/// The md5 of a local file, as lowercase hex (the name the node stores flists under).
pub fn md5_of_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_ctx(|| format!("opening {}", path.display()))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .with_ctx(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Download the flist at `url` into `dir` (created if needed) and return its local path
/// `dir/<md5>`.
pub fn fetch(url: &str, dir: &Path, timeout: Duration) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_ctx(|| format!("creating {}", dir.display()))?;
    let agent = agent(timeout);
    let expected = published_md5(&agent, url)?;
    if let Some(sum) = &expected {
        let cached = dir.join(sum);
        if cached.exists() && md5_of_file(&cached)? == *sum {
            log::info!(
                "flist {url} unchanged (md5 {sum}), using {}",
                cached.display()
            );
            return Ok(cached);
        }
    }
    let outcome = crate::error::no_panic(
        || format!("downloading flist {url}"),
        || Ok(agent.get(url).call()),
    )?;
    let resp = outcome.map_err(|e| match e {
        ureq::Error::Status(code, _) => {
            Error::store(format!("downloading flist {url}: HTTP status {code}"))
        }
        e => Error::store(format!("downloading flist {url}: {e}")),
    })?;
    // Named by its md5 once downloaded: the temporary file's name is a placeholder.
    let mut out = crate::sys::atomic::AtomicFile::new(&dir.join("download"))?;
    let tmp = out.path().to_path_buf();
    let mut body = resp.into_reader().take(MAX_FLIST + 1);
    let mut h = Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = body
            .read(&mut buf)
            .with_ctx(|| format!("downloading flist {url}"))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_FLIST {
            return Err(Error::format(format!(
                "flist {url} is larger than {MAX_FLIST} bytes"
            )));
        }
        h.update(&buf[..n]);
        out.file()
            .write_all(&buf[..n])
            .with_ctx(|| format!("writing {}", tmp.display()))?;
    }
    let got = hex::encode(h.finalize());
    if let Some(sum) = &expected {
        if *sum != got {
            return Err(Error::corrupt(format!(
                "flist {url}: md5 mismatch ({url}.md5 says {sum}, downloaded file has {got})"
            )));
        }
    }
    let dest = dir.join(&got);
    out.commit_as(&dest)?;
    log::info!("downloaded flist {url} to {}", dest.display());
    Ok(dest)
}
