//! Replacing the file under a database: the one operation that changes which file commits go to.
//!
//! A defrag builds a new file beside the database ([`NewFile::create`]), keeps it up to date
//! through a database of its own ([`NewFile::db`], commits with [`Durability::None`]), holds the
//! writers ([`Db::hold_writers`]) and asks for the swap ([`WritersHeld::swap`]). It never touches
//! the state below; only this module replaces it.
//!
//! The swap, with writers held, one step each:
//! 1. take the new file's state over (nothing is written or synced);
//! 2. restart the sync state on the new file (a round still running on the old one finishes
//!    there and changes nothing: the new file holds its commit), owing it the swap's *finish*;
//! 3. hand the writer the new file's freelist, freelist run, length and newest snapshot;
//! 4. publish that snapshot to new readers.
//!
//! Then the writers are released, and the finish runs: sync the new file (every page and the
//! newest meta of it durable), rename it over the database's path, sync the directory. The
//! defrag runs it ([`crate::txn::db::Inner::finish_swap`]), or the first commit round after the
//! swap, whichever comes first; so the writers' pause is the last catch-up round and these steps
//! in memory, with no sync in it.
//!
//! Invariants:
//! 1. The new file holds the database's newest commit, with the same txid. Txids are one sequence
//!    across the two files: the new file's catch-up commits take the txids of the commits they
//!    copy ([`crate::txn::WriteTxn::commit_as`]), so the new file never runs ahead of the old,
//!    and its last one is the old file's newest. A waiter for any old commit then finds it
//!    durable in the new file once the finish has run; readers of the old file all hold txids at
//!    or below it, below every commit made after the swap.
//! 2. The reader registry is shared by both files. A page of the new file freed by commit T waits
//!    until no reader is older than T, whichever file that reader reads: at worst longer than
//!    it needs, never shorter. The new file's own catch-up commits had no reader but the defrag's,
//!    so every page they freed is free from the swap on: a commit after the swap may overwrite
//!    one before the finish, but until the finish the file is not at the database's path, and
//!    the finish's sync makes the newest meta, which no longer needs those pages, durable.
//! 3. Until the rename the database's path holds the old file, which has every commit
//!    acknowledged so far. A failure before the swap removes the new file (a crash leaves it
//!    beside the database, and the next open removes it). The rename comes after the new file is
//!    synced and is atomic: after a crash the path holds either file, each whole and synced.
//! 4. Until the finish has run, no commit counts as durable that the old file did not make
//!    durable (`txn::sync`, rule 7): writers go on writing the new file, and a waiter for any
//!    commit the old file had not synced runs the finish first. If it fails, the database is
//!    poisoned: nothing more is acknowledged until a reopen shows which file won, and the old
//!    file is closed whole rather than released.
//! 5. Steps 2 to 4 run under the writer lock, so no commit sees half of them; every round that
//!    begins after step 2 writes the new file.
//! 6. Readers that began before the swap keep the old file's mappings, which live until the last
//!    of them finishes; the caller gets the old storage back to release it gently.

use std::path::PathBuf;
use std::sync::{Arc, Weak};

use memmap2::Mmap;
use parking_lot::MutexGuard;

use crate::error::{Error, PageId, Result};
use crate::page_file::freelist::FreeList;
use crate::page_file::freelist::chain::Chain;
use crate::page_file::storage::{DEFRAG_SUFFIX, Storage, sibling_path};
use crate::txn::db::{Db, Options, Snapshot, WriterHeld};
use crate::txn::sync::Durability;
use crate::txn::write::Writer;

/// A database in a new file beside another database's, to take its place.
#[derive(Debug)]
pub(crate) struct NewFile {
    /// `None` once swapped in or discarded.
    db: Option<Db>,
    path: PathBuf,
    /// The storage of the database it is to replace, beside which it lies.
    beside: Arc<dyn Storage>,
}

