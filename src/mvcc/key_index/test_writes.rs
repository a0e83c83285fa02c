//! The random writes the key index's seeded tests play against a store: over 40 keys, so that
//! keys come and go and histories grow generations.

use crate::mvcc::key_index::{Index, VisibleRevision};
use crate::{Op, Store};

/// Each key, whether it is alive, and what it answers at each revision asked.
pub(crate) type Answers = Vec<(Vec<u8>, bool, Vec<Option<VisibleRevision>>)>;

/// Every key's answers at every revision from `from` to `to`.
pub(crate) fn answers(index: &Index, from: i64, to: i64) -> Answers {
    index
        .range::<[u8], _>(..)
        .map(|(k, ki)| {
            let seen = (from..=to).map(|at| ki.get(at)).collect();
            (k.to_vec(), ki.is_alive(), seen)
        })
        .collect()
}

/// One kind of write.
pub(crate) enum Write {
    /// A put of one key.
    Put,
    /// A transaction putting up to six keys: sub revisions above 0.
    Txn,
    /// A delete of a range of one to three keys.
    DeleteRange,
    /// A compaction at a random revision above the compacted one, if there is one.
    Compact,
}

/// The test key `i`.
pub(crate) fn key(i: u64) -> Vec<u8> {
    format!("k{i:02}").into_bytes()
}

/// Makes one write of `kind`, with `next(n)` choosing below `n`; returns the revision a
/// compaction compacted at.
pub(crate) fn write(store: &Store, kind: Write, next: &mut impl FnMut(u64) -> u64) -> Option<i64> {
    match kind {
        Write::Put => {
            store.put(&key(next(40)), b"v").unwrap();
        }
        Write::Txn => {
            let mut ks: Vec<u64> = (0..1 + next(6)).map(|_| next(40)).collect();
            ks.sort_unstable();
            ks.dedup();
            let ops: Vec<Op> = ks.iter().map(|&i| Op::put(&key(i), b"t")).collect();
            store.txn().then(ops).commit().unwrap();
        }
        Write::DeleteRange => {
            let a = next(40);
            let (lo, hi) = (key(a), key(a + 1 + next(3)));
            store.delete_range(lo.as_slice()..hi.as_slice()).unwrap();
        }
        Write::Compact => {
            let floor = store.compacted_revision();
            let current = store.current_revision();
            if current > floor {
                let at = floor + 1 + next((current - floor) as u64) as i64;
                store.compact(at).unwrap();
                return Some(at);
            }
        }
    }
    None
}
