//! Command-line parsing and dispatch. Each subcommand's arguments and code live in its
//! own module under `cmd`; this module only wires them together and maps errors to exit
//! codes. It holds no logic of its own.

use clap::{Parser, Subcommand};

use crate::cmd;

#[derive(Parser, Debug)]
#[command(
    name = "zvfs",
    version,
    about = "Pack, mount and unpack Zero-OS flists"
)]
pub struct Cli {
    /// Verbose logging.
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pack a directory into an flist plus chunks in stores.
    Pack(cmd::pack::Args),
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
    /// Rewrite an flist (e.g. a legacy .flist) as a v2 .fl with re-encoded chunks.
    Convert(cmd::convert::Args),
    /// Mount an flist over FUSE (read-only, or writable through an overlay).
    Mount(cmd::mount::Args),
    /// List zvfs mounts (--check TARGET: exit 0 when it is mounted and healthy).
    Mounts(cmd::mounts::Args),
    /// Unmount a zvfs mount (overlay first); its daemon exits with its last user.
    Umount(cmd::mounts::UmountArgs),
    /// Inspect and maintain a chunk cache directory.
    Cache(cmd::cache::Args),
    /// Fetch whole files (or the whole flist) into a chunk cache ahead of use.
    Warm(cmd::warm::Args),
    /// OCI containers whose root filesystem is an flist (prepare a bundle; poststop hook).
    Oci(crate::node::oci::Args),
}

/// Run the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Pack(a) => cmd::pack::run(a),
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
        Command::Convert(a) => cmd::convert::run(a),
        Command::Mount(a) => cmd::mount::run(a),
        Command::Mounts(a) => cmd::mounts::run(a),
        Command::Umount(a) => cmd::mounts::umount(a),
        Command::Cache(a) => cmd::cache::run(a),
        Command::Warm(a) => cmd::warm::run(a),
        Command::Oci(a) => crate::node::oci::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zvfs: error: {e}");
            1
        }
    }
}

/// Entry point used by `main`: parses the process arguments.
pub fn main() -> i32 {
    // A mount daemon started by `daemon::start` gets its options on a pipe, not in argv.
    if let Some(code) = crate::daemon::child_main() {
        return code;
    }
    let args = match crate::node::compat::translate(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("zvfs: error: {e}");
            return 2;
        }
    };
    let cli = Cli::parse_from(args);
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
        assert_eq!(m.cache.to_str(), Some("/r/cache"));
        assert_eq!(m.log.unwrap().to_str(), Some("/r/log/x.log"));
        let short = parse(&["rfs", "mount", "-m", "a.fl", "-d", "-l", "/l", "/t"]);
        let Command::Mount(m) = short.command else {
            panic!("not a mount")
        };
        assert_eq!(m.cache.to_str(), Some("/tmp/cache"), "rfs's default cache");
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
        assert_eq!(m.stores, vec!["zdb://h:9900".to_string()]);
        let rw = parse(&["g8ufs", "-meta", "/m", "-backend", "/b", "-reset", "/t"]);
        let Command::Mount(m) = rw.command else {
            panic!("not a mount")
        };
        assert!(m.rw && m.reset && !m.daemon);
        assert_eq!(m.upper.unwrap().to_str(), Some("/b"));
        assert_eq!(m.cache.to_str(), Some("/b/cache"));
    }
}