impl NewFile {
    /// Creates `<file>.defrag` beside `db`'s file (replacing a leftover), lets `fill` write a
    /// whole database into it (metas included), and opens that. On an error the file is removed.
    pub fn create(db: &Db, fill: impl FnOnce(&dyn Storage) -> Result<()>) -> Result<NewFile> {
        let beside = db.inner.storage();
        let path = sibling_path(&beside.path(), DEFRAG_SUFFIX);
        beside.remove_sibling(&path)?;
        let storage: Arc<dyn Storage> = Arc::from(beside.create_sibling(&path)?);
        let options = Options {
            durability: Durability::None,
            max_size: None,
            ..db.inner.options.clone()
        };
        let opened = fill(&*storage).and_then(|()| Db::from_storage(storage, None, options));
        match opened {
            Ok(new) => Ok(NewFile {
                db: Some(new),
                path,
                beside,
            }),
            Err(e) => {
                // Best effort: the error that stopped the copy is the one to report, and a
                // leftover is removed by the next defrag or open.
                let _ = beside.remove_sibling(&path);
                Err(e)
            }
        }
    }

    /// The new file's database: commits to it are not synced until the swap.
    pub fn db(&self) -> &Db {
        self.db.as_ref().expect("a new file not yet swapped in")
    }

    /// Writes back what the commits so far wrote, so that the swap's finish has only the last
    /// round's pages left to write. Makes nothing durable that counts: the file is not in place
    /// yet. Its cost is what the commits since the last call wrote: the defrag calls it after
    /// each piece of a catch-up round.
    pub fn write_back(&self) -> Result<()> {
        self.db().inner.storage().sync()
    }

    /// Closes the new file, writing nothing more to it, and removes it.
    fn discard(&mut self) {
        if let Some(db) = self.db.take() {
            // Poisoned, it does not sync on drop.
            db.inner.sync.poison();
            drop(db);
            // Best effort: a leftover is removed by the next defrag or open.
            let _ = self.beside.remove_sibling(&self.path);
        }
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        self.discard();
    }
}

/// The new file's state as the writer takes it over.
struct Parts {
    storage: Arc<dyn Storage>,
    snapshot: Arc<Snapshot>,
    slot: PageId,
    freelist: FreeList,
    chain: Chain,
    file_len: u64,
    maps: Vec<Weak<Mmap>>,
}

impl Db {
    /// Takes this database (a new file) apart for the swap. Every commit wrote its meta unsynced
    /// (`Durability::None`); the sync that makes it all durable is the swap's finish, owed by
    /// the database that takes the file over (`txn::sync`, rule 7).
    fn into_parts(self) -> Result<Parts> {
        let inner = &*self.inner;
        let storage = inner.storage();
        let (meta, slot) = inner.sync.written();
        // The finish syncs it: it does not sync on drop.
        inner.sync.synced_by_caller();
        let _held = WriterHeld::take(inner);
        let w = inner.writer.lock();
        debug_assert_eq!(w.latest.meta, meta);
        let mut freelist = w.freelist.clone();
        // Invariant 2: no reader but the defrag's ever saw this file, and until its newest commit
        // is durable (the finish) the file is not the database's.
        freelist.release(u64::MAX)?;
        Ok(Parts {
            storage,
            snapshot: w.latest.clone(),
            slot,
            freelist,
            chain: w.chain.clone(),
            file_len: w.file_len,
            maps: w.maps.clone(),
        })
    }

    /// Holds every writer until the returned value is dropped (a write transaction open on this
    /// thread would deadlock: commit or drop it first). Fails on a read-only or poisoned
    /// database.
    pub(crate) fn hold_writers(&self) -> Result<WritersHeld<'_>> {
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        self.inner.sync.check_poisoned()?;
        let held = WriterHeld::take(&self.inner);
        Ok(WritersHeld {
            db: self,
            writer: self.inner.writer.lock(),
            _held: held,
        })
    }

    /// Held by one defrag for its whole run (see the lock order in `txn::db`).
    pub(crate) fn one_defrag(&self) -> MutexGuard<'_, ()> {
        self.inner.defrag.lock()
    }
}

