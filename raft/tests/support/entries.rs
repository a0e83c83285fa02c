//! Log entries for tests that drive the state machine directly.

#![allow(dead_code)]

use folio_raft::{Command, TypeConfig};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

/// An entry at `index`, in term 1, from node 1.
pub fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload,
    }
}

/// A put of `key` = `value` with no lease, at `index`.
pub fn put(index: u64, key: &str, value: &str) -> Entry<TypeConfig> {
    entry(
        index,
        EntryPayload::Normal(Command::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            lease: 0,
        }),
    )
}
