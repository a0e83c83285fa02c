//! The Raft log in a folio database of its own, `raft-log.folio` in the member's data dir.
//!
//! Why a file of its own rather than trees beside the store: a snapshot is installed by renaming
//! a received copy of the leader's store over the store's file, which must not take the log with
//! it (the log keeps the entries after the snapshot, the vote and the committed index); and a
//! defrag of the store, or a snapshot copy of it, need not copy the log.
//!
//! Trees:
//! - `raft.log`: index (u64, big-endian, so byte order is index order) → the entry (JSON).
//! - `raft.state`: `vote`, `committed` and `purged` (the last purged log id) → JSON.
//!
//! Invariants:
//! 1. Every call but `append` and `save_committed` returns after its commit is durable (the database syncs each
//!    commit). `append` hands its entries to the *flusher*, a thread of the log's own, and
//!    returns at once; the flusher commits every append queued by the time it is free in one
//!    commit (one sync for them all, however many appends openraft made meanwhile: under load
//!    it makes one per client write) and only then tells openraft they are flushed.
//! 2. An appended entry is readable from the moment `append` returns: until the flusher has
//!    committed it, from `pending`, which readers look at before the database (the flusher
//!    removes an entry from `pending` only after its commit is visible, so a reader that copied
//!    `pending` first and then began its read misses nothing).
//! 3. `truncate` and `purge` first wait until the flusher has committed every append queued
//!    before them (a barrier), so they change the database in the order openraft called.
//! 4. The log holds a contiguous run of indexes, all above `purged`: `truncate` removes a suffix,
//!    `purge` a prefix and records its last log id first in the same commit.
//! 5. `save_committed` queues the committed log id to the flusher and returns: openraft calls it
//!    in its core loop at every advance of the commit index, and a sync there held up every
//!    member's Raft between two rounds. The flusher writes it in its next commit, with every
//!    entry appended before it, so the recorded committed index never names an entry the log
//!    does not hold. After a crash it may be older than the one openraft last saved: that is
//!    safe, since it only tells openraft how far it may apply before it hears from the leader
//!    (an older one means less, never a wrong entry).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use folio::{Db, Durability};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{NodeId, TypeConfig};

const LOG_TREE: &[u8] = b"raft.log";
const STATE_TREE: &[u8] = b"raft.state";
const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

/// The member's Raft log, vote and committed index, durable in a folio database.
#[derive(Clone, Debug)]
pub struct LogStore {
    db: Db,
    /// Appended entries the flusher has not committed yet, by index (invariant 2).
    pending: Arc<Mutex<BTreeMap<u64, Entry<TypeConfig>>>>,
    /// The flusher's queue; it stops once every clone of the log is dropped.
    flusher: Sender<Flush>,
}

/// What the flusher is asked to do, in order.
enum Flush {
    /// Commit the entries, then report to openraft.
    Append(Vec<Entry<TypeConfig>>, LogFlushed<TypeConfig>),
    /// Record the committed log id (invariant 5).
    Committed(Vec<u8>),
    /// Answer once everything queued before is committed.
    Barrier(SyncSender<()>),
}

/// The flusher: takes everything queued, commits its entries in one commit, answers each.
fn flusher(db: Db, pending: Arc<Mutex<BTreeMap<u64, Entry<TypeConfig>>>>, queue: Receiver<Flush>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter());
        let entries: Vec<&Entry<TypeConfig>> = batch
            .iter()
            .filter_map(|f| match f {
                Flush::Append(entries, _) => Some(entries),
                _ => None,
            })
            .flatten()
            .collect();
        let committed = batch.iter().rev().find_map(|f| match f {
            Flush::Committed(raw) => Some(raw.as_slice()),
            _ => None,
        });
        let done = if entries.is_empty() && committed.is_none() {
            Ok(())
        } else {
            commit_entries(&db, &entries, committed)
        };
        if done.is_ok() {
            let mut pending = pending.lock().expect("pending lock");
            for e in &entries {
                if pending.get(&e.log_id.index).map(|p| p.log_id) == Some(e.log_id) {
                    pending.remove(&e.log_id.index);
                }
            }
        }
        for f in batch {
            match f {
                Flush::Append(_, callback) => callback.log_io_completed(
                    done.as_ref()
                        .map(|_| ())
                        .map_err(|e| std::io::Error::other(e.to_string())),
                ),
                Flush::Barrier(answer) => {
                    let _ = answer.send(());
                }
                Flush::Committed(_) => {}
            }
        }
    }
}

