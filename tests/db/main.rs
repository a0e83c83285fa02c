//! The B+tree database: basic use, snapshots, page reuse, the model test, opening and
//! creating, corruption (flipped, forged and fuzz-found), checksums verified by default, and the
//! bytes of written pages.
//!
//! One test binary per area, each file a module: every binary links the crate and its
//! dev-dependencies, so few binaries build and link in a fraction of the time of one per file.

#[path = "../common/mod.rs"]
mod common;

mod basics;
mod corruption;
mod forged;
mod fuzz_found;
mod model;
mod open;
mod page_bytes;
mod reuse;
mod snapshot;
mod verify_by_default;
