//! Zero-OS node integration: the command lines of the tools zvfs replaces (rfs 2.x and
//! g8ufs), readiness notification for supervisors, and the container runtime hook. It
//! translates and orchestrates; filesystem and chunk logic stay in the layers below.

pub mod compat;
pub mod notify;
pub mod oci;
