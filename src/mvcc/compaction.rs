//! Compaction: drop the revisions no read at or after the compaction revision can see.
//!
//! The recipe, one step each:
//! 1. Record the scheduled revision, durably, in its own write transaction.
//! 2. Compact the key index. From here reads below the revision fail, and the index says which
//!    revisions at or below it each key keeps (its newest one, and a tombstone exactly at the
//!    revision, as etcd since 3.5.16).
//! 3. Delete every other revision at or below it from the `key` tree, in batches of
//!    [`StoreOptions::compaction_batch`](crate::StoreOptions) revisions, each batch its own write
//!    transaction, so writers run between batches. Each batch also feeds the revisions it looks
//!    at to the compaction's hash (see `hash.rs`) before deleting them.
//! 4. The last batch records the finished revision and the compaction's hash.
//!
//! [`Store::compact`] runs them all; [`Store::begin_compaction`] runs steps 1–2 and returns a
//! [`Compaction`] that runs one batch per [`Compaction::step`].
//!
//! A crash anywhere leaves the scheduled revision above the finished one (or both equal, when it
//! is done); open rebuilds the index and runs steps 2–4 again, without the hash. Every step can
//! be repeated.

use std::collections::HashSet;
use std::ops::Bound;

use parking_lot::MutexGuard;

use crate::error::{Error, Result};
use crate::mvcc::hash::{self, Hasher, Recorded};
use crate::mvcc::revision::Revision;
use crate::mvcc::store::{FINISHED, KEY_TREE, META_TREE, SCHEDULED, Store};

/// A batch scans at most this many revisions per revision it may delete.
const SCAN_PER_DELETE: usize = 8;

/// Keys of the index compacted under one hold of the state lock.
const INDEX_CHUNK: usize = 10_000;

/// A compaction under way, one batch per [`step`](Compaction::step), from
/// [`Store::begin_compaction`]. Reads below its revision already fail; writers and readers run
/// between steps, and `hash_by_rev` answers the same at every step.
///
/// Dropping it before it is done leaves the rest of the deletes to the next compaction, or to
/// the next open of the store, which finishes it.
#[must_use = "a compaction deletes nothing until it is stepped"]
pub struct Compaction<'s> {
    store: &'s Store,
    _one_at_a_time: MutexGuard<'s, ()>,
    rev: i64,
    /// The revisions at or below `rev` the `key` tree keeps.
    keep: HashSet<Revision>,
    /// The last revision key the batches have looked at.
    after: Option<Vec<u8>>,
    /// The hash of `rev` against the previous compaction revision, fed by every batch, or `None`
    /// when it is not recorded (a compaction resumed on open).
    hash: Option<(i64, crc32fast::Hasher)>,
    done: bool,
}

impl std::fmt::Debug for Compaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compaction")
            .field("rev", &self.rev)
            .field("kept", &self.keep.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Compacts the store at `rev`: afterwards reads at any revision from `rev` on return what they
    /// did before, reads below `rev` fail with [`Error::Compacted`], and the revisions only those
    /// reads could see are removed from disk. A tombstone at exactly `rev` is kept (as etcd does
    /// since 3.5.16), so a watch from `rev` still sees that delete.
    ///
    /// A new store's compacted revision is -1, so `compact(0)` is a valid first compaction (it
    /// removes nothing); compacting at or below the compacted revision fails with
    /// [`Error::Compacted`], and above the current one with [`Error::FutureRevision`].
    pub fn compact(&self, rev: i64) -> Result<()> {
        self.begin_compaction(rev)?.finish()
    }

    /// Begins a compaction at `rev` (see [`Store::compact`]) that the caller carries out one batch
    /// at a time with [`Compaction::step`], for example to pace it between other work. When this
    /// returns, the compaction is recorded durably, reads below `rev` fail, and nothing is deleted
    /// yet.
    pub fn begin_compaction(&self, rev: i64) -> Result<Compaction<'_>> {
        let one_at_a_time = self.inner.compaction.lock();
        let previous = {
            let _writer = self.inner.writer.lock();
            let state = self.inner.state.read();
            if rev <= state.compacted {
                return Err(Error::Compacted {
                    requested: rev,
                    compacted: state.compacted,
                });
            }
            if rev > state.current {
                return Err(Error::FutureRevision {
                    requested: rev,
                    current: state.current,
                });
            }
            let previous = state.compacted;
            drop(state);
            // 1. Schedule.
            let mut tx = self.inner.db.begin_write()?;
            tx.open_tree(META_TREE)?
                .put(SCHEDULED, &rev.to_le_bytes())?;
            tx.commit()?;
            previous
        };
        let mut c = self.compact_index(one_at_a_time, rev);
        c.hash = Some((previous, crc32fast::Hasher::new()));
        Ok(c)
    }

    /// Steps 2–4 for a compaction already scheduled (on open, after a crash).
    pub(crate) fn finish_compaction(&self, rev: i64) -> Result<()> {
        let one_at_a_time = self.inner.compaction.lock();
        self.compact_index(one_at_a_time, rev).finish()
    }

    /// 2. Compacts the index. Reads below `rev` fail from here on. Keys are compacted a chunk at
    ///    a time, each key atomically: compacting a key touches only revisions at or below `rev`,
    ///    so it commutes with the puts that writers make between chunks.
    fn compact_index<'s>(&'s self, one_at_a_time: MutexGuard<'s, ()>, rev: i64) -> Compaction<'s> {
        // Sized up front: growing a set of a million revisions rehashes it inside a lock hold.
        let mut keep = {
            let mut state = self.inner.state_mut();
            state.compacted = rev;
            HashSet::with_capacity(state.index.len())
        };
        let mut index_after: Option<Vec<u8>> = None;
        loop {
            let mut state = self.inner.state_mut();
            let start = match &index_after {
                Some(k) => Bound::Excluded(k.as_slice()),
                None => Bound::Unbounded,
            };
            let mut gone = Vec::new();
            let mut seen = 0;
            let mut last = None;
            for (k, ki) in state
                .index
                .range_mut::<[u8], _>((start, Bound::Unbounded))
                .take(INDEX_CHUNK)
            {
                if ki.compact(rev, &mut keep) {
                    gone.push(k.clone());
                }
                seen += 1;
                last = Some(k.to_vec());
            }
            for k in &gone {
                state.index.remove(k);
            }
            if seen < INDEX_CHUNK {
                break;
            }
            index_after = last;
        }
        Compaction {
            store: self,
            _one_at_a_time: one_at_a_time,
            rev,
            keep,
            after: None,
            hash: None,
            done: false,
        }
    }
}