/// Puts `entries` into the log tree, and `committed` as the committed log id, in one commit,
/// durable when it returns.
fn commit_entries(
    db: &Db,
    entries: &[&Entry<TypeConfig>],
    committed: Option<&[u8]>,
) -> Result<(), folio::Error> {
    let mut tx = db.begin_write()?;
    if let Some(raw) = committed {
        tx.open_tree(STATE_TREE)?.put(COMMITTED, raw)?;
    }
    {
        let mut log = tx.open_tree(LOG_TREE)?;
        for entry in entries {
            let raw = serde_json::to_vec(entry)
                .map_err(|e| folio::Error::InvalidOption(format!("a log entry: {e}")))?;
            log.put(&entry.log_id.index.to_be_bytes(), &raw)?;
        }
    }
    tx.commit()
}

pub(crate) fn io_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write(&std::io::Error::other(e.to_string())).into()
}

fn read_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read(&std::io::Error::other(e.to_string())).into()
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError<NodeId>> {
    serde_json::to_vec(v).map_err(io_err)
}

fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, StorageError<NodeId>> {
    serde_json::from_slice(raw).map_err(read_err)
}

impl LogStore {
    /// Opens (or creates) the log at `path`; every commit is synced.
    pub fn open(path: &Path) -> folio::Result<LogStore> {
        let db = Db::builder()
            .durability(Durability::Immediate)
            .lock_timeout(crate::state_machine::LOCK_WAIT)
            .open(path)?;
        let mut tx = db.begin_write()?;
        tx.open_tree(LOG_TREE)?;
        tx.open_tree(STATE_TREE)?;
        tx.commit()?;
        let pending = Arc::new(Mutex::new(BTreeMap::new()));
        let (queue, flushes) = std::sync::mpsc::channel();
        let (d, p) = (db.clone(), pending.clone());
        std::thread::Builder::new()
            .name("raft-log-flusher".into())
            .spawn(move || flusher(d, p, flushes))?;
        Ok(LogStore {
            db,
            pending,
            flusher: queue,
        })
    }

    /// Waits until the flusher has committed every append queued before (invariant 3).
    fn barrier(&self) -> Result<(), StorageError<NodeId>> {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.flusher
            .send(Flush::Barrier(answer))
            .map_err(|_| io_err("the log's flusher stopped"))?;
        answered
            .recv()
            .map_err(|_| io_err("the log's flusher stopped"))
    }

    /// A copy of the pending entries in `range` (taken before a read of the database).
    fn pending_in(&self, range: (Bound<u64>, Bound<u64>)) -> BTreeMap<u64, Entry<TypeConfig>> {
        self.pending
            .lock()
            .expect("pending lock")
            .range(range)
            .map(|(i, e)| (*i, e.clone()))
            .collect()
    }

