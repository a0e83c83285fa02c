//! The threat: compaction loses or resurrects history, or keeps what it should drop. etcd's
//! documented semantics, case by case: after `compact(C)` a read at any revision from C on returns
//! exactly what it did before, a read below C fails with `Compacted`, and the store keeps, for each
//! key, only the newest revision at or below C (a tombstone only when it is exactly at C, as etcd
//! since 3.5.16) plus everything after C; a key whose last generation ended in a tombstone below
//! C vanishes. Each case is
//! checked through reads at every revision, through the number of revisions left in the store's
//! `key` tree, after a reopen, and with `check`. Also: the errors at the floor and past the current
//! revision, `hash_by_rev` agreeing between stores with the same history, and writers and readers
//! going on while a compaction of more than 10,000 revisions runs in batches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use folio::{Db, Durability, Error, KeyRange, KeyValue, Op, RangeOptions, Store, StoreOptions};

const PAGE_SIZE: u32 = 512;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn open_db(path: &Path, page_size: u32) -> Db {
    Db::builder()
        .page_size(page_size)
        .durability(Durability::None)
        .open(path)
        .expect("open the database")
}

fn open(path: &Path) -> Store {
    Store::with_db(open_db(path, PAGE_SIZE)).expect("open the store")
}

/// Drops `store` (and its database) and opens the same file again, at the page size it was made
/// with (a page size set for a file of another one is refused).
fn reopen(store: Store) -> Store {
    let path: PathBuf = store
        .db()
        .path()
        .expect("a file-backed store")
        .to_path_buf();
    let page_size = store.db().page_size();
    drop(store);
    Store::with_db(open_db(&path, page_size)).expect("open the store")
}

/// Everything visible at `rev`.
fn all_at(store: &Store, rev: i64) -> Vec<KeyValue> {
    store
        .range(KeyRange::all(), RangeOptions::at(rev))
        .unwrap_or_else(|e| panic!("reading at {rev}: {e}"))
        .kvs
}

/// Everything visible at every revision from 1 to the current one.
fn history(store: &Store) -> BTreeMap<i64, Vec<KeyValue>> {
    (1..=store.current_revision())
        .map(|rev| (rev, all_at(store, rev)))
        .collect()
}

/// Branch, leaf and overflow pages of the key tree.
fn key_tree_pages(db: &Db) -> u64 {
    let stats = db.stats().expect("stats");
    let t = stats
        .trees
        .iter()
        .find(|t| t.name.ends_with(b"key"))
        .expect("a key tree");
    t.branch_pages + t.leaf_pages + t.overflow_pages
}

fn assert_clean(db: &Db, what: &str) {
    let report = db.check().expect("check runs");
    assert!(report.is_clean(), "{what}: {report}");
}

/// Asserts the reads and the stored revisions of a store compacted at `floor`: below it every
/// read is `Compacted`, from it on every read equals `before`, and the key tree holds `stored`
/// revisions. Then the same after a reopen. Returns the reopened store.
fn assert_compacted(
    store: Store,
    floor: i64,
    before: &BTreeMap<i64, Vec<KeyValue>>,
    stored: u64,
    what: &str,
) -> Store {
    let check = |store: &Store, what: &str| {
        assert_eq!(
            store.compacted_revision(),
            floor,
            "{what}: compacted revision"
        );
        assert_eq!(
            store.current_revision(),
            *before.keys().last().unwrap(),
            "{what}: current revision"
        );
        for (&rev, kvs) in before {
            let got = store.range(KeyRange::all(), RangeOptions::at(rev));
            if rev < floor {
                assert!(
                    matches!(got, Err(Error::Compacted { requested, compacted }) if requested == rev && compacted == floor),
                    "{what}: a read at {rev} below the floor {floor} gave {got:?}"
                );
            } else {
                assert_eq!(&got.unwrap().kvs, kvs, "{what}: everything at {rev}");
            }
        }
        assert_eq!(
            crate::common::key_tree_len(store.db()),
            stored,
            "{what}: revisions stored"
        );
        assert_clean(store.db(), what);
    };
    check(&store, what);
    let store = reopen(store);
    check(&store, &format!("{what}, reopened"));
    store
}

