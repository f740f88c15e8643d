fn main() {
    std::process::exit(zvfs::cli::main());
}
