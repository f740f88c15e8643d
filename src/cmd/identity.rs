//! `zvfs identity PATH...`: print the content identity of local files (partial and full
//! checksums, formats.md section 6), and time the partial checksum for the benchmark.
//! Reads local files only; it never touches flists or stores.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::{Context, ExitCode, Result};
use crate::identity::partial_checksum;

/// Arguments of `zvfs identity`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Local files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Only the partial checksum (do not read the files whole).
    #[arg(long)]
    pub partial: bool,
    /// Time N partial checksums of each file (open + fstat + samples + hash each time)
    /// and print min / median / mean per file.
    #[arg(long, value_name = "N")]
    pub time: Option<u32>,
}

fn partial_of(path: &std::path::Path) -> Result<(u64, [u8; 32])> {
    let f = std::fs::File::open(path).with_ctx(|| format!("opening {}", path.display()))?;
    let size = f
        .metadata()
        .with_ctx(|| format!("{}", path.display()))?
        .len();
    let p = partial_checksum(&f, size).with_ctx(|| format!("{}", path.display()))?;
    Ok((size, p))
}

fn full_checksum(path: &std::path::Path) -> Result<[u8; 32]> {
    let what = || format!("reading {}", path.display());
    let mut f = std::fs::File::open(path).with_ctx(what)?;
    crate::identity::checksum_reader(&mut f).with_ctx(what)
}

/// Print each file's size and checksums (hex), or with `--time` the partial checksum's
/// timings.
pub fn run(args: Args) -> Result<ExitCode> {
    let mut out = super::out::Out::new();
    for path in &args.paths {
        let (size, partial) = partial_of(path)?;
        if let Some(n) = args.time {
            let n = n.max(1);
            let mut times: Vec<Duration> = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let t = Instant::now();
                let r = partial_of(path)?;
                times.push(t.elapsed());
                if r.1 != partial {
                    return Err(crate::error::Error::io(format!(
                        "{}: changed while being timed",
                        path.display()
                    )));
                }
            }
            times.sort();
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            let mean = times.iter().map(|&d| us(d)).sum::<f64>() / times.len() as f64;
            out.line(format_args!(
                "partial checksum of {} ({size} bytes): {n} runs, min {:.1} us, median {:.1} us, p99 {:.1} us, mean {:.1} us",
                path.display(),
                us(times[0]),
                us(times[times.len() / 2]),
                us(times[(times.len() * 99 / 100).min(times.len() - 1)]),
                mean
            ))?;
            continue;
        }
        let full = if args.partial {
            "-".to_string()
        } else {
            hex::encode(full_checksum(path)?)
        };
        out.line(format_args!(
            "{} {} {} {}",
            hex::encode(partial),
            full,
            size,
            path.display()
        ))?;
    }
    out.finish()?;
    Ok(ExitCode::Ok)
}
