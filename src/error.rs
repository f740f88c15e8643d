//! The error type shared by every layer: a kind (for exit codes and errno), a message that
//! carries its context (file, path, URL, chunk) and, when there is one, the underlying
//! error it came from (an `io::Error`, a SQLite error) as its [`source`], so the real
//! errno (ENOSPC, EACCES, EROFS...) survives every layer. It never holds credentials.
//! [`ExitCode`] is the process exit status each error (or command outcome) maps to.
//!
//! [`source`]: std::error::Error::source

use std::fmt;

/// What went wrong, in the terms a caller acts on (errno, exit code, retry or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Local I/O failed (disk, permissions, full disk).
    Io,
    /// A path, entry or chunk does not exist.
    NotFound,
    /// Data failed verification (hash mismatch, bad ciphertext, bad compression).
    Corrupt,
    /// An flist or argument is malformed or of an unknown schema.
    Format,
    /// A store could not be reached or answered with an error.
    Store,
    /// A deadline passed.
    Timeout,
    /// The request is invalid (bad argument, hostile name).
    Invalid,
    /// Credentials were refused.
    Credentials,
}

impl ErrorKind {
    /// Every kind, for decoding one by name (as `{:?}` prints it), e.g. from a daemon's
    /// report.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Io,
        ErrorKind::NotFound,
        ErrorKind::Corrupt,
        ErrorKind::Format,
        ErrorKind::Store,
        ErrorKind::Timeout,
        ErrorKind::Invalid,
        ErrorKind::Credentials,
    ];
}

/// The underlying error an [`Error`] was made from.
type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of any layer: `kind` says what it means, `msg` says what and where (the whole
/// context chain and the cause, as printed to the user), and the source (if any) is the
/// original error, for [`Error::errno`] and for callers that want its details.
#[derive(Debug)]
pub struct Error {
    /// What it means.
    pub kind: ErrorKind,
    /// What failed and where, with the cause: the text printed to the user.
    pub msg: String,
    source: Option<Source>,
}

/// A result whose error is [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Run `f`, a call into a dependency that may panic on hostile input instead of failing,
/// turning such a panic into a [`ErrorKind::Store`] error saying `what()` got a
/// malformed reply: a server must not be able to crash zvfs. The one known case: ureq
/// 2.12 panics when a response header line has no `:` and that header is looked up
/// (`Content-Length` always is), found by the `http_response` fuzz target. The panic
/// message still goes to the panic hook (stderr).
pub(crate) fn no_panic<T>(
    what: impl FnOnce() -> String,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(Error::store(format!(
            "{}: malformed reply (the HTTP client failed on it)",
            what()
        )))
    })
}

