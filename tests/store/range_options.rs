//! The threat: etcd's range and compare options answering differently from etcd's
//! `executeRange` and `applyCompare` (`server/etcdserver/txn/`): etcd reads every key of the range,
//! prunes by the revision filters, sorts, and only then applies the limit, so a limit applied
//! before a sort or a filter returns the wrong keys and the wrong `more`; `count` is the count
//! before the filters. A compare with a `range_end` holds only if it holds for every key in the
//! range. The streaming range must answer exactly what the range does while reading in batches.
//! Each option is checked on a small example, then all of them at once against a model over
//! random histories (the seed is printed; `RANGE_OPTIONS_SEED` repeats a run).

use std::collections::BTreeMap;
use std::path::Path;

use folio::limits::RANGE_INDEX_CHUNK;
use folio::{
    Compare, Db, Durability, Error, KeyRange, KeyValue, Op, RangeOptions, SortOrder, SortTarget,
    Store,
};

use crate::common::random_seed;

fn open(path: &Path) -> Store {
    let db = Db::builder()
        .durability(Durability::None)
        .open(path)
        .expect("open the database");
    Store::with_db(db).expect("open the store")
}

fn keys(kvs: &[KeyValue]) -> Vec<&[u8]> {
    kvs.iter().map(|kv| kv.key.as_slice()).collect()
}

/// a: version 3, value "1"; b: version 1, value "3"; c: version 2, value "2"; d: version 1,
/// value "1", created last.
fn versions(store: &Store) {
    store.put(b"a", b"x").unwrap();
    store.put(b"b", b"3").unwrap();
    store.put(b"a", b"x").unwrap();
    store.put(b"c", b"x").unwrap();
    store.put(b"c", b"2").unwrap();
    store.put(b"a", b"1").unwrap();
    store.put(b"d", b"1").unwrap();
}

#[test]
fn a_sort_sorts_every_key_of_the_range_and_then_applies_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    versions(&store);
    let read = |order, target, limit| {
        let r = store
            .range(.., RangeOptions::current().sort(order, target).limit(limit))
            .unwrap();
        assert_eq!(r.count, 4);
        (keys(&r.kvs).concat(), r.more)
    };
    use SortOrder::{Ascend, Descend, None};
    use SortTarget::{Create, Key, Mod, Value, Version};
    assert_eq!(read(None, Key, 2), (b"ab".to_vec(), true));
    assert_eq!(read(Ascend, Key, 0), (b"abcd".to_vec(), false));
    assert_eq!(read(Descend, Key, 2), (b"dc".to_vec(), true));
    // Ties in key order ascending; descending is the exact reverse.
    assert_eq!(read(Ascend, Version, 3), (b"bdc".to_vec(), true));
    assert_eq!(
        read(None, Version, 0),
        (b"bdca".to_vec(), false),
        "none sorts ascending"
    );
    assert_eq!(read(Descend, Version, 2), (b"ac".to_vec(), true));
    assert_eq!(read(Ascend, Create, 0), (b"abcd".to_vec(), false));
    assert_eq!(read(Descend, Mod, 1), (b"d".to_vec(), true));
    assert_eq!(read(Ascend, Mod, 0), (b"bcad".to_vec(), false));
    assert_eq!(read(Ascend, Value, 3), (b"adc".to_vec(), true));
    assert_eq!(read(Descend, Value, 1), (b"b".to_vec(), true));
    // keys_only still sorts by the values, and returns none.
    let r = store
        .range(.., RangeOptions::current().keys_only().sort(Descend, Value))
        .unwrap();
    assert_eq!(keys(&r.kvs).concat(), b"bcda");
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
}

