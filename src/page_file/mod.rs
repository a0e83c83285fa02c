//! The page file: the OS file and nothing above it. Storage, page header and checksum, the two
//! meta slots, and the freelist.

pub(crate) mod create;
pub(crate) mod freelist;
pub(crate) mod meta;
pub(crate) mod page;
pub(crate) mod sim;
pub(crate) mod storage;
pub(crate) mod verified;

pub use page::PageKind;
pub use sim::{DirState, Fault, SECTOR, SimStorage};
pub use storage::{BULK_ALIGN, FileStorage, Storage};

#[cfg(test)]
mod format_doc_test;
