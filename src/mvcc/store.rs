//! The store: etcd's revisioned key-value model over a [`Db`].
//!
//! Invariants:
//! 1. `StoreState::current` is the newest revision whose records are committed and visible in the
//!    database. A reader reads `current` and takes a database snapshot under one hold of the state
//!    lock, so the snapshot holds every record the index sends it to; a range walks the index in
//!    chunks, letting writers in between (`range.rs`, `plan_range_in_chunks`), which index only
//!    revisions past the read's.
//! 2. Writers are serialized by `StoreInner::writer`. A writer puts its revisions into the index as it
//!    goes (they lie above `current`, so readers ignore them), commits, then raises `current`.
//!    If anything fails, it unwinds the index to `current`.
//! 3. Compaction at C raises `compacted` to C before it deletes anything; every record a read at
//!    C or later needs is kept.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::btree::tree::Tree;
use crate::error::{Error, Result};
use crate::limits::INDEX_WRITER_PASSED_MAX;
use crate::mvcc::combine::Combiner;
use crate::mvcc::hash::{self, Hasher};
use crate::mvcc::key_index::{self, Index, IndexOrigin, persist};
use crate::mvcc::lease::Lessor;
use crate::mvcc::range::plan_range_in_chunks;
use crate::mvcc::revision::{KeyValue, Revision, malformed};
use crate::mvcc::types::{HashResponse, KeyRange, RangeOptions, RangeResponse, StoreOptions};
use crate::mvcc::watch::WatchHub;
use crate::txn::{Db, Durability};

/// The tree of records, keyed by revision.
pub(crate) const KEY_TREE: &[u8] = b"mvcc.key";
/// The tree of the store's own bookkeeping (compaction progress).
pub(crate) const META_TREE: &[u8] = b"mvcc.meta";
/// The revision of the last compaction scheduled (written first).
pub(crate) const SCHEDULED: &[u8] = b"compact.scheduled";
/// The revision of the last compaction finished (written last).
pub(crate) const FINISHED: &[u8] = b"compact.finished";

#[derive(Debug, Default)]
pub(crate) struct StoreState {
    pub index: Index,
    pub current: i64,
    pub compacted: i64,
    /// The revision and compacted revision of the index persisted in the file, when known to
    /// be these; a close persists the index when they are not `(current, compacted)`.
    pub persisted: Option<(i64, i64)>,
}

#[derive(Debug)]
pub(crate) struct StoreInner {
    pub db: Db,
    pub state: RwLock<StoreState>,
    /// Held by whoever writes: a put, a delete, a transaction, or one compaction batch.
    pub writer: Mutex<()>,
    /// The puts, deletes and transactions waiting to be combined into one commit.
    pub combiner: Combiner,
    /// Held for a whole compaction, so two never interleave.
    pub compaction: Mutex<()>,
    /// The leases; see `lease.rs` for the lock order.
    pub lessor: Mutex<Lessor>,
    pub options: StoreOptions,
    /// The watchers, and the events of revisions not yet durable.
    pub watch: WatchHub,
    /// How the open made the key index.
    pub index_origin: IndexOrigin,
    /// Set once the open has succeeded: the last handle's drop then persists the key index.
    pub persist_at_close: AtomicBool,
    /// Who waits to change `state`, and since when: see [`StoreInner::state_for_one_key`].
    pub state_writers: WaitingWriters,
}

/// The writers waiting for the state lock, and since when the first of them has waited.
#[derive(Debug)]
pub(crate) struct WaitingWriters {
    count: AtomicU32,
    /// Nanoseconds from `epoch` to when `count` last rose from 0.
    since: AtomicU64,
    epoch: Instant,
    /// How long one-key reads may pass a waiting writer, in nanoseconds
    /// ([`INDEX_WRITER_PASSED_MAX`]; tests set it).
    passed_max: AtomicU64,
}

