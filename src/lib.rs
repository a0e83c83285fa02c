//! # folio
//!
//! folio is the storage stack Kubernetes runs on, etcd's revisioned `mvcc` store over a
//! bbolt-style B+tree file, as one embeddable Rust crate, with a defrag that rewrites the file
//! without stopping readers. It has three parts, each with a short tour below:
//!
//! - **[`Store`]**, the MVCC key-value store with etcd's semantics: every write gets a revision,
//!   reads can be made at any revision not yet compacted, transactions compare and then write.
//! - **Defrag** ([`Store::defrag`], [`Db::defrag`], [`defrag()`] for a closed file): rewrites the
//!   live pages into a packed file and swaps it in; readers keep going, writers wait for the copy.
//! - **The `folio` command** (the `cli/` crate) for operators: stats, a map of the file, check,
//!   defrag, compact, dumps, and the store from the shell.
//!
//! Under the store is [`Db`], a copy-on-write B+tree page file with named trees, one writer and
//! any number of snapshot readers, crash-safe commits and checksummed pages, usable on its own as
//! LMDB or bbolt are. Bad bytes on disk are an [`Error::Corrupted`] naming the page, never a panic.
//!
//! ## The store
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use folio::{Compare, KeyRange, Op, RangeOptions, Store};
//!
//! let store = Store::open(dir.path().join("kv.folio"))?; // creates the file if it is missing
//! let r2 = store.put(b"/registry/pods/default/a", b"v1")?; // a new store is at revision 1
//! let r3 = store.put(b"/registry/pods/default/a", b"v2")?;
//! store.put(b"/registry/pods/default/b", b"v1")?;
//!
//! // Read a prefix now, or one key as it was at an older revision.
//! let now = store.range(KeyRange::prefix(b"/registry/pods/"), RangeOptions::current())?;
//! assert_eq!(now.count, 2);
//! let then = store.range(b"/registry/pods/default/a", RangeOptions::at(r2))?;
//! assert_eq!(then.kvs[0].value, b"v1");
//!
//! // Compare and write atomically, as etcd's Txn does.
//! let txn = store
//!     .txn()
//!     .when([Compare::mod_revision(b"/registry/pods/default/a").eq(r3)])
//!     .then([Op::put(b"/registry/pods/default/a", b"v3")])
//!     .commit()?;
//! assert!(txn.succeeded);
//!
//! // Drop the history below a revision; reads below it now fail.
//! store.compact(txn.revision)?;
//! assert!(store.range(b"/registry/pods/default/a", RangeOptions::at(r2)).is_err());
//! # Ok::<(), folio::Error>(())
//! ```
//!
//! [`Store::open`] commits with [`Durability::Group`], so concurrent writers share syncs; for
//! other options open a [`Db`] with [`Db::builder`] and pass it to [`Store::with_db`]. A store
//! is made only in a new file or a database with no trees: one that holds other trees is refused
//! with [`Error::NotAStore`].
//!
//! ## Leases and etcd's range options
//!
//! A lease is etcd's: keys put with it are deleted, in one revision, when it is revoked or when
//! its TTL runs out without a keep-alive. Time comes from the store's [`Clock`]
//! ([`StoreOptions::clock`], the real monotonic clock by default), and the application calls
//! [`Store::expire_leases`] now and then (etcd checks every 500 ms); tests move a
//! [`ManualClock`] instead of sleeping.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use std::{sync::Arc, time::Duration};
//! use folio::{Compare, Db, Error, ManualClock, Op, PutOptions, RangeOptions, SortOrder, SortTarget, Store, StoreOptions};
//!
//! let clock = Arc::new(ManualClock::new());
//! let options = StoreOptions { clock: clock.clone(), ..StoreOptions::default() };
//! let store = Store::with_db_options(Db::open(dir.path().join("kv.folio"))?, options)?;
//!
//! let lease = store.lease_grant(0, 10)?.id; // 0: the store chooses the id; a 10 s TTL
//! store.put_with(b"/services/web/1", b"10.0.0.1", PutOptions { lease, ..PutOptions::default() })?;
//! store.txn().then([Op::put_with_lease(b"/services/web/2", b"10.0.0.2", lease)]).commit()?;
//! assert!(store.txn().when([Compare::lease(b"/services/web/").prefix().eq(lease)]).commit()?.succeeded);
//!
//! clock.advance(Duration::from_secs(6));
//! assert_eq!(store.lease_keep_alive(lease)?, 10); // 10 s from now again
//! clock.advance(Duration::from_secs(10));
//! assert_eq!(store.expire_leases()?, [lease]); // both keys deleted in one revision
//! assert_eq!(store.range(b"/services/".as_slice().., RangeOptions::current())?.count, 0);
//!
//! // The errors a user can meet:
//! assert!(matches!(store.lease_keep_alive(lease), Err(Error::LeaseNotFound { .. })));
//! let put = store.put_with(b"k", b"v", PutOptions { lease, ..PutOptions::default() });
//! assert!(matches!(put, Err(Error::LeaseNotFound { .. }))); // and nothing changed
//! store.lease_grant(7, 60)?;
//! assert!(matches!(store.lease_grant(7, 60), Err(Error::LeaseExists { id: 7 })));
//! assert!(matches!(store.lease_grant(0, 0), Err(Error::LeaseTtl { .. })));
//!
//! // etcd's range options: sort, then limit; revision filters; a streaming range.
//! let newest = store.range(.., RangeOptions::current().sort(SortOrder::Descend, SortTarget::Mod).limit(1))?;
//! let all: Vec<_> = store.range_stream(.., RangeOptions::current())?.collect::<Result<_, _>>()?;
//! assert_eq!(newest.kvs.len(), all.len().min(1));
//! # Ok::<(), folio::Error>(())
//! ```
//!
//! A reopened store keeps its leases and their keys and gives each its full TTL again, as etcd
//! does. [`Store::lease_revoke`] revokes at once; [`Store::lease_time_to_live`] and
//! [`Store::leases`] report.
//! ## Watch
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use folio::{Error, EventKind, KeyRange, Store, WatchOptions, WatchResponse};
//!
//! let store = Store::open(dir.path().join("kv.folio"))?;
//! let from = store.put(b"/registry/pods/a", b"v1")?;
//! let watcher = store.watch(KeyRange::prefix(b"/registry/"), WatchOptions::new().start_revision(from))?;
//! store.delete_range(b"/registry/pods/a")?;
//! let mut kinds = Vec::new();
//! while kinds.len() < 2 {
//!     match watcher.recv()? {
//!         // Every event of one or more whole revisions, in revision order, once durable.
//!         WatchResponse::Events { events, .. } => kinds.extend(events.iter().map(|e| e.kind)),
//!         WatchResponse::Progress { .. } => {}
//!         // It fell behind and a compaction passed it: start over from a fresh read.
//!         WatchResponse::Compacted { compact_revision } => panic!("compacted at {compact_revision}"),
//!     }
//! }
//! assert_eq!(kinds, [EventKind::Put, EventKind::Delete]);
//!
//! // A start below the compacted revision is refused, with that revision (one at it is served).
//! store.compact(store.current_revision())?;
//! match store.watch(b"/registry/pods/a", WatchOptions::new().start_revision(from)) {
//!     Err(Error::Compacted { requested, compacted }) => assert!(requested <= compacted),
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), folio::Error>(())
//! ```
//!
//! A watcher that nobody reads never holds up a writer: past its buffer it falls behind and
//! catches up inside its own `recv`, from the store's shared log of recent events or from the key
//! tree. `recv_shared` and its siblings hand out [`SharedEvent`]s, which share their bytes with
//! every other watcher instead of copying them; `recv_batch` and its siblings return an
//! [`EventBatch`] that lends them where the store keeps them. See [`Store::watch`] and
//! [`Watcher`].
//!
//! ## Defrag
//!
//! Deletes and compaction leave free pages all through the file; the file never shrinks by
//! itself. A defrag bulk-loads the newest snapshot into `<file>.defrag`, packed and written front
//! to back, syncs it and renames it over the database. A crash at any step leaves the old file or
//! the new one, whole.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("kv.folio");
//! use folio::{DefragOptions, KeyRange, Store};
//!
//! let store = Store::open(&path)?;
//! for i in 0..2_000 {
//!     store.put(format!("/registry/pods/pod-{i:05}").as_bytes(), &[b'x'; 300])?;
//! }
//! store.delete_range(KeyRange::prefix(b"/registry/pods/pod-01"))?; // 1,000 of them
//! store.compact(store.current_revision())?;
//! let report = store.defrag(&DefragOptions::default())?; // readers go on; writers wait
//! assert!(report.size_after < report.size_before);
//! assert_eq!(store.db().stats()?.reclaimable_bytes(), 0); // no free page left
//! drop(store);
//!
//! // A closed file, from another program: the free function.
//! let report = folio::defrag(&path, &DefragOptions::default())?;
//! println!("{report}"); // sizes before and after, pages written, seconds, seconds per GB
//! # Ok::<(), folio::Error>(())
//! ```
//!
//! ## The `folio` command
//!
//! `cargo install --path cli` (or `cargo build --release -p folio-cli`) builds `folio`:
//!
//! ```text
//! folio put --create kv.folio /registry/pods/a v1   # only put --create makes a file
//! folio get kv.folio /registry/pods/a                # exit code 3 when the key is not there
//! folio range kv.folio --prefix /registry/ --limit 10
//! folio stats kv.folio          # pages by kind, free space, what a defrag would give back
//! folio map kv.folio            # the file drawn, one cell per run of pages (--out map.svg)
//! folio check kv.folio          # every page reachable once or free once, checksums valid
//! folio compact kv.folio --keep 1000
//! folio defrag kv.folio         # a closed file; from inside a program use Store::defrag
//! ```
//!
//! Reading commands open the file read-only, beside each other; `folio --help` lists every
//! command and the exit codes.
//!
//! ## The B+tree database
//!
//! [`Db`] is the layer the store is built on: named trees (like bbolt's buckets) of byte keys and
//! values, read in snapshots that borrow straight from the memory map and written in one write
//! transaction at a time.
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
//! tx.commit()?; // durable when it returns (see Durability)
//!
//! let tx = db.begin_read()?; // a snapshot: never blocks the writer, never blocked by it
//! let users = tx.tree(b"users")?.expect("created above");
//! assert_eq!(users.get(b"alice")?, Some(&b"1"[..]));
//! let names: Vec<&[u8]> = users.range(b"a".as_slice()..b"c")?.map(|e| e.map(|(k, _)| k)).collect::<Result<_, _>>()?;
//! assert_eq!(names, [&b"alice"[..], b"bob"]);
//! assert!(db.check()?.is_clean());
//! # Ok::<(), folio::Error>(())
//! ```
//!
//! Options are on [`Builder`] ([`Db::builder`]): durability, page size (fixed when the file is
//! made), maximum size, checksum verification on every read, strict mode, read-only opens and
//! the lock wait. Every bound is a named constant in [`limits`].
//!
//! ## Tools and internals
//!
//! - [`Db::check`] is the checker (also behind `folio check` and strict mode): [`CheckReport`].
//! - [`Db::stats`] gives pages by kind, fill and free space ([`Stats`]); [`Db::page_map`] and
//!   [`Db::dump_page`] show the file page by page ([`PageMap`], [`PageDump`]).
//! - [`storage`] holds the I/O layer ([`storage::Storage`], [`storage::FileStorage`]) for
//!   those who bring their own; [`sim`] holds the crash-testing harness ([`sim::SimStorage`]) that
//!   fails or loses any write. An application needs neither.
//! - `docs/design.md` in the repository holds the invariants, the commit recipe and the crash
//!   tables; `docs/format.md` the byte layout of the file.

