//! Crash safety of an online defrag with a writer committing during it, through `SimStorage`.
//!
//! The writer commits from the defrag's round callback (between catch-up rounds, when no lock is
//! held), so the interleaving is the same in every run: the bulk copy, then commits P, Q (about
//! 800 KiB of new values each) and A, a round that catches up with all three in paced pieces of
//! about a MiB, each its own commit and sync, then commit B, a round, commit C, the last round
//! (writers held) and the swap, then commit D after the defrag. A power loss (torn or reordered, directory as synced or as it stood) or a process
//! crash at every storage call of that sequence leaves at the database path the old file or the
//! new one, whole: it opens, passes `check`, and holds every commit acknowledged before the crash
//! (and perhaps the one in flight), nothing less and nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::common::fragmented::{self, PAGE_SIZE, Shape, value};
use crate::common::{contents, point_seed, reorder_seeds};
use folio::sim::{DirState, Fault, SimStorage};
use folio::{Db, DefragOptions, DefragReport, Durability};

/// A fragmented database: commits that overwrite and delete in two trees, with overflow values.
fn fragmented_image(dir: &Path) -> Vec<u8> {
    let shape = Shape {
        rounds: 4,
        puts: 1500,
        keys: 3000,
        digits: 5,
        overflow_every: 4,
        small_len: 40,
    };
    fragmented::image(dir, &shape)
}

/// How many commits the writer makes: P, Q, A, B and C during the defrag, D after it.
const COMMITS: u32 = 6;

/// The writer's commit number `n`: P and Q (0 and 1) put 800 values of 1,000 bytes each, so that
/// the round after them is written back in pieces; A, B and C (2 to 4) during the defrag and D
/// (5) after it each put and delete fewer keys than the one before, so that the rounds shrink; C
/// also creates a tree and B deletes one.
fn commit(db: &Db, n: u32) -> folio::Result<()> {
    let mut tx = db.begin_write()?;
    if n < 2 {
        {
            let mut t = tx.open_tree(b"alpha")?;
            for i in 0..800 {
                t.put(format!("bulk-{n}-{i:04}").as_bytes(), &value(i + n, 1000))?;
            }
        }
        return tx.commit();
    }
    let n = n - 2;
    let mut t = tx.open_tree(b"alpha")?;
    for i in 0..(40 - n * 10) {
        let len = if i % 5 == 0 { 900 } else { 60 };
        t.put(format!("during-{n}-{i:03}").as_bytes(), &value(i + n, len))?;
        t.put(format!("key-{:05}", i * 37 + n).as_bytes(), &value(n, 30))?;
    }
    for i in 0..(10 - n * 2) {
        t.delete(format!("key-{:05}", i * 101 + n).as_bytes())?;
    }
    match n {
        1 => {
            tx.delete_tree(b"beta")?;
        }
        2 => {
            tx.open_tree(b"gamma")?.put(b"g", b"new tree")?;
        }
        _ => {}
    }
    tx.commit()
}

fn open(dir: &Path, name: &str, image: &[u8]) -> (PathBuf, SimStorage, Db) {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let sim = SimStorage::with_image(&path, image).unwrap();
    let db = Db::builder()
        .durability(Durability::Immediate)
        .open_with(Box::new(sim.clone()))
        .unwrap();
    (path, sim, db)
}

/// Runs the sequence on `db`: a defrag with commits P, Q and A, then B, then C between its
/// rounds, then D. Returns how many commits were acknowledged, and the defrag's report if it
/// returned.
fn run(db: &Db) -> (u32, Option<DefragReport>) {
    let acked = Arc::new(Mutex::new(0u32));
    let (writer, done) = (db.clone(), acked.clone());
    let options = DefragOptions::default()
        .pause_budget(std::time::Duration::ZERO)
        .rounds_max(3)
        .warm_cache(false)
        .on_round(move |round| {
            // P, Q and A after the first round, one at a time after the others.
            let upto = if *done.lock().unwrap() == 0 { 3 } else { 1 };
            for _ in 0..upto {
                let n = *done.lock().unwrap();
                if round.last || n >= COMMITS - 1 || commit(&writer, n).is_err() {
                    return;
                }
                *done.lock().unwrap() += 1;
            }
        });
    let defragged = db.defrag(&options);
    drop(options);
    let mut n = *acked.lock().unwrap();
    if let Ok(report) = &defragged {
        assert_eq!(
            n,
            COMMITS - 1,
            "P, Q, A, B and C commit during the defrag: {report}"
        );
        assert_eq!(report.rounds.len(), 4, "{report}");
        if commit(db, COMMITS - 1).is_ok() {
            n += 1;
        }
    }
    (n, defragged.ok())
}