impl WaitingWriters {
    pub fn new() -> WaitingWriters {
        WaitingWriters {
            count: AtomicU32::new(0),
            since: AtomicU64::new(0),
            epoch: Instant::now(),
            passed_max: AtomicU64::new(INDEX_WRITER_PASSED_MAX.as_nanos() as u64),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Whether a writer has waited for the lock longer than one-key reads may pass it. A stale
    /// `since` (a writer counted before it is stored) only makes reads queue sooner.
    fn waited_too_long(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
            && self
                .now()
                .saturating_sub(self.since.load(Ordering::Acquire))
                >= self.passed_max.load(Ordering::Relaxed)
    }

    /// How long one-key reads may pass a waiting writer from now on.
    #[cfg(test)]
    pub fn set_passed_max(&self, max: std::time::Duration) {
        self.passed_max
            .store(max.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Writers waiting now.
    #[cfg(test)]
    pub fn waiting(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }
}

impl StoreInner {
    /// Takes the state lock to change it. A writer that must wait is counted, so that one-key
    /// reads stop passing it once it has waited [`INDEX_WRITER_PASSED_MAX`].
    pub fn state_mut(&self) -> RwLockWriteGuard<'_, StoreState> {
        if let Some(state) = self.state.try_write() {
            return state;
        }
        let w = &self.state_writers;
        if w.count.fetch_add(1, Ordering::AcqRel) == 0 {
            w.since.store(w.now(), Ordering::Release);
        }
        let state = self.state.write();
        w.count.fetch_sub(1, Ordering::AcqRel);
        state
    }

    /// Takes the state lock to read one key. Such a hold is one search of the index, so it need
    /// not queue behind a writer that waits for other readers (a range's walk) to let go: it
    /// takes the lock beside them (`read_recursive`). A stream of such reads could keep the lock
    /// from ever being free, so once a writer has waited [`INDEX_WRITER_PASSED_MAX`] they queue
    /// behind it as any reader does.
    pub fn state_for_one_key(&self) -> RwLockReadGuard<'_, StoreState> {
        if self.state_writers.waited_too_long() {
            self.state.read()
        } else {
            self.state.read_recursive()
        }
    }

    /// Persists the key index in the file (`key_index/persist.rs`) unless the index persisted
    /// there is already this one; returns whether it wrote. Holds the compaction and writer locks
    /// for the whole of it: no compaction runs and no revision is added meanwhile (readers go
    /// on). Does not write while a compaction is scheduled and not finished: the index would not
    /// match the records.
    pub(crate) fn persist_index(&self) -> Result<bool> {
        let _one_compaction = self.compaction.lock();
        let _writer = self.writer.lock();
        let state = self.state.read();
        let (current, compacted) = (state.current, state.compacted);
        if state.persisted == Some((current, compacted)) {
            return Ok(false);
        }
        let mut tx = self.db.begin_write()?;
        let key_records = tx.tree(KEY_TREE)?.ok_or_else(|| missing(KEY_TREE))?.len();
        let pending = {
            let meta = tx.tree(META_TREE)?.ok_or_else(|| missing(META_TREE))?;
            let meta = meta.as_tree();
            meta_rev(&meta, SCHEDULED)? > meta_rev(&meta, FINISHED)?
        };
        if pending {
            return Ok(false);
        }
        persist::write(&mut tx, &state.index, current, compacted, key_records)?;
        tx.commit()?;
        drop(state);
        self.state_mut().persisted = Some((current, compacted));
        Ok(true)
    }
}

impl StoreInner {
    /// What the last handle's close does: persists the key index of a store of at least
    /// [`crate::limits::INDEX_PERSIST_AT_CLOSE_RECORDS_MIN`] records, once.
    fn persist_at_close(&mut self) -> Result<()> {
        if !std::mem::take(self.persist_at_close.get_mut()) || self.db.is_read_only() {
            return Ok(());
        }
        let tx = self.db.begin_read()?;
        let records = tx.tree(KEY_TREE)?.map_or(0, |t| t.len());
        drop(tx);
        if records >= crate::limits::INDEX_PERSIST_AT_CLOSE_RECORDS_MIN {
            self.persist_index()?;
        }
        Ok(())
    }
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        // A failure leaves the index persisted before (or none) in the file, which the next open
        // brings up to date by a longer replay, or rebuilds from the records. `Store::close`
        // reports it.
        let _ = self.persist_at_close();
    }
}

/// A revisioned key-value store with etcd's semantics: every write gets a new revision, reads can
/// be made at any revision not yet compacted, and transactions compare and then write atomically.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use folio::{KeyRange, RangeOptions, Store};
/// let store = Store::open(dir.path().join("kv.folio"))?;
/// let r1 = store.put(b"/registry/pods/a", b"v1")?; // a new store is at revision 1; this is 2
/// let r2 = store.put(b"/registry/pods/a", b"v2")?;
/// let old = store.range(b"/registry/pods/a", RangeOptions::at(r1))?;
/// assert_eq!(old.kvs[0].value, b"v1");
/// let now = store.range(KeyRange::prefix(b"/registry/"), RangeOptions::current())?;
/// assert_eq!((now.kvs[0].version, now.revision), (2, r2));
/// store.compact(r2)?;
/// assert!(store.range(b"/registry/pods/a", RangeOptions::at(r1)).is_err());
/// # Ok::<(), folio::Error>(())
/// ```
///
/// A `Store` is a handle: clones share one store, and the last one's drop closes it. That drop
/// persists the key index for the next open when the store holds at least
/// [`INDEX_PERSIST_AT_CLOSE_RECORDS_MIN`](crate::limits::INDEX_PERSIST_AT_CLOSE_RECORDS_MIN)
/// records (see [`Store::persist_index`]), with a durable commit: it blocks for about half a
/// second per million keys on the machine the README's figures come from, and longer if the
/// disk is slow. Call [`Store::persist_index`] earlier (at a quiet moment) and the drop has
/// nothing left to write unless the store changed since.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) inner: Arc<StoreInner>,
}