impl Error {
    /// An error with no underlying source.
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Error {
            kind,
            msg: msg.into(),
            source: None,
        }
    }
    /// An error caused by `source` (kept, see [`std::error::Error::source`]).
    pub fn with_source(
        kind: ErrorKind,
        msg: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error {
            kind,
            msg: msg.into(),
            source: Some(source.into()),
        }
    }
    /// Local I/O failed.
    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, msg)
    }
    /// A path, entry or chunk does not exist.
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, msg)
    }
    /// Data failed verification.
    pub fn corrupt(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, msg)
    }
    /// Malformed flist or data of an unknown schema.
    pub fn format(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Format, msg)
    }
    /// An invalid request or argument.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, msg)
    }
    /// A store could not be reached or answered with an error.
    pub fn store(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Store, msg)
    }
    /// A deadline passed.
    pub fn timeout(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, msg)
    }

    /// Prefix the message with what was being done. The kind and the source are kept: the
    /// message already reads as the whole chain ("reading x: opening y: No space left"),
    /// so the source stays the original cause rather than a copy of each level.
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        Error {
            kind: self.kind,
            msg: format!("{ctx}: {}", self.msg),
            source: self.source,
        }
    }

    /// The `io::Error` this error came from, if it came from one.
    pub fn io_source(&self) -> Option<&std::io::Error> {
        self.source.as_deref()?.downcast_ref()
    }

    /// Whether this is a write into a pipe whose reader is gone (EPIPE).
    pub fn is_broken_pipe(&self) -> bool {
        self.io_source()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// The SQLite error this error came from, if it came from one.
    pub fn sqlite_source(&self) -> Option<&rusqlite::Error> {
        self.source.as_deref()?.downcast_ref()
    }

    /// The errno this error means, for FUSE replies: the OS's own when the cause was a
    /// system call (ENOSPC, EACCES, EROFS, ...), the one SQLite's result code stands for
    /// when SQLite failed (SQLITE_FULL: ENOSPC, ...), else one by kind: ENOENT for a missing
    /// path or entry, EINVAL for an invalid request and EIO for everything else (store,
    /// timeout and integrity failures included: a reader sees EIO, never ENOENT or
    /// ETIMEDOUT, for content that cannot be served).
    pub fn errno(&self) -> i32 {
        if let Some(n) = self.io_source().and_then(std::io::Error::raw_os_error) {
            return n;
        }
        if let Some(n) = self.sqlite_source().and_then(sqlite_errno) {
            return n;
        }
        match self.kind {
            ErrorKind::NotFound => libc::ENOENT,
            ErrorKind::Invalid => libc::EINVAL,
            _ => libc::EIO,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(s) => Some(&**s),
            None => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        Error::with_source(kind, e.to_string(), e)
    }
}

/// A failed system call made through rustix: as the `io::Error` it is (kind, errno and
/// source kept).
impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::from(std::io::Error::from(e))
    }
}

impl From<rusqlite::Error> for Error {
    /// SQLite failing to read or write its file (I/O error, full disk, read-only or
    /// unopenable file, permissions, locks, memory) is an [`ErrorKind::Io`] error; anything
    /// else (a corrupt file, not a database, an unexpected schema or value) is
    /// [`ErrorKind::Format`].
    fn from(e: rusqlite::Error) -> Self {
        let kind = if sqlite_errno(&e).is_some() {
            ErrorKind::Io
        } else {
            ErrorKind::Format
        };
        Error::with_source(kind, format!("sqlite: {e}"), e)
    }
}

/// The errno an SQLite failure of the file system (or memory) stands for; `None` for the
/// failures that say something about the database itself (corrupt, not a database,
/// constraint, SQL or type errors).
fn sqlite_errno(e: &rusqlite::Error) -> Option<i32> {
    use rusqlite::ErrorCode as C;
    Some(match e.sqlite_error_code()? {
        C::DiskFull => libc::ENOSPC,
        C::ReadOnly => libc::EROFS,
        C::PermissionDenied => libc::EACCES,
        C::DatabaseBusy | C::DatabaseLocked | C::FileLockingProtocolFailed => libc::EBUSY,
        C::OutOfMemory => libc::ENOMEM,
        C::NoLargeFileSupport => libc::EFBIG,
        C::SystemIoFailure | C::CannotOpen => libc::EIO,
        _ => return None,
    })
}

/// The exit status of `zvfs`: a small, stable table a supervisor or a script can rely on
/// (README, "Exit codes"). A command returns the code of its outcome; an error maps to one
/// by kind (`ExitCode::from(&err)`). Commands that report
/// a comparison or a check use the same numbers with their documented meaning, through the
/// named constants ([`ExitCode::DIFFERENT`], ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// The command did what was asked.
    Ok = 0,
    /// The command failed (local I/O, a missing path or entry, a malformed flist, corrupt
    /// data, refused credentials), or what it checked is not as it should be.
    Failure = 1,
    /// Usage error: a bad command line (unknown flag, bad store URL, reserved tag...) or a
    /// request that cannot be carried out as given ([`ErrorKind::Invalid`]). Nothing was
    /// changed.
    Usage = 2,
    /// A store could not be reached, failed or lacked a chunk, or a deadline passed: the
    /// command and its flists were fine, so retrying later (or with other stores) may
    /// succeed. The number is sysexits.h's `EX_TEMPFAIL`.
    TempFail = 75,
}

