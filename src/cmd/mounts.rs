//! `zvfs mounts [--json]` lists every zvfs (or rfs/g8ufs) mount of the host (with each
//! daemon's worker and restarts), `zvfs mounts --upgrade TARGET|--all` upgrades daemons
//! in place, `zvfs
//! mounts --check TARGET` tells a supervisor whether one is healthy, `zvfs mounts --stats
//! [--json] [TARGET]` shows the live counters of each FUSE mount's daemon (stores, cache,
//! prefetch), and `zvfs umount
//! TARGET` takes one down and stops its daemon once nothing uses it. The command lines
//! and the printing; what is mounted, the probe and the unmount are [`crate::daemon`]'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::daemon::{Health, Kind};
use crate::error::{Error, ExitCode, Result};

/// Arguments of `zvfs mounts`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON (one array of objects) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when TARGET is a healthy zvfs mount (mounted, daemon alive, answering),
    /// 1 otherwise (a supervisor's readiness/health test).
    #[arg(long, value_name = "TARGET", conflicts_with_all = ["json", "stats"])]
    pub check: Option<PathBuf>,
    /// Show each FUSE mount's live statistics (per store: chunks, bytes, latency, errors;
    /// cache hits and misses; prefetch progress), asked of its daemon (1 s at most each).
    #[arg(long)]
    pub stats: bool,
    /// Upgrade in place: the daemon of TARGET (or of every mount, with --all) executes
    /// the zvfs binary now on disk, keeping its mounts; waits (10 s at most each) until a
    /// new worker serves.
    #[arg(long, conflicts_with_all = ["json", "stats", "check"])]
    pub upgrade: bool,
    /// With --upgrade: every zvfs mount daemon of the host.
    #[arg(long, requires = "upgrade", conflicts_with = "target")]
    pub all: bool,
    /// With --stats: only this mount (a FUSE mount, bind or overlay); with --upgrade: the
    /// mount whose daemon to upgrade.
    #[arg(required_if_eq_all = [("upgrade", "true"), ("all", "false")])]
    pub target: Option<PathBuf>,
}

/// Arguments of `zvfs umount`.
#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    /// Seconds to wait for the daemon to exit before killing it.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// The mountpoint (FUSE mount, bind or overlay).
    pub target: PathBuf,
}

#[derive(Serialize)]
struct Row<'a> {
    target: &'a Path,
    kind: Kind,
    pid: Option<u32>,
    /// The worker process serving for the daemon `pid` (its supervisor).
    worker: Option<u32>,
    /// New workers the supervisor started after one died.
    restarts: Option<u32>,
    /// The serving worker's generation (one more per new worker, upgrades included).
    generation: Option<u64>,
    healthy: bool,
    problem: Option<String>,
    flist: Option<&'a Path>,
    url: Option<&'a str>,
    md5: Option<&'a str>,
    cache: Option<&'a Path>,
    cache_size: Option<u64>,
    cache_used: Option<u64>,
    lower: Option<&'a Path>,
    upper: Option<&'a Path>,
}

/// Run `zvfs mounts`.
pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(t) = &args.check {
        let t = crate::sys::mountinfo::absolute(t);
        return Ok(match crate::daemon::check(&t)? {
            Health::Healthy => ExitCode::Ok,
            Health::NotZvfs => {
                eprintln!("zvfs: {} is not a zvfs mount", t.display());
                ExitCode::UNHEALTHY
            }
            Health::Unhealthy(why) => {
                eprintln!("zvfs: {} is not healthy: {why}", t.display());
                ExitCode::UNHEALTHY
            }
        });
    }
    if args.upgrade {
        return upgrade(args.target.as_deref());
    }
    if args.target.is_some() && !args.stats {
        return Err(Error::invalid("TARGET goes with --stats or --upgrade"));
    }
    if args.stats {
        return stats(args.target.as_deref(), args.json);
    }
    let mounts = crate::daemon::list()?;
    let rows: Vec<Row> = mounts
        .iter()
        .map(|m| {
            let health = m.health();
            let s = m.state.as_ref();
            Row {
                target: &m.target,
                kind: m.kind,
                pid: m.pid,
                worker: s.and_then(|s| s.worker),
                restarts: s.map(|s| s.restarts),
                generation: s.map(|s| s.generation),
                healthy: health.is_ok(),
                problem: health.err(),
                flist: s.map(|s| s.flist.as_path()),
                url: s.and_then(|s| s.url.as_deref()),
                md5: s.map(|s| s.md5.as_str()),
                cache: s.map(|s| s.cache.as_path()),
                cache_size: s.map(|s| s.cache_size),
                cache_used: s.and_then(|s| crate::cache::quota::recorded_usage(&s.cache)),
                lower: m.lower.as_deref(),
                upper: m.upper.as_deref(),
            }
        })
        .collect();
    let mut out = super::out::Out::new();
    if args.json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| Error::invalid(format!("encoding JSON: {e}")))?;
        out.line(format_args!("{text}"))?;
        out.finish()?;
        return Ok(ExitCode::Ok);
    }
    out.line(format_args!(
        "TARGET\tKIND\tPID\tWORKER\tRESTARTS\tHEALTHY\tFLIST\tCACHE\tCACHE_USED"
    ))?;
    let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    for r in &rows {
        out.line(format_args!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.target.display(),
            r.kind.name(),
            opt(r.pid.map(|p| p.to_string())),
            opt(r.worker.map(|p| p.to_string())),
            opt(r.restarts.map(|p| p.to_string())),
            if r.healthy { "yes" } else { "no" },
            opt(r.flist.map(|p| p.display().to_string())),
            opt(r.cache.map(|p| p.display().to_string())),
            opt(r.cache_used.map(|u| u.to_string())),
        ))?;
    }
    out.finish()?;
    Ok(ExitCode::Ok)
}