    fn get_state<T: DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let tx = self.db.begin_read().map_err(read_err)?;
        let tree = tx
            .tree(STATE_TREE)
            .map_err(read_err)?
            .ok_or_else(|| read_err("no state tree"))?;
        tree.get(key).map_err(read_err)?.map(decode).transpose()
    }

    fn put_state<T: Serialize>(&self, key: &[u8], v: &T) -> Result<(), StorageError<NodeId>> {
        let raw = encode(v)?;
        let mut tx = self.db.begin_write().map_err(io_err)?;
        tx.open_tree(STATE_TREE)
            .map_err(io_err)?
            .put(key, &raw)
            .map_err(io_err)?;
        tx.commit().map_err(io_err)
    }

    /// Deletes the entries whose index lies in `range`, in one commit with `also`'s state entry.
    fn delete(
        &self,
        range: (Bound<u64>, Bound<u64>),
        also: Option<(&[u8], Vec<u8>)>,
    ) -> Result<(), StorageError<NodeId>> {
        self.barrier()?;
        let mut tx = self.db.begin_write().map_err(io_err)?;
        if let Some((key, value)) = also {
            tx.open_tree(STATE_TREE)
                .map_err(io_err)?
                .put(key, &value)
                .map_err(io_err)?;
        }
        let mut log = tx.open_tree(LOG_TREE).map_err(io_err)?;
        let keys: Vec<Vec<u8>> = {
            let bounds = (range.0.map(u64::to_be_bytes), range.1.map(u64::to_be_bytes));
            let mut keys = Vec::new();
            for e in log.range::<[u8; 8], _>(bounds).map_err(io_err)? {
                keys.push(e.map_err(io_err)?.0.to_vec());
            }
            keys
        };
        for k in keys {
            log.delete(&k).map_err(io_err)?;
        }
        tx.commit().map_err(io_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        // Pending first, then the database (invariant 2).
        let mut entries = self.pending_in(range);
        let tx = self.db.begin_read().map_err(read_err)?;
        let tree = tx
            .tree(LOG_TREE)
            .map_err(read_err)?
            .ok_or_else(|| read_err("no log tree"))?;
        let bounds = (range.0.map(u64::to_be_bytes), range.1.map(u64::to_be_bytes));
        for e in tree.range::<[u8; 8], _>(bounds).map_err(read_err)? {
            let (key, raw) = e.map_err(read_err)?;
            let index = u64::from_be_bytes(
                key.try_into()
                    .map_err(|_| read_err("a log key is not 8 bytes"))?,
            );
            if let std::collections::btree_map::Entry::Vacant(slot) = entries.entry(index) {
                slot.insert(decode(raw)?);
            }
        }
        Ok(entries.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let purged: Option<LogId<NodeId>> = self.get_state(PURGED)?;
        // Pending first, then the database (invariant 2).
        let pending = self
            .pending
            .lock()
            .expect("pending lock")
            .last_key_value()
            .map(|(_, e)| e.log_id);
        let last = {
            let tx = self.db.begin_read().map_err(read_err)?;
            let tree = tx
                .tree(LOG_TREE)
                .map_err(read_err)?
                .ok_or_else(|| read_err("no log tree"))?;
            match tree.last().map_err(read_err)? {
                Some((_, raw)) => Some(decode::<Entry<TypeConfig>>(raw)?.log_id),
                None => None,
            }
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: pending.or(last).or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_state(VOTE, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_state(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Queued, not waited for (invariant 5).
        self.flusher
            .send(Flush::Committed(encode(&committed)?))
            .map_err(|_| io_err("the log's flusher stopped"))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        self.barrier()?;
        Ok(self
            .get_state::<Option<LogId<NodeId>>>(COMMITTED)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        {
            let mut pending = self.pending.lock().expect("pending lock");
            for e in &entries {
                pending.insert(e.log_id.index, e.clone());
            }
        }
        // The flusher reports to openraft once the entries are durable (invariant 1).
        self.flusher
            .send(Flush::Append(entries, callback))
            .map_err(|_| io_err("the log's flusher stopped"))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.delete((Bound::Included(log_id.index), Bound::Unbounded), None)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let purged = encode(&log_id)?;
        self.delete(
            (Bound::Unbounded, Bound::Included(log_id.index)),
            Some((PURGED, purged)),
        )
    }
}