#[test]
fn revision_filters_prune_before_the_limit_and_leave_the_count_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    versions(&store); // a created 2, mod 7; b 3, 3; c 5, 6; d 8, 8
    let read = |o: RangeOptions| {
        let r = store.range(.., o).unwrap();
        assert_eq!(r.count, 4, "the count ignores the filters");
        (keys(&r.kvs).concat(), r.more)
    };
    let o = RangeOptions::current;
    assert_eq!(read(o().min_mod_revision(6)), (b"acd".to_vec(), false));
    assert_eq!(read(o().max_mod_revision(6)), (b"bc".to_vec(), false));
    assert_eq!(read(o().min_create_revision(3)), (b"bcd".to_vec(), false));
    assert_eq!(read(o().max_create_revision(3)), (b"ab".to_vec(), false));
    assert_eq!(
        read(o().min_create_revision(3).max_mod_revision(7)),
        (b"bc".to_vec(), false)
    );
    // The limit counts only the keys the filters passed.
    assert_eq!(
        read(o().min_mod_revision(6).limit(2)),
        (b"ac".to_vec(), true)
    );
    assert_eq!(
        read(o().min_mod_revision(7).limit(2)),
        (b"ad".to_vec(), false)
    );
    // At an older revision, against what was visible then.
    let r = store
        .range(.., RangeOptions::at(5).min_mod_revision(4))
        .unwrap();
    assert_eq!((keys(&r.kvs).concat(), r.count), (b"ac".to_vec(), 3));
}

#[test]
fn a_compare_over_a_range_holds_only_if_it_holds_for_every_key_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    store.put(b"/p/a", b"v").unwrap();
    store.put(b"/p/b", b"v").unwrap();
    store.put(b"/p/b", b"w").unwrap();
    store.put(b"/q", b"v").unwrap();
    let holds = |c: Compare| store.txn().when([c]).commit().unwrap().succeeded;
    assert!(!holds(Compare::version(b"/p/").prefix().eq(1)));
    assert!(holds(Compare::version(b"/p/").prefix().gt(0)));
    assert!(holds(Compare::version(b"/p/a").range_end(b"/p/b").eq(1)));
    assert!(!holds(Compare::value(b"/p/").prefix().eq(b"v")));
    assert!(holds(Compare::value(b"/").range_end(b"/p/b").eq(b"v")));
    // From a key to the end ("\0").
    assert!(holds(Compare::mod_revision(b"/p/b").range_end(&[0]).gt(3)));
    assert!(!holds(Compare::mod_revision(b"/p/a").range_end(&[0]).gt(2)));
    // Over no key: as over a missing key.
    assert!(holds(Compare::version(b"/z/").prefix().eq(0)));
    assert!(holds(Compare::create_revision(b"/z/").prefix().eq(0)));
    assert!(!holds(Compare::value(b"/z/").prefix().eq(b"")));
    // An empty range end is the one key.
    assert!(holds(Compare::version(b"/p/b").range_end(b"").eq(2)));
}

#[test]
fn a_delete_with_prev_kv_returns_every_deleted_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    store.put(b"a", b"1").unwrap();
    store.put(b"b", b"2").unwrap();
    store.put(b"a", b"3").unwrap();
    let d = store.delete_range_with(KeyRange::all(), true).unwrap();
    assert_eq!(d.deleted, 2);
    let got: Vec<(&[u8], &[u8], i64)> = d
        .prev_kvs
        .iter()
        .map(|kv| (kv.key.as_slice(), kv.value.as_slice(), kv.version))
        .collect();
    assert_eq!(got, [(&b"a"[..], &b"3"[..], 2), (b"b", b"2", 1)]);
    let t = store.txn().then([Op::put(b"c", b"4")]).commit().unwrap();
    let r = store
        .txn()
        .then([Op::DeleteRange {
            range: KeyRange::key(b"c"),
            prev_kv: true,
        }])
        .commit()
        .unwrap();
    let folio::OpResponse::DeleteRange(d) = &r.responses[0] else {
        panic!("{r:?}")
    };
    assert_eq!(d.prev_kvs.len(), 1);
    assert_eq!(d.prev_kvs[0].mod_revision, t.revision);
}

