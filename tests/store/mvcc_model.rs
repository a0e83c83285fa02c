//! The threat: the MVCC store drifts from etcd's revisioned key-value semantics. Random streams of
//! puts, deletes, transactions with compares, compactions, hashes, reopens and reads at random
//! revisions (with limits, count only and keys only) run against a plain model: the list of every
//! change ever written, `(main, sub, key, value or tombstone, lease)`, from which the expected
//! `KeyValue` (create revision, mod revision, version), the compaction floor, the exact hash at
//! every revision (etcd's rule, with the hashes compactions record), the transactions refused for
//! a duplicate key, and every expected error are computed. The store and the model must agree on every answer and every error, on the
//! revisions, on the number of revisions still stored after compaction, and after every reopen;
//! `check` must find the database clean at the end of each case.
//!
//! Keys come from a small alphabet (so they collide, share prefixes, and end in 0xff, whose prefix
//! range has no upper bound); pages are 512 bytes; compaction runs in batches of 1, 2, 5 or 1000
//! revisions, chosen per case.
//!
//! Rerunning: the proptest case prints its case count and RNG seed. Rerun the same cases with
//! `PROPTEST_RNG_SEED=<seed> cargo test --test mvcc_model`; run more with `PROPTEST_CASES=1000`. A
//! failure is shrunk, printed, and saved to `tests/mvcc_model.proptest-regressions`, which
//! proptest replays first on every later run.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

use crate::common::data::Value;
use crate::common::mvcc::{self, Live};
use folio::{
    Compare, CompareValue, Db, DeleteResponse, Durability, Error, KeyRange, KeyValue, Op,
    OpResponse, PutOptions, RangeOptions, RangeResponse, Store, StoreOptions,
};
use proptest::prelude::*;

const PAGE_SIZE: u32 = 512;
/// Cases per run unless `PROPTEST_CASES` says otherwise; sized to keep this file under a minute.
const CASES: u32 = 1024;

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// One change: a put (`Some(value)`) or a tombstone (`None`), at revision `main.sub`.
#[derive(Clone, Debug)]
struct Change {
    main: i64,
    sub: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    lease: i64,
}

/// Applies one change to `live` (see [`mvcc::apply`]). Returns the key's previous value.
fn apply(live: &mut Live, c: &Change) -> Option<KeyValue> {
    mvcc::apply(live, c.main, &c.key, c.value.as_deref(), c.lease)
}

/// An error the store must return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    Compacted { requested: i64, compacted: i64 },
    Future { requested: i64, current: i64 },
}

fn is(got: &Error, want: Expected) -> bool {
    match want {
        Expected::Compacted {
            requested,
            compacted,
        } => {
            matches!(*got, Error::Compacted { requested: r, compacted: c } if r == requested && c == compacted)
        }
        Expected::Future { requested, current } => {
            matches!(*got, Error::FutureRevision { requested: r, current: c } if r == requested && c == current)
        }
    }
}

#[derive(Clone, Debug)]
struct Model {
    changes: Vec<Change>,
    /// The store's current revision: the main revision of the last write.
    current: i64,
    /// The compaction floor: -1 before any compaction, as in etcd.
    compacted: i64,
    /// The hash each of the last compactions recorded: revision -> (previous floor, hash).
    recorded: BTreeMap<i64, (i64, u32)>,
}

impl Model {
    /// The keys visible at `rev`.
    fn live_at(&self, rev: i64) -> Live {
        let mut live = Live::new();
        for c in self.changes.iter().take_while(|c| c.main <= rev) {
            apply(&mut live, c);
        }
        live
    }

    /// The revision a read at `rev` is made at (0 is the current one), or the error it must give.
    fn read_at(&self, rev: i64) -> Result<i64, Expected> {
        let at = if rev <= 0 { self.current } else { rev };
        if at > self.current {
            return Err(Expected::Future {
                requested: at,
                current: self.current,
            });
        }
        if at < self.compacted {
            return Err(Expected::Compacted {
                requested: at,
                compacted: self.compacted,
            });
        }
        Ok(at)
    }

    /// What `compact(rev)` must do: etcd checks the floor first, then the future. A compaction
    /// records the hash of its revision against the floor before it (etcd's `hashStorage`
    /// keeps 10).
    fn compact(&mut self, rev: i64) -> Result<(), Expected> {
        if rev <= self.compacted {
            return Err(Expected::Compacted {
                requested: rev,
                compacted: self.compacted,
            });
        }
        if rev > self.current {
            return Err(Expected::Future {
                requested: rev,
                current: self.current,
            });
        }
        let hash = self.hash(rev, self.compacted);
        self.recorded.insert(rev, (self.compacted, hash));
        while self.recorded.len() > 10 {
            self.recorded.pop_first();
        }
        self.compacted = rev;
        Ok(())
    }

