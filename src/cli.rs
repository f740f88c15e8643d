//! Command-line parsing and dispatch. Each subcommand's arguments and code live in its
//! own module under `cmd`; this module only wires them together, maps errors to exit
//! codes (the one place an error becomes an [`ExitCode`]) and prints the shell
//! completions and manual pages generated from these same definitions. It holds no logic
//! of its own.

use std::io::Write;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::cmd;
use crate::error::{Context, ExitCode, Result};

/// The exit-code table, shown by `--help` and in the manual page (README, "Exit codes").
const EXIT_CODES: &str = "\
Exit codes:
  0   success (diff: identical; mounts --check: healthy; cache fsck: nothing to repair)
  1   failure: I/O, not found, malformed flist, corrupt data, refused credentials
      (diff: different; verify: a chunk is missing or bad; mounts --check: unhealthy)
  2   usage: bad arguments or an invalid request, nothing done
      (diff: any error; cache fsck: repaired something)
  75  temporary: a store unreachable, failing or without a chunk, or a deadline
      passed; retrying later may succeed";

/// The command line of `zvfs`: global flags and one subcommand.
#[derive(Parser, Debug)]
#[command(
    name = "zvfs",
    version,
    about = "Pack, mount and unpack Zero-OS flists",
    after_help = EXIT_CODES,
    long_about = None
)]
pub struct Cli {
    /// Verbose logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; each variant's doc is its one-line help.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pack a directory into an flist plus chunks in stores.
    Pack(cmd::pack::Args),
    /// Import a container image (registry, OCI layout, docker-archive) as an flist, with
    /// no Docker daemon.
    Import(cmd::import::Args),
    /// Restore a tree (or some paths of it) from an flist.
    Unpack(cmd::unpack::Args),
    /// Summary of an flist: entries per type, bytes, chunks, dedup, tags, routes.
    Inspect(cmd::inspect::InspectArgs),
    /// List a directory of an flist.
    Ls(cmd::inspect::LsArgs),
    /// Show one entry of an flist.
    Stat(cmd::inspect::StatArgs),
    /// Print a file of an flist to stdout.
    Cat(cmd::inspect::CatArgs),
    /// Groups of identical files across flists and directories, and what dedup saves.
    Dedup(cmd::dedup::Args),
    /// What changed between two flists (exit 0 identical, 1 different, 2 error).
    Diff(cmd::diff::Args),
    /// Partial and full checksums of local files (`--time N` times the partial one).
    Identity(cmd::identity::Args),
    /// Check that every chunk of an flist is in its stores (--deep: fetched and verified).
    Verify(cmd::verify::Args),
    /// Copy every chunk of an flist to other stores (optionally updating its routes).
    Clone(cmd::clone::Args),
    /// List or edit an flist's tags and store routes.
    Config(cmd::config::Args),
    /// Store, show or clear an flist's prefetch list (a trace from `mount --record-trace`).
    Prefetch(cmd::prefetch::Args),
    /// Rewrite an flist (e.g. a legacy .flist) as a v2 .fl with re-encoded chunks.
    Convert(cmd::convert::Args),
    /// Mount an flist over FUSE (read-only, or writable through an overlay).
    Mount(cmd::mount::Args),
    /// List zvfs mounts (--check TARGET: exit 0 when it is mounted and healthy; --stats:
    /// live counters of each daemon).
    Mounts(cmd::mounts::Args),
    /// Unmount a zvfs mount (overlay first); its daemon exits with its last user.
    Umount(cmd::mounts::UmountArgs),
    /// Inspect and maintain a chunk cache directory.
    Cache(cmd::cache::Args),
    /// Fetch whole files (or the whole flist) into a chunk cache ahead of use.
    Warm(cmd::warm::Args),
    /// OCI containers whose root filesystem is an flist (prepare a bundle; poststop hook).
    Oci(crate::node::oci::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the zvfs(1) manual page, or write zvfs.1 and a zvfs-COMMAND.1 per command to DIR.
    Man(ManArgs),
}

/// Arguments of `zvfs completions`.
#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `zvfs man`.
#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write zvfs.1 and one zvfs-COMMAND.1 page per (sub)command here instead of printing
    /// zvfs(1) to stdout.
    pub dir: Option<PathBuf>,
}

/// Print the completion script for `shell`, generated from [`Cli`].
fn completions(a: CompletionsArgs) -> Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "zvfs", &mut out);
    std::io::stdout().write_all(&out).ctx("writing to stdout")?;
    Ok(ExitCode::Ok)
}

/// Print zvfs(1), or write every page into `dir`, generated from [`Cli`].
fn man(a: ManArgs) -> Result<ExitCode> {
    match a.dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), &dir)
            .with_ctx(|| format!("writing manual pages to {}", dir.display()))?,
        None => {
            let mut out = Vec::new();
            // As generate_to does: no page for clap's `help` subcommand.
            let cmd = Cli::command().disable_help_subcommand(true);
            clap_mangen::Man::new(cmd).render(&mut out)?;
            std::io::stdout().write_all(&out).ctx("writing to stdout")?;
        }
    }
    Ok(ExitCode::Ok)
}