/// `zvfs mounts --stats [--json] [TARGET]`.
fn stats(target: Option<&Path>, json: bool) -> Result<ExitCode> {
    let reports = crate::daemon::stats(target)?;
    let mut out = super::out::Out::new();
    if json {
        let text = serde_json::to_string_pretty(&reports)
            .map_err(|e| Error::invalid(format!("encoding JSON: {e}")))?;
        out.line(format_args!("{text}"))?;
        out.finish()?;
        return Ok(ExitCode::Ok);
    }
    let ms = |l: Option<f64>| l.map_or_else(|| "-".to_string(), |l| format!("{l:.2} ms"));
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            out.line(format_args!(""))?;
        }
        let pid = r.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
        let Some(st) = &r.stats else {
            let why = r.problem.as_deref().unwrap_or("no stats");
            out.line(format_args!("{} (pid {pid}): {why}", r.target.display()))?;
            continue;
        };
        out.line(format_args!(
            "{} (pid {pid}, up {} s)",
            r.target.display(),
            st.uptime_secs
        ))?;
        for s in &st.stores {
            out.line(format_args!(
                "  store {}: {} chunks, {} bytes, p50 {}, p99 {}, {} errors ({} attempts, {} failed)",
                s.name,
                s.chunks,
                s.bytes,
                ms(s.latency_ms_p50),
                ms(s.latency_ms_p99),
                s.errors,
                s.attempts,
                s.failures
            ))?;
        }
        let c = &st.cache;
        out.line(format_args!(
            "  cache: {} hits, {} misses, {} fetches, {} merged, {} bad files, {} write errors",
            c.hits, c.misses, c.fetches, c.merged, c.bad_files, c.write_errors
        ))?;
        let l = &st.link;
        out.line(format_args!(
            "  link: round trip {}, {:.1} Mbit/s, {} fetches in flight (at most {} so far), {} kept in flight ahead of readers",
            ms(l.rtt_ms),
            l.mbit,
            l.inflight,
            l.peak,
            l.target
        ))?;
        let p = &st.prefetch;
        out.line(format_args!(
            "  prefetch: {} planned, {} fetched, {} cached, {} skipped, {} failed, {}",
            p.planned,
            p.fetched,
            p.cached,
            p.skipped,
            p.failed,
            if p.finished {
                "finished"
            } else {
                "not finished"
            }
        ))?;
    }
    out.finish()?;
    Ok(ExitCode::Ok)
}

/// `zvfs mounts --upgrade TARGET|--all`: one line per mount; a failure is reported (on
/// stderr, naming the target) and the others still upgraded.
fn upgrade(target: Option<&Path>) -> Result<ExitCode> {
    let targets = match target {
        Some(t) => vec![t.to_path_buf()],
        None => crate::daemon::upgradable()?,
    };
    let mut out = super::out::Out::new();
    let mut failed = false;
    for t in &targets {
        match crate::daemon::upgrade(t) {
            Ok(u) => out.line(format_args!(
                "{}: upgraded (daemon {}, worker {} -> {}, generation {})",
                u.target.display(),
                u.pid,
                u.old_worker,
                u.worker,
                u.generation
            ))?,
            Err(e) => {
                eprintln!("zvfs: error: {e}");
                failed = true;
            }
        }
    }
    out.finish()?;
    Ok(if failed {
        ExitCode::Failure
    } else {
        ExitCode::Ok
    })
}

/// Run `zvfs umount TARGET`.
pub fn umount(args: UmountArgs) -> Result<ExitCode> {
    crate::daemon::umount(&args.target, Duration::from_secs_f64(args.timeout.max(0.1)))?;
    Ok(ExitCode::Ok)
}
