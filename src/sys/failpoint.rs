//! Failure injection for tests, off unless `ZVFS_FAILPOINTS` is set: the tests of the
//! mount supervisor make a worker panic on purpose to see it replaced. The variable holds
//! comma-separated `NAME=VALUE` points; the only one is `panic-on-lookup=NAME` (the FUSE
//! lookup of an entry called NAME panics). Read once per process. It changes nothing when
//! the variable is unset, which is how every real deployment runs.

use std::ffi::OsStr;
use std::sync::OnceLock;

/// The environment variable holding the failpoints.
pub const ENV: &str = "ZVFS_FAILPOINTS";

fn points() -> &'static Vec<(String, String)> {
    static POINTS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var(ENV)
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

/// Panic when the `panic-on-lookup` failpoint names `name`.
pub fn lookup(name: &OsStr) {
    if points()
        .iter()
        .any(|(k, v)| k == "panic-on-lookup" && OsStr::new(v) == name)
    {
        panic!("failpoint panic-on-lookup={}", name.to_string_lossy());
    }
}