/// Run the parsed command; returns the process exit code: the command's own, or the one
/// its error maps to (after printing it).
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Pack(a) => cmd::pack::run(a),
        Command::Import(a) => cmd::import::run(a),
        Command::Unpack(a) => cmd::unpack::run(a),
        Command::Inspect(a) => cmd::inspect::inspect(a),
        Command::Ls(a) => cmd::inspect::ls(a),
        Command::Stat(a) => cmd::inspect::stat(a),
        Command::Cat(a) => cmd::inspect::cat(a),
        Command::Dedup(a) => cmd::dedup::run(a),
        Command::Diff(a) => cmd::diff::run(a),
        Command::Identity(a) => cmd::identity::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Clone(a) => cmd::clone::run(a),
        Command::Config(a) => cmd::config::run(a),
        Command::Prefetch(a) => cmd::prefetch::run(a),
        Command::Convert(a) => cmd::convert::run(a),
        Command::Mount(a) => cmd::mount::run(a),
        Command::Mounts(a) => cmd::mounts::run(a),
        Command::Umount(a) => cmd::mounts::umount(a),
        Command::Cache(a) => cmd::cache::run(a),
        Command::Warm(a) => cmd::warm::run(a),
        Command::Oci(a) => crate::node::oci::run(a),
        Command::Completions(a) => completions(a),
        Command::Man(a) => man(a),
    };
    match result {
        Ok(code) => code,
        // A reader that stopped reading (`zvfs ls ... | head`) is not a failure.
        Err(e) if e.is_broken_pipe() => ExitCode::Ok,
        Err(e) => {
            eprintln!("zvfs: error: {e}");
            ExitCode::from(&e)
        }
    }
}

/// Entry point used by `main`: parses the process arguments. A command line that does not
/// parse exits with [`ExitCode::Usage`] (clap's own status, also 2).
pub fn main() -> ExitCode {
    // A mount daemon started by `daemon::start` gets its options on a pipe, not in argv.
    if let Some(code) = crate::daemon::child_main() {
        return code;
    }
    let args = match crate::node::compat::translate(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("zvfs: error: {e}");
            return ExitCode::Usage;
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // --help and --version are "errors" that print to stdout and succeed.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Ok
            };
        }
    };
    crate::cmd::init_logging(cli.debug);
    run(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Translate (as when installed under that name) and parse like `main` does.
    fn parse(args: &[&str]) -> Cli {
        let argv = args.iter().map(std::ffi::OsString::from).collect();
        let v = crate::node::compat::translate(argv).unwrap();
        Cli::try_parse_from(v).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn rfs_command_lines_long_and_short_parse() {
        for args in [
            &[
                "rfs",
                "pack",
                "--meta",
                "a.fl",
                "--store",
                "dir:///s",
                "--no-strip-password",
                "d",
            ][..],
            &[
                "rfs",
                "pack",
                "-m",
                "a.fl",
                "-s",
                "dir:///s",
                "-s",
                "00-7f=dir:///t",
                "d",
            ],
            &[
                "rfs",
                "unpack",
                "--meta",
                "a.fl",
                "--cache",
                "/c",
                "--preserve-ownership",
                "/t",
            ],
            &["rfs", "unpack", "-m", "a.fl", "-p", "/t"],
            &[
                "rfs", "clone", "--meta", "a.fl", "--store", "dir:///s", "--cache", "/c",
            ],
            &["rfs", "clone", "-m", "a.fl", "-s", "dir:///s", "-c", "/c"],
            &["rfs", "config", "--meta", "a.fl", "tag", "list"],
            &[
                "rfs", "config", "-m", "a.fl", "tag", "add", "--tag", "k=v", "-t", "x=y",
            ],
            &["rfs", "config", "-m", "a.fl", "tag", "delete", "--key", "k"],
            &["rfs", "config", "-m", "a.fl", "tag", "delete", "--all"],
            &["rfs", "config", "-m", "a.fl", "store", "list"],
            &[
                "rfs", "config", "-m", "a.fl", "store", "add", "--store", "dir:///s",
            ],
            &[
                "rfs", "config", "-m", "a.fl", "store", "delete", "-s", "dir:///s",
            ],
            &["rfs", "config", "-m", "a.fl", "store", "delete", "-a"],
        ] {
            parse(args);
        }
        let node = parse(&[
            "rfs",
            "--debug",
            "--debug",
            "mount",
            "--cache",
            "/r/cache",
            "--meta",
            "/r/flist/x",
            "--daemon",
            "--log",
            "/r/log/x.log",
            "/r/ro/x",
        ]);
        assert!(node.debug);
        let Command::Mount(m) = node.command else {
            panic!("not a mount")
        };
        assert!(m.daemon && !m.rw);
        assert_eq!(
            m.cache.cache.as_deref().and_then(|p| p.to_str()),
            Some("/r/cache")
        );
        assert_eq!(m.log.unwrap().to_str(), Some("/r/log/x.log"));
        let short = parse(&["rfs", "mount", "-m", "a.fl", "-d", "-l", "/l", "/t"]);
        let Command::Mount(m) = short.command else {
            panic!("not a mount")
        };
        assert_eq!(
            m.cache.cache.as_deref().and_then(|p| p.to_str()),
            Some("/tmp/cache"),
            "rfs's default cache"
        );
    }

    #[test]
    fn g8ufs_command_lines_parse_into_mounts() {
        let ro = parse(&[
            "g8ufs",
            "--storage-url",
            "zdb://h:9900",
            "--ro",
            "--cache",
            "/c",
            "--meta",
            "/m",
            "--daemon",
            "--log",
            "/l",
            "/t",
        ]);
        let Command::Mount(m) = ro.command else {
            panic!("not a mount")
        };
        assert!(m.daemon && !m.rw);
        assert_eq!(m.stores.stores, vec!["zdb://h:9900".to_string()]);
        let rw = parse(&["g8ufs", "-meta", "/m", "-backend", "/b", "-reset", "/t"]);
        let Command::Mount(m) = rw.command else {
            panic!("not a mount")
        };
        assert!(m.rw && m.reset && !m.daemon);
        assert_eq!(m.upper.unwrap().to_str(), Some("/b"));
        assert_eq!(
            m.cache.cache.as_deref().and_then(|p| p.to_str()),
            Some("/b/cache")
        );
    }
}
