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
    /// Mount an flist read-only over FUSE.
    Mount(cmd::mount::Args),
    /// Inspect and maintain a chunk cache directory.
    Cache(cmd::cache::Args),
    /// Fetch whole files (or the whole flist) into a chunk cache ahead of use.
    Warm(cmd::warm::Args),
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
        Command::Cache(a) => cmd::cache::run(a),
        Command::Warm(a) => cmd::warm::run(a),
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
