//! `zvfs dedup INPUT...`: finds identical file contents across flists and local directories, and what file-level
//! and chunk-level deduplication save. The analysis is [`crate::diff::dedup`]; this is its
//! arguments and report printing.

use std::path::PathBuf;

use crate::diff::dedup::{dedup, Options, Report};
use crate::error::{ExitCode, Result};

/// Arguments of `zvfs dedup`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Flists (`.fl`) and local directories to compare, together.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Machine-readable output (JSON).
    #[arg(long)]
    pub json: bool,
    /// Also read every file of local directories whole, to include them in the
    /// chunk-level figures (by default those cover flists only).
    #[arg(long)]
    pub chunks: bool,
}

/// Analyse the inputs and print the report (text, or JSON with `--json`).
pub fn run(args: Args) -> Result<ExitCode> {
    let report = dedup(
        &args.inputs,
        &Options {
            chunks: args.chunks,
        },
    )?;
    let mut out = super::out::Out::new();
    if args.json {
        let s = serde_json::to_string_pretty(&report)
            .map_err(|e| crate::error::Error::io(format!("encoding JSON: {e}")))?;
        out.line(format_args!("{s}"))?;
    } else {
        print_text(&report, &mut out)?;
    }
    out.finish()?;
    Ok(ExitCode::Ok)
}

fn print_text(r: &Report, out: &mut super::out::Out) -> Result<()> {
    for (n, g) in r.groups.iter().enumerate() {
        out.line(format_args!(
            "group {}: {} copies of {} bytes, saves {} bytes",
            n + 1,
            g.copies,
            g.size,
            g.saves
        ))?;
        for f in &g.files {
            if f.hardlinks.is_empty() {
                out.line(format_args!("  {}:{}", f.input, f.path))?;
            } else {
                out.line(format_args!(
                    "  {}:{} (hardlinked as {})",
                    f.input,
                    f.path,
                    f.hardlinks.join(", ")
                ))?;
            }
        }
    }
    let c = &r.counters;
    out.line(format_args!(
        "inputs: {} ({} flists, {} directories); files: {} contents, {} bytes, {} more hardlinked paths",
        c.inputs, c.flists, c.directories, c.files, c.bytes, c.hardlinked_paths
    ))?;
    out.line(format_args!(
        "file-level dedup: {} groups, {} duplicate copies, saves {} bytes",
        r.groups.len(),
        r.duplicate_copies,
        r.file_level_saves
    ))?;
    let ch = &r.chunk_level;
    out.line(format_args!(
        "chunk-level dedup ({}): {} chunk references ({} bytes), {} unique ({} bytes), saves {} bytes",
        ch.scope, ch.references, ch.reference_bytes, ch.unique, ch.unique_bytes, ch.saves
    ))?;
    out.line(format_args!(
        "local files sampled: {}; files read whole: {}",
        c.files_sampled, c.files_read_whole
    ))?;
    for n in &r.notes {
        out.line(format_args!("note: {n}"))?;
    }
    Ok(())
}
