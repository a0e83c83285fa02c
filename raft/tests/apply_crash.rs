//! The threat: a batch of entries is applied in one store commit (one sync for the batch), so a
//! crash in the middle of it must leave the store with every entry of the batch or none of them,
//! the recorded last applied log id agreeing with the data: never an entry applied twice after
//! openraft replays the entries after the recorded one, never one skipped.
//!
//! The test applies a first batch cleanly, counts the storage calls (writes, syncs, ...) the
//! second batch makes, then for every call N applies the second batch on a fresh store with a
//! power loss armed at call N, and opens each image a crash could leave (the synced bytes, a
//! torn last write, sectors written since the last sync reordered, from a printed seed, and the
//! file as written, which a process crash leaves). A commit syncs once (the meta proves its
//! pages), so only the file as written shows the batch applied when the crash hits that sync.
//! Each must open; the recorded index must be the first batch's last or the second's (all or
//! nothing); the store must equal a reference that applied the entries up to that index one by
//! one (every revision of every key, the current revision); and replaying the entries after it
//! must end equal to the reference that applied them all.

use std::collections::BTreeMap;
use std::path::Path;

use folio::sim::{Fault, SimStorage};
use folio::{KeyRange, RangeOptions, Store};
use folio_raft::{Command, CompareSpec, CompareTarget, OpSpec, Relation, StateMachine, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{Entry, EntryPayload};

#[path = "support/entries.rs"]
mod entries;
use entries::{entry, put};

const FIRST: u64 = 3;
const LAST: u64 = 11;

/// Entries 1..=LAST: the first batch is 1..=FIRST, the second the rest.
fn entries() -> Vec<Entry<TypeConfig>> {
    vec![
        entry(1, EntryPayload::Blank),
        put(2, "a", "1"),
        put(3, "b", "1"),
        put(4, "a", "2"),
        put(5, "c", "1"),
        entry(
            6,
            EntryPayload::Normal(Command::Txn {
                compares: vec![CompareSpec {
                    key: b"a".to_vec(),
                    target: CompareTarget::Value,
                    relation: Relation::Equal,
                    value: b"2".to_vec(),
                    number: 0,
                    range_end: Vec::new(),
                }],
                success: vec![OpSpec::Put {
                    key: b"d".to_vec(),
                    value: b"1".to_vec(),
                    lease: 0,
                    prev_kv: false,
                }],
                failure: Vec::new(),
            }),
        ),
        entry(
            7,
            EntryPayload::Normal(Command::DeleteRange {
                key: b"b".to_vec(),
                range_end: Vec::new(),
            }),
        ),
        entry(8, EntryPayload::Blank),
        entry(
            9,
            EntryPayload::Normal(Command::SetMember {
                id: 9,
                name: "m9".into(),
                client_urls: Vec::new(),
            }),
        ),
        put(10, "e", "1"),
        put(11, "a", "3"),
    ]
}

/// Every revision of every key, and the current revision.
#[derive(Debug, PartialEq, Eq)]
struct History {
    current: i64,
    at: BTreeMap<i64, Vec<folio::KeyValue>>,
}

fn history(store: &Store) -> History {
    let current = store.current_revision();
    let at = (1..=current)
        .map(|rev| {
            let r = store.range(KeyRange::all(), RangeOptions::at(rev)).unwrap();
            (rev, r.kvs)
        })
        .collect();
    History { current, at }
}

/// The store after applying entries 1..=upto one at a time, each alone.
async fn reference(upto: u64) -> History {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(dir.path()).unwrap();
    for e in entries().into_iter().take(upto as usize) {
        sm.apply(vec![e]).await.unwrap();
    }
    history(&sm.store())
}

/// A state machine on a fresh `SimStorage` at `dir` that has applied the first batch.
async fn after_first_batch(dir: &Path) -> (StateMachine, SimStorage) {
    let sim = SimStorage::create(&dir.join("store.folio")).unwrap();
    let db = folio::Db::builder()
        .durability(folio::Durability::Group)
        .create_with(Box::new(sim.clone()))
        .unwrap();
    let mut sm = StateMachine::with_store(dir, Store::with_db(db).unwrap()).unwrap();
    sm.apply(entries().into_iter().take(FIRST as usize))
        .await
        .unwrap();
    (sm, sim)
}

/// The images a crash at call `n` may leave: power loss, a torn last write, and four reorderings
/// of the unsynced writes (seeded from `seed` and `n`).
fn crash_images(sim: &SimStorage, seed: u64, n: u64) -> Vec<(&'static str, Vec<u8>)> {
    let mut images = vec![
        ("power loss", sim.crash_image(None)),
        ("torn last write", sim.crash_image(Some(100))),
        (
            "process crash",
            std::fs::read(folio::storage::Storage::path(sim)).unwrap(),
        ),
    ];
    for i in 0..4u64 {
        let s = seed ^ (n * 16 + i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        images.push(("reordered", sim.crash_image_reordered(s)));
    }
    images
}

/// Opens a state machine on a copy of `image` (`what` image of a crash at call `n`), in a fresh
/// directory that lives as long as the returned guard.
fn reopen(image: &[u8], what: &str, n: u64) -> (tempfile::TempDir, StateMachine) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("store.folio"), image).unwrap();
    let sm = StateMachine::open(dir.path())
        .unwrap_or_else(|e| panic!("{what} image at call {n} does not open: {e}"));
    (dir, sm)
}

