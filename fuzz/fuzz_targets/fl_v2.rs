//! Arbitrary bytes as a `.fl` file: opened with `zvfs::flist::open` (the call a mount
//! makes) and walked as a mount would (`common::walk_flist`).
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = common::scratch("fl_v2");
    std::fs::write(&path, data).expect("writing the scratch flist");
    if let Ok(fl) = zvfs::flist::open(&path) {
        common::walk_flist(&*fl);
    }
    let _ = std::fs::remove_file(&path);
});
