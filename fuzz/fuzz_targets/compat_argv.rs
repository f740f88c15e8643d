//! The rfs/g8ufs command-line translation (`zvfs::node::compat::translate`), then the
//! zvfs parser on what it gives (as `main` does). The first byte picks the program name
//! (rfs, g8ufs, a path to rfs, zvfs), the rest is the arguments, separated by NUL bytes.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use clap::Parser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let argv0 = ["rfs", "g8ufs", "/usr/local/bin/rfs", "zvfs"][(mode % 4) as usize];
    let mut args = vec![OsString::from(argv0)];
    if !rest.is_empty() {
        args.extend(
            rest.split(|&b| b == 0)
                .map(|a| OsString::from_vec(a.to_vec())),
        );
    }
    if let Ok(out) = zvfs::node::compat::translate(args) {
        let _ = zvfs::cli::Cli::try_parse_from(out);
    }
});
