//! Container image parsing without a registry. The first byte picks what the rest is:
//! - 0..=5: a JSON document given to `zvfs::image::parse_documents` (manifest or index,
//!   resolved for linux/amd64, and image config), with no media type or one of the OCI
//!   and Docker types as its source would say;
//! - 6, 7: a layer tar read by the importer (`zvfs::import::layer::each_entry`) through a
//!   plain reader, each entry's content read (bounded) as the importer does.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use zvfs::image::Platform;

const TYPES: [Option<&str>; 6] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 8 {
        m @ 0..=5 => {
            let platform = Platform::parse("linux/amd64").expect("platform");
            let _ = zvfs::image::parse_documents(rest, TYPES[m as usize], &platform);
        }
        _ => {
            let mut reader = rest;
            let _ = zvfs::import::layer::each_entry(&mut reader, "layer", &mut |_, e, content| {
                let _ = (&e.path, &e.link, e.size);
                std::io::copy(&mut content.take(1 << 20), &mut std::io::sink())?;
                Ok(())
            });
        }
    }
});
