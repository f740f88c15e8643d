//! RESP replies from a 0-db/redis server: `zvfs::store::zdb::handle_replies` reads them
//! with the parser a connection uses and handles each as a SELECT, GET, EXISTS and SET
//! reply.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for r in zvfs::store::zdb::handle_replies(data) {
        if let Ok(Some(v)) = r {
            assert!(
                v.len() <= zvfs::codec::MAX_OBJECT,
                "GET accepted an oversized object"
            );
        }
    }
});
