//! HTTP responses as the http and S3 stores handle them (status mapping, headers, bounded
//! bodies, S3 XML error bodies): the first byte picks the store and request (0: http GET,
//! 1: S3 HEAD, 2: S3 GET, 3: S3 PUT), the rest is the whole response (status line,
//! headers, body), parsed by ureq as on the wire. Also checks that no error message
//! carries the S3 secret, whatever the server sends.
//!
//! ureq 2.12 panics on a header line without `:` (found here); zvfs catches that panic
//! around every ureq call (`error::no_panic`) and returns a store error. libFuzzer's panic
//! hook would abort on it before zvfs can catch it, so this target lets panics raised
//! inside ureq unwind (quietly) and aborts on every other panic, as libfuzzer-sys does; a
//! ureq panic that zvfs failed to catch still aborts (libfuzzer-sys checks every input's
//! unwinding).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zvfs::store::http::HttpStore;
use zvfs::store::s3::S3Store;
use zvfs::store::StoreConfig;

const SECRET: &str = "fuzzSecretKey0123456789";

fn stores() -> &'static (HttpStore, S3Store) {
    static STORES: OnceLock<(HttpStore, S3Store)> = OnceLock::new();
    STORES.get_or_init(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.location().is_some_and(|l| l.file().contains("/ureq-")) {
                return;
            }
            fuzzer_hook(info);
        }));
        let cfg = StoreConfig::default();
        let http = HttpStore::open("http://user:pass@127.0.0.1:9/store", &cfg).expect("http store");
        let s3 = S3Store::open_with_env(
            &format!("s3://FUZZKEY:{SECRET}@127.0.0.1:9/bucket"),
            &cfg,
            |_| None,
        )
        .expect("s3 store");
        (http, s3)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let raw = String::from_utf8_lossy(rest);
    let (http, s3) = stores();
    let out = match mode % 4 {
        0 => http.handle_response(&raw),
        1 => s3.handle_response("HEAD", &raw),
        2 => s3.handle_response("GET", &raw),
        _ => s3.handle_response("PUT", &raw),
    };
    match out {
        Ok(Some(body)) => assert!(body.len() <= zvfs::codec::MAX_OBJECT),
        Ok(None) => {}
        Err(e) => {
            if mode % 4 != 0 {
                assert!(!e.to_string().contains(SECRET), "S3 secret in {e}");
            }
        }
    }
});
