//! # folio
//!
//! An embeddable storage engine: a copy-on-write B+tree page file with a freelist, two checksummed
//! meta pages and crash-safe commits, in the family of LMDB and bbolt.
//!
//! - Many readers, one writer. A read transaction is a snapshot that never blocks the writer and is
//!   never blocked by it; keys and values borrow straight from the memory map.
//! - Named trees, each a B+tree with cursors and double-ended range iteration.
//! - Commits are durable when they return (or share syncs with concurrent writers, or skip them:
//!   see [`Durability`]). A crash at any point leaves the last commit, or the one in flight, whole.
//! - Bad bytes on disk are an [`Error::Corrupted`] naming the page, never a panic.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("data.folio");
//! let db = folio::Db::open(&path)?;
//! let mut tx = db.begin_write()?;
//! {
//!     let mut users = tx.open_tree(b"users")?;
//!     users.put(b"alice", b"1")?;
//!     users.put(b"bob", b"2")?;
//! }
//! tx.commit()?;
//!
//! let tx = db.begin_read()?;
//! let users = tx.tree(b"users")?.expect("created above");
//! assert_eq!(users.get(b"alice")?, Some(&b"1"[..]));
//! let names: Vec<&[u8]> = users.range(b"a".as_slice()..b"c")?.map(|e| e.map(|(k, _)| k)).collect::<Result<_, _>>()?;
//! assert_eq!(names, [&b"alice"[..], b"bob"]);
//! assert!(db.check()?.is_clean());
//! # Ok::<(), folio::Error>(())
//! ```

#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod btree;
mod check;
mod defrag;
mod error;
mod inspect;
pub mod limits;
mod mvcc;
mod page_file;
mod stats;
mod txn;

pub use btree::{Cursor, Range, Tree, TreeMut};
pub use check::{CheckReport, Problem};
pub use defrag::{DefragOptions, DefragProgress, DefragReport, DefragRound, defrag};
pub use error::{Error, PageId, Result};
pub use inspect::{
    BranchEntry, LeafEntry, LeafValue, MetaDump, PageBody, PageDump, PageMap, PageRun, PageUse,
};
pub use mvcc::{
    Compare, CompareTarget, CompareValue, DeleteResponse, HashResponse, KeyRange, KeyValue, Op,
    OpResponse, PutOptions, PutResponse, RangeOptions, RangeResponse, Revision, Store,
    StoreOptions, TxnBuilder, TxnResponse,
};
pub use page_file::{
    BULK_ALIGN, DirState, Fault, FileStorage, PageKind, SECTOR, SimStorage, Storage,
};
pub use stats::{Stats, TreeStats};
pub use txn::{Builder, Db, Durability, ReadTxn, WriteTxn};
