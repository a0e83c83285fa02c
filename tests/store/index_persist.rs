//! The threat: an open trusts a persisted key index that does not match the records (damaged on
//! disk, left behind by a compaction past it, or the records changed behind it), and the store
//! answers from a wrong index; or a damaged one makes the open panic. Each case must fall back
//! to the full rebuild, say why (`Store::index_origin`), and answer as before.

use folio::{Db, IndexOrigin, KeyRange, KeyValue, RangeOptions, Store};

const INDEX_TREE: &[u8] = b"mvcc.index";
const HEADER: &[u8] = b"header";

/// A store of 300 keys, a few revisions each, some deleted; returns what it holds at each
/// revision checked, and its current revision.
fn fill(store: &Store) -> i64 {
    for round in 0..4u32 {
        let ops: Vec<folio::Op> = (0..300u32)
            .map(|i| folio::Op::put(format!("key-{i:04}").as_bytes(), &round.to_le_bytes()))
            .collect();
        store.txn().then(ops).commit().unwrap();
        store
            .delete_range(KeyRange::prefix(format!("key-00{round}").as_bytes()))
            .unwrap();
    }
    store.current_revision()
}

/// Everything in the store at every revision from 1 to the current one.
fn everything(store: &Store) -> Vec<Vec<KeyValue>> {
    (1..=store.current_revision())
        .map(|rev| {
            store
                .range(KeyRange::all(), RangeOptions::at(rev))
                .unwrap()
                .kvs
        })
        .collect()
}

/// Changes the persisted index of the store at `path` with `f` (given the header and the
/// chunks, to change in place), then writes it back with its checksums made to match again
/// when `reseal`.
fn tamper(path: &std::path::Path, reseal: bool, f: impl FnOnce(&mut Vec<u8>, &mut [Vec<u8>])) {
    let db = Db::open(path).unwrap();
    let mut tx = db.begin_write().unwrap();
    let mut tree = tx.open_tree(INDEX_TREE).unwrap();
    let mut header = tree
        .get(HEADER)
        .unwrap()
        .expect("a persisted index")
        .to_vec();
    let n = u32::from_le_bytes(header[4..8].try_into().unwrap());
    let mut chunks: Vec<Vec<u8>> = (0..n)
        .map(|i| tree.get(&i.to_be_bytes()).unwrap().unwrap().to_vec())
        .collect();
    f(&mut header, &mut chunks);
    if reseal {
        let mut crc = crc32fast::Hasher::new();
        for c in &chunks {
            crc.update(c);
        }
        let len: usize = chunks.iter().map(Vec::len).sum();
        header[48..56].copy_from_slice(&(len as u64).to_le_bytes());
        header[56..60].copy_from_slice(&crc.finalize().to_le_bytes());
        let own = crc32fast::hash(&header[..60]);
        header[60..64].copy_from_slice(&own.to_le_bytes());
    }
    for (i, c) in chunks.iter().enumerate() {
        tree.put(&(i as u32).to_be_bytes(), c).unwrap();
    }
    tree.put(HEADER, &header).unwrap();
    tx.commit().unwrap();
}

/// A store at `dir/kv.folio` closed with its index persisted (explicitly: a store this small
/// does not persist it at close); returns its path and contents.
fn persisted(dir: &tempfile::TempDir) -> (std::path::PathBuf, Vec<Vec<KeyValue>>) {
    let path = dir.path().join("kv.folio");
    let store = Store::open(&path).unwrap();
    let current = fill(&store);
    let all = everything(&store);
    store.persist_index().unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.index_origin(),
        IndexOrigin::Loaded {
            revision: current,
            replayed: 0
        },
        "the next open loads the index persisted"
    );
    assert_eq!(everything(&store), all);
    (path, all)
}

/// Opens the store at `path` and asserts it rebuilt its index for a reason containing `why`
/// and holds `all`.
fn assert_rebuilt(path: &std::path::Path, why: &str, all: &[Vec<KeyValue>]) {
    let store = Store::open(path).unwrap();
    match store.index_origin() {
        IndexOrigin::Rebuilt { reason } => {
            assert!(
                reason.contains(why),
                "rebuilt because {reason:?}, not {why:?}"
            )
        }
        other => panic!("{other:?}: the index was not rebuilt ({why})"),
    }
    assert_eq!(everything(&store), all, "the rebuilt store's contents");
}