/// What a crash keeps.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// A power loss: nothing unsynced, or a torn prefix of the last write.
    Torn(Option<usize>),
    /// A power loss keeping a subset of the written sectors, chosen by this seed.
    Reordered(u64),
    /// The process dies: every write that went ahead is in the file, names as they stand.
    Process,
}

#[test]
fn a_crash_at_any_call_of_an_online_defrag_beside_a_writer_keeps_every_acknowledged_commit() {
    let dir = tempfile::tempdir().unwrap();
    let image = fragmented_image(dir.path());

    // The dry run: the states after 0 to 6 commits, and the calls made.
    let (_, sim, db) = open(dir.path(), "dry.folio", &image);
    let mut states = vec![contents(&db)];
    for n in 0..COMMITS {
        let (_, _, db) = open(dir.path(), &format!("state-{n}.folio"), &image);
        for m in 0..=n {
            commit(&db, m).unwrap();
        }
        states.push(contents(&db));
    }
    let start = sim.calls();
    let (acked, report) = run(&db);
    assert_eq!(acked, COMMITS);
    // The round after P, Q and A was written back in pieces, each its own commit.
    let report = report.expect("the dry run's defrag");
    assert!(report.rounds[1].commits >= 2, "{report}");
    assert_eq!(contents(&db), states[COMMITS as usize]);
    let calls = sim.calls() - start;
    drop(db);

    let reorder = reorder_seeds("online defrag crash", 2);
    let mut outcomes = BTreeMap::<String, usize>::new();
    for n in 1..=calls {
        let (path, sim, db) = open(dir.path(), &format!("crash-{n}.folio"), &image);
        sim.arm(n, Fault::Crash);
        let (acked, report) = run(&db);
        let defragged = report.is_some();
        assert!(sim.crashed(), "call {n} was never made");
        drop(db);
        let torn = [None, Some(0), Some(PAGE_SIZE as usize / 2)].map(Loss::Torn);
        let reordered = reorder
            .iter()
            .map(|&s| Loss::Reordered(point_seed(s, n as usize)));
        let losses: Vec<Loss> = torn
            .into_iter()
            .chain(reordered)
            .chain([Loss::Process])
            .collect();
        for dir_state in [DirState::Synced, DirState::Current] {
            for &loss in &losses {
                if matches!(loss, Loss::Process) && dir_state == DirState::Synced {
                    continue;
                }
                let context = format!(
                    "crash at call {n} of {calls} ({acked} commits acknowledged, defrag returned: \
                     {defragged}), directory {dir_state:?}, {loss:?}"
                );
                let image = match loss {
                    Loss::Torn(torn) => sim.crash_image_at(&path, dir_state, torn),
                    Loss::Reordered(seed) => sim.crash_image_reordered_at(&path, dir_state, seed),
                    Loss::Process => std::fs::read(&path).ok(),
                }
                .unwrap_or_else(|| panic!("{context}: no file at the database path"));
                let name = format!("crash-{n}-reopened.folio");
                let (_, _, db) = open(dir.path(), &name, &image);
                let report = db.check().unwrap();
                assert!(report.is_clean(), "{context}: {report}");
                let got = contents(&db);
                let k = acked as usize;
                let state = (k..=(k + 1).min(COMMITS as usize))
                    .find(|&s| got == states[s])
                    .unwrap_or_else(|| {
                        panic!("{context}: not the state after {k} or {} commits", k + 1)
                    });
                *outcomes.entry(format!("{state} commits")).or_default() += 1;
            }
        }
    }
    println!("outcomes: {outcomes:?}");
    // Crashes before, during and after the defrag each left their own state.
    for s in 0..=COMMITS as usize {
        assert!(
            outcomes
                .keys()
                .any(|k| k.starts_with(&format!("{s} commits"))),
            "no crash left the state after {s} commits: {outcomes:?}"
        );
    }
}
