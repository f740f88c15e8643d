//! The process's logger: timestamped lines `TIME LEVEL zvfs[PID]: message` on stderr,
//! or appended to a log file (a mount daemon's `--log`). It formats and writes lines; it
//! decides nothing about what is logged.

use std::io::Write;
use std::sync::Mutex;

struct Logger {
    level: log::LevelFilter,
}

/// Where log lines go: stderr unless a file was set with [`log_to_file`].
static LOG_FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Send log lines to `path` (appending) from now on.
pub fn log_to_file(path: &std::path::Path) -> crate::error::Result<()> {
    use crate::error::Context;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_ctx(|| format!("opening log file {}", path.display()))?;
    if let Ok(mut g) = LOG_FILE.lock() {
        *g = Some(f);
    }
    Ok(())
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
    }
    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let line = format!(
            "{now:.3} {} zvfs[{}]: {}\n",
            r.level(),
            std::process::id(),
            r.args()
        );
        if let Ok(mut g) = LOG_FILE.lock() {
            if let Some(f) = g.as_mut() {
                let _ = f.write_all(line.as_bytes());
                return;
            }
        }
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    fn flush(&self) {}
}

/// Install the logger (stderr). `RUST_LOG=debug` also enables debug lines.
pub fn init_logging(debug: bool) {
    let debug = debug
        || std::env::var("RUST_LOG")
            .map(|v| v.contains("debug"))
            .unwrap_or(false);
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let logger = Box::new(Logger { level });
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
