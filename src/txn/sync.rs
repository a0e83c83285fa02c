//! Durability: who writes the meta page, when, and which pages are safe to reuse.
//!
//! State machine (one `SyncState` per database, under one mutex):
//! 1. A commit writes its pages, then records its meta as `committed`.
//! 2. A *round* makes `committed` durable: sync the data, write the meta into the slot that does
//!    not hold the newest written meta, sync again. One round runs at a time (`leader`); a commit
//!    that finds a round running waits for it and starts another only if it is still not durable.
//!    So with [`Durability::Group`], every writer that committed while a round ran shares the next.
//! 3. `safe` is the newest commit whose freed pages may be reused: the newest synced meta (or,
//!    with [`Durability::None`], the newest written one). A page freed by commit T is reachable from
//!    the meta before T; once the meta for T or later is durable, a crash can never fall back to a
//!    meta that needs it.
//! 4. Any failed sync or meta write poisons the database: the state on disk is unknown to this
//!    process, so it refuses further commits until reopened.

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, PageId, Result};
use crate::page_file::meta::Meta;
use crate::page_file::storage::Storage;

/// When a commit's data reaches the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Sync before `commit` returns: two syncs per commit. Survives power loss.
    #[default]
    Immediate,
    /// Sync before `commit` returns, sharing the syncs with every writer that commits meanwhile:
    /// concurrent writers pay for one round between them. Survives power loss. New readers may see
    /// a commit a moment before it is durable.
    Group,
    /// Never sync (the meta is written, not synced). Survives a process crash, not a power loss:
    /// after a power loss the file may be damaged, not merely older, because later commits reuse
    /// pages before anything is synced (as with LMDB's no-sync mode). For bulk loads that can be
    /// redone; [`crate::Db::sync`] makes everything so far durable.
    None,
}

#[derive(Debug)]
struct State {
    committed: Meta,
    /// The slot holding the newest written meta.
    written_slot: PageId,
    synced: u64,
    safe: u64,
    leader: bool,
    poisoned: bool,
}

impl State {
    /// A file whose newest meta, `meta`, is durable in `slot`.
    fn durable(meta: Meta, slot: PageId) -> State {
        State {
            committed: meta,
            written_slot: slot,
            synced: meta.txid,
            safe: meta.txid,
            leader: false,
            poisoned: false,
        }
    }
}

/// The coordinator of meta writes and syncs.
#[derive(Debug)]
pub(crate) struct SyncState {
    state: Mutex<State>,
    round_done: Condvar,
}

impl SyncState {
    pub fn new(meta: Meta, slot: PageId) -> SyncState {
        SyncState {
            state: Mutex::new(State::durable(meta, slot)),
            round_done: Condvar::new(),
        }
    }

    /// Starts over on a new file whose newest meta, `meta`, is durable in `slot` (after a defrag's
    /// swap). Waits for a running round, so none is left writing to the old file.
    pub fn restart(&self, meta: Meta, slot: PageId) {
        let mut s = self.state.lock();
        while s.leader {
            self.round_done.wait(&mut s);
        }
        debug_assert!(!s.poisoned && s.synced >= s.committed.txid);
        *s = State::durable(meta, slot);
    }

    /// Refuses every later commit until a reopen: the state on disk is unknown to this process.
    pub fn poison(&self) {
        self.state.lock().poisoned = true;
    }

    pub fn check_poisoned(&self) -> Result<()> {
        if self.state.lock().poisoned {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    /// The newest commit whose freed pages may be reused.
    pub fn safe(&self) -> u64 {
        self.state.lock().safe
    }

    /// Records a commit whose pages are written.
    pub fn set_committed(&self, meta: Meta) {
        let mut s = self.state.lock();
        debug_assert!(meta.txid > s.committed.txid);
        s.committed = meta;
    }

    /// The newest commit whose pages are written.
    pub fn committed_txid(&self) -> u64 {
        self.state.lock().committed.txid
    }

    /// Whether a commit is newer than the last synced meta.
    pub fn unsynced(&self) -> bool {
        let s = self.state.lock();
        !s.poisoned && s.committed.txid > s.synced
    }

    /// Writes the meta of the newest commit without syncing ([`Durability::None`]).
    pub fn write_meta_unsynced(&self, storage: &dyn Storage) -> Result<()> {
        self.lead(storage, false).map(|_| ())
    }

    /// Runs rounds until `txid` is durable.
    pub fn wait_synced(&self, storage: &dyn Storage, txid: u64) -> Result<()> {
        loop {
            {
                let mut s = self.state.lock();
                while s.leader {
                    self.round_done.wait(&mut s);
                }
                if s.poisoned {
                    return Err(Error::Poisoned);
                }
                if s.synced >= txid {
                    return Ok(());
                }
            }
            self.lead(storage, true)?;
        }
    }

    /// One round: waits for any running round, then writes (and with `sync`, syncs) the newest
    /// committed meta. Returns the txid written.
    fn lead(&self, storage: &dyn Storage, sync: bool) -> Result<u64> {
        let (meta, slot) = {
            let mut s = self.state.lock();
            while s.leader {
                self.round_done.wait(&mut s);
            }
            if s.poisoned {
                return Err(Error::Poisoned);
            }
            s.leader = true;
            (s.committed, 1 - s.written_slot)
        };
        let result = (|| {
            if sync {
                storage.sync()?;
            }
            storage.write_at(&meta.encode(slot), slot * meta.page_size as u64)?;
            if sync {
                storage.sync()?;
            }
            Ok(())
        })();
        let mut s = self.state.lock();
        s.leader = false;
        match &result {
            Ok(()) => {
                s.written_slot = slot;
                s.safe = s.safe.max(meta.txid);
                if sync {
                    s.synced = s.synced.max(meta.txid);
                }
            }
            Err(_) => s.poisoned = true,
        }
        self.round_done.notify_all();
        result.map(|()| meta.txid)
    }
}