/// A write of a fixed history.
#[derive(Clone, Debug)]
enum W {
    Put(&'static [u8], &'static [u8]),
    Delete(&'static [u8]),
}

/// Plays `writes` (one revision each) on a new store at `dir/name`; returns the store and the
/// revision of each write.
fn play(dir: &Path, name: &str, writes: &[W]) -> (Store, Vec<i64>) {
    let store = open(&dir.join(name));
    let revs = writes
        .iter()
        .map(|w| match w {
            W::Put(k, v) => store.put(k, v).expect("put"),
            W::Delete(k) => {
                let d = store.delete_range(*k).expect("delete");
                assert_eq!(d.deleted, 1, "{w:?} deletes a live key");
                d.revision
            }
        })
        .collect();
    (store, revs)
}

fn kv(store: &Store, key: &[u8], rev: i64) -> Option<KeyValue> {
    store
        .range(key, RangeOptions::at(rev))
        .unwrap_or_else(|e| panic!("reading {key:?} at {rev}: {e}"))
        .kvs
        .pop()
}

/// `(create_revision, mod_revision, version, value)` of a key at `rev`.
fn meta(store: &Store, key: &[u8], rev: i64) -> Option<(i64, i64, i64, Vec<u8>)> {
    kv(store, key, rev).map(|kv| (kv.create_revision, kv.mod_revision, kv.version, kv.value))
}

// ---------------------------------------------------------------------------------------------
// One key, case by case
// ---------------------------------------------------------------------------------------------

/// Compacting at every revision of a history, each on a fresh copy: before the first revision of
/// a key, at each of its revisions, between them and after the last.
fn compact_at_every_revision(writes: &[W], stored: impl Fn(&[i64], i64) -> u64) {
    let dir = tempfile::tempdir().unwrap();
    let (store, revs) = play(dir.path(), "probe", writes);
    let current = store.current_revision();
    drop(store);
    for floor in 1..=current {
        let (store, _) = play(dir.path(), &format!("at-{floor}"), writes);
        let before = history(&store);
        store.compact(floor).expect("compact");
        let store = assert_compacted(
            store,
            floor,
            &before,
            stored(&revs, floor),
            &format!("{writes:?} compacted at {floor}"),
        );
        drop(store);
    }
}

#[test]
fn a_key_updated_five_times_keeps_its_newest_revision_at_the_floor_and_everything_after() {
    let writes = [
        W::Put(b"k", b"v1"),
        W::Put(b"other", b"o1"),
        W::Put(b"k", b"v2"),
        W::Put(b"k", b"v3"),
        W::Put(b"k", b"v4"),
        W::Put(b"k", b"v5"),
    ];
    // Each write is one revision: the ones after the floor stay, plus the one revision of each
    // key visible at the floor (`other` from its write on, `k` always).
    compact_at_every_revision(&writes, |revs, floor| {
        let after = revs.iter().filter(|&&r| r > floor).count() as u64;
        let k = u64::from(floor >= revs[0]);
        let other = u64::from(floor >= revs[1]);
        after + k + other
    });
}

#[test]
fn compaction_keeps_create_revision_and_version_of_a_key_whose_first_revisions_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let (store, revs) = play(
        dir.path(),
        "k",
        &[
            W::Put(b"k", b"v1"),
            W::Put(b"k", b"v2"),
            W::Put(b"k", b"v3"),
        ],
    );
    store.compact(revs[2]).unwrap();
    assert_eq!(crate::common::key_tree_len(store.db()), 1);
    assert_eq!(
        meta(&store, b"k", revs[2]),
        Some((revs[0], revs[2], 3, b"v3".to_vec()))
    );
    // The index rebuilt from the one revision left knows the key's generation.
    let store = reopen(store);
    let r4 = store.put(b"k", b"v4").unwrap();
    assert_eq!(
        meta(&store, b"k", r4),
        Some((revs[0], r4, 4, b"v4".to_vec()))
    );
}

