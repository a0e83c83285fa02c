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
//! 1. Every call returns after its commit is durable (the database syncs each commit); `append`
//!    tells openraft the entries are flushed only then.
//! 2. The log holds a contiguous run of indexes, all above `purged`: `truncate` removes a suffix,
//!    `purge` a prefix and records its last log id first in the same commit.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

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
        Ok(LogStore { db })
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
        let tx = self.db.begin_read().map_err(read_err)?;
        let tree = tx
            .tree(LOG_TREE)
            .map_err(read_err)?
            .ok_or_else(|| read_err("no log tree"))?;
        let bounds = (
            range.start_bound().map(|i| i.to_be_bytes()),
            range.end_bound().map(|i| i.to_be_bytes()),
        );
        let mut entries = Vec::new();
        for e in tree.range::<[u8; 8], _>(bounds).map_err(read_err)? {
            entries.push(decode(e.map_err(read_err)?.1)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let purged: Option<LogId<NodeId>> = self.get_state(PURGED)?;
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
            last_log_id: last.or(purged),
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
        self.put_state(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
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
        let mut tx = self.db.begin_write().map_err(io_err)?;
        {
            let mut log = tx.open_tree(LOG_TREE).map_err(io_err)?;
            for entry in entries {
                log.put(&entry.log_id.index.to_be_bytes(), &encode(&entry)?)
                    .map_err(io_err)?;
            }
        }
        let done = tx.commit();
        // The commit synced (invariant 1): the entries are flushed, or the error says why not.
        let result = done
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(result);
        done.map(|_| ()).map_err(io_err)
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
