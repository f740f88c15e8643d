//! Host facilities the mount commands need, below `cmd`: reading `/proc/self/mountinfo`,
//! overlay and bind mounts, the registry of running mount daemons (`/run/zvfs`) and
//! readiness notification for supervisors, the process logger ([`log`]), and the rule
//! that tells a temporary file left by a dead process from a live writer's
//! ([`leftovers`]). Nothing here knows flists or chunks.

pub mod atomic;
pub mod failpoint;
pub mod leftovers;
pub mod logger;
pub mod mountinfo;
pub mod mounts;
pub mod notify;
pub mod progress;
pub mod registry;
