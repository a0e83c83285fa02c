//! The threat: the copy-on-write B+tree, its cursors, the catalog of named trees or the commit,
//! rollback and reopen machinery drift from a plain sorted map. Random operation streams over three
//! named trees run against `BTreeMap` models; every read is compared with the model inside the
//! write transaction (read-your-writes), in a snapshot taken beside it (isolation), and in a fresh
//! snapshot after each commit, and the checker must find every commit clean.
//!
//! Pages are 512 bytes so that trees grow deep and values of a few hundred bytes and more go to
//! overflow runs.
//!
//! Rerunning:
//! - The proptest case prints its case count and RNG seed (shown when it fails). Rerun the same
//!   cases with `PROPTEST_RNG_SEED=<seed> cargo test --test model`; run more with
//!   `PROPTEST_CASES=1000`. A failure is shrunk, printed, and saved to
//!   `tests/model.proptest-regressions`, which proptest replays first on every later run.
//! - The long stream prints its seed; rerun it with `FOLIO_SEED=<seed> cargo test --test model`.

use std::collections::{BTreeMap, VecDeque};
use std::ops::{Bound, RangeBounds};
use std::path::Path;

use crate::common::data::Value;
use crate::common::rng::XorShift64Star as Rng;
use folio::{Db, Durability, Tree};
use proptest::prelude::*;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;
/// Every named tree and its entries. A tree can exist and be empty.
type Model = BTreeMap<Vec<u8>, Map>;
type Entry = (Vec<u8>, Vec<u8>);

const TREES: [&[u8]; 3] = [b"alpha", b"beta", b"gamma"];
const PAGE_SIZE: u32 = 512;
/// Cases per run unless `PROPTEST_CASES` says otherwise; sized to keep this file under a minute.
const CASES: u32 = 256;

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Order {
    Forward,
    Backward,
    /// Steps from the front (`true`) or the back (`false`); then alternates until exhausted.
    Mixed(Vec<bool>),
}

#[derive(Clone, Debug)]
enum CursorStart {
    First,
    Last,
    Seek(Vec<u8>),
}

#[derive(Clone, Debug)]
enum Query {
    Get(Vec<u8>),
    Range {
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        order: Order,
    },
    /// Positions a cursor, then moves it: `true` is next, `false` is prev.
    Cursor {
        start: CursorStart,
        moves: Vec<bool>,
    },
}

#[derive(Clone, Debug)]
enum Op {
    Put {
        tree: usize,
        key: Vec<u8>,
        value: Value,
    },
    Delete {
        tree: usize,
        key: Vec<u8>,
    },
    /// A read, in the write transaction or (`snapshot`) in a read transaction beside it.
    Read {
        tree: usize,
        snapshot: bool,
        query: Query,
    },
    /// Opens a tree for writing, creating it empty if it is not there.
    CreateTree {
        tree: usize,
    },
    DeleteTree {
        tree: usize,
    },
    Commit(Durability),
    /// Drops the write transaction: the model returns to the last commit.
    Rollback,
    /// Drops the database and opens the file again.
    Reopen,
}

/// Keys from a small alphabet under three prefixes, 1 to 60 bytes, so that keys collide often and
/// sort around each other's prefixes.
fn key() -> impl Strategy<Value = Vec<u8>> {
    let alphabet = prop::sample::select(vec![0u8, b'a', b'b', 0xff]);
    (
        prop::sample::select(vec![0usize, 20, 57]),
        prop::collection::vec(alphabet, 1..=3),
    )
        .prop_map(|(prefix, suffix)| {
            let mut k = vec![b'k'; prefix];
            k.extend(suffix);
            k
        })
}

/// Mostly 0 to 300 bytes (entries over 244 bytes overflow a 512-byte page's leaf), sometimes 1 to
/// 3 KiB (runs of several pages).
fn value() -> impl Strategy<Value = Value> {
    let len = prop_oneof![9 => 0usize..300, 1 => 1024usize..3072];
    (len, any::<u8>()).prop_map(|(len, seed)| Value { len, seed })
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        2 => key().prop_map(Bound::Included),
        2 => key().prop_map(Bound::Excluded),
        1 => Just(Bound::Unbounded),
    ]
}

