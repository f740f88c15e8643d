//! One progress line on a terminal's stderr, redrawn in place at most twice a second and
//! cleared at the end; nothing at all when stderr is not a terminal. It owns only the
//! drawing: what the line says is its caller's (pack, import).

use std::fmt;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a line is redrawn.
const EVERY: Duration = Duration::from_millis(500);

/// The progress line (see the module doc).
pub struct ProgressLine {
    on: bool,
    last: Instant,
    started: Instant,
    shown: bool,
}

impl Default for ProgressLine {
    fn default() -> Self {
        ProgressLine::new()
    }
}

impl ProgressLine {
    /// A line that draws only when stderr is a terminal; the first draw is not delayed.
    pub fn new() -> ProgressLine {
        ProgressLine {
            on: std::io::stderr().is_terminal(),
            last: Instant::now()
                .checked_sub(EVERY)
                .unwrap_or_else(Instant::now),
            started: Instant::now(),
            shown: false,
        }
    }

    /// Whether a redraw is due (a terminal, and the last one long enough ago).
    pub fn due(&self) -> bool {
        self.on && self.last.elapsed() >= EVERY
    }

    /// MB/s of `bytes` since the line was made.
    pub fn rate(&self, bytes: u64) -> f64 {
        bytes as f64 / 1e6 / self.started.elapsed().as_secs_f64().max(1e-6)
    }

    /// Draw `text` now (on a terminal).
    pub fn show(&mut self, text: fmt::Arguments<'_>) {
        if !self.on {
            return;
        }
        self.last = Instant::now();
        let _ = write!(std::io::stderr(), "\r{text}   ");
        self.shown = true;
    }

    /// Erase the line if it was drawn.
    pub fn clear(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r{:79}\r", "");
            self.shown = false;
        }
    }
}
