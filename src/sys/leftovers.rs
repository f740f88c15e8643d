//! Temporary files left behind by processes that died (kill -9, power loss): how a writer
//! marks its temporary file as in use, and how the next run of a command decides that a
//! temporary file is abandoned and removes it.
//!
//! A temporary file carries its writer's pid in its name, and the writer holds an
//! exclusive `flock` on it for as long as it works on it. A file is abandoned only when
//! all of these hold: the pid is not this process; nobody holds the lock (a live writer,
//! even one in another pid namespace, always does); the file is older than [`MIN_AGE`]
//! (covering the instant between a writer creating the file and locking it); and its pid
//! is not alive, or the file is older than [`MAX_AGE`] (the pid was reused by an unrelated
//! process). Callers only ever pass names that match their own exact patterns.
//!
//! This module removes nothing it was not asked about and never follows symlinks.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A temporary file younger than this is never abandoned.
pub const MIN_AGE: Duration = Duration::from_secs(2);
/// A temporary file older than this whose lock is free is abandoned even if a process
/// with its pid runs (a reused pid).
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// Take the writer's lock on a temporary file it just created (held until `f` is closed).
pub fn lock_writer(f: &File) -> std::io::Result<()> {
    f.lock()
}

/// Whether a process with this pid exists (in this pid namespace).
pub fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}

/// Whether the temporary file at `path`, written by process `pid`, is abandoned (see the
/// module documentation). Any doubt (unreadable, locked, young) answers `false`.
pub fn is_abandoned(path: &Path, pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !md.is_file() {
        return false;
    }
    let age = md
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or(Duration::ZERO);
    if age < MIN_AGE || (age < MAX_AGE && pid_alive(pid)) {
        return false;
    }
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(_) => return false,
    };
    // The lock is released when `f` is dropped, after the caller's decision; a writer
    // cannot start on a file it did not create itself, so nothing can take it over.
    f.try_lock().is_ok()
}

/// Remove `path` if [`is_abandoned`]; returns whether it was removed.
pub fn remove_if_abandoned(path: &Path, pid: u32) -> bool {
    if !is_abandoned(path, pid) {
        return false;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {
            log::info!(
                "removed {} (left by process {pid}, which is gone)",
                path.display()
            );
            true
        }
        Err(_) => false,
    }
}

/// Remove the abandoned temporary files directly in `dir` whose names `parse` accepts
/// (it returns the writer's pid for a name of its exact pattern, `None` otherwise).
/// Returns how many were removed; an unreadable directory removes nothing.
pub fn clean_dir(dir: &Path, parse: impl Fn(&str) -> Option<u32>) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(pid) = parse(name) {
            if remove_if_abandoned(&ent.path(), pid) {
                n += 1;
            }
        }
    }
    n
}

/// The pid in `<prefix><pid><suffix>` where the digits are all of the middle part
/// (`suffix` may be empty).
pub fn pid_between(name: &str, prefix: &str, suffix: &str) -> Option<u32> {
    let mid = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if mid.is_empty() || !mid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    mid.parse().ok()
}

/// Whether `s` is non-empty lowercase hex.
pub fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backdate(p: &Path, secs: u64) {
        File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn only_old_unlocked_files_of_dead_pids_are_abandoned() {
        let d = tempfile::tempdir().unwrap();
        // A pid that is not running: the largest pid the kernel can hand out, plus one.
        let dead = 4_194_305u32;
        assert!(!pid_alive(dead));
        assert!(pid_alive(std::process::id()));
        let p = d.path().join("x");
        std::fs::write(&p, b"x").unwrap();
        assert!(!is_abandoned(&p, dead), "too young");
        backdate(&p, 10);
        assert!(is_abandoned(&p, dead));
        assert!(!is_abandoned(&p, std::process::id()), "our own");
        assert!(
            !is_abandoned(&p, 1),
            "pid 1 is alive and the file is recent"
        );
        backdate(&p, 2 * 3600);
        assert!(is_abandoned(&p, 1), "a reused pid after MAX_AGE");
        // A writer holding the lock (as one in another pid namespace would) keeps it.
        let f = File::options().write(true).open(&p).unwrap();
        lock_writer(&f).unwrap();
        assert!(!is_abandoned(&p, dead), "locked by a live writer");
        drop(f);
        assert!(remove_if_abandoned(&p, dead));
        assert!(!p.exists());
        assert_eq!(
            pid_between(".a.fl.zvfs-edit.123", ".a.fl.zvfs-edit.", ""),
            Some(123)
        );
        assert_eq!(
            pid_between(".a.fl.zvfs-edit.12x", ".a.fl.zvfs-edit.", ""),
            None
        );
        assert_eq!(
            pid_between(".a.fl.zvfs-edit.", ".a.fl.zvfs-edit.", ""),
            None
        );
    }
}
