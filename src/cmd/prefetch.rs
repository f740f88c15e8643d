//! `zvfs prefetch add|show|clear`: the prefetch list of a v2 flist (its `zvfs_prefetch`
//! table), from a trace recorded by `zvfs mount --record-trace`. Edits are atomic (the
//! `zvfs config` machinery, `flist::v2::edit_atomically`). Also the warning and summary
//! lines `pack --prefetch` and `import --prefetch` print.

use std::path::PathBuf;

use crate::error::{ExitCode, Result};
use crate::flist::trace::{escape_path, format_line, TraceLine};
use crate::flist::v2::prefetch::{self, Resolved};
use crate::flist::{self};

/// Paths named in a skip warning.
const SHOWN: usize = 5;

/// Arguments of `zvfs prefetch`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to do with the flist's prefetch list.
    #[command(subcommand)]
    pub op: Op,
}

/// The flist a `zvfs prefetch` operation reads or edits.
#[derive(clap::Args, Debug)]
pub struct Meta {
    /// The flist (an rfs v2 / zvfs `.fl`).
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
}

/// `zvfs prefetch` operations.
#[derive(clap::Subcommand, Debug)]
pub enum Op {
    /// Store a trace as the prefetch list (replacing any): paths the flist lacks or that
    /// are not regular files are skipped with a warning; repeats keep the first.
    Add {
        /// The flist.
        #[command(flatten)]
        meta: Meta,
        /// The trace (`zvfs mount --record-trace`).
        trace: PathBuf,
    },
    /// Print the prefetch list: `MS CHUNK PATH` lines, or JSON.
    Show {
        /// The flist.
        #[command(flatten)]
        meta: Meta,
        /// One JSON array of {ms, chunk, ino, path} (path escaped as in traces).
        #[arg(long)]
        json: bool,
    },
    /// Remove the prefetch list.
    Clear {
        /// The flist.
        #[command(flatten)]
        meta: Meta,
    },
}

/// The warning (stderr) about trace lines left out, if any.
pub fn warn_skipped(r: &Resolved) {
    for (what, paths) in [
        ("not in the flist", &r.missing),
        ("not regular files", &r.not_files),
    ] {
        if paths.is_empty() {
            continue;
        }
        let first: Vec<String> = paths.iter().take(SHOWN).map(|p| escape_path(p)).collect();
        let more = if paths.len() > SHOWN { ", ..." } else { "" };
        eprintln!(
            "warning: {} trace paths {what}, skipped: {}{more}",
            paths.len(),
            first.join(" ")
        );
    }
}

/// The summary line of a stored trace.
pub fn summary_line(r: &Resolved) -> String {
    format!(
        "prefetch list: {} entries, {} files, skipped {} paths ({} repeated chunks dropped)",
        r.items.len(),
        r.files,
        r.skipped_paths(),
        r.duplicates
    )
}

/// Run `zvfs prefetch`.
pub fn run(args: Args) -> Result<ExitCode> {
    let mut out = super::out::Out::new();
    match args.op {
        Op::Add { meta, trace } => {
            let meta = &meta.meta;
            let lines = flist::trace::read_file(&trace)?;
            let r = prefetch::add_trace(meta, &lines)?;
            warn_skipped(&r);
            out.line(format_args!("{}", summary_line(&r)))?;
        }
        Op::Show { meta, json } => {
            let meta = &meta.meta;
            let fl = flist::open(meta)?;
            let items = fl.prefetch()?;
            let mut rows = Vec::with_capacity(items.len());
            for it in &items {
                let path = flist::path_of(fl.as_ref(), it.ino)?;
                let line = TraceLine {
                    ms: it.ms,
                    chunk: it.chunk,
                    path,
                };
                if json {
                    rows.push(serde_json::json!({
                        "ms": it.ms,
                        "chunk": it.chunk,
                        "ino": it.ino,
                        "path": escape_path(&line.path),
                    }));
                } else {
                    out.line(format_args!("{}", format_line(&line)))?;
                }
            }
            if json {
                out.line(format_args!("{}", serde_json::Value::Array(rows)))?;
            }
        }
        Op::Clear { meta } => {
            let meta = &meta.meta;
            if !prefetch::clear(meta)? {
                eprintln!("{}: had no prefetch list", meta.display());
            }
        }
    }
    out.finish()?;
    Ok(ExitCode::Ok)
}