    /// Every change's entry in the store's `key` tree, `(key, record)`, in revision order, as
    /// `docs/format.md` lays them out.
    fn entries(&self) -> Vec<(&Change, Vec<u8>, Vec<u8>)> {
        let mut live = Live::new();
        self.changes
            .iter()
            .map(|c| {
                apply(&mut live, c);
                let mut k = Vec::new();
                k.extend_from_slice(&(c.main as u64).to_be_bytes());
                k.extend_from_slice(&(c.sub as u64).to_be_bytes());
                let kv = match &c.value {
                    Some(_) => live[&c.key].clone(),
                    None => {
                        k.push(b't');
                        KeyValue {
                            key: c.key.clone(),
                            ..KeyValue::default()
                        }
                    }
                };
                let mut v = (kv.key.len() as u32).to_le_bytes().to_vec();
                v.extend_from_slice(&kv.key);
                for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
                    v.extend_from_slice(&n.to_le_bytes());
                }
                v.extend_from_slice(&kv.value);
                (c, k, v)
            })
            .collect()
    }

    /// etcd's hash of revision `at` against the floor `floor`: every revision in (floor, at],
    /// and of those at or below the floor only the ones visible at `at`.
    fn hash(&self, at: i64, floor: i64) -> u32 {
        let live = self.live_at(at);
        let mut h = crc32fast::Hasher::new();
        for (c, k, v) in self.entries() {
            let visible =
                c.value.is_some() && live.get(&c.key).is_some_and(|kv| kv.mod_revision == c.main);
            if c.main <= at && (c.main > floor || visible) {
                h.update(&k);
                h.update(&v);
            }
        }
        h.finalize()
    }

    /// What `hash_by_rev(rev)` must answer: `(hash, compact revision, revision hashed)`.
    fn hash_by_rev(&self, rev: i64) -> Result<(u32, i64, i64), Expected> {
        let at = if rev <= 0 { self.current } else { rev };
        if at > self.current {
            return Err(Expected::Future {
                requested: at,
                current: self.current,
            });
        }
        if let Some(&(previous, hash)) = self.recorded.get(&at) {
            return Ok((hash, previous, at));
        }
        let at = self.read_at(at)?;
        Ok((self.hash(at, self.compacted), self.compacted, at))
    }

    /// How many revisions the store must still hold: every change after the floor, plus, for each
    /// key live at the floor, the one revision visible there, plus the tombstones exactly at the
    /// floor (etcd 3.5.16 and later keep them). Everything else at or below the floor (older
    /// values, older tombstones, whole dead generations) is gone.
    fn stored(&self) -> u64 {
        if self.compacted < 0 {
            return self.changes.len() as u64;
        }
        let after = self
            .changes
            .iter()
            .filter(|c| c.main > self.compacted)
            .count();
        let tombstones = self
            .changes
            .iter()
            .filter(|c| c.main == self.compacted && c.value.is_none())
            .count();
        (after + self.live_at(self.compacted).len() + tombstones) as u64
    }
}

/// A write transaction in the model: changes at `current + 1`, each seeing the ones before it.
struct Pending {
    current: i64,
    live: Live,
    changes: Vec<Change>,
}

