//! The threat: the store answers differently from etcd's `mvcc` package where a user, or a
//! corruption check comparing replicas, would notice. Each case is one place where folio differed
//! (issue 11), checked against etcd's source:
//! - `hash_by_rev` at exactly the compacted revision failed (etcd's `store.hashByRev` refuses only
//!   `rev < compactRev`);
//! - the hash of a revision changed while a compaction ran (15 different hashes of one revision
//!   and compact revision in one compaction), and before and after `compact(R)` (etcd's
//!   `kvHasher` skips revisions at or below the compact revision that are not in
//!   `treeIndex.Keep`, and the compaction records its hash in `hashStorage`);
//! - `compact(0)` on a new store failed with "revision 0 has been compacted" (etcd's new store
//!   has `compactMainRev: -1`);
//! - a transaction branch writing one key twice was committed (etcd's `checkIntervals` refuses it:
//!   "duplicate key given in txn request");
//! - a put just over the value limit named the internal record length, and a store missing one of
//!   its trees was "corrupted page 0".
//!
//! The tombstone kept at the compaction revision (etcd 3.5.16) is in tests/store/mvcc_compaction.rs,
//! and the exact hash rule at random histories in tests/store/mvcc_model.rs.

use std::path::Path;

use folio::limits::{STORE_VALUE_LEN_MAX, VALUE_LEN_MAX};
use folio::{Db, Durability, Error, HashResponse, KeyRange, Op, RangeOptions, Store, StoreOptions};

const PAGE_SIZE: u32 = 512;

fn open_db(path: &Path) -> Db {
    Db::builder()
        .page_size(PAGE_SIZE)
        .durability(Durability::None)
        .open(path)
        .expect("open the database")
}

fn open(path: &Path, batch: usize) -> Store {
    Store::with_db_options(
        open_db(path),
        StoreOptions {
            compaction_batch: batch,
            ..StoreOptions::default()
        },
    )
    .expect("open the store")
}

/// A history of overwrites, deletes, a recreated key and a multi-key transaction, 60 revisions.
fn history(store: &Store) {
    for i in 0..50u32 {
        let key = format!("key-{}", i % 7);
        store
            .put(key.as_bytes(), format!("value-{i}").as_bytes())
            .unwrap();
        if i % 9 == 8 {
            store
                .delete_range(format!("key-{}", (i + 3) % 7).as_bytes())
                .unwrap();
        }
    }
    store
        .txn()
        .then([
            Op::put(b"key-1", b"txn"),
            Op::put(b"key-9", b"txn"),
            Op::delete_range(b"key-2".as_slice()),
        ])
        .commit()
        .unwrap();
    for i in 0..4u32 {
        store.put(b"key-0", format!("tail-{i}").as_bytes()).unwrap();
    }
}

fn hash(store: &Store, rev: i64) -> HashResponse {
    store
        .hash_by_rev(rev)
        .unwrap_or_else(|e| panic!("hash at {rev}: {e}"))
}

#[test]
fn hash_by_rev_at_exactly_the_compacted_revision_succeeds_and_below_it_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("floor.folio"), 1000);
    history(&store);
    let floor = store.current_revision() - 5;
    let mut running = store.begin_compaction(floor).unwrap();
    // Nothing recorded yet: the hash is taken against the new floor.
    let at = hash(&store, floor);
    assert_eq!(
        (at.compact_revision, at.hash_revision),
        (floor, floor),
        "{at:?}"
    );
    let below = store.hash_by_rev(floor - 1);
    assert!(
        matches!(below, Err(Error::Compacted { requested, compacted }) if requested == floor - 1 && compacted == floor),
        "{below:?}"
    );
    while !running.step().unwrap() {}
    drop(running);
    assert_eq!(hash(&store, floor).hash_revision, floor);
    assert!(store.hash_by_rev(floor - 1).is_err());
}