fn query() -> impl Strategy<Value = Query> {
    let order = prop_oneof![
        Just(Order::Forward),
        Just(Order::Backward),
        prop::collection::vec(any::<bool>(), 0..40).prop_map(Order::Mixed),
    ];
    let start = prop_oneof![
        1 => Just(CursorStart::First),
        1 => Just(CursorStart::Last),
        3 => key().prop_map(CursorStart::Seek),
    ];
    prop_oneof![
        2 => key().prop_map(Query::Get),
        2 => (bound(), bound(), order).prop_map(|(start, end, order)| Query::Range { start, end, order }),
        1 => (start, prop::collection::vec(any::<bool>(), 0..20))
            .prop_map(|(start, moves)| Query::Cursor { start, moves }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let tree = 0..TREES.len();
    // Half the commits skip the sync, so the run stays fast where syncs are slow.
    let durability = prop_oneof![
        1 => Just(Durability::Immediate),
        1 => Just(Durability::Group),
        2 => Just(Durability::None),
    ];
    prop_oneof![
        40 => (tree.clone(), key(), value()).prop_map(|(tree, key, value)| Op::Put { tree, key, value }),
        15 => (tree.clone(), key()).prop_map(|(tree, key)| Op::Delete { tree, key }),
        25 => (tree.clone(), any::<bool>(), query())
            .prop_map(|(tree, snapshot, query)| Op::Read { tree, snapshot, query }),
        1 => tree.clone().prop_map(|tree| Op::CreateTree { tree }),
        1 => tree.prop_map(|tree| Op::DeleteTree { tree }),
        8 => durability.prop_map(Op::Commit),
        2 => Just(Op::Rollback),
        1 => Just(Op::Reopen),
    ]
}

// ---------------------------------------------------------------------------------------------
// Comparing a tree with its model
// ---------------------------------------------------------------------------------------------

fn owned(entry: folio::Result<(&[u8], &[u8])>) -> Entry {
    let (k, v) = entry.expect("reading an entry");
    (k.to_vec(), v.to_vec())
}

fn owned_opt(entry: folio::Result<Option<(&[u8], &[u8])>>) -> Option<Entry> {
    entry
        .expect("moving a cursor")
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
}

/// Runs `query` on `tree` and compares every answer with `model`. A missing tree reads as empty.
fn check_query(tree: Option<Tree<'_>>, model: Option<&Map>, query: &Query, context: &str) {
    let empty = Map::new();
    assert_eq!(tree.is_some(), model.is_some(), "{context}: tree exists");
    let model = model.unwrap_or(&empty);
    let Some(tree) = tree else { return };
    assert_eq!(tree.len(), model.len() as u64, "{context}: len");
    match query {
        Query::Get(key) => {
            let got = tree.get(key).expect("get").map(<[u8]>::to_vec);
            assert_eq!(got.as_ref(), model.get(key), "{context}: get {key:?}");
        }
        Query::Range { start, end, order } => {
            let bounds = (start.clone(), end.clone());
            let want: Vec<Entry> = model
                .iter()
                .filter(|(k, _)| bounds.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut range = tree.range::<Vec<u8>, _>(bounds.clone()).expect("range");
            let what = format!("{context}: range {bounds:?} {order:?}");
            match order {
                Order::Forward => {
                    let got: Vec<Entry> = range.by_ref().map(owned).collect();
                    assert_eq!(got, want, "{what}");
                }
                Order::Backward => {
                    let got: Vec<Entry> = range.by_ref().rev().map(owned).collect();
                    let want: Vec<Entry> = want.into_iter().rev().collect();
                    assert_eq!(got, want, "{what}");
                }
                Order::Mixed(steps) => {
                    let mut want: VecDeque<Entry> = want.into();
                    let mut front = steps
                        .iter()
                        .copied()
                        .chain([true, false].into_iter().cycle());
                    while !want.is_empty() {
                        let (got, expected) = if front.next().expect("endless") {
                            (range.next().map(owned), want.pop_front())
                        } else {
                            (range.next_back().map(owned), want.pop_back())
                        };
                        assert_eq!(got, expected, "{what}");
                    }
                }
            }
            assert!(range.next().is_none(), "{what}: front past the end");
            assert!(range.next_back().is_none(), "{what}: back past the end");
        }
        Query::Cursor { start, moves } => {
            let mut cursor = tree.cursor();
            let (got, mut at) = match start {
                CursorStart::First => (owned_opt(cursor.first()), model.iter().next()),
                CursorStart::Last => (owned_opt(cursor.last()), model.iter().next_back()),
                CursorStart::Seek(k) => (
                    owned_opt(cursor.seek(k)),
                    model.range::<Vec<u8>, _>(k..).next(),
                ),
            };
            let clone = |e: Option<(&Vec<u8>, &Vec<u8>)>| e.map(|(k, v)| (k.clone(), v.clone()));
            assert_eq!(got, clone(at), "{context}: cursor {start:?}");
            for (i, &next) in moves.iter().enumerate() {
                // An unpositioned cursor (past either end) stays unpositioned.
                let (got, want) = if next {
                    let want = at.and_then(|(k, _)| {
                        model
                            .range::<Vec<u8>, _>((Bound::Excluded(k), Bound::Unbounded))
                            .next()
                    });
                    (owned_opt(cursor.next()), want)
                } else {
                    let want = at.and_then(|(k, _)| model.range::<Vec<u8>, _>(..k).next_back());
                    (owned_opt(cursor.prev()), want)
                };
                assert_eq!(
                    got,
                    clone(want),
                    "{context}: cursor {start:?} then {:?}",
                    &moves[..=i]
                );
                at = want;
            }
        }
    }
}

/// Compares every tree a snapshot holds with the model, both ways, end to end.
fn check_snapshot(db: &Db, model: &Model, context: &str) {
    let tx = db.begin_read().expect("begin_read");
    let names = tx.tree_names().expect("tree_names");
    assert_eq!(
        names,
        model.keys().cloned().collect::<Vec<_>>(),
        "{context}: tree names"
    );
    for (name, entries) in model {
        let tree = tx.tree(name).expect("tree").expect("named tree exists");
        assert_eq!(
            tree.len(),
            entries.len() as u64,
            "{context}: len of {name:?}"
        );
        let got: Vec<Entry> = tree.iter().map(owned).collect();
        let want: Vec<Entry> = entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(got, want, "{context}: entries of {name:?}");
        let back: Vec<Entry> = tree.iter().rev().map(owned).collect();
        assert_eq!(
            back,
            want.iter().rev().cloned().collect::<Vec<_>>(),
            "{context}: {name:?} reversed"
        );
        assert_eq!(
            owned_opt(tree.first()),
            want.first().cloned(),
            "{context}: first of {name:?}"
        );
        assert_eq!(
            owned_opt(tree.last()),
            want.last().cloned(),
            "{context}: last of {name:?}"
        );
    }
}

fn assert_clean(db: &Db, context: &str) {
    let report = db.check().expect("check runs");
    assert!(report.is_clean(), "{context}: {report}");
}

fn open(path: &Path) -> Db {
    open_with(path, Db::builder())
}

fn open_with(path: &Path, builder: folio::Builder) -> Db {
    builder
        .page_size(PAGE_SIZE)
        .strict(true)
        .open(path)
        .expect("open")
}

// ---------------------------------------------------------------------------------------------
// The proptest model
// ---------------------------------------------------------------------------------------------

/// Plays `ops` against a fresh database and the model.
fn run(ops: &[Op]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.folio");
    let mut committed = Model::new();
    let mut ops = ops.iter().enumerate().peekable();
    // One iteration per open of the database; a `Reopen` ends it.
    while ops.peek().is_some() {
        let db = open(&path);
        check_snapshot(&db, &committed, "after open");
        assert_clean(&db, "after open");
        let mut tx = db.begin_write().expect("begin_write");
        let mut pending = committed.clone();
        for (step, op) in ops.by_ref() {
            let context = format!("op {step} {op:?}");
            match op {
                Op::Put { tree, key, value } => {
                    let name = TREES[*tree];
                    let value = value.bytes();
                    tx.open_tree(name)
                        .expect("open_tree")
                        .put(key, &value)
                        .expect("put");
                    pending
                        .entry(name.to_vec())
                        .or_default()
                        .insert(key.clone(), value);
                }
                Op::Delete { tree, key } => {
                    let name = TREES[*tree];
                    let existed = tx
                        .tree(name)
                        .expect("tree")
                        .map(|mut t| t.delete(key).expect("delete"));
                    let want = pending.get_mut(name).map(|m| m.remove(key).is_some());
                    assert_eq!(existed, want, "{context}");
                }
                Op::Read {
                    tree,
                    snapshot: false,
                    query,
                } => {
                    let name = TREES[*tree];
                    let t = tx.tree(name).expect("tree");
                    check_query(
                        t.as_ref().map(|t| t.as_tree()),
                        pending.get(name),
                        query,
                        &context,
                    );
                }
                Op::Read {
                    tree,
                    snapshot: true,
                    query,
                } => {
                    let name = TREES[*tree];
                    let read = db.begin_read().expect("begin_read beside the writer");
                    let t = read.tree(name).expect("tree");
                    check_query(t, committed.get(name), query, &context);
                }
                Op::CreateTree { tree } => {
                    let name = TREES[*tree];
                    let len = tx.open_tree(name).expect("open_tree").len();
                    let entries = pending.entry(name.to_vec()).or_default();
                    assert_eq!(len, entries.len() as u64, "{context}");
                }
                Op::DeleteTree { tree } => {
                    let name = TREES[*tree];
                    let existed = tx.delete_tree(name).expect("delete_tree");
                    assert_eq!(existed, pending.remove(name).is_some(), "{context}");
                }
                Op::Commit(durability) => {
                    let names = tx.tree_names().expect("tree_names");
                    assert_eq!(
                        names,
                        pending.keys().cloned().collect::<Vec<_>>(),
                        "{context}: names before commit"
                    );
                    tx.set_durability(*durability);
                    tx.commit().expect("commit");
                    committed = std::mem::take(&mut pending);
                    assert_clean(&db, &context);
                    check_snapshot(&db, &committed, &context);
                    tx = db.begin_write().expect("begin_write");
                    pending = committed.clone();
                }
                Op::Rollback => {
                    drop(tx);
                    check_snapshot(&db, &committed, &context);
                    tx = db.begin_write().expect("begin_write");
                    pending = committed.clone();
                }
                Op::Reopen => break,
            }
        }
        drop(tx);
        check_snapshot(&db, &committed, "at close");
    }
    let db = open(&path);
    check_snapshot(&db, &committed, "at the end");
    assert_clean(&db, "at the end");
}

proptest! {
    #![proptest_config(crate::common::proptest_config("model", CASES))]

    #[test]
    fn random_operation_streams_over_three_trees_match_a_btreemap_model(
        ops in prop::collection::vec(op(), 1..600)
    ) {
        run(&ops);
    }
}

// ---------------------------------------------------------------------------------------------
// The long deterministic stream
// ---------------------------------------------------------------------------------------------

/// Key `id` of the long stream: 6 to 55 bytes, so branches hold few separators and trees grow tall.
fn long_key(id: u64) -> Vec<u8> {
    let mut k = format!("{id:05}-").into_bytes();
    k.resize(6 + (id * 7 % 50) as usize, b'x');
    k
}

fn long_value(rng: &mut Rng) -> Vec<u8> {
    let len = if rng.chance(50) {
        300 + rng.below(2700)
    } else {
        rng.below(100)
    };
    let seed = rng.next() as u8;
    Value {
        len: len as usize,
        seed,
    }
    .bytes()
}

#[test]
fn a_long_random_stream_grows_trees_four_levels_deep_and_still_matches_the_model() {
    long_stream(crate::common::env_seed("long stream"), Db::builder);
}

/// The same with large commits growing the file for runs of pages as much as they may
/// (`Builder::run_spare` at its largest), and at each open one of three settings: runs from the
/// end, from free extents only, or the default.
#[test]
fn a_long_random_stream_whose_commits_take_pages_in_runs_matches_the_model() {
    let seed = crate::common::env_seed("long stream with runs");
    let opens = std::cell::Cell::new(0u64);
    long_stream(seed, || {
        opens.set(opens.get() + 1);
        Db::builder().run_spare([90, 0, 33][(opens.get() % 3) as usize])
    });
}

/// This seed once made a commit's freelist outgrow the run sized for it: taking the new run from
/// a free extent that was written merged with the pending pages beside it split that run in two,
/// and the list no longer fit (a panic in `FreeList::encode`).
#[test]
fn a_long_stream_whose_freelist_gains_a_run_while_it_is_being_placed_still_commits() {
    long_stream(1_795_228_394_620_206_311, Db::builder);
}

/// Plays 20,000 operations chosen by `seed` over three trees, with commits, rollbacks and
/// reopens, and asserts the deepest tree reached at least four levels.
fn long_stream(seed: u64, builder: impl Fn() -> folio::Builder) {
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("long.folio");
    const OPS: u64 = 20_000;
    const KEYS: u64 = 6_000;

    let mut committed = Model::new();
    let mut deepest = 0;
    let mut step = 0;
    let mut opens = 0;
    while step < OPS {
        let db = open_with(&path, builder());
        check_snapshot(&db, &committed, "after open");
        // Each iteration is one write transaction; some end in a rollback or a reopen.
        loop {
            let mut tx = db.begin_write().expect("begin_write");
            let mut pending = committed.clone();
            let len = 200 + rng.below(600);
            let end = (step + len).min(OPS);
            // The deletes outnumber the puts in the last fifth, so trees shrink and merge.
            let shrinking = step >= OPS * 4 / 5;
            while step < end {
                step += 1;
                let name = TREES[if rng.chance(4) {
                    1 + rng.below(2) as usize
                } else {
                    0
                }];
                let key = long_key(rng.below(KEYS));
                let context = format!("long stream seed {seed}, op {step}");
                match rng.below(10) {
                    0..=5 if !shrinking || rng.chance(3) => {
                        let value = long_value(&mut rng);
                        tx.open_tree(name)
                            .expect("open_tree")
                            .put(&key, &value)
                            .expect("put");
                        pending.entry(name.to_vec()).or_default().insert(key, value);
                    }
                    0..=7 => {
                        let existed = tx
                            .tree(name)
                            .expect("tree")
                            .map(|mut t| t.delete(&key).expect("delete"));
                        assert_eq!(
                            existed,
                            pending.get_mut(name).map(|m| m.remove(&key).is_some()),
                            "{context}"
                        );
                    }
                    8 => {
                        let t = tx.tree(name).expect("tree");
                        check_query(
                            t.as_ref().map(|t| t.as_tree()),
                            pending.get(name),
                            &Query::Get(key),
                            &context,
                        );
                    }
                    _ => {
                        let hi = long_key(rng.below(KEYS));
                        let (lo, hi) = if key <= hi { (key, hi) } else { (hi, key) };
                        let order = if rng.chance(2) {
                            Order::Forward
                        } else {
                            Order::Backward
                        };
                        let query = Query::Range {
                            start: Bound::Included(lo),
                            end: Bound::Excluded(hi),
                            order,
                        };
                        let t = tx.tree(name).expect("tree");
                        check_query(
                            t.as_ref().map(|t| t.as_tree()),
                            pending.get(name),
                            &query,
                            &context,
                        );
                    }
                }
            }
            let context = format!("long stream seed {seed}, transaction ending at op {step}");
            if rng.chance(15) {
                drop(tx);
                check_snapshot(&db, &committed, &context);
                continue;
            }
            tx.commit().expect("commit");
            committed = pending;
            assert_clean(&db, &context);
            check_snapshot(&db, &committed, &context);
            let stats = db.stats().expect("stats");
            deepest = deepest.max(stats.trees.iter().map(|t| t.depth).max().unwrap_or(0));
            if step >= OPS || rng.chance(10) {
                break;
            }
        }
        opens += 1;
    }
    println!("long stream: {OPS} ops, {opens} opens, deepest tree {deepest} levels");
    assert!(
        deepest >= 4,
        "long stream seed {seed}: the deepest tree reached only {deepest} levels"
    );
    let db = open(&path);
    check_snapshot(&db, &committed, "at the end");
    assert_clean(&db, "at the end");
}
