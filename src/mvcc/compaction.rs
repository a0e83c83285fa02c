//! Compaction: drop the revisions no read at or after the compaction revision can see.
//!
//! The recipe, one step each:
//! 1. Record the scheduled revision, durably, in its own write transaction.
//! 2. Compact the key index. From here reads below the revision fail, and the index says which
//!    revisions at or below it each key keeps.
//! 3. Delete every other revision at or below it from the `key` tree, in batches of
//!    [`StoreOptions::compaction_batch`](crate::StoreOptions) revisions, each batch its own write
//!    transaction, so writers run between batches.
//! 4. The last batch records the finished revision.
//!
//! A crash anywhere leaves the scheduled revision above the finished one (or both equal, when it
//! is done); open rebuilds the index and runs steps 2–4 again. Every step can be repeated.

use std::collections::HashSet;
use std::ops::Bound;

use crate::error::{Error, Result};
use crate::mvcc::revision::Revision;
use crate::mvcc::store::{FINISHED, KEY_TREE, META_TREE, SCHEDULED, Store};

/// A batch scans at most this many revisions per revision it may delete.
const SCAN_PER_DELETE: usize = 8;

/// Keys of the index compacted under one hold of the state lock.
const INDEX_CHUNK: usize = 10_000;

impl Store {
    /// Compacts the store at `rev`: afterwards reads at any revision from `rev` on return what they
    /// did before, reads below `rev` fail with [`Error::Compacted`], and the revisions only those
    /// reads could see are removed from disk.
    pub fn compact(&self, rev: i64) -> Result<()> {
        let _one_at_a_time = self.inner.compaction.lock();
        {
            let _writer = self.inner.writer.lock();
            let state = self.inner.state.read();
            if rev > state.current {
                return Err(Error::FutureRevision {
                    requested: rev,
                    current: state.current,
                });
            }
            if rev <= state.compacted {
                return Err(Error::Compacted {
                    requested: rev,
                    compacted: state.compacted,
                });
            }
            drop(state);
            // 1. Schedule.
            let mut tx = self.inner.db.begin_write()?;
            tx.open_tree(META_TREE)?
                .put(SCHEDULED, &rev.to_le_bytes())?;
            tx.commit()?;
        }
        self.run_compaction(rev)
    }

    /// Steps 2–4 for a compaction already scheduled (on open, after a crash).
    pub(crate) fn finish_compaction(&self, rev: i64) -> Result<()> {
        let _one_at_a_time = self.inner.compaction.lock();
        self.run_compaction(rev)
    }

    fn run_compaction(&self, rev: i64) -> Result<()> {
        // 2. Compact the index. Reads below `rev` fail from here on. Keys are compacted a chunk
        //    at a time, each key atomically: compacting a key touches only revisions at or below
        //    `rev`, so it commutes with the puts that writers make between chunks.
        // Sized up front: growing a set of a million revisions rehashes it inside a lock hold.
        let mut keep = {
            let mut state = self.inner.state.write();
            state.compacted = rev;
            HashSet::with_capacity(state.index.len())
        };
        let mut index_after: Option<Vec<u8>> = None;
        loop {
            let mut state = self.inner.state.write();
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
                last = Some(k.clone());
            }
            for k in &gone {
                state.index.remove(k);
            }
            if seen < INDEX_CHUNK {
                break;
            }
            index_after = last;
        }
        // 3. Delete in batches; 4. the last batch records the finished revision.
        let end = Revision {
            main: rev + 1,
            sub: 0,
        }
        .encode(false);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let _writer = self.inner.writer.lock();
            let mut tx = self.inner.db.begin_write()?;
            let mut keys = tx.open_tree(KEY_TREE)?;
            let Batch { doomed, last, done } = plan_batch(
                &keys.as_tree(),
                after.as_deref(),
                &end,
                &keep,
                self.inner.options.compaction_batch,
            )?;
            for k in &doomed {
                keys.delete(k)?;
            }
            if done {
                tx.open_tree(META_TREE)?.put(FINISHED, &rev.to_le_bytes())?;
            }
            // Let the next writer in before waiting for the sync (group commit shares it).
            let visible = tx.commit_visible()?;
            drop(_writer);
            visible.wait()?;
            if done {
                return Ok(());
            }
            after = last;
        }
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
        let (k, _) = entry?;
        let (rev, _) = Revision::decode(k)?;
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
