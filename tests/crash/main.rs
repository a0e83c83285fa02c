//! Crash safety: a crash or failure at every storage call of commits, compactions, and
//! offline and online defrags, with torn and reordered power-loss images.
//!
//! One test binary per area, each file a module: every binary links the crate and its
//! dev-dependencies, so few binaries build and link in a fraction of the time of one per file.

#[path = "../common/mod.rs"]
mod common;

mod crash;
mod defrag_crash;
mod defrag_online_crash;
mod mvcc_crash;
