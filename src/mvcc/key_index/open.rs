//! Making the index on open: load the persisted one (`persist.rs`) and replay the records written
//! after it, or rebuild it from every record (`rebuild.rs`).
//!
//! The persisted index reflects every record up to its revision R and a compaction at its
//! compacted revision P. The store on disk has since finished a compaction at F and maybe
//! scheduled one at S. The open is a recipe, each step a reason to rebuild if it fails:
//!
//! 1. **Read the header**: there is one, of this format, its checksum right.
//! 2. **Judge it** ([`judge`], a pure function): P <= F (compaction only rises); max(F, S) <= R
//!    (a compaction above R may have deleted records the replay needs, and then the replay
//!    could not know a key's generations); R is a revision the store has.
//! 3. **Load** it: every check of `persist.rs` (the chunks' crc and counts, keys rising, every
//!    history well formed with no revision above R).
//! 4. **Replay** the records above R, in revision order, as the writes that made them did
//!    (`KeyIndex::put`, `KeyIndex::tombstone`), checking each against its record: a put must give
//!    the record's version and create revision, a tombstone must end a live key.
//! 5. **Compact** the index at F if F > P (F <= R by step 2, so every record it removed is below
//!    the replay and the compaction of the index removes it too, as the compaction itself did).
//! 6. **Count**: with no compaction pending (S <= F), the `key` tree must hold as many records as
//!    the index holds revisions: the header's count of the `key` tree then plus the replayed
//!    records when F = P, or the index's revisions counted when F > P.
//!
//! A compaction scheduled but not finished (S > F, S <= R) is left to the store's open, which
//! finishes it on the index this made, as after a rebuild.

use std::collections::HashSet;

use crate::btree::tree::Tree;
use crate::error::Result;
use crate::mvcc::key_index::persist::{self, Header, INDEX_TREE, Rejected};
use crate::mvcc::key_index::{Index, packed, rebuild};
use crate::mvcc::revision::{Revision, next_record};
use crate::txn::ReadTxn;

/// How a store's key index was made when the store was opened ([`crate::Store::index_origin`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexOrigin {
    /// Loaded from the index persisted at `revision`, with the `replayed` records written after
    /// it applied.
    Loaded {
        /// The revision the persisted index reflected.
        revision: i64,
        /// How many records above it were applied.
        replayed: u64,
    },
    /// Rebuilt from every record of the key tree.
    Rebuilt {
        /// Why the persisted index was not used ("no persisted index" for a file without one).
        reason: String,
    },
}

/// The index an open made.
pub(crate) struct Opened {
    pub index: Index,
    /// The newest main revision stored, as [`rebuild`] gives it.
    pub newest: Option<i64>,
    pub origin: IndexOrigin,
    /// The revision and compacted revision of the persisted index, when it was loaded.
    pub persisted: Option<(i64, i64)>,
}

/// Makes the index of the store in `tx`: `keys` is its `key` tree, `finished` and `scheduled`
/// the revisions of its last finished and scheduled compactions.
pub(crate) fn open(
    tx: &ReadTxn<'_>,
    keys: &Tree<'_>,
    finished: i64,
    scheduled: i64,
) -> Result<Opened> {
    let newest = match keys.last()? {
        Some((k, _)) => Some(Revision::decode(k)?.0.main),
        None => None,
    };
    let reason = match load(tx, keys, newest, finished, scheduled)? {
        Ok(opened) => return Ok(opened),
        Err(reason) => reason,
    };
    let (index, newest) = rebuild(keys)?;
    Ok(Opened {
        index,
        newest,
        origin: IndexOrigin::Rebuilt { reason },
        persisted: None,
    })
}