#[test]
fn a_tombstone_stays_while_the_floor_is_at_or_below_it_and_vanishes_with_its_key_after_it() {
    let writes = [
        W::Put(b"k", b"v1"),
        W::Put(b"k", b"v2"),
        W::Delete(b"k"),
        W::Put(b"x", b"x1"),
    ];
    compact_at_every_revision(&writes, |revs, floor| {
        let after = revs.iter().filter(|&&r| r > floor).count() as u64;
        // `k` keeps its revision visible at the floor before its tombstone, and the tombstone
        // itself at the floor (etcd 3.5.16 and later); `x` from its put on.
        let k = u64::from(floor >= revs[0] && floor <= revs[2]);
        let x = u64::from(floor >= revs[3]);
        after + k + x
    });
}

/// etcd 3.5.16 and later keep a tombstone at the compaction revision (so a watcher from there
/// sees the delete); the next compaction above it removes it with its key.
#[test]
fn a_tombstone_at_the_floor_stays_until_a_compaction_above_it_and_the_next_put_starts_at_version_1()
{
    let dir = tempfile::tempdir().unwrap();
    let (store, revs) = play(
        dir.path(),
        "k",
        &[W::Put(b"k", b"v1"), W::Put(b"k", b"v2"), W::Delete(b"k")],
    );
    store.compact(revs[2]).unwrap();
    assert_eq!(
        crate::common::key_tree_len(store.db()),
        1,
        "only the tombstone of k is left"
    );
    let r = store
        .range(KeyRange::all(), RangeOptions::current().count_only())
        .unwrap();
    assert_eq!((r.count, r.revision), (0, revs[2]));
    let store = reopen(store);
    assert_eq!(store.current_revision(), revs[2]);
    assert_eq!(store.compacted_revision(), revs[2]);
    let r4 = store.put(b"k", b"v3").unwrap();
    assert_eq!(r4, revs[2] + 1);
    assert_eq!(meta(&store, b"k", r4), Some((r4, r4, 1, b"v3".to_vec())));
    store.compact(r4).unwrap();
    assert_eq!(
        crate::common::key_tree_len(store.db()),
        1,
        "the tombstone is gone, the new put stays"
    );
    let store = reopen(store);
    assert_eq!(meta(&store, b"k", r4), Some((r4, r4, 1, b"v3".to_vec())));
    assert_clean(store.db(), "after the put");
}

#[test]
fn a_key_deleted_and_recreated_keeps_only_the_generation_that_holds_the_floor() {
    let writes = [
        W::Put(b"k", b"v1"),
        W::Put(b"k", b"v2"),
        W::Delete(b"k"),
        W::Put(b"k", b"v3"),
        W::Put(b"k", b"v4"),
        W::Put(b"y", b"y1"),
    ];
    compact_at_every_revision(&writes, |revs, floor| {
        let after = revs.iter().filter(|&&r| r > floor).count() as u64;
        // Inside the old generation: its newest revision at the floor, up to and including its
        // tombstone. Inside the new one: its newest revision.
        let k = u64::from((floor >= revs[0] && floor <= revs[2]) || floor >= revs[3]);
        let y = u64::from(floor >= revs[5]);
        after + k + y
    });
}

