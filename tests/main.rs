//! The integration tests of zvfs, one binary with a module per feature (`cargo test --test
//! main MODULE::`). They run the real `zvfs` binary and library against real parts: FUSE
//! mounts, redis-server, an HTTP server, Garage (S3), runc, the rfs and zflist fixtures.
//! Shared helpers are in `common`; FUSE tests are written `fuse_test! { fn name() {..} }`.

#[macro_use]
mod common;

mod cli;
mod diskfull;
mod faults;
mod identity;
mod import;
mod inspect;
mod kills;
mod legacy;
mod mount;
mod node;
mod oci;
mod pack;
mod prefetch;
mod prefetch_mount;
mod s3;
mod stats;
mod stores;
mod supervisor;
mod unpack;
mod warm;
