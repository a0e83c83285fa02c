//! Defrag, offline and online: the model tests with readers and writers, rounds, errors.
//!
//! One test binary per area, each file a module: every binary links the crate and its
//! dev-dependencies, so few binaries build and link in a fraction of the time of one per file.

#[path = "../common/mod.rs"]
mod common;

mod defrag;
mod defrag_online;
mod write_back;
