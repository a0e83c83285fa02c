//! The `folio` command, driven as a user would: one module per subcommand or threat.
//!
//! One test binary per area, each file a module: every binary links the crate and its
//! dev-dependencies, so few binaries build and link in a fraction of the time of one per file.

#[path = "../common/mod.rs"]
mod common;

mod bench;
mod check;
mod compact;
mod defrag;
mod dump;
mod errors;
mod forged;
mod map;
mod open;
mod stats;
mod store_commands;
mod verify;