/// Steps 1 to 6 of the module docs; `Ok(Err(reason))` when the persisted index cannot be used.
fn load(
    tx: &ReadTxn<'_>,
    keys: &Tree<'_>,
    newest: Option<i64>,
    finished: i64,
    scheduled: i64,
) -> Result<std::result::Result<Opened, Rejected>> {
    // 1. Read the header.
    let tree = match tx.tree(INDEX_TREE) {
        Ok(Some(tree)) => tree,
        Ok(None) => return Ok(Err("no persisted index".into())),
        Err(e) => return Ok(Err(format!("opening the persisted index: {e}"))),
    };
    let header = match persist::header(&tree) {
        Ok(h) => h,
        Err(why) => return Ok(Err(why)),
    };
    // 2. Judge it.
    if let Err(why) = judge(&header, newest, finished, scheduled) {
        return Ok(Err(why));
    }
    // 3. Load it.
    let mut index = match persist::load(&tree, &header) {
        Ok(index) => index,
        Err(why) => return Ok(Err(format!("the persisted index is damaged: {why}"))),
    };
    // 4. Replay.
    let replayed = match replay(keys, &mut index, header.revision)? {
        Ok(n) => n,
        Err(why) => return Ok(Err(why)),
    };
    // 5. Compact.
    if finished > header.compacted {
        compact(&mut index, finished);
    }
    // 6. Count.
    if scheduled <= finished {
        let expected = if finished == header.compacted {
            header.key_records.checked_add(replayed)
        } else {
            Some(index.values().map(|k| packed::count(&k.packed)).sum())
        };
        if expected != Some(keys.len()) {
            return Ok(Err(format!(
                "the key tree holds {} records, the persisted index and the {replayed} replayed \
                 account for {expected:?}",
                keys.len()
            )));
        }
    }
    Ok(Ok(Opened {
        index,
        newest,
        origin: IndexOrigin::Loaded {
            revision: header.revision,
            replayed,
        },
        persisted: Some((header.revision, header.compacted)),
    }))
}

/// 2. Whether an index persisted under `header` can be brought up to date by a replay, in a store
///    whose newest record is at `newest`, compacted at `finished` with one scheduled at `scheduled`.
pub(crate) fn judge(
    header: &Header,
    newest: Option<i64>,
    finished: i64,
    scheduled: i64,
) -> std::result::Result<(), Rejected> {
    if header.compacted > finished {
        return Err(format!(
            "the persisted index was compacted at {}, the store only at {finished}",
            header.compacted
        ));
    }
    let floor = finished.max(scheduled);
    if floor > header.revision {
        return Err(format!(
            "a compaction at {floor} after the persisted index's revision {} removed records a \
             replay would need",
            header.revision
        ));
    }
    // The store's current revision, as the open computes it.
    let current = newest.unwrap_or(1).max(1).max(scheduled);
    if header.revision > current {
        return Err(format!(
            "the persisted index is at revision {}, past the store's {current}",
            header.revision
        ));
    }
    Ok(())
}

/// 4. Applies the records above `revision` to `index`; returns how many there were, or why they
///    do not fit it.
fn replay(
    keys: &Tree<'_>,
    index: &mut Index,
    revision: i64,
) -> Result<std::result::Result<u64, Rejected>> {
    let Some(from) = revision.checked_add(1) else {
        return Ok(Ok(0));
    };
    let mut cursor = keys.cursor();
    let mut entry = cursor.seek(&Revision { main: from, sub: 0 }.encode(false))?;
    let mut replayed = 0u64;
    let mut previous: Option<Revision> = None;
    while let Some((k, v)) = entry {
        let (rev, tombstone, head) = next_record(k, v, &mut previous)?;
        if tombstone {
            match index.get_mut(head.key) {
                Some(history) if history.is_alive() => history.tombstone(rev),
                _ => {
                    return Ok(Err(format!(
                        "the tombstone at {rev:?} deletes {}, which the persisted index does \
                         not hold alive",
                        head.key.escape_ascii()
                    )));
                }
            }
        } else {
            let seen = index.entry(head.key.to_vec()).or_default().put(rev);
            if (seen.version, seen.created.main) != (head.version, head.create_revision) {
                return Ok(Err(format!(
                    "the record at {rev:?} has version {} created at {}, the persisted index \
                     makes it {} created at {}",
                    head.version, head.create_revision, seen.version, seen.created.main
                )));
            }
        }
        replayed += 1;
        entry = cursor.next()?;
    }
    Ok(Ok(replayed))
}