#[test]
fn the_hash_of_every_revision_from_the_floor_is_the_same_at_every_step_of_a_running_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("steps.folio"), 1);
    history(&store);
    let floor = store.current_revision() - 8;
    let current = store.current_revision();
    let before_at_floor = hash(&store, floor);
    assert_eq!(before_at_floor.compact_revision, -1);

    let mut running = store.begin_compaction(floor).unwrap();
    let reference: Vec<HashResponse> = (floor..=current).map(|r| hash(&store, r)).collect();
    assert!(reference.iter().all(|h| h.compact_revision == floor));
    let mut stored = vec![crate::common::key_tree_len(store.db())];
    let mut steps = 0u64;
    loop {
        let done = running.step().unwrap();
        steps += 1;
        // A writer between batches: its revision is above every one hashed here.
        store.put(b"writer", format!("{steps}").as_bytes()).unwrap();
        stored.push(crate::common::key_tree_len(store.db()) - steps);
        for (r, want) in (floor..=current).zip(&reference) {
            let got = hash(&store, r);
            if done && r == floor {
                // Finished: the hash the compaction recorded, against the floor before it.
                assert_eq!(
                    got.hash, before_at_floor.hash,
                    "after the last step, at {r}"
                );
                assert_eq!(got.compact_revision, -1, "after the last step, at {r}");
            } else {
                assert_eq!(
                    (got.hash, got.compact_revision),
                    (want.hash, want.compact_revision),
                    "step {steps}, at {r}"
                );
            }
        }
        if done {
            break;
        }
    }
    // The test paused the compaction while it was deleting, many times.
    assert!(steps > 20, "{steps} steps");
    let deleting = stored.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(deleting > 20, "revisions stored at each step: {stored:?}");
}

#[test]
fn the_hash_of_a_revision_is_the_same_before_and_after_compacting_at_it_and_on_a_replica_that_has_not()
 {
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir.path().join("a.folio"), 3);
    let b = open(&dir.path().join("b.folio"), 1000);
    history(&a);
    history(&b);
    let c1 = a.current_revision() - 20;
    let c2 = a.current_revision() - 6;
    let before = hash(&a, c2);

    a.compact(c1).unwrap();
    b.compact(c1).unwrap();
    let at_c2 = hash(&a, c2);
    assert_eq!(at_c2.compact_revision, c1);
    assert_eq!(hash(&b, c2), at_c2, "two replicas compacted at c1");
    assert_ne!(at_c2.hash, before.hash, "the floor moved from -1 to c1");

    // etcd's corruption check compares the leader's compaction hashes with each peer's
    // `HashByRev` of that revision, when the compact revisions agree.
    a.compact(c2).unwrap();
    let recorded = hash(&a, c2);
    assert_eq!(
        (
            recorded.hash,
            recorded.compact_revision,
            recorded.hash_revision
        ),
        (at_c2.hash, c1, c2),
        "after compacting at c2, as before it"
    );
    assert_eq!(
        hash(&b, c2),
        recorded,
        "a replica that has not compacted yet"
    );
    b.compact(c2).unwrap();
    assert_eq!(hash(&b, c2), recorded, "a replica that has compacted too");

    // Recorded hashes survive a reopen, and are answered below the floor while kept.
    drop(a);
    let a = open(&dir.path().join("a.folio"), 3);
    assert_eq!(hash(&a, c2), recorded, "reopened");
    assert_eq!(
        hash(&a, c1).compact_revision,
        -1,
        "the hash of c1, recorded"
    );
    // etcd keeps the last 10: eleven more compactions forget c1 and c2.
    for i in 0..11 {
        let rev = a.put(b"more", format!("{i}").as_bytes()).unwrap();
        a.compact(rev).unwrap();
    }
    for rev in [c1, c2] {
        let got = a.hash_by_rev(rev);
        assert!(
            matches!(got, Err(Error::Compacted { requested, .. }) if requested == rev),
            "{got:?}"
        );
    }
}

#[test]
fn a_new_store_is_compacted_at_minus_1_so_compact_0_succeeds_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.folio");
    let store = open(&path, 1000);
    assert_eq!(store.compacted_revision(), -1);
    assert_eq!(hash(&store, 0).compact_revision, -1);
    drop(store);
    let store = open(&path, 1000);
    assert_eq!(store.compacted_revision(), -1, "reopened");
    store.compact(0).unwrap();
    assert_eq!(store.compacted_revision(), 0);
    let again = store.compact(0);
    assert!(
        matches!(
            again,
            Err(Error::Compacted {
                requested: 0,
                compacted: 0
            })
        ),
        "{again:?}"
    );
    drop(store);
    let store = open(&path, 1000);
    assert_eq!(store.compacted_revision(), 0, "reopened after compact(0)");
    assert_eq!(store.put(b"k", b"v").unwrap(), 2);
    assert!(store.db().check().unwrap().is_clean());
}