impl ExitCode {
    /// `diff`: the flists differ (diff(1)'s 1).
    pub const DIFFERENT: ExitCode = ExitCode::Failure;
    /// `diff`: it could not compare (diff(1)'s 2, "trouble"), whatever the error.
    pub const TROUBLE: ExitCode = ExitCode::Usage;
    /// `verify`: a chunk is missing, corrupt or unreachable.
    pub const PROBLEMS: ExitCode = ExitCode::Failure;
    /// `mounts --check`: the target is not a healthy zvfs mount.
    pub const UNHEALTHY: ExitCode = ExitCode::Failure;
    /// `cache fsck`: it removed a bad, empty or misplaced file (fsck(8)'s "errors
    /// corrected" is 1; 2 keeps the zvfs status this command always had).
    pub const REPAIRED: ExitCode = ExitCode::Usage;

    /// The number the process exits with.
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl From<&Error> for ExitCode {
    fn from(e: &Error) -> Self {
        match e.kind {
            ErrorKind::Invalid => ExitCode::Usage,
            ErrorKind::Store | ErrorKind::Timeout => ExitCode::TempFail,
            ErrorKind::Io
            | ErrorKind::NotFound
            | ErrorKind::Corrupt
            | ErrorKind::Format
            | ErrorKind::Credentials => ExitCode::Failure,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c as u8)
    }
}

/// Attach context to any fallible result whose error converts into [`Error`].
pub trait Context<T> {
    /// Prefix the error's message with `what` (see [`Error::context`]).
    fn ctx<D: fmt::Display>(self, what: D) -> Result<T>;
    /// Like [`Context::ctx`], building the context only when there is an error.
    fn with_ctx<D: fmt::Display, F: FnOnce() -> D>(self, f: F) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn ctx<D: fmt::Display>(self, what: D) -> Result<T> {
        self.map_err(|e| e.into().context(what))
    }
    fn with_ctx<D: fmt::Display, F: FnOnce() -> D>(self, f: F) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn error_is_send_sync() {
        assert_send_sync::<Error>();
    }

    /// A tmpfs mounted on a directory with options `opts` (root only), unmounted when
    /// dropped.
    struct Tmpfs(PathBuf);

    impl Tmpfs {
        fn mount(dir: &Path, opts: &str) -> Option<Self> {
            if !rustix::process::geteuid().is_root() {
                eprintln!("skipped: mounting a tmpfs needs root");
                return None;
            }
            let st = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
                .arg(dir)
                .status()
                .expect("running mount");
            assert!(st.success(), "mount -t tmpfs -o {opts} {}", dir.display());
            Some(Tmpfs(dir.to_path_buf()))
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }

    /// The errno of real failing system calls reaches `errno()` through `?` and context.
    #[test]
    fn errno_is_the_system_calls_own() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let cases: [(std::io::Result<std::fs::File>, i32); 3] = [
            (std::fs::File::open(file.join("below")), libc::ENOTDIR),
            (std::fs::File::create(t.path()), libc::EISDIR),
            (std::fs::File::open(t.path().join("absent")), libc::ENOENT),
        ];
        for (res, errno) in cases {
            let e: Error = res.ctx("opening").unwrap_err();
            assert_eq!(e.errno(), errno, "{e}");
            let src = std::error::Error::source(&e).expect("the io::Error is the source");
            let io = src.downcast_ref::<std::io::Error>().unwrap();
            assert_eq!(io.raw_os_error(), Some(errno));
            assert!(e.msg.starts_with("opening: "), "{e}");
        }
        // Read-only file system: EROFS, not EIO.
        let ro = t.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        if let Some(_m) = Tmpfs::mount(&ro, "ro,size=64k") {
            let e: Error = std::fs::File::create(ro.join("f"))
                .with_ctx(|| "creating f")
                .unwrap_err();
            assert_eq!((e.kind, e.errno()), (ErrorKind::Io, libc::EROFS), "{e}");
        }
        // Full disk: ENOSPC.
        let full = t.path().join("full");
        std::fs::create_dir(&full).unwrap();
        if let Some(_m) = Tmpfs::mount(&full, "size=64k") {
            use std::io::Write;
            let mut f = std::fs::File::create(full.join("f")).unwrap();
            let e: Error = f
                .write_all(&vec![0u8; 1 << 20])
                .and_then(|()| f.sync_all())
                .ctx("writing f")
                .unwrap_err();
            assert_eq!((e.kind, e.errno()), (ErrorKind::Io, libc::ENOSPC), "{e}");
            assert!(e.msg.contains("No space left"), "{e}");
        }
    }