fn seed() -> u64 {
    let seed = std::env::var("FOLIO_REORDER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("reordered crash images from seed {seed} (rerun with FOLIO_REORDER_SEED={seed})");
    seed
}

#[tokio::test]
async fn a_crash_at_any_call_of_a_batched_apply_leaves_all_of_the_batch_or_none() {
    let seed = seed();
    let mut references = BTreeMap::new();
    for upto in [FIRST, LAST] {
        references.insert(upto, reference(upto).await);
    }
    let second = || {
        entries()
            .into_iter()
            .skip(FIRST as usize)
            .collect::<Vec<_>>()
    };

    // A dry run: how many storage calls the second batch makes.
    let calls = {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, sim) = after_first_batch(dir.path()).await;
        let before = sim.calls();
        sm.apply(second()).await.unwrap();
        assert_eq!(history(&sm.store()), references[&LAST]);
        sim.calls() - before
    };
    assert!(calls > 0);
    let mut outcomes = BTreeMap::<u64, usize>::new();
    for n in 1..=calls {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, sim) = after_first_batch(dir.path()).await;
        sim.arm(n, Fault::Crash);
        let done = sm.apply(second()).await;
        assert!(sim.crashed(), "call {n} of {calls} was never made");
        assert!(done.is_err(), "a crashed apply answered: call {n}");
        let images = crash_images(&sim, seed, n);
        drop(sm);
        for (what, image) in images {
            let (_reopened, mut sm) = reopen(&image, what, n);
            let upto = sm.applied_state().await.unwrap().0.map_or(0, |l| l.index);
            assert!(
                upto == FIRST || upto == LAST,
                "{what} image at call {n}: part of the batch applied (up to {upto})"
            );
            assert_eq!(
                history(&sm.store()),
                references[&upto],
                "{what} image at call {n}: the store is not the one that applied up to {upto}"
            );
            // openraft replays the entries after the recorded one.
            sm.apply(entries().into_iter().skip(upto as usize))
                .await
                .unwrap();
            assert_eq!(
                history(&sm.store()),
                references[&LAST],
                "{what} image at call {n}: replayed from {upto}"
            );
            *outcomes.entry(upto).or_default() += 1;
        }
    }
    println!("{calls} crash points; images by recorded index: {outcomes:?}");
    // The crash points cover both outcomes: before the batch's commit and after it.
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
}

