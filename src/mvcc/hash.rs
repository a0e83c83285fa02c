//! The hash of the store at a revision, and the hashes compactions record.
//!
//! `hash_by_rev(R)` on a store compacted at C (C ≤ R) is a crc32 over the `key` tree's entries
//! (key bytes, then record bytes) in revision order, of
//! - every revision above C and at or below R, tombstones included, and
//! - of the revisions at or below C, only each key's revision visible at R (never a tombstone).
//!
//! This is etcd's `kvHasher` (`server/storage/mvcc/hash.go`), whose keep set is
//! `treeIndex.Keep(R)`. It depends only on the history and on C, not on what a compaction has
//! removed so far: a compaction at C removes only revisions at or below C that are not visible
//! at C, and a revision visible at R that is at or below C is visible at C too. So the hash of R
//! is the same at every step of a running compaction, and in every store with the same history
//! and the same C.
//!
//! A compaction at C raises C, which changes the hash of C itself. So, as etcd's
//! `scheduleCompaction`, the compaction hashes every revision at or below C as it deletes them,
//! with the previous compaction revision P as the floor: the hash `hash_by_rev(C)` gave before it
//! began. It records `(C, P, hash)` in the last batch, and `hash_by_rev(C)` answers with that
//! record, compact revision P, for as long as it is kept: the newest
//! [`COMPACTION_HASHES_KEPT`](crate::limits::COMPACTION_HASHES_KEPT) are, as etcd's
//! `hashStorage` keeps 10 (etcd keeps them in memory; folio in the `meta` tree, so they survive
//! a reopen). A compaction resumed on open records nothing: its first attempt may already have
//! deleted revisions the hash needs (etcd skips it too, `prevCompactionCompleted`).

use std::collections::HashSet;

use crate::btree::tree::{Tree, TreeMut};
use crate::error::Result;
use crate::limits::COMPACTION_HASHES_KEPT;
use crate::mvcc::revision::{Revision, malformed};

/// The `meta` tree's keys of recorded compaction hashes: this prefix, then the compaction
/// revision as u64 big-endian.
const RECORDED_PREFIX: &[u8] = b"compact.hash.";
/// A recorded hash: the previous compaction revision (i64 LE), then the hash (u32 LE).
const RECORDED_LEN: usize = 8 + 4;

/// A hash being computed over `key` tree entries fed in revision order.
pub(crate) struct Hasher<'k> {
    crc: crc32fast::Hasher,
    /// The compaction revision the hash is taken against.
    floor: i64,
    /// The revision hashed: entries above it are left out.
    upto: i64,
    /// The revisions at or below `floor` to include.
    keep: &'k HashSet<Revision>,
}

impl<'k> Hasher<'k> {
    /// A hash of revision `upto` against the compaction revision `floor`, keeping `keep` of the
    /// revisions at or below the floor.
    pub fn new(floor: i64, upto: i64, keep: &'k HashSet<Revision>) -> Hasher<'k> {
        Hasher::resume(crc32fast::Hasher::new(), floor, upto, keep)
    }

    /// Goes on with a hash that earlier entries were fed to.
    pub fn resume(
        crc: crc32fast::Hasher,
        floor: i64,
        upto: i64,
        keep: &'k HashSet<Revision>,
    ) -> Hasher<'k> {
        Hasher {
            crc,
            floor,
            upto,
            keep,
        }
    }

    /// The compaction revision the hash is taken against.
    pub fn floor(&self) -> i64 {
        self.floor
    }

    /// The hash so far, to resume later.
    pub fn into_crc(self) -> crc32fast::Hasher {
        self.crc
    }

    /// Feeds one entry of the `key` tree (entries must come in key order).
    pub fn write(&mut self, key: &[u8], record: &[u8]) -> Result<()> {
        let (rev, _) = Revision::decode(key)?;
        if rev.main > self.upto || (rev.main <= self.floor && !self.keep.contains(&rev)) {
            return Ok(());
        }
        self.crc.update(key);
        self.crc.update(record);
        Ok(())
    }

    pub fn finish(self) -> u32 {
        self.crc.finalize()
    }
}

/// The hash a compaction recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// The compaction revision before this compaction.
    pub previous: i64,
    pub hash: u32,
}

fn recorded_key(rev: i64) -> Vec<u8> {
    let mut k = RECORDED_PREFIX.to_vec();
    k.extend_from_slice(&(rev as u64).to_be_bytes());
    k
}

/// The hash the compaction at `rev` recorded, if it is still kept.
pub(crate) fn recorded(meta: &Tree<'_>, rev: i64) -> Result<Option<Recorded>> {
    let Some(v) = meta.get(&recorded_key(rev))? else {
        return Ok(None);
    };
    let v: &[u8; RECORDED_LEN] = v
        .try_into()
        .map_err(|_| malformed(format!("a recorded compaction hash of {} bytes", v.len())))?;
    let (previous, hash) = v.split_at(8);
    Ok(Some(Recorded {
        previous: i64::from_le_bytes(previous.try_into().expect("8 bytes")),
        hash: u32::from_le_bytes(hash.try_into().expect("4 bytes")),
    }))
}

/// Records the hash of the compaction at `rev` and forgets all but the newest
/// [`COMPACTION_HASHES_KEPT`].
pub(crate) fn record(meta: &mut TreeMut<'_>, rev: i64, r: Recorded) -> Result<()> {
    let mut v = Vec::with_capacity(RECORDED_LEN);
    v.extend_from_slice(&r.previous.to_le_bytes());
    v.extend_from_slice(&r.hash.to_le_bytes());
    meta.put(&recorded_key(rev), &v)?;
    let mut all = Vec::new();
    for entry in meta.range(RECORDED_PREFIX..)? {
        let (k, _) = entry?;
        if !k.starts_with(RECORDED_PREFIX) {
            break;
        }
        all.push(k.to_vec());
    }
    let excess = all.len().saturating_sub(COMPACTION_HASHES_KEPT);
    for k in &all[..excess] {
        meta.delete(k)?;
    }
    Ok(())
}
