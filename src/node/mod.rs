//! Zero-OS node integration: the command lines of the tools zvfs replaces (rfs 2.x and
//! g8ufs) and the container runtime hook. It translates and orchestrates; filesystem,
//! mount and chunk logic stay in the layers below (readiness notification and the mount
//! registry live in `sys`, used by the mount commands).

pub mod compat;
pub mod oci;