impl Pending {
    fn new(model: &Model) -> Pending {
        Pending {
            current: model.current,
            live: model.live_at(model.current),
            changes: Vec::new(),
        }
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Option<KeyValue> {
        let c = Change {
            main: self.current + 1,
            sub: self.changes.len() as i64,
            key: key.to_vec(),
            value: Some(value),
            lease,
        };
        let prev = apply(&mut self.live, &c);
        self.changes.push(c);
        prev
    }

    /// Deletes every live key in `keys`, in key order; returns their last values.
    fn delete(&mut self, keys: &Keys) -> Vec<KeyValue> {
        let doomed: Vec<Vec<u8>> = self
            .live
            .keys()
            .filter(|k| keys.contains(k))
            .cloned()
            .collect();
        let mut prev = Vec::new();
        for key in doomed {
            let c = Change {
                main: self.current + 1,
                sub: self.changes.len() as i64,
                key,
                value: None,
                lease: 0,
            };
            prev.extend(apply(&mut self.live, &c));
            self.changes.push(c);
        }
        prev
    }

    /// The revision the transaction answers with: a new one once it has written anything.
    fn revision(&self) -> i64 {
        if self.changes.is_empty() {
            self.current
        } else {
            self.current + 1
        }
    }

    fn commit(self, model: &mut Model) {
        debug_assert!(self.changes.iter().zip(0..).all(|(c, i)| c.sub == i));
        if !self.changes.is_empty() {
            model.current += 1;
            model.changes.extend(self.changes);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// Which keys an operation covers.
#[derive(Clone, Debug)]
enum Keys {
    One(Vec<u8>),
    Prefix(Vec<u8>),
    All,
    Bounds(Bound<Vec<u8>>, Bound<Vec<u8>>),
}

impl Keys {
    /// The store's `KeyRange`, built through every conversion the API offers.
    fn range(&self) -> KeyRange {
        use Bound::{Excluded, Included, Unbounded};
        match self {
            Keys::One(k) => KeyRange::from(k.as_slice()),
            Keys::Prefix(p) => KeyRange::prefix(p),
            Keys::All => KeyRange::all(),
            Keys::Bounds(start, end) => match (start, end) {
                (Included(s), Excluded(e)) => KeyRange::from(s.as_slice()..e.as_slice()),
                (Included(s), Included(e)) => KeyRange::from(s.as_slice()..=e.as_slice()),
                (Included(s), Unbounded) => KeyRange::from(s.as_slice()..),
                (Unbounded, Excluded(e)) => KeyRange::from(..e.as_slice()),
                (Unbounded, Included(e)) => KeyRange::from(..=e.as_slice()),
                _ => KeyRange::bounds::<Vec<u8>>((start.clone(), end.clone())),
            },
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        match self {
            Keys::One(k) => k == key,
            Keys::Prefix(p) => key.starts_with(p),
            Keys::All => true,
            Keys::Bounds(start, end) => (
                start.as_ref().map(Vec::as_slice),
                end.as_ref().map(Vec::as_slice),
            )
                .contains(key),
        }
    }
}

/// How to read: at a revision picked relative to the store's (see [`pick_rev`]), with options.
#[derive(Clone, Copy, Debug)]
struct Read {
    rev: u16,
    /// `Some(0)` asks for no limit, as in etcd.
    limit: Option<usize>,
    count_only: bool,
    keys_only: bool,
}

impl Read {
    fn options(self, rev: i64) -> RangeOptions {
        let mut o = if rev == 0 && self.rev.is_multiple_of(2) {
            RangeOptions::current()
        } else {
            RangeOptions::at(rev)
        };
        if let Some(n) = self.limit {
            o = o.limit(n);
        }
        if self.count_only {
            o = o.count_only();
        }
        if self.keys_only {
            o = o.keys_only();
        }
        o
    }
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Value,
    Version,
    CreateRevision,
    ModRevision,
}

#[derive(Clone, Copy, Debug)]
enum Relation {
    Eq,
    Ne,
    Lt,
    Gt,
}

/// What a compare compares against, resolved against the model when the transaction runs.
#[derive(Clone, Debug)]
enum Against {
    /// The same target of `key` as it is now (0 or no value when missing), plus `delta` for numbers:
    /// so compares often hold, or just miss.
    Field { key: Vec<u8>, delta: i8 },
    /// A number below the current revision plus two, or a fresh value.
    Literal(u16, Value),
}

#[derive(Clone, Debug)]
struct CompareSpec {
    key: Vec<u8>,
    target: Target,
    relation: Relation,
    against: Against,
}

#[derive(Clone, Debug)]
enum TxnOp {
    Put {
        key: Vec<u8>,
        value: Value,
        lease: i64,
        prev_kv: bool,
    },
    Delete {
        keys: Keys,
        prev_kv: bool,
    },
    /// A read at the transaction's own view (`past: None`) or at a readable earlier revision.
    Range {
        keys: Keys,
        past: Option<u16>,
        read: Read,
    },
}

#[derive(Clone, Debug)]
enum Step {
    Put {
        key: Vec<u8>,
        value: Value,
        lease: i64,
        prev_kv: bool,
    },
    Delete {
        keys: Keys,
        prev_kv: bool,
    },
    Txn {
        compares: Vec<CompareSpec>,
        then: Vec<TxnOp>,
        otherwise: Vec<TxnOp>,
    },
    Range {
        keys: Keys,
        read: Read,
    },
    Compact(u16),
    Hash(u16),
    /// Drops the store and its database and opens the file again; `by_path` first opens it once
    /// with `Store::open` and default options.
    Reopen {
        by_path: bool,
    },
}

/// Twelve keys: one or two bytes from `a`, `b`, 0xff.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![b'a', b'b', 0xff]), 1..=2)
}

/// Mostly short; one in ten is too large to sit beside much else in a 512-byte page, and some
/// overflow it.
fn value() -> impl Strategy<Value = Value> {
    let len = prop_oneof![9 => 0usize..24, 1 => 200usize..700];
    (len, any::<u8>()).prop_map(|(len, seed)| Value { len, seed })
}

fn lease() -> impl Strategy<Value = i64> {
    prop_oneof![3 => Just(0i64), 1 => 1i64..4]
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        2 => key().prop_map(Bound::Included),
        2 => key().prop_map(Bound::Excluded),
        1 => Just(Bound::Unbounded),
    ]
}

fn keys() -> impl Strategy<Value = Keys> {
    prop_oneof![
        3 => key().prop_map(Keys::One),
        2 => prop::collection::vec(prop::sample::select(vec![b'a', 0xff]), 1..=2).prop_map(Keys::Prefix),
        1 => Just(Keys::All),
        3 => (bound(), bound()).prop_map(|(s, e)| Keys::Bounds(s, e)),
    ]
}

fn read() -> impl Strategy<Value = Read> {
    let limit =
        prop_oneof![3 => Just(None), 1 => Just(Some(0usize)), 2 => (1usize..4).prop_map(Some)];
    (
        any::<u16>(),
        limit,
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(rev, limit, count_only, keys_only)| Read {
            rev,
            limit,
            count_only,
            keys_only,
        })
}

fn compare() -> impl Strategy<Value = CompareSpec> {
    let target = prop_oneof![
        Just(Target::Value),
        Just(Target::Version),
        Just(Target::CreateRevision),
        Just(Target::ModRevision),
    ];
    let relation = prop_oneof![
        2 => Just(Relation::Eq),
        1 => Just(Relation::Ne),
        1 => Just(Relation::Lt),
        1 => Just(Relation::Gt),
    ];
    let against = prop_oneof![
        3 => (key(), -1i8..=1).prop_map(|(key, delta)| Against::Field { key, delta }),
        1 => (any::<u16>(), value()).prop_map(|(n, v)| Against::Literal(n, v)),
    ];
    (key(), target, relation, against).prop_map(|(key, target, relation, against)| CompareSpec {
        key,
        target,
        relation,
        against,
    })
}

fn txn_op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        4 => (key(), value(), lease(), any::<bool>())
            .prop_map(|(key, value, lease, prev_kv)| TxnOp::Put { key, value, lease, prev_kv }),
        2 => (keys(), any::<bool>()).prop_map(|(keys, prev_kv)| TxnOp::Delete { keys, prev_kv }),
        3 => (keys(), prop::option::weighted(0.3, any::<u16>()), read())
            .prop_map(|(keys, past, read)| TxnOp::Range { keys, past, read }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        30 => (key(), value(), lease(), prop::bool::weighted(0.3))
            .prop_map(|(key, value, lease, prev_kv)| Step::Put { key, value, lease, prev_kv }),
        8 => (keys(), any::<bool>()).prop_map(|(keys, prev_kv)| Step::Delete { keys, prev_kv }),
        14 => (
            prop::collection::vec(compare(), 0..3),
            prop::collection::vec(txn_op(), 0..5),
            prop::collection::vec(txn_op(), 0..4),
        )
            .prop_map(|(compares, then, otherwise)| Step::Txn { compares, then, otherwise }),
        20 => (keys(), read()).prop_map(|(keys, read)| Step::Range { keys, read }),
        4 => any::<u16>().prop_map(Step::Compact),
        3 => any::<u16>().prop_map(Step::Hash),
        2 => any::<bool>().prop_map(|by_path| Step::Reopen { by_path }),
    ]
}

/// A revision to read at: 0 (the current one) one time in six, else one from two below the floor
/// to two past the current revision, so both errors come up.
fn pick_rev(x: u16, m: &Model) -> i64 {
    if x.is_multiple_of(6) {
        return 0;
    }
    // Down to well below the floor, where the hashes of earlier compactions are still answered.
    let lo = (m.compacted - 8).max(1);
    let hi = m.current + 2;
    lo + i64::from(x) % (hi - lo + 1)
}

/// A revision to compact at: from one below the floor to one past the current revision (0 on a
/// new store).
fn pick_compaction(x: u16, m: &Model) -> i64 {
    let lo = (m.compacted - 1).max(0);
    let hi = m.current + 1;
    lo + i64::from(x) % (hi - lo + 1)
}

/// A readable revision at or below the current one, for a read inside a transaction; 0 when
/// nothing has been written.
fn pick_past(x: u16, m: &Model) -> i64 {
    let lo = m.compacted.max(1);
    if m.current < lo {
        return 0;
    }
    lo + i64::from(x) % (m.current - lo + 1)
}

// ---------------------------------------------------------------------------------------------
// Comparing the store with the model
// ---------------------------------------------------------------------------------------------

/// The answer a range over `keys` with `read`'s options must give when `live` is visible.
fn expect_range(live: &Live, keys: &Keys, read: Read) -> (Vec<KeyValue>, u64) {
    let all: Vec<KeyValue> = live
        .values()
        .filter(|kv| keys.contains(&kv.key))
        .cloned()
        .collect();
    let count = all.len() as u64;
    if read.count_only {
        return (Vec::new(), count);
    }
    let mut kvs = all;
    if let Some(n) = read.limit.filter(|&n| n > 0) {
        kvs.truncate(n);
    }
    if read.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    (kvs, count)
}

fn check_range(got: &RangeResponse, live: &Live, keys: &Keys, read: Read, context: &str) {
    let (kvs, count) = expect_range(live, keys, read);
    assert_eq!(got.kvs, kvs, "{context}: kvs");
    assert_eq!(got.count, count, "{context}: count");
    // `more` is the limit leaving keys out. With count_only etcd returns no keys and no `more`;
    // the brief leaves that case open, so it is not asserted.
    if !read.count_only {
        let more = read.limit.is_some_and(|n| n > 0 && count > n as u64);
        assert_eq!(got.more, more, "{context}: more");
    }
}

/// Reads every key at every readable revision and compares with the model; reads just below the
/// floor and just past the current revision must fail as etcd's do.
fn check_history(store: &Store, model: &Model, context: &str) {
    assert_eq!(
        store.current_revision(),
        model.current,
        "{context}: current revision"
    );
    assert_eq!(
        store.compacted_revision(),
        model.compacted,
        "{context}: compacted revision"
    );
    for rev in model.compacted.max(1)..=model.current {
        let got = store
            .range(KeyRange::all(), RangeOptions::at(rev))
            .unwrap_or_else(|e| panic!("{context}: reading at {rev}: {e}"));
        let live = model.live_at(rev);
        assert_eq!(
            got.kvs,
            live.values().cloned().collect::<Vec<_>>(),
            "{context}: everything at {rev}"
        );
        assert_eq!(got.count, live.len() as u64, "{context}: count at {rev}");
        assert_eq!(got.revision, model.current, "{context}: revision at {rev}");
    }
    for rev in [model.compacted - 1, model.current + 1] {
        if rev < 1 {
            continue;
        }
        let want = model
            .read_at(rev)
            .expect_err("outside the readable revisions");
        match store.range(KeyRange::all(), RangeOptions::at(rev)) {
            Err(e) if is(&e, want) => {}
            other => panic!("{context}: reading at {rev}: expected {want:?}, got {other:?}"),
        }
    }
    assert_eq!(
        crate::common::key_tree_len(store.db()),
        model.stored(),
        "{context}: revisions stored in the key tree"
    );
}

fn assert_clean(db: &Db, context: &str) {
    let report = db.check().expect("check runs");
    assert!(report.is_clean(), "{context}: {report}");
}

fn open_store(path: &Path, batch: usize) -> Store {
    let db = Db::builder()
        .page_size(PAGE_SIZE)
        .durability(Durability::None)
        .open(path)
        .expect("open the database");
    let store = Store::with_db_options(
        db,
        StoreOptions {
            compaction_batch: batch,
            ..StoreOptions::default()
        },
    )
    .expect("open the store");
    // The leases the steps put keys with (a put with a lease that does not exist fails). They
    // never expire: nothing here calls `expire_leases`.
    for id in 1..4 {
        if store.lease_time_to_live(id, false).is_err() {
            store.lease_grant(id, 3600).expect("grant a lease");
        }
    }
    store
}

// ---------------------------------------------------------------------------------------------
// Playing a step
// ---------------------------------------------------------------------------------------------

fn compare_value(spec: &CompareSpec, model: &Model, live: &Live) -> CompareValue {
    let number = |kv: Option<&KeyValue>| match spec.target {
        Target::Version => kv.map_or(0, |kv| kv.version),
        Target::CreateRevision => kv.map_or(0, |kv| kv.create_revision),
        Target::ModRevision | Target::Value => kv.map_or(0, |kv| kv.mod_revision),
    };
    match (&spec.against, spec.target) {
        (Against::Field { key, .. }, Target::Value) => CompareValue::Bytes(
            live.get(key)
                .map_or_else(|| b"absent".to_vec(), |kv| kv.value.clone()),
        ),
        (Against::Field { key, delta }, _) => {
            CompareValue::Number(number(live.get(key)) + i64::from(*delta))
        }
        (Against::Literal(_, v), Target::Value) => CompareValue::Bytes(v.bytes()),
        (Against::Literal(n, _), Target::Version) => CompareValue::Number(i64::from(*n % 4)),
        (Against::Literal(n, _), _) => CompareValue::Number(i64::from(*n) % (model.current + 2)),
    }
}

/// Whether a compare holds, as etcd's `applyCompare`: a missing key has version and revisions 0,
/// and a value compare on it is false whatever the relation.
fn holds(spec: &CompareSpec, against: &CompareValue, live: &Live) -> bool {
    let kv = live.get(&spec.key);
    let ordering = match (spec.target, against) {
        (Target::Value, CompareValue::Bytes(b)) => match kv {
            None => return false,
            Some(kv) => kv.value.as_slice().cmp(b.as_slice()),
        },
        (Target::Version, CompareValue::Number(n)) => kv.map_or(0, |kv| kv.version).cmp(n),
        (Target::CreateRevision, CompareValue::Number(n)) => {
            kv.map_or(0, |kv| kv.create_revision).cmp(n)
        }
        (Target::ModRevision, CompareValue::Number(n)) => kv.map_or(0, |kv| kv.mod_revision).cmp(n),
        other => unreachable!("mismatched compare {other:?}"),
    };
    match spec.relation {
        Relation::Eq => ordering == Ordering::Equal,
        Relation::Ne => ordering != Ordering::Equal,
        Relation::Lt => ordering == Ordering::Less,
        Relation::Gt => ordering == Ordering::Greater,
    }
}

fn build_compare(spec: &CompareSpec, against: CompareValue) -> Compare {
    let target = match spec.target {
        Target::Value => Compare::value(&spec.key),
        Target::Version => Compare::version(&spec.key),
        Target::CreateRevision => Compare::create_revision(&spec.key),
        Target::ModRevision => Compare::mod_revision(&spec.key),
    };
    match spec.relation {
        Relation::Eq => target.eq(against),
        Relation::Ne => target.ne(against),
        Relation::Lt => target.lt(against),
        Relation::Gt => target.gt(against),
    }
}

/// A transaction operation with its revisions resolved: `(op, read revision for a range)`.
fn build_op(op: &TxnOp, model: &Model) -> (Op, i64) {
    match op {
        TxnOp::Put {
            key,
            value,
            lease,
            prev_kv,
        } => {
            let op = match (*lease, *prev_kv) {
                (0, false) => Op::put(key, &value.bytes()),
                (lease, false) => Op::put_with_lease(key, &value.bytes(), lease),
                (lease, true) => Op::Put {
                    key: key.clone(),
                    value: value.bytes(),
                    options: PutOptions {
                        lease,
                        prev_kv: true,
                    },
                },
            };
            (op, 0)
        }
        TxnOp::Delete { keys, prev_kv } => {
            let op = if *prev_kv {
                Op::DeleteRange {
                    range: keys.range(),
                    prev_kv: true,
                }
            } else {
                Op::delete_range(keys.range())
            };
            (op, 0)
        }
        TxnOp::Range { keys, past, read } => {
            let rev = past.map_or(0, |x| pick_past(x, model));
            (Op::range(keys.range(), read.options(rev)), rev)
        }
    }
}

/// Plays the ops of the branch that runs against the model and checks each answer.
fn check_txn_ops(
    ops: &[TxnOp],
    revs: &[i64],
    got: &[OpResponse],
    model: &Model,
    pending: &mut Pending,
    context: &str,
) {
    assert_eq!(got.len(), ops.len(), "{context}: one response per op");
    for (i, ((op, &rev), got)) in ops.iter().zip(revs).zip(got).enumerate() {
        let context = format!("{context}, op {i} {op:?}");
        match (op, got) {
            (
                TxnOp::Put {
                    key,
                    value,
                    lease,
                    prev_kv,
                },
                OpResponse::Put(r),
            ) => {
                let prev = pending.put(key, value.bytes(), *lease);
                assert_eq!(r.revision, model.current + 1, "{context}: revision");
                assert_eq!(r.prev_kv, prev.filter(|_| *prev_kv), "{context}: prev_kv");
            }
            (TxnOp::Delete { keys, prev_kv }, OpResponse::DeleteRange(r)) => {
                let prev = pending.delete(keys);
                check_delete(r, &prev, *prev_kv, None, &context);
                if !prev.is_empty() {
                    assert_eq!(r.revision, model.current + 1, "{context}: revision");
                }
            }
            (TxnOp::Range { keys, read, .. }, OpResponse::Range(r)) => {
                let live = if rev == 0 {
                    pending.live.clone()
                } else {
                    model.live_at(rev)
                };
                check_range(r, &live, keys, *read, &context);
            }
            (op, got) => panic!("{context}: {op:?} answered with {got:?}"),
        }
    }
}

fn check_delete(
    got: &DeleteResponse,
    prev: &[KeyValue],
    prev_kv: bool,
    revision: Option<i64>,
    context: &str,
) {
    assert_eq!(got.deleted, prev.len() as u64, "{context}: deleted");
    let want: &[KeyValue] = if prev_kv { prev } else { &[] };
    assert_eq!(got.prev_kvs, want, "{context}: prev_kvs");
    if let Some(rev) = revision {
        assert_eq!(got.revision, rev, "{context}: revision");
    }
}

/// Whether a branch puts a key twice or puts a key inside one of its delete ranges.
fn writes_a_key_twice(ops: &[TxnOp]) -> bool {
    let puts: Vec<&[u8]> = ops
        .iter()
        .filter_map(|op| match op {
            TxnOp::Put { key, .. } => Some(key.as_slice()),
            _ => None,
        })
        .collect();
    let twice = puts.iter().enumerate().any(|(i, k)| puts[..i].contains(k));
    let inside = ops.iter().any(|op| match op {
        TxnOp::Delete { keys, .. } => puts.iter().any(|k| keys.contains(k)),
        _ => false,
    });
    twice || inside
}

/// Plays one step on the store and the model and compares every answer.
fn play(step: &Step, store: &Store, model: &mut Model, context: &str) {
    match step {
        Step::Put {
            key,
            value,
            lease,
            prev_kv,
        } => {
            let mut pending = Pending::new(model);
            let prev = pending.put(key, value.bytes(), *lease);
            let want = model.current + 1;
            if *lease == 0 && !prev_kv {
                let rev = store.put(key, &value.bytes()).expect("put");
                assert_eq!(rev, want, "{context}: revision");
            } else {
                let r = store
                    .put_with(
                        key,
                        &value.bytes(),
                        PutOptions {
                            lease: *lease,
                            prev_kv: *prev_kv,
                        },
                    )
                    .expect("put_with");
                assert_eq!(r.revision, want, "{context}: revision");
                assert_eq!(r.prev_kv, prev.filter(|_| *prev_kv), "{context}: prev_kv");
            }
            pending.commit(model);
        }
        Step::Delete { keys, prev_kv } => {
            let mut pending = Pending::new(model);
            let prev = pending.delete(keys);
            let r = if *prev_kv {
                store.delete_range_with(keys.range(), true)
            } else {
                store.delete_range(keys.range())
            }
            .expect("delete_range");
            check_delete(&r, &prev, *prev_kv, Some(pending.revision()), context);
            pending.commit(model);
        }
        Step::Txn {
            compares,
            then,
            otherwise,
        } => {
            let live = model.live_at(model.current);
            let mut built = Vec::new();
            let mut succeeded = true;
            for spec in compares {
                let against = compare_value(spec, model, &live);
                succeeded &= holds(spec, &against, &live);
                built.push(build_compare(spec, against));
            }
            let (then_ops, then_revs): (Vec<Op>, Vec<i64>) =
                then.iter().map(|op| build_op(op, model)).unzip();
            let (else_ops, else_revs): (Vec<Op>, Vec<i64>) =
                otherwise.iter().map(|op| build_op(op, model)).unzip();
            let got = store
                .txn()
                .when(built)
                .then(then_ops)
                .otherwise(else_ops)
                .commit();
            // etcd's `checkIntervals`: either branch writing a key twice refuses the whole txn.
            if writes_a_key_twice(then) || writes_a_key_twice(otherwise) {
                assert!(
                    matches!(got, Err(Error::DuplicateKey { .. })),
                    "{context}: a duplicate key gave {got:?}"
                );
                return;
            }
            let r = got.expect("txn");
            assert_eq!(r.succeeded, succeeded, "{context}: succeeded");
            let (ops, revs) = if succeeded {
                (then, &then_revs)
            } else {
                (otherwise, &else_revs)
            };
            let mut pending = Pending::new(model);
            check_txn_ops(ops, revs, &r.responses, model, &mut pending, context);
            assert_eq!(r.revision, pending.revision(), "{context}: txn revision");
            pending.commit(model);
        }
        Step::Range { keys, read } => {
            let rev = pick_rev(read.rev, model);
            let got = store.range(keys.range(), read.options(rev));
            match (model.read_at(rev), got) {
                (Ok(at), Ok(got)) => {
                    check_range(&got, &model.live_at(at), keys, *read, context);
                    assert_eq!(got.revision, model.current, "{context}: revision");
                }
                (Err(want), Err(e)) if is(&e, want) => {}
                (want, got) => panic!("{context}: at {rev}: expected {want:?}, got {got:?}"),
            }
        }
        Step::Compact(x) => {
            let rev = pick_compaction(*x, model);
            let got = store.compact(rev);
            match (model.compact(rev), got) {
                (Ok(()), Ok(())) => {}
                (Err(want), Err(e)) if is(&e, want) => {}
                (want, got) => panic!("{context}: compact({rev}): expected {want:?}, got {got:?}"),
            }
            assert_eq!(
                crate::common::key_tree_len(store.db()),
                model.stored(),
                "{context}: revisions stored after compact({rev})"
            );
            assert_clean(store.db(), context);
        }
        Step::Hash(x) => {
            let rev = pick_rev(*x, model);
            match (model.hash_by_rev(rev), store.hash_by_rev(rev)) {
                (Ok((hash, compact_revision, at)), Ok(h)) => {
                    assert_eq!(h.revision, model.current, "{context}: hash revision");
                    assert_eq!(h.hash_revision, at, "{context}: revision hashed");
                    assert_eq!(
                        h.compact_revision, compact_revision,
                        "{context}: hash compact revision"
                    );
                    assert_eq!(h.hash, hash, "{context}: hash at {at}");
                }
                (Err(want), Err(e)) if is(&e, want) => {}
                (want, got) => panic!("{context}: hash at {rev}: expected {want:?}, got {got:?}"),
            }
        }
        Step::Reopen { .. } => unreachable!("handled by the caller"),
    }
}

/// The hash at every revision above the floor and at 0 (the current one).
fn all_hashes(store: &Store, model: &Model) -> Vec<(i64, u32)> {
    (model.compacted + 1..=model.current)
        .chain([0])
        .map(|rev| {
            let h = store
                .hash_by_rev(rev)
                .unwrap_or_else(|e| panic!("hash at {rev}: {e}"));
            (rev, h.hash)
        })
        .collect()
}

/// Plays `steps` against a fresh store and the model.
fn run(batch: usize, steps: &[Step]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mvcc.folio");
    let mut store = open_store(&path, batch);
    let mut model = Model {
        changes: Vec::new(),
        current: store.current_revision(),
        compacted: -1,
        recorded: BTreeMap::new(),
    };
    assert_eq!(
        store.compacted_revision(),
        -1,
        "a new store has no floor (etcd's -1)"
    );
    for (i, step) in steps.iter().enumerate() {
        let context = format!("batch {batch}, step {i} {step:?}");
        if let Step::Reopen { by_path } = step {
            let before = all_hashes(&store, &model);
            drop(store);
            if *by_path {
                let s = Store::open(&path).expect("Store::open");
                check_history(&s, &model, &format!("{context}, by path"));
                drop(s);
            }
            store = open_store(&path, batch);
            check_history(&store, &model, &context);
            assert_eq!(
                all_hashes(&store, &model),
                before,
                "{context}: the same history hashes the same after a reopen"
            );
            continue;
        }
        play(step, &store, &mut model, &context);
        assert_eq!(
            store.current_revision(),
            model.current,
            "{context}: current revision"
        );
        assert_eq!(
            store.compacted_revision(),
            model.compacted,
            "{context}: compacted revision"
        );
        let now = store
            .range(KeyRange::all(), RangeOptions::current())
            .expect("range");
        assert_eq!(
            now.kvs,
            model
                .live_at(model.current)
                .into_values()
                .collect::<Vec<_>>(),
            "{context}: everything now"
        );
    }
    check_history(&store, &model, "at the end");
    assert_clean(store.db(), "at the end");
    drop(store);
    let store = open_store(&path, batch);
    check_history(&store, &model, "reopened at the end");
    assert_clean(store.db(), "reopened at the end");
}

proptest! {
    #![proptest_config(crate::common::proptest_config("mvcc_model", CASES))]

    #[test]
    fn random_puts_deletes_txns_compactions_and_reopens_match_an_etcd_model_at_every_revision(
        batch in prop::sample::select(vec![1usize, 2, 5, 1000]),
        steps in prop::collection::vec(step(), 1..200),
    ) {
        run(batch, &steps);
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed cases of etcd's semantics
// ---------------------------------------------------------------------------------------------

fn fresh(dir: &Path) -> Store {
    open_store(&dir.join("fixed.folio"), 1000)
}

/// etcd's store starts at revision 1 (`NewStore` sets `currentRev: 1`), so the first write is
/// revision 2 and an empty store answers reads with header revision 1.
#[test]
fn a_fresh_store_is_at_revision_1_and_its_first_write_is_revision_2_as_in_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    assert_eq!(store.current_revision(), 1);
    let r = store
        .range(KeyRange::all(), RangeOptions::current())
        .unwrap();
    assert_eq!((r.count, r.revision), (0, 1));
    assert_eq!(store.put(b"a", b"1").unwrap(), 2);
}

#[test]
fn a_put_after_a_delete_starts_a_new_generation_at_version_1() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    let r1 = store.put(b"k", b"1").unwrap();
    let r2 = store.put(b"k", b"2").unwrap();
    let d = store.delete_range(b"k".as_slice()).unwrap();
    assert_eq!((d.revision, d.deleted), (r2 + 1, 1));
    let r4 = store.put(b"k", b"3").unwrap();
    let get = |rev| {
        store
            .range(b"k".as_slice(), RangeOptions::at(rev))
            .unwrap()
            .kvs
    };
    let at2 = &get(r2)[0];
    assert_eq!(
        (at2.create_revision, at2.mod_revision, at2.version),
        (r1, r2, 2)
    );
    assert!(get(r2 + 1).is_empty(), "deleted at {}", r2 + 1);
    let at4 = &get(r4)[0];
    assert_eq!(
        (
            at4.create_revision,
            at4.mod_revision,
            at4.version,
            &at4.value[..]
        ),
        (r4, r4, 1, &b"3"[..])
    );
}

#[test]
fn a_delete_or_txn_that_writes_nothing_does_not_advance_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    let rev = store.put(b"a", b"1").unwrap();
    let d = store.delete_range(KeyRange::prefix(b"zz")).unwrap();
    assert_eq!((d.revision, d.deleted), (rev, 0));
    let t = store
        .txn()
        .when([Compare::value(b"missing").ne(b"x".as_slice())])
        .then([Op::put(b"a", b"2")])
        .otherwise([
            Op::delete_range(b"nothing".as_slice()),
            Op::range(KeyRange::all(), RangeOptions::current()),
        ])
        .commit()
        .unwrap();
    assert!(
        !t.succeeded,
        "a value compare on a missing key is false, even `ne`"
    );
    assert_eq!(t.revision, rev);
    assert_eq!(store.current_revision(), rev);
}

#[test]
fn compares_on_a_missing_key_see_version_and_revisions_0() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    store.put(b"other", b"x").unwrap();
    for (cmp, holds) in [
        (Compare::version(b"k").eq(0), true),
        (Compare::create_revision(b"k").eq(0), true),
        (Compare::mod_revision(b"k").lt(1), true),
        (Compare::mod_revision(b"k").gt(0), false),
        (Compare::value(b"k").eq(b"".as_slice()), false),
    ] {
        let t = store.txn().when([cmp.clone()]).commit().unwrap();
        assert_eq!(t.succeeded, holds, "{cmp:?}");
    }
}

#[test]
fn a_range_inside_a_txn_sees_the_txns_earlier_writes_and_a_read_at_the_old_revision_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    let before = store.put(b"a", b"1").unwrap();
    let t = store
        .txn()
        .then([
            Op::put(b"b", b"1"),
            Op::delete_range(b"a".as_slice()),
            Op::range(KeyRange::all(), RangeOptions::current()),
            Op::range(KeyRange::all(), RangeOptions::at(before)),
        ])
        .commit()
        .unwrap();
    assert_eq!(t.revision, before + 1);
    let OpResponse::Range(now) = &t.responses[2] else {
        panic!("{:?}", t.responses[2])
    };
    assert_eq!(
        now.kvs.iter().map(|kv| &kv.key[..]).collect::<Vec<_>>(),
        [b"b"]
    );
    let OpResponse::Range(old) = &t.responses[3] else {
        panic!("{:?}", t.responses[3])
    };
    assert_eq!(old.kvs.len(), 1);
    assert_eq!((&old.kvs[0].value[..], old.kvs[0].version), (&b"1"[..], 1));
}