/// 5. Compacts every key of `index` at `at`, as `Store::compact` compacts the index.
fn compact(index: &mut Index, at: i64) {
    let mut keep = HashSet::new();
    let mut gone = Vec::new();
    for (key, history) in index.range_mut::<[u8], _>(..) {
        if history.compact(at, &mut keep) {
            gone.push(key.clone());
        }
        keep.clear();
    }
    for key in gone {
        index.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    //! The index an open loads and replays answers as a full rebuild of the same file does, over
    //! random histories of puts, transactions, deletes and compactions, with the index persisted
    //! at random points and the store closed cleanly (persisting it) or as a crash would (no
    //! persist at close);
    //! and the open loads exactly when the persisted index can be brought up to date (seeded:
    //! the seed is printed, and `FOLIO_SEED=<seed>` reruns one).

    use std::sync::atomic::Ordering;

    use super::*;
    use crate::mvcc::key_index::test_writes::{Answers, Write, answers, write};
    use crate::mvcc::store::KEY_TREE;
    use crate::{Db, Durability, Store};

    #[test]
    fn a_loaded_and_replayed_index_answers_as_a_rebuild_of_the_same_file() {
        let seed = crate::testing::seed("persisted index open");
        let mut rng = crate::testing::Rng(seed);
        let mut next = move |n: u64| rng.below(n);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.folio");
        let builder = Db::builder().durability(Durability::None);
        // The revision of the index persisted in the file, and the highest compaction since.
        let mut persisted: Option<i64> = None;
        let mut compacted_since = i64::MIN;
        let (mut loaded, mut replayed_some) = (0, 0);
        for round in 0..24 {
            let store = Store::open_with(&path, &builder).unwrap();
            let origin = store.index_origin();
            let usable = persisted.is_some_and(|p| compacted_since <= p);
            match (&origin, usable) {
                (IndexOrigin::Loaded { revision, replayed }, true) => {
                    assert_eq!(Some(*revision), persisted, "seed {seed}, round {round}");
                    loaded += 1;
                    replayed_some += usize::from(*replayed > 0);
                }
                (IndexOrigin::Rebuilt { .. }, false) => {}
                _ => panic!(
                    "seed {seed}, round {round}: {origin:?}, with the index persisted at \
                     {persisted:?} and a compaction at {compacted_since} since"
                ),
            }
            // The opened index answers as a rebuild of the same file.
            {
                let state = store.inner.state.read();
                let tx = store.db().begin_read().unwrap();
                let keys = tx.tree(KEY_TREE).unwrap().unwrap();
                let (rebuilt, _) = rebuild(&keys).unwrap();
                let (from, to) = (state.compacted.max(0), state.current + 1);
                let (opened, rebuilt) =
                    (answers(&state.index, from, to), answers(&rebuilt, from, to));
                let names = |a: &Answers| a.iter().map(|k| k.0.clone()).collect::<Vec<_>>();
                assert_eq!(
                    names(&opened),
                    names(&rebuilt),
                    "seed {seed}, round {round}"
                );
                if let Some((o, r)) = opened.iter().zip(&rebuilt).find(|(o, r)| o != r) {
                    panic!("seed {seed}, round {round}: opened {o:?}, rebuilt {r:?}");
                }
            }
            for _ in 0..60 {
                let kind = match next(20) {
                    0..=7 => Write::Put,
                    8..=11 => Write::Txn,
                    12..=15 => Write::DeleteRange,
                    16 | 17 => Write::Compact,
                    _ => {
                        store.persist_index().unwrap();
                        persisted = Some(store.current_revision());
                        compacted_since = i64::MIN;
                        continue;
                    }
                };
                if let Some(at) = write(&store, kind, &mut next) {
                    compacted_since = compacted_since.max(at);
                }
            }
            if next(3) == 0 {
                // As a crash: the commits are in the file, the close persists nothing.
                store.inner.persist_at_close.store(false, Ordering::Relaxed);
            } else {
                // A close (which persists by itself only in larger stores).
                store.persist_index().unwrap();
                persisted = Some(store.current_revision());
                compacted_since = i64::MIN;
            }
        }
        println!("{loaded} of 24 opens loaded, {replayed_some} of them replayed records");
        assert!(
            loaded >= 4 && replayed_some >= 1,
            "seed {seed}: too few loads to judge"
        );
    }
}
