//! The copy-on-write B+tree: page views and encoders, cursors, read trees and write trees.

pub(crate) mod cursor;
pub(crate) mod dirty;
pub(crate) mod node;
pub(crate) mod source;
pub(crate) mod tree;
pub(crate) mod tree_mut;

pub use cursor::Range;
pub use tree::{Cursor, Tree, TreeMut};
