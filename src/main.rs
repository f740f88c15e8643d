fn main() -> std::process::ExitCode {
    zvfs::cli::main().into()
}