#[test]
fn after_compacting_inside_a_new_generation_versions_count_from_its_creation() {
    let dir = tempfile::tempdir().unwrap();
    let writes = [
        W::Put(b"k", b"v1"),
        W::Put(b"k", b"v2"),
        W::Delete(b"k"),
        W::Put(b"k", b"v3"),
        W::Put(b"k", b"v4"),
    ];
    for floor_at in [3, 4] {
        let (store, revs) = play(dir.path(), &format!("gen-{floor_at}"), &writes);
        store.compact(revs[floor_at]).unwrap();
        let store = reopen(store);
        assert_eq!(
            meta(&store, b"k", revs[4]),
            Some((revs[3], revs[4], 2, b"v4".to_vec())),
            "compacted at {}",
            revs[floor_at]
        );
        let r = store.put(b"k", b"v5").unwrap();
        assert_eq!(
            meta(&store, b"k", r),
            Some((revs[3], r, 3, b"v5".to_vec())),
            "compacted at {}",
            revs[floor_at]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A revision written by a multi-key transaction
// ---------------------------------------------------------------------------------------------

#[test]
fn compacting_at_a_multi_key_txn_keeps_each_keys_change_in_it_and_its_tombstones_until_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("txn.folio"));
    let r1 = store.put(b"d", b"d1").unwrap();
    let r2 = store.put(b"a", b"a1").unwrap();
    assert_eq!(r2, r1 + 1);
    // One revision, four changes: a (sub 0), b (1), c (2), d's tombstone (3).
    let t = store
        .txn()
        .then([
            Op::put(b"a", b"a2"),
            Op::put(b"b", b"b1"),
            Op::put(b"c", b"c1"),
            Op::delete_range(b"d".as_slice()),
        ])
        .commit()
        .unwrap();
    let r3 = t.revision;
    assert_eq!(r3, r2 + 1);
    let r4 = store.put(b"b", b"b2").unwrap();
    assert_eq!(crate::common::key_tree_len(store.db()), 7);
    assert_eq!(meta(&store, b"a", r3), Some((r2, r3, 2, b"a2".to_vec())));
    let before = history(&store);

    // At the txn: a, b and c keep their change there, d its tombstone; a1 and d1 go. b2 comes
    // after the floor.
    store.compact(r3).unwrap();
    let store = assert_compacted(store, r3, &before, 5, "compacted at the txn");
    assert_eq!(kv(&store, b"d", r3), None);
    assert_eq!(meta(&store, b"c", r3), Some((r3, r3, 1, b"c1".to_vec())));

    // After it: b's change in the txn is superseded, and d's tombstone goes with d.
    store.compact(r4).unwrap();
    let store = assert_compacted(store, r4, &before, 3, "compacted after the txn");
    assert_eq!(meta(&store, b"b", r4), Some((r3, r4, 2, b"b2".to_vec())));
    assert_eq!(meta(&store, b"a", r4), Some((r2, r3, 2, b"a2".to_vec())));
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn reads_below_the_floor_fail_with_compacted_and_past_the_current_revision_with_future() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir.path().join("errors.folio"));
    let revs: Vec<i64> = (0..5)
        .map(|i| store.put(b"k", format!("v{i}").as_bytes()).unwrap())
        .collect();
    let floor = revs[2];
    let current = revs[4];
    store.compact(floor).unwrap();
    for round in ["compacted", "reopened"] {
        assert_eq!(store.compacted_revision(), floor, "{round}");
        for rev in 1..floor {
            let got = store.range(b"k".as_slice(), RangeOptions::at(rev));
            assert!(
                matches!(got, Err(Error::Compacted { requested, compacted }) if requested == rev && compacted == floor),
                "{round}: range at {rev} gave {got:?}"
            );
            let got = store.hash_by_rev(rev);
            assert!(
                matches!(got, Err(Error::Compacted { requested, compacted }) if requested == rev && compacted == floor),
                "{round}: hash at {rev} gave {got:?}"
            );
        }
        let at_floor = store
            .range(b"k".as_slice(), RangeOptions::at(floor))
            .unwrap();
        assert_eq!(
            at_floor.kvs[0].value, b"v2",
            "{round}: the floor is readable"
        );
        let got = store.range(b"k".as_slice(), RangeOptions::at(current + 1));
        assert!(
            matches!(got, Err(Error::FutureRevision { requested, current: c }) if requested == current + 1 && c == current),
            "{round}: range past the current revision gave {got:?}"
        );
        let got = store.hash_by_rev(current + 1);
        assert!(
            matches!(got, Err(Error::FutureRevision { requested, current: c }) if requested == current + 1 && c == current),
            "{round}: hash past the current revision gave {got:?}"
        );
        for rev in [floor - 1, floor] {
            let got = store.compact(rev);
            assert!(
                matches!(got, Err(Error::Compacted { requested, compacted }) if requested == rev && compacted == floor),
                "{round}: compact({rev}) gave {got:?}"
            );
        }
        let got = store.compact(current + 1);
        assert!(
            matches!(got, Err(Error::FutureRevision { requested, current: c }) if requested == current + 1 && c == current),
            "{round}: compact past the current revision gave {got:?}"
        );
        assert_eq!(
            store.compacted_revision(),
            floor,
            "{round}: a refused compaction moved the floor"
        );
        store = reopen(store);
    }
    // The current revision is a valid floor.
    store.compact(current).unwrap();
    assert_eq!(store.compacted_revision(), current);
    assert_eq!(all_at(&store, 0).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Hashes
// ---------------------------------------------------------------------------------------------

/// A history with overwrites, deletes, a recreated key and a multi-key transaction.
fn hash_history(store: &Store) {
    for i in 0..40u32 {
        let key = format!("key-{}", i % 7);
        store
            .put(key.as_bytes(), format!("value-{i}").as_bytes())
            .unwrap();
        if i % 9 == 4 {
            store.delete_range(key.as_bytes()).unwrap();
        }
        if i % 13 == 0 {
            store
                .txn()
                .then([
                    Op::put(b"t1", &i.to_le_bytes()),
                    Op::put(b"t2", &i.to_le_bytes()),
                    Op::delete_range(KeyRange::prefix(b"key-1")),
                ])
                .commit()
                .unwrap();
        }
    }
}

#[test]
fn two_stores_with_the_same_history_and_compaction_have_the_same_hash_at_every_revision() {
    let dir = tempfile::tempdir().unwrap();
    // Different page sizes and compaction batches: the layout on disk differs, the history not.
    let a = Store::with_db_options(
        open_db(&dir.path().join("a.folio"), PAGE_SIZE),
        StoreOptions {
            compaction_batch: 3,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let b = Store::with_db(open_db(&dir.path().join("b.folio"), 4096)).unwrap();
    hash_history(&a);
    hash_history(&b);
    let current = a.current_revision();
    assert_eq!(b.current_revision(), current);
    let hashes = |s: &Store, from: i64| -> Vec<(i64, u32)> {
        (from..=current)
            .chain([0])
            .map(|rev| (rev, s.hash_by_rev(rev).unwrap().hash))
            .collect()
    };
    assert_eq!(hashes(&a, 1), hashes(&b, 1), "before compaction");

    let floor = current / 2;
    a.compact(floor).unwrap();
    b.compact(floor).unwrap();
    // Above the floor: at the floor itself etcd refuses a hash.
    assert_eq!(
        hashes(&a, floor + 1),
        hashes(&b, floor + 1),
        "after compaction"
    );
    let a = reopen(a);
    assert_eq!(
        hashes(&a, floor + 1),
        hashes(&b, floor + 1),
        "after reopening one"
    );
    let h = a.hash_by_rev(0).unwrap();
    assert_eq!((h.revision, h.compact_revision), (current, floor));
}

#[test]
fn stores_that_differ_in_one_value_have_different_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir.path().join("a.folio"));
    let b = open(&dir.path().join("b.folio"));
    for s in [&a, &b] {
        s.put(b"same", b"1").unwrap();
    }
    let ra = a.put(b"k", b"v1").unwrap();
    let rb = b.put(b"k", b"v2").unwrap();
    assert_eq!(ra, rb);
    assert_eq!(
        a.hash_by_rev(ra - 1).unwrap().hash,
        b.hash_by_rev(rb - 1).unwrap().hash
    );
    assert_ne!(
        a.hash_by_rev(ra).unwrap().hash,
        b.hash_by_rev(rb).unwrap().hash
    );
    assert_ne!(
        a.hash_by_rev(0).unwrap().hash,
        b.hash_by_rev(0).unwrap().hash
    );
}

// ---------------------------------------------------------------------------------------------
// Space on disk
// ---------------------------------------------------------------------------------------------

#[test]
fn compaction_removes_superseded_revisions_from_the_key_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("space.folio"));
    for round in 0..20 {
        for k in 0..50 {
            store
                .put(
                    format!("key-{k:02}").as_bytes(),
                    format!("{round}").as_bytes(),
                )
                .unwrap();
        }
    }
    store.delete_range(KeyRange::prefix(b"key-4")).unwrap();
    // A write after the deletes, so that their tombstones lie below the floor (one at the floor
    // would be kept).
    store.put(b"key-00", b"last").unwrap();
    assert_eq!(crate::common::key_tree_len(store.db()), 1000 + 10 + 1);
    let pages_before = key_tree_pages(store.db());
    store.compact(store.current_revision()).unwrap();
    assert_eq!(
        crate::common::key_tree_len(store.db()),
        40,
        "one revision per live key"
    );
    let pages_after = key_tree_pages(store.db());
    assert!(
        pages_after * 4 <= pages_before,
        "the key tree kept {pages_after} of its {pages_before} pages for 40 of 1011 entries"
    );
    assert_clean(store.db(), "after compaction");
    let store = reopen(store);
    assert_eq!(crate::common::key_tree_len(store.db()), 40);
    assert_eq!(all_at(&store, 0).len(), 40);
}