/// Asserts that `ops` in either branch are refused as etcd refuses them, and change nothing.
fn assert_refused(store: &Store, ops: Vec<Op>, key: &[u8]) {
    let before = (
        store.current_revision(),
        store
            .range(KeyRange::all(), RangeOptions::current())
            .unwrap()
            .kvs,
    );
    for in_then in [true, false] {
        let txn = if in_then {
            store.txn().then(ops.clone())
        } else {
            // The branch that would not run is checked too (etcd checks both).
            store
                .txn()
                .then([Op::put(b"other", b"x")])
                .otherwise(ops.clone())
        };
        let got = txn.commit();
        match &got {
            Err(e @ Error::DuplicateKey { key: k }) => {
                assert_eq!(k, key, "{ops:?}");
                assert!(
                    e.to_string()
                        .starts_with("duplicate key given in txn request"),
                    "{e}"
                );
            }
            other => panic!("{ops:?} (in then: {in_then}) gave {other:?}"),
        }
        let after = (
            store.current_revision(),
            store
                .range(KeyRange::all(), RangeOptions::current())
                .unwrap()
                .kvs,
        );
        assert_eq!(after, before, "{ops:?} changed the store");
    }
}

#[test]
fn a_txn_branch_that_puts_a_key_twice_or_inside_its_delete_range_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("dup.folio"), 1000);
    store.put(b"a", b"1").unwrap();
    store.put(b"b", b"1").unwrap();
    assert_refused(&store, vec![Op::put(b"a", b"2"), Op::put(b"a", b"3")], b"a");
    assert_refused(
        &store,
        vec![Op::put(b"new", b"1"), Op::put(b"new", b"2")],
        b"new",
    );
    assert_refused(
        &store,
        vec![Op::delete_range(b"a".as_slice()), Op::put(b"a", b"2")],
        b"a",
    );
    assert_refused(
        &store,
        vec![Op::put(b"b", b"2"), Op::delete_range(KeyRange::prefix(b""))],
        b"b",
    );
    assert_refused(
        &store,
        vec![
            Op::put(b"c", b"2"),
            Op::range(KeyRange::all(), RangeOptions::current()),
            Op::delete_range(b"b".as_slice()..b"d".as_slice()),
        ],
        b"c",
    );
}

#[test]
fn puts_of_one_key_in_both_branches_overlapping_deletes_and_a_put_beside_a_delete_range_are_allowed()
 {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("allowed.folio"), 1000);
    for k in [b"a", b"b", b"c", b"d"] {
        store.put(k, b"1").unwrap();
    }
    let t = store
        .txn()
        .then([
            Op::put(b"a", b"2"),
            Op::delete_range(b"b".as_slice()..b"d".as_slice()),
            Op::delete_range(b"c".as_slice()..=b"d".as_slice()),
            Op::put(b"d-after", b"1"),
        ])
        .otherwise([Op::put(b"a", b"3")])
        .commit()
        .unwrap();
    assert!(t.succeeded);
    let now = store
        .range(KeyRange::all(), RangeOptions::current())
        .unwrap();
    let keys: Vec<&[u8]> = now.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, [&b"a"[..], b"d-after"]);
    assert_eq!(now.kvs[0].value, b"2");
}

/// The store's record holds the key and 36 bytes beside the value; the error named that record's
/// length and the tree's limit, neither of which the caller chose.
#[test]
fn a_store_put_of_a_value_just_over_the_limit_names_the_value_and_the_stores_value_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("big.folio"), 1000);
    for len in [STORE_VALUE_LEN_MAX + 1, VALUE_LEN_MAX + 1] {
        // Zeroed and never touched: the pages are not allocated.
        let value = vec![0u8; len];
        let got = store.put(b"k", &value);
        match &got {
            Err(e @ Error::ValueTooLarge { len: l, max }) => {
                assert_eq!((*l, *max), (len, STORE_VALUE_LEN_MAX));
                assert_eq!(
                    e.to_string(),
                    format!("value length {len} is over the limit of {STORE_VALUE_LEN_MAX} bytes")
                );
            }
            other => panic!("a value of {len} bytes gave {other:?}"),
        }
    }
    assert_eq!(store.current_revision(), 1);
}

/// Page 0 is a meta page, not a sentinel: a missing tree is not corruption of it.
#[test]
fn a_store_whose_database_lacks_one_of_its_trees_is_refused_as_a_malformed_store_naming_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    for (present, missing) in [("mvcc.key", "mvcc.meta"), ("mvcc.meta", "mvcc.key")] {
        let db = open_db(&dir.path().join(format!("{present}.folio")));
        let mut tx = db.begin_write().unwrap();
        tx.open_tree(present.as_bytes()).unwrap();
        tx.commit().unwrap();
        let got = Store::with_db(db);
        match &got {
            Err(e @ Error::MalformedStore(_)) => {
                assert_eq!(
                    e.to_string(),
                    format!("not a well-formed folio store: tree `{missing}` is missing")
                );
            }
            other => panic!("a database with only {present} gave {other:?}"),
        }
    }
}
