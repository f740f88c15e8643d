//! The error type shared by every layer: a kind (for exit codes and errno) and a message
//! that carries its context (file, path, URL, chunk). It never holds credentials.

use std::fmt;

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

#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub msg: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Error {
            kind,
            msg: msg.into(),
        }
    }
    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, msg)
    }
    pub fn corrupt(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, msg)
    }
    pub fn format(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Format, msg)
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, msg)
    }
    pub fn store(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Store, msg)
    }
    pub fn timeout(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, msg)
    }

    /// Prefix the message with what was being done.
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        Error {
            kind: self.kind,
            msg: format!("{ctx}: {}", self.msg),
        }
    }

    /// The errno a FUSE reply should carry for this error.
    pub fn errno(&self) -> i32 {
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

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::format(format!("sqlite: {e}"))
    }
}

/// Attach context to any fallible result whose error converts into [`Error`].
pub trait Context<T> {
    fn ctx<D: fmt::Display>(self, what: D) -> Result<T>;
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