#[test]
fn a_streaming_range_over_many_chunks_equals_the_range_and_ends_at_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let n = RANGE_INDEX_CHUNK * 2 + 7;
    for i in 0..n {
        store.put(format!("k{i:05}").as_bytes(), b"v").unwrap();
    }
    store.delete_range(KeyRange::prefix(b"k001")).unwrap();
    for o in [
        RangeOptions::current(),
        RangeOptions::current().limit(1500),
        RangeOptions::at(900).sort(SortOrder::Descend, SortTarget::Key),
        RangeOptions::current().min_create_revision(500).limit(2000),
    ] {
        let want = store.range(.., o.clone()).unwrap();
        let mut stream = store.range_stream(.., o.clone()).unwrap();
        assert_eq!((stream.key_count(), stream.more()), (None, None));
        let got: Vec<KeyValue> = stream.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(got, want.kvs, "{o:?}");
        assert_eq!(
            (stream.key_count(), stream.more(), stream.revision()),
            (Some(want.count), Some(want.more), want.revision)
        );
    }
    // A compaction past the stream's revision ends it with the compacted error.
    let at = store.current_revision() - 10;
    let mut stream = store.range_stream(.., RangeOptions::at(at)).unwrap();
    assert!(stream.next().unwrap().is_ok());
    store.compact(store.current_revision()).unwrap();
    let last = stream.by_ref().last().unwrap();
    assert!(
        matches!(last, Err(Error::Compacted { requested, .. }) if requested == at),
        "{last:?}"
    );
    assert!(stream.next().is_none());
    let refused = store.range_stream(
        ..,
        RangeOptions::current().sort(SortOrder::Ascend, SortTarget::Mod),
    );
    assert!(matches!(refused, Err(Error::InvalidOption(_))));
}

/// A small xorshift generator: the test needs no more.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

type Snapshot = BTreeMap<Vec<u8>, KeyValue>;

/// The model: what etcd's `executeRange` returns (kvs, count, more), ties in key order and a
/// descending sort the exact reverse of the ascending one.
fn model_range(snap: &Snapshot, lo: &[u8], hi: &[u8], q: &Query) -> (Vec<KeyValue>, u64, bool) {
    let all: Vec<KeyValue> = snap
        .range(lo.to_vec()..hi.to_vec())
        .map(|(_, kv)| kv.clone())
        .collect();
    let count = all.len() as u64;
    if q.count_only {
        return (Vec::new(), count, false);
    }
    let f = |bound: i64, v: i64, min: bool| bound == 0 || if min { v >= bound } else { v <= bound };
    let mut kvs: Vec<KeyValue> = all
        .into_iter()
        .filter(|kv| {
            f(q.filters[0], kv.mod_revision, true)
                && f(q.filters[1], kv.mod_revision, false)
                && f(q.filters[2], kv.create_revision, true)
                && f(q.filters[3], kv.create_revision, false)
        })
        .collect();
    // etcd: no order is key order, or ascending by another target; both ascend.
    let order = match q.order {
        SortOrder::None => SortOrder::Ascend,
        o => o,
    };
    match q.target {
        SortTarget::Key => {}
        SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
        SortTarget::Create => kvs.sort_by_key(|kv| kv.create_revision),
        SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
        SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
    }
    if order == SortOrder::Descend {
        kvs.reverse();
    }
    let more = q.limit > 0 && kvs.len() > q.limit;
    if q.limit > 0 {
        kvs.truncate(q.limit);
    }
    if q.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    (kvs, count, more)
}

#[derive(Debug)]
struct Query {
    order: SortOrder,
    target: SortTarget,
    limit: usize,
    filters: [i64; 4],
    count_only: bool,
    keys_only: bool,
}

impl Query {
    fn random(rng: &mut Rng, revisions: i64) -> Query {
        let orders = [SortOrder::None, SortOrder::Ascend, SortOrder::Descend];
        let targets = [
            SortTarget::Key,
            SortTarget::Version,
            SortTarget::Create,
            SortTarget::Mod,
            SortTarget::Value,
        ];
        let filter = |rng: &mut Rng| {
            if rng.below(3) == 0 {
                1 + rng.below(revisions as u64) as i64
            } else {
                0
            }
        };
        Query {
            order: orders[rng.below(3) as usize],
            target: targets[rng.below(5) as usize],
            limit: if rng.below(2) == 0 {
                0
            } else {
                1 + rng.below(8) as usize
            },
            filters: [filter(rng), filter(rng), filter(rng), filter(rng)],
            count_only: rng.below(10) == 0,
            keys_only: rng.below(5) == 0,
        }
    }

    fn options(&self, rev: i64) -> RangeOptions {
        let mut o = RangeOptions::at(rev)
            .sort(self.order, self.target)
            .limit(self.limit)
            .min_mod_revision(self.filters[0])
            .max_mod_revision(self.filters[1])
            .min_create_revision(self.filters[2])
            .max_create_revision(self.filters[3]);
        if self.count_only {
            o = o.count_only();
        }
        if self.keys_only {
            o = o.keys_only();
        }
        o
    }
}