/// What the database's file held when the writers were held: for the defrag's report and its
/// read-ahead.
#[derive(Debug)]
pub(crate) struct Usage {
    /// Pages of the freelist's runs (its chain).
    pub freelist_pages: u64,
    /// Free and pending pages.
    pub free_pages: u64,
    /// Runs of free, pending and freelist pages, sorted.
    pub unused: Vec<(PageId, u64)>,
}

/// Every writer held: no commit runs until this is dropped.
pub(crate) struct WritersHeld<'db> {
    db: &'db Db,
    writer: MutexGuard<'db, Writer>,
    /// Dropped after `writer` (fields drop in order).
    _held: WriterHeld,
}

/// What a swap replaced, and how its directory sync went.
pub(crate) struct Swapped {
    /// The old file: readers that began before the swap may still map it.
    pub old_storage: Arc<dyn Storage>,
    /// The old file's newest snapshot.
    pub old_snapshot: Arc<Snapshot>,
    /// Every mapping of the old file that may still be alive: the old file is mapped by no one
    /// once all of them are dead.
    pub old_maps: Vec<Weak<Mmap>>,
    /// The old file's freelist, to be dropped once writers are free.
    pub old_freelist: FreeList,
    /// The new file's newest snapshot, now the database's.
    pub snapshot: Arc<Snapshot>,
}

impl WritersHeld<'_> {
    /// The newest commit.
    pub fn latest(&self) -> &Arc<Snapshot> {
        &self.writer.latest
    }

    /// What the file's pages hold now.
    pub fn usage(&self) -> Usage {
        let w = &*self.writer;
        let mut unused = w.freelist.persisted_runs();
        unused.extend_from_slice(w.chain.runs());
        unused.sort_unstable();
        Usage {
            freelist_pages: w.chain.pages(),
            free_pages: w.freelist.free_page_count() + w.freelist.pending_page_count(),
            unused,
        }
    }

    /// Swaps `new` in under the database (see the module docs for each step): it must hold the
    /// newest commit. On an error the new file is removed and the database is as it was. The
    /// swap's finish is owed afterwards ([`crate::txn::db::Inner::finish_swap`]).
    pub fn swap(&mut self, mut new: NewFile) -> Result<Swapped> {
        let inner = &*self.db.inner;
        let old = inner.storage();
        debug_assert!(
            Arc::ptr_eq(&old, &new.beside),
            "the file was swapped under a defrag"
        );
        let latest = self.writer.latest.meta.txid;
        let db = new.db.take().expect("a new file not yet swapped in");
        // 1. Take the new file's state over; nothing is written or synced here.
        let built = db.into_parts().and_then(|parts| {
            assert_eq!(
                parts.snapshot.meta.txid, latest,
                "the new file must hold the newest commit, under its txid"
            );
            inner.sync.check_poisoned()?;
            Ok(parts)
        });
        let parts = match built {
            Ok(parts) => parts,
            Err(e) => {
                let _ = new.beside.remove_sibling(&new.path);
                return Err(e);
            }
        };

        // 2. Every later round writes the new file, and the first of them, or the defrag, runs
        //    the finish: sync the new file, rename it over the database, sync the directory
        //    (invariant 4).
        let meta = parts.snapshot.meta;
        let old_storage = inner
            .sync
            .restart(parts.storage, meta, parts.slot, old.path());
        debug_assert!(Arc::ptr_eq(&old_storage, &old));

        // 3. The writer starts from the new file.
        let w = &mut *self.writer;
        // The old file's list goes out with the swap, to be dropped with writers free: a
        // fragmented file's list, with every run freed during the defrag pending, is large, and
        // freeing it made a 2 ms pause 10-23 ms.
        let old_freelist = std::mem::replace(&mut w.freelist, parts.freelist);
        w.chain = parts.chain;
        w.file_len = parts.file_len;
        let old_maps = std::mem::replace(&mut w.maps, parts.maps);
        let old_snapshot = std::mem::replace(&mut w.latest, parts.snapshot.clone());

        // 4. New readers read the new file.
        inner.publish(parts.snapshot.clone());
        Ok(Swapped {
            old_storage,
            old_snapshot,
            old_maps,
            old_freelist,
            snapshot: parts.snapshot,
        })
    }
}