#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod btree;
mod check;
mod defrag;
mod error;
/// Entry points for the fuzz targets in `fuzz/`: not an API (hidden, exempt from semver).
#[doc(hidden)]
pub mod fuzzing;
mod inspect;
pub mod limits;
mod mvcc;
mod page_file;
mod stats;
#[cfg(test)]
mod testing;
mod txn;

pub use btree::{Cursor, Range, Tree, TreeMut};
pub use check::{CheckReport, Problem};
pub use defrag::{DefragOptions, DefragProgress, DefragReport, DefragRound, defrag};
pub use error::{Error, PageId, Result};
pub use inspect::{
    BranchEntry, LeafEntry, LeafValue, MetaDump, PageBody, PageDump, PageMap, PageRun, PageUse,
};
pub use mvcc::Compaction;
pub use mvcc::IndexOrigin;
pub use mvcc::{
    BatchResponse, Event, EventBatch, EventKind, EventRef, SharedEvent, SharedResponse,
    WatchOptions, WatchResponse, Watcher,
};
pub use mvcc::{
    Clock, Compare, CompareTarget, CompareValue, DeleteResponse, HashResponse, KeyRange, KeyValue,
    LeaseGrant, LeaseStatus, ManualClock, MonotonicClock, Op, OpResponse, PutOptions, PutResponse,
    RangeOptions, RangeResponse, RangeStream, Revision, SortOrder, SortTarget, Store, StoreOptions,
    TxnBuilder, TxnResponse,
};
pub use page_file::PageKind;

/// Where a database's bytes live: the [`Storage`](storage::Storage) trait every byte passes through,
/// and [`FileStorage`](storage::FileStorage), the real file. [`Builder::open_with`] and
/// [`Builder::create_with`] take any implementation.
pub mod storage {
    pub use crate::page_file::{BULK_ALIGN, FileStorage, Storage};
}

/// The test harness: [`SimStorage`](sim::SimStorage), a [`Storage`](storage::Storage) over a
/// real file that can fail any call or lose power at it, and build the images a crash could leave
/// (torn or reordered unsynced writes, the directory as synced or as it stands). folio's own crash
/// tests run on it; so can an application's.
pub mod sim {
    pub use crate::page_file::{DirState, Fault, SECTOR, SimStorage};
}
pub use stats::{Stats, TreeStats};
pub use txn::{Builder, Db, Durability, ReadTxn, WriteTxn};