fn key(rng: &mut Rng) -> Vec<u8> {
    format!("k{:02}", rng.below(16)).into_bytes()
}

/// A random history of puts, deletes and transactions; the model's snapshot at every revision.
fn history(store: &Store, rng: &mut Rng, writes: usize) -> Vec<Snapshot> {
    let mut snaps = vec![Snapshot::new(), Snapshot::new()]; // revisions 0 and 1
    for _ in 0..writes {
        let mut snap = snaps.last().unwrap().clone();
        let rev = store.current_revision() + 1;
        let put = |snap: &mut Snapshot, k: Vec<u8>, v: Vec<u8>| {
            let old = snap.get(&k);
            let kv = KeyValue {
                key: k.clone(),
                create_revision: old.map_or(rev, |o| o.create_revision),
                mod_revision: rev,
                version: old.map_or(1, |o| o.version + 1),
                value: v,
                lease: 0,
            };
            snap.insert(k, kv);
        };
        let value = |rng: &mut Rng| vec![b'a' + rng.below(4) as u8; 1 + rng.below(2) as usize];
        match rng.below(10) {
            0..=5 => {
                let (k, v) = (key(rng), value(rng));
                store.put(&k, &v).unwrap();
                put(&mut snap, k, v);
            }
            6 | 7 => {
                let (a, b) = (key(rng), key(rng));
                let (lo, hi) = (a.clone().min(b.clone()), a.max(b));
                let deleted = store.delete_range(lo.as_slice()..=hi.as_slice()).unwrap();
                let before = snap.len();
                snap.retain(|k, _| k < &lo || k > &hi);
                assert_eq!(deleted.deleted as usize, before - snap.len());
            }
            _ => {
                let (k1, k2) = (key(rng), key(rng));
                if k1 == k2 {
                    continue;
                }
                let (v1, v2) = (value(rng), value(rng));
                store
                    .txn()
                    .then([Op::put(&k1, &v1), Op::put(&k2, &v2)])
                    .commit()
                    .unwrap();
                put(&mut snap, k1, v1);
                put(&mut snap, k2, v2);
            }
        }
        if store.current_revision() as usize == snaps.len() {
            snaps.push(snap);
        }
        assert_eq!(store.current_revision() as usize, snaps.len() - 1);
    }
    snaps
}

fn seed() -> u64 {
    let seed = std::env::var("RANGE_OPTIONS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(random_seed);
    println!("range options: seed {seed} (rerun with RANGE_OPTIONS_SEED={seed})");
    seed
}

#[test]
fn every_range_option_at_every_revision_matches_the_model_and_the_stream_matches_the_range() {
    let seed = seed();
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("kv.folio"));
    let snaps = history(&store, &mut rng, 150);
    let revisions = snaps.len() as i64;
    for rev in 1..revisions {
        for _ in 0..12 {
            let q = Query::random(&mut rng, revisions);
            let (a, b) = (key(&mut rng), key(&mut rng));
            let (lo, hi) = (a.clone().min(b.clone()), a.max(b));
            let options = q.options(rev);
            let got = store
                .range(lo.as_slice()..hi.as_slice(), options.clone())
                .unwrap();
            let (kvs, count, more) = model_range(&snaps[rev as usize], &lo, &hi, &q);
            let ctx = format!("seed {seed}, rev {rev}, {lo:?}..{hi:?}, {q:?}");
            assert_eq!(got.kvs, kvs, "{ctx}");
            assert_eq!((got.count, got.more), (count, more), "{ctx}");
            let stream = store.range_stream(lo.as_slice()..hi.as_slice(), options);
            if q.target != SortTarget::Key {
                assert!(matches!(stream, Err(Error::InvalidOption(_))), "{ctx}");
                continue;
            }
            let mut stream = stream.unwrap();
            let streamed: Vec<KeyValue> = stream.by_ref().collect::<Result<_, _>>().unwrap();
            assert_eq!(streamed, got.kvs, "{ctx}");
            assert_eq!(
                (stream.key_count(), stream.more()),
                (Some(count), Some(more)),
                "{ctx}"
            );
        }
    }
    let report = store.db().check().unwrap();
    assert!(report.is_clean(), "{report:?}");
}
