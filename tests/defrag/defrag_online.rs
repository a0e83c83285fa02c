//! Online defrag under concurrent writers: the model tests.
//!
//! Several threads write (puts, deletes, multi-key transactions, transactions dropped without a
//! commit, trees created and deleted; for the store, compactions too) with group commit while
//! another thread defragments again and again with a pause budget of zero, so that every defrag
//! runs catch-up rounds against the writers. Each writer owns its keys, so its model is exact.
//! Afterwards every acknowledged write is there, nothing else is (a dropped transaction's writes
//! are the unacknowledged ones), `check` is clean, and a reopen shows the same. For the store, the
//! hash of sampled readable revisions is the same before and after every defrag.
//!
//! Each run prints its seed; rerun one with `FOLIO_SEED=<seed> cargo test --test defrag_online`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::rng::SplitMix64 as Rng;
use crate::common::{Contents, contents};
use folio::{Db, DefragOptions, Durability, KeyRange, Op, RangeOptions, Store};

type Model = Contents;

/// The seeds to run: `FOLIO_SEED` alone if set, else `n` fresh ones.
fn seeds(n: usize) -> Vec<u64> {
    match std::env::var("FOLIO_SEED") {
        Ok(s) => vec![s.parse().expect("FOLIO_SEED is a number")],
        Err(_) => (0..n as u64)
            .map(|i| crate::common::random_seed().wrapping_add(i.wrapping_mul(0x9e37_79b9)))
            .collect(),
    }
}

/// A value of 0 to 1,200 bytes (overflow runs at 512-byte pages), named by its writer and step.
fn value(rng: &mut Rng, tag: u64) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => 600 + rng.below(600),
        _ => rng.below(120),
    } as usize;
    let mut v = tag.to_le_bytes().to_vec();
    v.resize(len.max(8), (tag % 251) as u8);
    v
}