/// The compacted revision of a store never compacted, as in etcd (`compactMainRev: -1`), so that
/// `compact(0)` is a valid first compaction.
pub(crate) const NEVER_COMPACTED: i64 = -1;

/// The error for one of the store's trees missing from its database.
pub(crate) fn missing(tree: &[u8]) -> Error {
    malformed(format!("tree `{}` is missing", tree.escape_ascii()))
}

fn meta_rev(tree: &Tree<'_>, key: &[u8]) -> Result<i64> {
    match tree.get(key)? {
        None => Ok(NEVER_COMPACTED),
        Some(b) => {
            Ok(i64::from_le_bytes(b.try_into().map_err(|_| {
                malformed(format!("meta value of {} bytes", b.len()))
            })?))
        }
    }
}

impl Store {
    /// Opens (or creates) a store at `path`, with group commit so concurrent writers share syncs.
    /// A database at `path` that holds other trees and no store is refused with
    /// [`Error::NotAStore`] (see [`Store::with_db_options`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::with_db(Db::builder().durability(Durability::Group).open(path)?)
    }

    /// Opens (or creates) a store at `path` with `builder`'s options, as
    /// `Db::builder().durability(Durability::Group).verify_checksums(false)` (which reads without
    /// verifying page checksums). [`Store::open`] uses group commit and verifies checksums. A
    /// database at `path` that holds other trees and no store is refused with
    /// [`Error::NotAStore`].
    pub fn open_with(path: impl AsRef<Path>, builder: &crate::Builder) -> Result<Store> {
        Store::with_db(builder.open(path)?)
    }

    /// Opens a store in `db`, making its trees if `db` has no trees at all (see
    /// [`Store::with_db_options`]).
    pub fn with_db(db: Db) -> Result<Store> {
        Store::with_db_options(db, StoreOptions::default())
    }

    /// Opens a store in `db` with `options`. Loads the key index persisted in the file and
    /// replays the records written after it, or, when there is none or it cannot be brought up
    /// to date, rebuilds the index from the `key` tree ([`Store::index_origin`] says which, and
    /// why); finishes a compaction that a crash interrupted. The last handle's drop persists
    /// the index again if it changed (in a store of 10,000 records or more).
    ///
    /// A database with no trees becomes a store: its trees `mvcc.key` and `mvcc.meta` are made
    /// (which needs a read-write `db`). A database that holds other trees but not the store's
    /// is refused with [`Error::NotAStore`] and left as it is, so a store is never mixed into a
    /// database by accident. Trees of your own may still live beside a store: make them through
    /// [`Store::db`] once the store exists.
    pub fn with_db_options(db: Db, options: StoreOptions) -> Result<Store> {
        let (has_keys, has_meta, trees) = {
            let tx = db.begin_read()?;
            let (has_keys, has_meta) =
                (tx.tree(KEY_TREE)?.is_some(), tx.tree(META_TREE)?.is_some());
            (has_keys, has_meta, tx.tree_names()?)
        };
        if !has_keys && !has_meta {
            if !trees.is_empty() {
                return Err(Error::NotAStore {
                    trees: trees.iter().map(|t| t.escape_ascii().to_string()).collect(),
                });
            }
            let mut tx = db.begin_write()?;
            tx.open_tree(KEY_TREE)?;
            tx.open_tree(META_TREE)?;
            tx.commit()?;
        }
        let (state, scheduled, index_origin) = {
            let tx = db.begin_read()?;
            let keys = tx.tree(KEY_TREE)?.ok_or_else(|| missing(KEY_TREE))?;
            let meta = tx.tree(META_TREE)?.ok_or_else(|| missing(META_TREE))?;
            let scheduled = meta_rev(&meta, SCHEDULED)?;
            let finished = meta_rev(&meta, FINISHED)?;
            let opened = key_index::open(&tx, &keys, finished, scheduled)?;
            // As in etcd, a new store is at revision 1 and its first write is revision 2.
            let state = StoreState {
                index: opened.index,
                // Compaction may have removed the newest revisions (tombstones at or below it).
                current: opened.newest.map_or(1, |n| n.max(1)).max(scheduled),
                compacted: finished,
                persisted: opened.persisted,
            };
            (state, scheduled, opened.origin)
        };
        let lessor = Lessor::open(&db.begin_read()?, options.clock.now())?;
        let durable = state.current;
        let store = Store {
            inner: Arc::new(StoreInner {
                watch: WatchHub::new(durable),
                db,
                state: RwLock::new(state),
                writer: Mutex::new(()),
                combiner: Combiner::default(),
                compaction: Mutex::new(()),
                lessor: Mutex::new(lessor),
                options,
                index_origin,
                persist_at_close: AtomicBool::new(false),
                state_writers: WaitingWriters::new(),
            }),
        };
        if scheduled > store.compacted_revision() {
            if store.inner.db.is_read_only() {
                // It cannot finish it, but reads below it fail, as they will once it has.
                store.inner.state_mut().compacted = scheduled;
            } else {
                store.finish_compaction(scheduled)?;
            }
        }
        store.inner.persist_at_close.store(true, Ordering::Relaxed);
        Ok(store)
    }

    /// How the open made the key index: loaded from the index persisted in the file (and the
    /// records after it replayed), or rebuilt from every record, and then why.
    pub fn index_origin(&self) -> IndexOrigin {
        self.inner.index_origin.clone()
    }

    /// Persists the key index in the file, so the next open loads it and replays only the
    /// revisions written after now instead of reading every record. The last handle's drop does
    /// this too, for a store of at least
    /// [`INDEX_PERSIST_AT_CLOSE_RECORDS_MIN`](crate::limits::INDEX_PERSIST_AT_CLOSE_RECORDS_MIN)
    /// records; call it to bound the replay after a crash (after a compaction, say: an index
    /// persisted before a compaction cannot be used after it, and the next open rebuilds).
    /// Writers wait for it (it holds the writer lock while it writes the index: about 60 bytes
    /// per key), readers do not; it waits for a running compaction to finish (so calling it
    /// while holding a [`Compaction`](crate::Compaction) of this store never returns). Does
    /// nothing if the index persisted is already this one or a compaction is scheduled and not
    /// finished.
    pub fn persist_index(&self) -> Result<()> {
        self.inner.persist_index().map(|_| ())
    }

    /// Defragments the database under this store (see [`Db::defrag`]) online: reads and writes
    /// go on, and writes wait only for the defrag's last catch-up round and swap. The store's
    /// revisions, key index and `hash_by_rev` are unchanged by it: it copies the key tree entry
    /// for entry. A compaction may run during it; its deletes are part of what the catch-up
    /// rounds copy, so they need no lock here (the defrag holds no store lock at all).
    pub fn defrag(&self, options: &crate::DefragOptions) -> Result<crate::DefragReport> {
        self.inner.db.defrag(options)
    }

    /// Closes this handle, reporting what dropping it cannot. The last handle's close persists
    /// the key index (a store of at least
    /// [`crate::limits::INDEX_PERSIST_AT_CLOSE_RECORDS_MIN`] records; the next open then loads it
    /// instead of rebuilding it) and closes the database ([`Db::close`]); the first failure is
    /// the error. With other handles still open (clones, and the one each open [`Watcher`]
    /// holds), it only lets go of this one, as a drop does. After a failure the file holds every
    /// durable write, and an index the next open checks, brings up to date or rebuilds.
    ///
    /// [`Watcher`]: crate::Watcher
    pub fn close(self) -> Result<()> {
        let Some(mut inner) = Arc::into_inner(self.inner) else {
            return Ok(());
        };
        let persisted = inner.persist_at_close();
        let db = inner.db.clone();
        drop(inner);
        let closed = db.close();
        persisted.and(closed)
    }

    /// The database under this store.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The revision of the newest write.
    pub fn current_revision(&self) -> i64 {
        self.inner.state.read().current
    }

    /// The revision of the last compaction, -1 before any (as in etcd). Reads below it fail.
    pub fn compacted_revision(&self) -> i64 {
        self.inner.state.read().compacted
    }

    /// Reads the keys in `range` at the revision `options` name (the current one by default).
    pub fn range(
        &self,
        range: impl Into<KeyRange>,
        options: RangeOptions,
    ) -> Result<RangeResponse> {
        let range = range.into();
        let (plan, tx, current) = plan_range_in_chunks(self, &range, &options)?;
        let kvs = if plan.revs.is_empty() {
            Vec::new()
        } else {
            let tree = tx.tree(KEY_TREE)?.ok_or_else(|| missing(KEY_TREE))?;
            plan.finish(load(&tree, &plan.revs, plan.keys_only())?)
        };
        Ok(RangeResponse {
            more: plan.more,
            kvs,
            count: plan.count,
            revision: current,
        })
    }

    /// A crc32 of the store at revision `rev` (0 for the current revision), so that replicas can
    /// check they hold the same data: two stores with the same history and the same compaction
    /// revision have the same hash at every revision from it on (see `src/mvcc/hash.rs` for what
    /// is hashed). As in etcd:
    /// - the hash of a revision does not change while a compaction runs;
    /// - `hash_by_rev(C)` after `compact(C)` is what it was before, with the compact revision
    ///   before C: the compaction recorded it (the last
    ///   [`COMPACTION_HASHES_KEPT`](crate::limits::COMPACTION_HASHES_KEPT) compactions are
    ///   kept, and answered even below the compacted revision);
    /// - otherwise a revision below the compacted one is [`Error::Compacted`] (the compacted
    ///   revision itself is hashed), and one past the current revision
    ///   [`Error::FutureRevision`].
    pub fn hash_by_rev(&self, rev: i64) -> Result<HashResponse> {
        let state = self.inner.state.read();
        let (current, compacted) = (state.current, state.compacted);
        let at = if rev <= 0 { current } else { rev };
        if at > current {
            return Err(Error::FutureRevision {
                requested: at,
                current,
            });
        }
        // Taken under the lock, the snapshot holds every revision up to `current`.
        let tx = self.inner.db.begin_read()?;
        let meta = tx.tree(META_TREE)?.ok_or_else(|| missing(META_TREE))?;
        if let Some(r) = hash::recorded(&meta, at)? {
            return Ok(HashResponse {
                hash: r.hash,
                revision: current,
                compact_revision: r.previous,
                hash_revision: at,
            });
        }
        if at < compacted {
            return Err(Error::Compacted {
                requested: at,
                compacted,
            });
        }
        // etcd's `treeIndex.Keep(at)`: of the revisions at or below the floor, the visible ones.
        let keep: HashSet<Revision> = if compacted > 0 {
            state
                .index
                .values()
                .filter_map(|ki| ki.kept_at(at, compacted))
                .collect()
        } else {
            HashSet::new()
        };
        drop(state);
        let tree = tx.tree(KEY_TREE)?.ok_or_else(|| missing(KEY_TREE))?;
        let end = Revision {
            main: at + 1,
            sub: 0,
        }
        .encode(false);
        let mut h = Hasher::new(compacted, at, &keep);
        for entry in tree.range(..end.as_slice())? {
            let (k, v) = entry?;
            h.write(k, v)?;
        }
        Ok(HashResponse {
            hash: h.finish(),
            revision: current,
            compact_revision: compacted,
            hash_revision: at,
        })
    }
}

/// The revision a read is made at: `requested`, or `current` for 0, checked against the bounds.
pub(crate) fn read_revision(requested: i64, current: i64, compacted: i64) -> Result<i64> {
    let at = if requested <= 0 { current } else { requested };
    if at > current {
        return Err(Error::FutureRevision {
            requested: at,
            current,
        });
    }
    if at < compacted {
        return Err(Error::Compacted {
            requested: at,
            compacted,
        });
    }
    Ok(at)
}

/// Reads the records of `revs` from the key tree.
pub(crate) fn load(tree: &Tree<'_>, revs: &[Revision], keys_only: bool) -> Result<Vec<KeyValue>> {
    revs.iter()
        .map(|rev| {
            let raw = tree.get(&rev.encode(false))?.ok_or_else(|| {
                malformed(format!(
                    "the index names revision {rev:?}, which is not stored"
                ))
            })?;
            KeyValue::decode(raw, keys_only)
        })
        .collect()
}