/// The commands of the batch entry of [`a_crash_between_the_commands_of_a_refused_batch_applies_each_once`]:
/// the second is refused (a key put twice in one branch), so the entry is applied command by
/// command, one commit each.
fn batch_commands() -> Vec<Command> {
    let put_cmd = |k: &str, v: &str| Command::Put {
        key: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec(),
        lease: 0,
    };
    let put_op = |k: &str| OpSpec::Put {
        key: k.as_bytes().to_vec(),
        value: b"t".to_vec(),
        lease: 0,
        prev_kv: false,
    };
    vec![
        put_cmd("x", "1"),
        Command::Txn {
            compares: Vec::new(),
            success: vec![put_op("y"), put_op("y")],
            failure: Vec::new(),
        },
        put_cmd("y", "1"),
        Command::DeleteRange {
            key: b"a".to_vec(),
            range_end: Vec::new(),
        },
        put_cmd("x", "2"),
    ]
}

/// The threat: a batch entry (client writes proposed together) whose commands must be applied
/// one commit each, because the store refused one of them, is crashed between two of those
/// commits. Its log id is recorded only with the last, so openraft replays the whole entry: the
/// replay must skip the commands already applied (never one twice) and apply the rest (never
/// one skipped). Every crash image must equal a store that applied the first batch and then a
/// prefix of the commands, each as an entry of its own, and replaying the entry must end equal
/// to the one that applied them all.
#[tokio::test]
async fn a_crash_between_the_commands_of_a_refused_batch_applies_each_once() {
    let seed = seed();
    let commands = batch_commands();
    let batch = || {
        entry(
            FIRST + 1,
            EntryPayload::Normal(Command::Batch {
                commands: batch_commands(),
            }),
        )
    };
    // The references: the first batch, then the first k commands as entries of their own.
    let mut references = Vec::new();
    for k in 0..=commands.len() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        sm.apply(entries().into_iter().take(FIRST as usize))
            .await
            .unwrap();
        for (i, c) in commands.iter().take(k).enumerate() {
            sm.apply(vec![entry(100 + i as u64, EntryPayload::Normal(c.clone()))])
                .await
                .unwrap();
        }
        references.push(history(&sm.store()));
    }
    let all = references.last().unwrap();

    let calls = {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, sim) = after_first_batch(dir.path()).await;
        let before = sim.calls();
        let answers = sm.apply(vec![batch()]).await.unwrap();
        assert_eq!(
            answers[0].batch[1].refusal,
            Some(folio_raft::Refusal::DuplicateKey)
        );
        assert_eq!(&history(&sm.store()), all);
        sim.calls() - before
    };
    let mut outcomes = BTreeMap::<usize, usize>::new();
    for n in 1..=calls {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, sim) = after_first_batch(dir.path()).await;
        sim.arm(n, Fault::Crash);
        assert!(sm.apply(vec![batch()]).await.is_err(), "call {n} answered");
        let images = crash_images(&sim, seed, n);
        drop(sm);
        for (what, image) in images {
            let (_reopened, mut sm) = reopen(&image, what, n);
            let upto = sm.applied_state().await.unwrap().0.map_or(0, |l| l.index);
            let now = history(&sm.store());
            let k = references
                .iter()
                .position(|r| *r == now)
                .unwrap_or_else(|| {
                    panic!("{what} image at call {n}: not the store after any prefix of the batch")
                });
            assert_eq!(
                upto == FIRST + 1,
                k == commands.len(),
                "{what} image at call {n}: recorded {upto} with {k} commands applied"
            );
            if upto == FIRST {
                sm.apply(vec![batch()]).await.unwrap();
            }
            assert_eq!(
                &history(&sm.store()),
                all,
                "{what} image at call {n}: replayed after {k} commands"
            );
            *outcomes.entry(k).or_default() += 1;
        }
    }
    println!("{calls} crash points; images by commands applied: {outcomes:?}");
    // The crash points fall between the commands, not only before or after all of them.
    assert!(outcomes.len() > 2, "{outcomes:?}");
}
