//! Standard output of commands. A closed pipe (`zvfs ls ... | head`) ends the output
//! quietly instead of failing or panicking; other write errors are errors. Commands print
//! through it only; it knows nothing of what they print.

use crate::error::{Error, Result};

/// Buffered standard output for reports. A closed pipe (`zvfs diff A B | head`) ends the
/// output quietly (later lines are dropped) instead of failing or panicking.
pub struct Out {
    w: std::io::BufWriter<std::io::Stdout>,
    closed: bool,
}

impl Default for Out {
    fn default() -> Self {
        Self::new()
    }
}

impl Out {
    /// Output to this process's stdout, buffered.
    pub fn new() -> Out {
        Out {
            w: std::io::BufWriter::new(std::io::stdout()),
            closed: false,
        }
    }

    /// Write one line (a newline is added).
    pub fn line(&mut self, text: std::fmt::Arguments<'_>) -> Result<()> {
        use std::io::Write;
        if self.closed {
            return Ok(());
        }
        let r = self.w.write_fmt(text).and_then(|_| self.w.write_all(b"\n"));
        self.check(r)
    }

    /// Flush what is buffered.
    pub fn finish(mut self) -> Result<()> {
        use std::io::Write;
        if self.closed {
            return Ok(());
        }
        let r = self.w.flush();
        self.check(r)
    }

    fn check(&mut self, r: std::io::Result<()>) -> Result<()> {
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(Error::from(e).context("writing to standard output")),
        }
    }
}
