//! Build script: generates the Rust code for the legacy `.flist` Cap'n Proto schema
//! (`schema/legacy_flist.capnp`) with `capnpc`. Needs the `capnp` tool at build time
//! (Debian/Ubuntu package `capnproto`).

fn main() {
    println!("cargo:rerun-if-changed=schema/legacy_flist.capnp");
    if let Err(e) = capnpc::CompilerCommand::new()
        .src_prefix("schema")
        .file("schema/legacy_flist.capnp")
        .default_parent_module(vec!["flist".into(), "legacy".into()])
        .run()
    {
        panic!(
            "compiling schema/legacy_flist.capnp failed: {e}\n\
             (the `capnp` tool is needed at build time: apt-get install capnproto)"
        );
    }
}