#[test]
fn a_store_reopened_after_writes_since_its_persisted_index_replays_them() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = persisted(&dir);
    let store = Store::open(&path).unwrap();
    let at = store.current_revision();
    store.persist_index().unwrap();
    store.put(b"key-0100", b"after").unwrap();
    store.delete_range(b"key-0101").unwrap();
    let all = everything(&store);
    // A copy of the file as a crash leaves it: the writes after the persist, no close.
    let copy = dir.path().join("copy.folio");
    store.db().sync().unwrap();
    std::fs::copy(&path, &copy).unwrap();
    let reopened = Store::open(&copy).unwrap();
    assert_eq!(
        reopened.index_origin(),
        IndexOrigin::Loaded {
            revision: at,
            replayed: 2
        }
    );
    assert_eq!(everything(&reopened), all);
}

#[test]
fn a_flipped_byte_in_a_persisted_chunk_falls_back_to_the_rebuild_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (path, all) = persisted(&dir);
    tamper(&path, false, |_, chunks| chunks[0][7] ^= 0x10);
    assert_rebuilt(&path, "checksum does not match", &all);
}

#[test]
fn a_persisted_header_of_another_format_or_a_bad_checksum_falls_back_to_the_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (path, all) = persisted(&dir);
    tamper(&path, false, |header, _| header[9] ^= 1);
    assert_rebuilt(&path, "the header's checksum does not match", &all);
    let (path, all) = persisted(&dir);
    tamper(&path, true, |header, _| header[0] = 2);
    assert_rebuilt(&path, "format 2", &all);
    let (path, all) = persisted(&dir);
    tamper(&path, true, |header, _| {
        let keys = u64::from_le_bytes(header[32..40].try_into().unwrap());
        header[32..40].copy_from_slice(&(keys + 1).to_le_bytes());
    });
    assert_rebuilt(&path, "the header says", &all);
}

/// Checksums that match do not make bytes trustworthy: every byte of a chunk changed, the
/// checksums made to match, must open (loaded or rebuilt, never a panic), and the damage the
/// structure shows must be rebuilt from.
#[test]
fn a_persisted_chunk_damaged_under_matching_checksums_never_panics_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let (path, all) = persisted(&dir);
    let chunk = {
        let db = Db::open(&path).unwrap();
        let tx = db.begin_read().unwrap();
        let tree = tx.tree(INDEX_TREE).unwrap().unwrap();
        tree.get(&0u32.to_be_bytes()).unwrap().unwrap().to_vec()
    };
    let mut rebuilt = 0;
    let positions: Vec<usize> = (0..chunk.len().min(200)).chain([chunk.len() - 1]).collect();
    for &at in &positions {
        for value in [0x00u8, 0x7f, 0x80, 0xff] {
            if chunk[at] == value {
                continue;
            }
            tamper(&path, true, |_, chunks| {
                chunks[0].clone_from(&chunk);
                chunks[0][at] = value;
            });
            let store = Store::open(&path)
                .unwrap_or_else(|e| panic!("byte {at} set to {value:#x}: the open failed: {e}"));
            if matches!(store.index_origin(), IndexOrigin::Rebuilt { .. }) {
                rebuilt += 1;
                assert_eq!(everything(&store), all, "byte {at} set to {value:#x}");
            }
        }
    }
    tamper(&path, true, |_, chunks| chunks[0].clone_from(&chunk));
    assert_eq!(everything(&Store::open(&path).unwrap()), all);
    assert!(
        rebuilt > positions.len(),
        "only {rebuilt} changes were caught"
    );
}

#[test]
fn a_record_removed_behind_the_persisted_index_falls_back_to_the_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = persisted(&dir);
    {
        let db = Db::open(&path).unwrap();
        let mut tx = db.begin_write().unwrap();
        let mut keys = tx.open_tree(b"mvcc.key").unwrap();
        let first = keys.as_tree().first().unwrap().unwrap().0.to_vec();
        assert!(keys.delete(&first).unwrap());
        tx.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    match store.index_origin() {
        IndexOrigin::Rebuilt { reason } => {
            assert!(reason.contains("the key tree holds"), "{reason}")
        }
        other => panic!("{other:?}: a persisted index of a record no longer stored was used"),
    }
}