    /// Errors without a system call behind them get their errno from the kind; a store
    /// failure or a deadline is EIO for a reader.
    #[test]
    fn errno_by_kind_without_a_source() {
        assert_eq!(Error::not_found("x").errno(), libc::ENOENT);
        assert_eq!(Error::invalid("x").errno(), libc::EINVAL);
        for e in [
            Error::store("x"),
            Error::timeout("x"),
            Error::corrupt("x"),
            Error::format("x"),
            Error::io("x"),
        ] {
            assert_eq!(e.errno(), libc::EIO, "{:?}", e.kind);
            assert!(std::error::Error::source(&e).is_none());
        }
        let e = Error::not_found("x").context("y");
        assert_eq!((e.kind, e.msg.as_str()), (ErrorKind::NotFound, "y: x"));
    }

    /// SQLite failing on a full disk is an I/O error with ENOSPC, not a format error; a
    /// file that is not a database still is a format error.
    #[test]
    fn sqlite_io_failures_are_io_errors() {
        let t = tempfile::tempdir().unwrap();
        let junk = t.path().join("junk.fl");
        std::fs::write(&junk, vec![b'j'; 8192]).unwrap();
        let c = rusqlite::Connection::open(&junk).unwrap();
        let e: Error = c
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .ctx("reading junk.fl")
            .unwrap_err();
        assert_eq!((e.kind, e.errno()), (ErrorKind::Format, libc::EIO), "{e}");
        assert!(e.sqlite_source().is_some());

        let full = t.path().join("full");
        std::fs::create_dir(&full).unwrap();
        let Some(_m) = Tmpfs::mount(&full, "size=64k") else {
            return;
        };
        let c = rusqlite::Connection::open(full.join("a.fl")).unwrap();
        c.execute("CREATE TABLE t (b BLOB)", []).unwrap();
        let blob = vec![7u8; 16 << 10];
        let e: Error = (0..64)
            .try_for_each(|_| c.execute("INSERT INTO t VALUES (?1)", [&blob]).map(drop))
            .ctx("writing a.fl")
            .unwrap_err();
        assert_eq!((e.kind, e.errno()), (ErrorKind::Io, libc::ENOSPC), "{e}");
        assert!(e.msg.starts_with("writing a.fl: sqlite: "), "{e}");

        // A read-only database: EROFS.
        drop(c);
        let ro = rusqlite::Connection::open_with_flags(
            full.join("a.fl"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let e: Error = ro.execute("DELETE FROM t", []).unwrap_err().into();
        assert_eq!((e.kind, e.errno()), (ErrorKind::Io, libc::EROFS), "{e}");
    }

    #[test]
    fn exit_codes_by_kind() {
        let code = |k| ExitCode::from(&Error::new(k, "x")).code();
        assert_eq!(code(ErrorKind::Invalid), 2);
        assert_eq!(code(ErrorKind::Store), 75);
        assert_eq!(code(ErrorKind::Timeout), 75);
        for k in [
            ErrorKind::Io,
            ErrorKind::NotFound,
            ErrorKind::Corrupt,
            ErrorKind::Format,
            ErrorKind::Credentials,
        ] {
            assert_eq!(code(k), 1, "{k:?}");
        }
    }
}
