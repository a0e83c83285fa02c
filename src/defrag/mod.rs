//! Defrag: rewrite the live pages of a database into a fresh, contiguous, fully packed file and
//! swap it in atomically. See `docs/design.md` for the crash table.
//!
//! - `options`: what a caller chooses and what it gets back.
//! - `load`: the bulk loader that writes every tree of a snapshot into a new file, sequentially.
//! - `readahead`: reading the source's live pages in file order while the loader walks them.
//! - `swap`: the recipe that builds the file beside the database and renames it into place.

mod load;
mod options;
mod readahead;
mod swap;

pub use options::{DefragOptions, DefragProgress, DefragReport};
pub use swap::defrag;