impl Compaction<'_> {
    /// The revision this compaction compacts at.
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// Whether every batch has run.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// 3. Deletes the next batch of revisions, in its own write transaction (writers run between
    ///    batches); 4. the last batch records the finished revision and the compaction's hash.
    ///    Returns whether the compaction is done.
    pub fn step(&mut self) -> Result<bool> {
        if self.done {
            return Ok(true);
        }
        let inner = &*self.store.inner;
        let end = Revision {
            main: self.rev + 1,
            sub: 0,
        }
        .encode(false);
        let writer = inner.writer.lock();
        let mut tx = inner.db.begin_write()?;
        let mut keys = tx.open_tree(KEY_TREE)?;
        // The hash goes on from the previous batches'; it is kept only if this batch commits.
        let mut hasher = self
            .hash
            .as_ref()
            .map(|(previous, crc)| Hasher::resume(crc.clone(), *previous, self.rev, &self.keep));
        let Batch { doomed, last, done } = plan_batch(
            &keys.as_tree(),
            self.after.as_deref(),
            &end,
            &self.keep,
            inner.options.compaction_batch,
            hasher.as_mut(),
        )?;
        for k in &doomed {
            keys.delete(k)?;
        }
        let hash = hasher.map(|h| (h.floor(), h.into_crc()));
        if done {
            let mut meta = tx.open_tree(META_TREE)?;
            meta.put(FINISHED, &self.rev.to_le_bytes())?;
            if let Some((previous, crc)) = &hash {
                let hash = crc.clone().finalize();
                hash::record(
                    &mut meta,
                    self.rev,
                    Recorded {
                        previous: *previous,
                        hash,
                    },
                )?;
            }
        }
        // Let the next writer in before waiting for the sync (group commit shares it).
        let visible = tx.commit_visible()?;
        drop(writer);
        // Only a committed batch moves the compaction on: a failed one is looked at again.
        self.hash = hash;
        self.after = last;
        self.done = done;
        visible.wait()?;
        Ok(done)
    }

    /// Runs every batch left.
    pub fn finish(mut self) -> Result<()> {
        while !self.step()? {}
        Ok(())
    }
}

/// One batch of a compaction: the keys to delete, the last key looked at, and whether the scan
/// reached the end.
struct Batch {
    doomed: Vec<Vec<u8>>,
    last: Option<Vec<u8>>,
    done: bool,
}

/// The next batch: up to `batch` revision keys after `after` and before `end` that `keep` does not
/// hold, looking at no more than `batch × SCAN_PER_DELETE` revisions.
fn plan_batch(
    keys: &crate::btree::tree::Tree<'_>,
    after: Option<&[u8]>,
    end: &[u8],
    keep: &HashSet<Revision>,
    batch: usize,
    mut hasher: Option<&mut Hasher<'_>>,
) -> Result<Batch> {
    let start = match after {
        Some(k) => Bound::Excluded(k),
        None => Bound::Unbounded,
    };
    let mut doomed = Vec::new();
    let mut last = None;
    // Kept revisions are scanned too, and a long run of them must not hold writers up either.
    let scan_max = batch.max(1) * SCAN_PER_DELETE;
    for (scanned, entry) in keys
        .range::<[u8], _>((start, Bound::Excluded(end)))?
        .enumerate()
    {
        let (k, v) = entry?;
        let (rev, _) = Revision::decode(k)?;
        if let Some(h) = hasher.as_mut() {
            h.write(k, v)?;
        }
        last = Some(k.to_vec());
        if !keep.contains(&rev) {
            doomed.push(k.to_vec());
        }
        if doomed.len() >= batch.max(1) || scanned + 1 >= scan_max {
            return Ok(Batch {
                doomed,
                last,
                done: false,
            });
        }
    }
    Ok(Batch {
        doomed,
        last,
        done: true,
    })
}