#[test]
fn an_index_persisted_before_a_compaction_past_it_is_rebuilt_from_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = persisted(&dir);
    let store = Store::open(&path).unwrap();
    store.put(b"key-0200", b"after").unwrap();
    store.compact(store.current_revision()).unwrap();
    let all: Vec<_> = everything_from(&store, store.compacted_revision());
    // The file as a crash leaves it: the compaction done, the index persisted before it.
    store.db().sync().unwrap();
    let copy = dir.path().join("copy.folio");
    std::fs::copy(&path, &copy).unwrap();
    let reopened = Store::open(&copy).unwrap();
    match reopened.index_origin() {
        IndexOrigin::Rebuilt { reason } => {
            assert!(
                reason.contains("removed records a replay would need"),
                "{reason}"
            )
        }
        other => panic!("{other:?}: an index a compaction passed was used"),
    }
    assert_eq!(
        everything_from(&reopened, reopened.compacted_revision()),
        all
    );
}

#[test]
fn a_store_without_a_persisted_index_is_rebuilt_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (path, all) = persisted(&dir);
    {
        let db = Db::open(&path).unwrap();
        let mut tx = db.begin_write().unwrap();
        assert!(tx.delete_tree(INDEX_TREE).unwrap());
        tx.commit().unwrap();
    }
    assert_rebuilt(&path, "no persisted index", &all);
}

/// A close persists the index of a store of at least `INDEX_PERSIST_AT_CLOSE_RECORDS_MIN`
/// records (where it saves the open a rebuild) and leaves a smaller store's file as it was.
#[test]
fn a_close_persists_the_index_of_a_store_of_ten_thousand_records_and_not_of_a_smaller_one() {
    let min = folio::limits::INDEX_PERSIST_AT_CLOSE_RECORDS_MIN;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.folio");
    let put = |store: &Store, from: u64, n: u64| {
        let ops: Vec<folio::Op> = (from..from + n)
            .map(|i| folio::Op::put(format!("key-{i:06}").as_bytes(), b"v"))
            .collect();
        store.txn().then(ops).commit().unwrap();
    };
    let store = Store::open(&path).unwrap();
    put(&store, 0, min - 1);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.index_origin(),
        IndexOrigin::Rebuilt {
            reason: "no persisted index".into()
        },
        "a store of {} records persisted its index at close",
        min - 1
    );
    put(&store, min - 1, 1);
    let at = store.current_revision();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.index_origin(),
        IndexOrigin::Loaded {
            revision: at,
            replayed: 0
        },
        "a store of {min} records did not persist its index at close"
    );
    assert_eq!(count(&store), min);
}

/// Everything in the store at every revision from `from` to the current one.
fn everything_from(store: &Store, from: i64) -> Vec<Vec<KeyValue>> {
    (from.max(1)..=store.current_revision())
        .map(|rev| {
            store
                .range(KeyRange::all(), RangeOptions::at(rev))
                .unwrap()
                .kvs
        })
        .collect()
}

#[test]
fn an_explicit_close_persists_the_index_once_the_last_handle_closes_and_reports_a_failure() {
    let min = folio::limits::INDEX_PERSIST_AT_CLOSE_RECORDS_MIN;
    let dir = tempfile::tempdir().unwrap();
    let fill = |store: &Store| {
        let ops: Vec<folio::Op> = (0..min)
            .map(|i| folio::Op::put(format!("key-{i:06}").as_bytes(), b"v"))
            .collect();
        store.txn().then(ops).commit().unwrap();
    };

    // Two handles: closing the first leaves the store open for the second, which still writes;
    // closing the second persists the index at its last revision.
    let path = dir.path().join("kv.folio");
    let store = Store::open(&path).unwrap();
    fill(&store);
    let other = store.clone();
    store.close().expect("closing one of two handles");
    let at = other.put(b"after", b"the first close").unwrap();
    other.close().expect("closing the last handle");
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.index_origin(),
        IndexOrigin::Loaded {
            revision: at,
            replayed: 0
        }
    );
    drop(store);

    // The persist's commit fails: `close` says so, and the next open rebuilds the index from
    // the records, all there.
    let sim = folio::sim::SimStorage::create(&dir.path().join("failing")).unwrap();
    let db = Db::builder().create_with(Box::new(sim.clone())).unwrap();
    let store = Store::with_db(db).unwrap();
    fill(&store);
    sim.arm(1, folio::sim::Fault::Fail);
    store.close().expect_err("the persist's first write failed");
    let path = dir.path().join("failing-copy");
    std::fs::write(&path, sim.crash_image(None)).unwrap();
    let store = Store::open(&path).unwrap();
    assert!(
        matches!(store.index_origin(), IndexOrigin::Rebuilt { .. }),
        "{:?}",
        store.index_origin()
    );
    assert_eq!(count(&store), min);
}

/// How many keys `store` holds now.
fn count(store: &Store) -> u64 {
    store
        .range(KeyRange::all(), RangeOptions::current().count_only())
        .unwrap()
        .count
}
