//! Defrag: rewrite the live pages of a database into a fresh, contiguous, fully packed file and
//! swap it in atomically. See `docs/design.md` for the crash table.
//!
//! - `options`: what a caller chooses and what it gets back.
//! - `copy`: a packed copy of one snapshot in a new file (a replica's snapshot).
//! - `load`: the bulk loader that writes every tree of a snapshot into a new file, sequentially.
//! - `pace`: spreading the defrag's own disk traffic to a rate, for the commits beside it.
//! - `readahead`: reading the source's live pages in file order while the loader walks them.
//! - `diff`: the difference between two snapshots, by page id, for the catch-up rounds.
//! - `release`: shrinking the old file in steps once no reader maps it.
//! - `online`: the recipe: copy while writers go on, catch up, and ask `txn::swap` to swap.

mod copy;
mod diff;
mod load;
mod online;
mod options;
mod pace;
mod readahead;
mod release;

pub use online::defrag;
pub use options::{DefragOptions, DefragProgress, DefragReport, DefragRound};