/// One writer's random operations against `db`, recorded in `model` once acknowledged.
fn write_db(db: &Db, seed: u64, thread: u64, steps: u64, model: &mut Model) {
    let mut rng = Rng(seed ^ thread.wrapping_mul(0x1234_5678_9abc_def1));
    let trees = [
        format!("shared-a/{thread}").into_bytes(),
        format!("shared-b/{thread}").into_bytes(),
        format!("scratch/{thread}").into_bytes(),
    ];
    for step in 0..steps {
        let mut tx = db.begin_write().unwrap();
        let mut changes: Vec<(usize, Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut scratch: Option<u64> = None;
        for _ in 0..1 + rng.below(4) {
            let t = rng.below(2) as usize;
            let key = format!("t{thread}-k{:04}", rng.below(400)).into_bytes();
            if rng.below(4) == 0 {
                tx.open_tree(&trees[t]).unwrap().delete(&key).unwrap();
                changes.push((t, key, None));
            } else {
                let v = value(&mut rng, thread << 32 | step);
                tx.open_tree(&trees[t]).unwrap().put(&key, &v).unwrap();
                changes.push((t, key, Some(v)));
            }
        }
        match rng.below(40) {
            0 => {
                let n = rng.below(30);
                let mut t = tx.open_tree(&trees[2]).unwrap();
                for i in 0..n {
                    t.put(format!("s{i}").as_bytes(), b"scratch").unwrap();
                }
                scratch = Some(n);
            }
            1 => {
                tx.delete_tree(&trees[2]).unwrap();
                scratch = Some(u64::MAX);
            }
            _ => {}
        }
        if rng.below(10) == 0 {
            // Never acknowledged: none of it may appear.
            drop(tx);
            continue;
        }
        tx.set_durability(Durability::Group);
        tx.commit().unwrap();
        for (t, key, v) in changes {
            let tree = model.entry(trees[t].clone()).or_default();
            match v {
                Some(v) => tree.insert(key, v),
                None => tree.remove(&key),
            };
        }
        match scratch {
            Some(u64::MAX) => {
                model.remove(&trees[2]);
            }
            Some(n) => {
                let tree = model.entry(trees[2].clone()).or_default();
                for i in 0..n {
                    tree.insert(format!("s{i}").into_bytes(), b"scratch".to_vec());
                }
            }
            None => {}
        }
    }
}

/// Defrags `db` until `done`, with catch-up rounds forced; returns how many ran and their rounds.
fn defrag_until(db: &Db, done: &AtomicBool, rng_seed: u64) -> (u64, u64) {
    let mut rng = Rng(rng_seed);
    let (mut defrags, mut rounds) = (0, 0);
    while !done.load(Ordering::Relaxed) || defrags == 0 {
        let options = DefragOptions::default()
            .pause_budget(std::time::Duration::ZERO)
            .rounds_max(1 + rng.below(4) as u32)
            .warm_cache(false)
            .fill(if rng.below(2) == 0 { 1.0 } else { 0.7 });
        let report = db.defrag(&options).unwrap();
        defrags += 1;
        rounds += report.rounds.len() as u64;
    }
    (defrags, rounds)
}

#[test]
fn every_acknowledged_commit_and_nothing_else_survives_defrags_beside_concurrent_writers() {
    for (i, seed) in seeds(3).into_iter().enumerate() {
        let threads = 2 + (i as u64 % 3);
        println!("defrag_online db: seed {seed}, {threads} writer threads (FOLIO_SEED={seed})");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("online.folio");
        let db = Db::builder()
            .page_size(512)
            .durability(Durability::Group)
            .open(&path)
            .unwrap();
        let done = AtomicBool::new(false);
        let (models, (defrags, rounds)) = std::thread::scope(|s| {
            let writers: Vec<_> = (0..threads)
                .map(|t| {
                    let db = &db;
                    s.spawn(move || {
                        let mut model = Model::new();
                        write_db(db, seed, t, 400, &mut model);
                        model
                    })
                })
                .collect();
            let defragger = s.spawn(|| defrag_until(&db, &done, seed));
            let models: Vec<Model> = writers.into_iter().map(|w| w.join().unwrap()).collect();
            done.store(true, Ordering::Relaxed);
            (models, defragger.join().unwrap())
        });
        println!("  {defrags} defrags, {rounds} catch-up rounds");
        let mut want = Model::new();
        for m in models {
            for (name, tree) in m {
                want.entry(name).or_default().extend(tree);
            }
        }
        // A tree every thread emptied still exists (an empty tree is a tree).
        let got = contents(&db);
        let non_empty = |m: &Model| -> Model {
            m.iter()
                .filter(|(_, t)| !t.is_empty())
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect()
        };
        assert_eq!(non_empty(&got), non_empty(&want), "seed {seed}");
        let report = db.check().unwrap();
        assert!(report.is_clean(), "seed {seed}: {report}");
        drop(db);
        let db = Db::open(&path).unwrap();
        assert_eq!(contents(&db), got, "seed {seed}: after a reopen");
        assert!(
            db.check().unwrap().is_clean(),
            "seed {seed}: after a reopen"
        );
    }
}

/// What one store writer wrote: each key's newest value (or `None` if deleted), and each
/// acknowledged put's revision.
#[derive(Default)]
struct StoreModel {
    current: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    puts: Vec<(i64, Vec<u8>, Vec<u8>)>,
}

fn write_store(store: &Store, seed: u64, thread: u64, steps: u64) -> StoreModel {
    let mut rng = Rng(seed ^ thread.wrapping_mul(0x0fed_cba9_8765_4321));
    let mut model = StoreModel::default();
    for step in 0..steps {
        let key = format!("/registry/pods/t{thread}/p{:03}", rng.below(150)).into_bytes();
        match rng.below(8) {
            0 => {
                store.delete_range(KeyRange::key(&key)).unwrap();
                model.current.insert(key, None);
            }
            1 => {
                let other = format!("/registry/pods/t{thread}/p{:03}", rng.below(150)).into_bytes();
                let v = value(&mut rng, thread << 32 | step);
                let r = store
                    .txn()
                    .then([Op::put(&key, &v), Op::delete_range(KeyRange::key(&other))])
                    .commit();
                if key == other {
                    // A put inside the same branch's delete range: refused, as etcd does.
                    assert!(matches!(r, Err(folio::Error::DuplicateKey { .. })), "{r:?}");
                    continue;
                }
                model
                    .puts
                    .push((r.unwrap().revision, key.clone(), v.clone()));
                model.current.insert(key, Some(v));
                model.current.insert(other, None);
            }
            _ => {
                let v = value(&mut rng, thread << 32 | step);
                let rev = store.put(&key, &v).unwrap();
                model.puts.push((rev, key.clone(), v.clone()));
                model.current.insert(key, Some(v));
            }
        }
    }
    model
}

#[test]
fn a_store_keeps_every_acknowledged_write_and_every_readable_hash_through_online_defrags() {
    for (i, seed) in seeds(2).into_iter().enumerate() {
        let threads = 2 + i as u64;
        println!("defrag_online store: seed {seed}, {threads} writer threads (FOLIO_SEED={seed})");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.folio");
        let store = Store::with_db(
            Db::builder()
                .page_size(512)
                .durability(Durability::Group)
                .open(&path)
                .unwrap(),
        )
        .unwrap();
        let done = AtomicBool::new(false);
        // Held by the compactor around each compaction, and by the defragger while it compares
        // hashes before and after a defrag (a compaction legitimately changes them).
        let compaction = Mutex::new(());
        let compactions = AtomicU64::new(0);
        let hashes_checked = AtomicU64::new(0);
        let models = std::thread::scope(|s| {
            let writers: Vec<_> = (0..threads)
                .map(|t| {
                    let store = &store;
                    s.spawn(move || write_store(store, seed, t, 300))
                })
                .collect();
            s.spawn(|| {
                let mut rng = Rng(seed ^ 0xc0);
                while !done.load(Ordering::Relaxed) {
                    let _held = compaction.lock().unwrap();
                    let current = store.current_revision();
                    let at = current - rng.below(200) as i64;
                    if at > store.compacted_revision() {
                        store.compact(at).unwrap();
                        compactions.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(_held);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            });
            s.spawn(|| {
                let mut rng = Rng(seed ^ 0xde);
                let mut n = 0;
                while !done.load(Ordering::Relaxed) || n == 0 {
                    n += 1;
                    let options = DefragOptions::default()
                        .pause_budget(std::time::Duration::ZERO)
                        .rounds_max(1 + rng.below(3) as u32)
                        .warm_cache(false);
                    if n % 2 == 1 {
                        // Compaction may run during this one.
                        store.defrag(&options).unwrap();
                        continue;
                    }
                    let _held = compaction.lock().unwrap();
                    // Revision 0 means the current one, which writers move: start at 1 (a new
                    // store's floor is -1). A compaction at the current revision leaves none.
                    let (lo, hi) = (
                        (store.compacted_revision() + 1).max(1),
                        store.current_revision(),
                    );
                    if lo > hi {
                        continue;
                    }
                    let revs: Vec<i64> = (0..8)
                        .map(|_| lo + rng.below((hi - lo + 1) as u64) as i64)
                        .collect();
                    let hash = |r: i64| store.hash_by_rev(r).unwrap().hash;
                    let before: Vec<u32> = revs.iter().map(|&r| hash(r)).collect();
                    store.defrag(&options).unwrap();
                    let after: Vec<u32> = revs.iter().map(|&r| hash(r)).collect();
                    assert_eq!(before, after, "seed {seed}: hashes at {revs:?}");
                    hashes_checked.fetch_add(revs.len() as u64, Ordering::Relaxed);
                }
            });
            let models: Vec<StoreModel> = writers.into_iter().map(|w| w.join().unwrap()).collect();
            done.store(true, Ordering::Relaxed);
            models
        });
        println!(
            "  {} compactions, {} hashes compared",
            compactions.load(Ordering::Relaxed),
            hashes_checked.load(Ordering::Relaxed)
        );
        let check = |store: &Store, context: &str| {
            let now = store
                .range(KeyRange::prefix(b"/registry/"), RangeOptions::current())
                .unwrap();
            let got: BTreeMap<Vec<u8>, Vec<u8>> =
                now.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
            let want: BTreeMap<Vec<u8>, Vec<u8>> = models
                .iter()
                .flat_map(|m| m.current.iter())
                .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                .collect();
            assert_eq!(got, want, "seed {seed}: {context}");
            let compacted = store.compacted_revision();
            for (rev, key, v) in models.iter().flat_map(|m| m.puts.iter()) {
                if *rev > compacted {
                    let at = store.range(key.as_slice(), RangeOptions::at(*rev)).unwrap();
                    assert_eq!(at.kvs[0].value, *v, "seed {seed}: {context}: rev {rev}");
                }
            }
            let report = store.db().check().unwrap();
            assert!(report.is_clean(), "seed {seed}: {context}: {report}");
        };
        check(&store, "after the run");
        let current = store.current_revision();
        let hashes: Vec<u32> = ((store.compacted_revision() + 1).max(1)..=current)
            .map(|r| store.hash_by_rev(r).unwrap().hash)
            .collect();
        drop(store);
        let store = Store::open(&path).unwrap();
        check(&store, "after a reopen");
        let reopened: Vec<u32> = ((store.compacted_revision() + 1).max(1)..=current)
            .map(|r| store.hash_by_rev(r).unwrap().hash)
            .collect();
        assert_eq!(hashes, reopened, "seed {seed}");
    }
}

/// A database whose defrag's rounds see writers commit from the round callback: `sizes[i]` puts
/// after round `i` (none after the last round, when writers are held).
fn defrag_beside(
    db: &Db,
    tag: &'static str,
    sizes: Vec<u32>,
    options: DefragOptions,
) -> folio::Result<folio::DefragReport> {
    let writer = db.clone();
    let rounds = Mutex::new(0usize);
    let lasts = Arc::new(AtomicU64::new(0));
    let seen = lasts.clone();
    let options = options
        .pause_budget(std::time::Duration::ZERO)
        .warm_cache(false)
        .on_round(move |round| {
            if round.last {
                seen.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let mut i = rounds.lock().unwrap();
            if let Some(&n) = sizes.get(*i) {
                let mut tx = writer.begin_write().unwrap();
                let mut t = tx.open_tree(b"during").unwrap();
                for k in 0..n {
                    t.put(format!("{tag}{}-{k:05}", *i).as_bytes(), b"v")
                        .unwrap();
                }
                tx.commit().unwrap();
            }
            *i += 1;
        });
    let report = db.defrag(&options);
    if report.is_ok() {
        assert_eq!(
            lasts.load(Ordering::Relaxed),
            1,
            "the last round is reported once"
        );
    }
    report
}

fn filled_db(path: &std::path::Path) -> Db {
    let db = Db::builder().page_size(512).open(path).unwrap();
    let mut tx = db.begin_write().unwrap();
    let mut t = tx.open_tree(b"base").unwrap();
    for i in 0..2000u32 {
        t.put(format!("k{i:05}").as_bytes(), &[i as u8; 40])
            .unwrap();
    }
    tx.commit().unwrap();
    db
}

#[test]
fn catch_up_rounds_copy_what_writers_committed_between_them_and_the_last_holds_writers() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled_db(&dir.path().join("rounds.folio"));
    let report = defrag_beside(
        &db,
        "r",
        vec![300, 200, 100],
        DefragOptions::default().rounds_max(3),
    )
    .unwrap();
    let entries: Vec<u64> = report.rounds.iter().map(|r| r.entries).collect();
    // Round 1 saw nothing new; rounds 2 and 3 and the last copied each commit made before them.
    assert_eq!(entries, [0, 300, 200, 100], "{report}");
    assert_eq!(
        report.rounds.iter().map(|r| r.last).collect::<Vec<_>>(),
        [false, false, false, true]
    );
    assert!(report.pause + report.finish <= report.duration);
    let tx = db.begin_read().unwrap();
    assert_eq!(tx.tree(b"during").unwrap().unwrap().len(), 600);
    assert_eq!(tx.tree(b"base").unwrap().unwrap().len(), 2000);
    drop(tx);
    assert!(db.check().unwrap().is_clean());
}

#[test]
fn a_defrag_told_to_give_up_fails_when_writers_outpace_it_and_leaves_the_database_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("behind.folio");
    let db = filled_db(&path);
    // The rounds grow: writers outpace the catch-up.
    let err = defrag_beside(
        &db,
        "a",
        vec![10, 100, 1000],
        DefragOptions::default().give_up(true),
    )
    .expect_err("the rounds do not shrink");
    assert!(
        matches!(err, folio::Error::DefragBehind { rounds: 3, .. }),
        "{err}"
    );
    assert!(!dir.path().join("behind.folio.defrag").exists());
    let tx = db.begin_read().unwrap();
    assert_eq!(tx.tree(b"during").unwrap().unwrap().len(), 1110);
    drop(tx);
    assert!(db.check().unwrap().is_clean());
    // Without give_up the same defrag finishes, holding writers for the last round.
    let report = defrag_beside(&db, "b", vec![10, 100, 1000], DefragOptions::default()).unwrap();
    assert_eq!(report.rounds.len(), 4, "{report}");
    assert_eq!(
        db.begin_read()
            .unwrap()
            .tree(b"during")
            .unwrap()
            .unwrap()
            .len(),
        1110 + 1110
    );
}

/// What broke: a defrag (or a second write transaction) asked for on a thread whose write
/// transaction is still open waits for that thread's own writer lock for ever. Debug builds check
/// the lock order and panic instead.
#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "already holds the database's writer lock")]
fn a_defrag_on_a_thread_holding_a_write_transaction_panics_in_debug_builds_instead_of_deadlocking()
{
    let dir = tempfile::tempdir().unwrap();
    let db = filled_db(&dir.path().join("deadlock.folio"));
    let _tx = db.begin_write().unwrap();
    let _ = db.defrag(&DefragOptions::default());
}