// ---------------------------------------------------------------------------------------------
// Writers and readers during a long compaction
// ---------------------------------------------------------------------------------------------

/// A write made beside the compaction: `(key, value or None for a delete, revision)`.
type Written = (Vec<u8>, Option<Vec<u8>>, i64);

/// Applies a write made after the floor to `live`, the way etcd's index does.
fn replay(live: &mut BTreeMap<Vec<u8>, KeyValue>, (key, value, rev): &Written) {
    match value {
        Some(value) => {
            let (create_revision, version) = live
                .get(key)
                .map_or((*rev, 1), |p| (p.create_revision, p.version + 1));
            live.insert(
                key.clone(),
                KeyValue {
                    key: key.clone(),
                    create_revision,
                    mod_revision: *rev,
                    version,
                    value: value.clone(),
                    lease: 0,
                },
            );
        }
        None => {
            live.remove(key);
        }
    }
}

#[test]
fn writers_and_readers_go_on_while_a_compaction_of_ten_thousand_revisions_runs_in_batches() {
    const HISTORY: u64 = 12_000;
    const KEYS: u64 = 100;
    const WRITES: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder()
        .durability(Durability::None)
        .open(dir.path().join("busy.folio"))
        .unwrap();
    // The default batch of 1,000 revisions: 12 batches.
    let store = Store::with_db(db).unwrap();
    for i in 0..HISTORY {
        store
            .put(format!("h/{:03}", i % KEYS).as_bytes(), &i.to_le_bytes())
            .unwrap();
    }
    let floor = store.current_revision();
    let at_floor = all_at(&store, floor);
    assert_eq!(at_floor.len() as u64, KEYS);
    let below = floor - 1;
    let at_below = all_at(&store, below);

    let compacting = Arc::new(AtomicBool::new(true));
    let during = Arc::new(AtomicU64::new(0));
    // The writer puts new keys, overwrites and deletes the keys being compacted, and puts the
    // deleted ones back.
    let writer = {
        let store = store.clone();
        let compacting = compacting.clone();
        let during = during.clone();
        std::thread::spawn(move || {
            let mut written: Vec<Written> = Vec::new();
            for i in 0..WRITES {
                let value = i.to_le_bytes().to_vec();
                let (key, value, rev) = if i % 5 == 3 {
                    let key = format!("h/{:03}", i * 7 % KEYS).into_bytes();
                    let d = store
                        .delete_range(key.as_slice())
                        .unwrap_or_else(|e| panic!("delete {i} during compaction: {e}"));
                    if d.deleted == 0 {
                        continue;
                    }
                    (key, None, d.revision)
                } else {
                    let key = match i % 5 {
                        0 | 1 => format!("w/{}", i % 10),
                        _ => format!("h/{:03}", i * 3 % KEYS),
                    }
                    .into_bytes();
                    let rev = store
                        .put(&key, &value)
                        .unwrap_or_else(|e| panic!("put {i} during compaction: {e}"));
                    (key, Some(value), rev)
                };
                if compacting.load(Ordering::SeqCst) {
                    during.fetch_add(1, Ordering::Relaxed);
                }
                written.push((key, value, rev));
            }
            written
        })
    };
    let reader = {
        let store = store.clone();
        let compacting = compacting.clone();
        let at_floor = at_floor.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            let mut refused = false;
            while compacting.load(Ordering::SeqCst) || reads == 0 {
                // The floor reads the same throughout; below it, reads work until they are
                // refused, and stay refused.
                assert_eq!(
                    all_at(&store, floor),
                    at_floor,
                    "a read at the floor changed"
                );
                match store.range(KeyRange::all(), RangeOptions::at(below)) {
                    Ok(r) => {
                        assert!(
                            !refused,
                            "a read below the floor worked after one was refused"
                        );
                        assert_eq!(r.kvs, at_below, "a read below the floor changed");
                    }
                    Err(Error::Compacted { .. }) => refused = true,
                    Err(e) => panic!("a read below the floor failed with {e}"),
                }
                reads += 1;
            }
            reads
        })
    };
    store.compact(floor).unwrap();
    compacting.store(false, Ordering::SeqCst);
    let written = writer.join().expect("the writer");
    let reads = reader.join().expect("the reader");
    println!(
        "{} of {} writes completed while the compaction ran; {reads} reads beside it",
        during.load(Ordering::Relaxed),
        written.len()
    );

    // Every write succeeded, each at its own revision after the floor, and every revision since
    // the floor reads as the writes made it.
    let revs: Vec<i64> = written.iter().map(|w| w.2).collect();
    assert!(revs.len() as u64 > WRITES / 2);
    assert!(
        revs[0] == floor + 1,
        "the first write beside the compaction"
    );
    assert!(
        revs.windows(2).all(|w| w[1] == w[0] + 1),
        "one revision per write"
    );
    assert_eq!(store.current_revision(), *revs.last().unwrap());
    let mut live: BTreeMap<Vec<u8>, KeyValue> = at_floor
        .iter()
        .map(|kv| (kv.key.clone(), kv.clone()))
        .collect();
    for (i, w) in written.iter().enumerate() {
        replay(&mut live, w);
        if i % 97 == 0 || i == written.len() - 1 {
            assert_eq!(
                all_at(&store, w.2),
                live.values().cloned().collect::<Vec<_>>(),
                "everything at {}",
                w.2
            );
        }
    }
    assert_eq!(all_at(&store, floor), at_floor);
    assert!(matches!(
        store.range(KeyRange::all(), RangeOptions::at(below)),
        Err(Error::Compacted { .. })
    ));
    assert_eq!(
        crate::common::key_tree_len(store.db()),
        KEYS + written.len() as u64,
        "one revision per key at the floor, and every revision after it"
    );
    assert_clean(store.db(), "after the busy compaction");
    let store = reopen(store);
    assert_eq!(all_at(&store, 0), live.into_values().collect::<Vec<_>>());
}
