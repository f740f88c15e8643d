//! The `zvfs` binary: parses the command line and runs it through [`zvfs::cli::main`],
//! whose typed exit code becomes the process's.

fn main() -> std::process::ExitCode {
    zvfs::cli::main().into()
}
