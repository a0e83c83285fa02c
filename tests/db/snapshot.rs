//! The scenario: readers and writers side by side. A read transaction is a snapshot: it must keep
//! reading exactly the commit it began with however much the writer changes, grows or frees
//! meanwhile, and the writer must never wait for it. Pages freed while an old reader is open must
//! not be reused under it. And commits must reach the disk as their `Durability` promises: every
//! group commit is durable and visible once it returns, and commits made without syncing become
//! durable with `Db::sync`.
//!
//! "The writer never waits" is shown by construction, never by timing: the writer's commits run
//! while a reader is parked holding its snapshot, and the reader is released only after the last
//! commit returns. A writer that waited for the reader would hang the test rather than pass it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Barrier, mpsc};

use folio::sim::SimStorage;
use folio::{Db, Durability, Tree};

type Entry = (Vec<u8>, Vec<u8>);

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

/// A value that differs from round to round, 20 to about 200 bytes.
fn value(i: u64, round: u64) -> Vec<u8> {
    format!("value {i} of round {round};")
        .repeat(1 + (i % 7) as usize)
        .into_bytes()
}

fn contents(tree: &Tree<'_>) -> Vec<Entry> {
    tree.iter()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .expect("iterating a tree")
}

fn contents_backwards(tree: &Tree<'_>) -> Vec<Entry> {
    let mut back: Vec<Entry> = tree
        .iter()
        .rev()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .expect("iterating a tree backwards");
    back.reverse();
    back
}

/// Asserts two entry lists are equal, naming the first difference rather than printing both.
fn assert_same_entries(got: &[Entry], want: &[Entry], what: &str) {
    let show = |e: Option<&Entry>| {
        e.map(|(k, v)| {
            format!(
                "{} => {}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )
        })
    };
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{what}: entry {i} of {} is {:?}, expected {:?} (of {})",
            got.len(),
            show(got.get(i)),
            show(want.get(i)),
            want.len()
        );
    }
}

fn assert_clean(db: &Db, context: &str) {
    let report = db.check().expect("check runs");
    assert!(report.is_clean(), "{context}: {report}");
}

/// Opens, at `path`, the bytes a power loss would leave of `sim` now.
fn after_power_loss(sim: &SimStorage, path: &Path) -> Db {
    let storage = SimStorage::with_image(path, &sim.crash_image(None)).expect("writing the image");
    Db::builder()
        .open_with(Box::new(storage))
        .expect("opening what a power loss leaves")
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

#[test]
fn a_reader_keeps_its_snapshot_while_the_writer_grows_the_file_tenfold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grow.folio");
    let db = Db::open(&path).unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut tx = db.begin_write().unwrap();
    let mut t = tx.open_tree(b"t").unwrap();
    for i in 0..2_000 {
        t.put(&key(i), &value(i, 0)).unwrap();
        model.insert(key(i), value(i, 0));
    }
    tx.commit().unwrap();
    let len_at_snapshot = file_len(&path);

    let (snapshot_taken, snapshot_recorded) = mpsc::channel::<(u64, Vec<Entry>)>();
    let (release, released) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let db = &db;
        let reader = s.spawn(move || {
            let tx = db.begin_read().unwrap();
            let tree = tx.tree(b"t").unwrap().expect("the tree was committed");
            snapshot_taken.send((tx.txid(), contents(&tree))).unwrap();
            // Parked, holding the snapshot, until the writer has made every commit.
            released.recv().unwrap();
            let gets: Vec<Entry> = contents(&tree)
                .into_iter()
                .map(|(k, _)| {
                    let v = tree
                        .get(&k)
                        .unwrap()
                        .expect("a key of the snapshot")
                        .to_vec();
                    (k, v)
                })
                .collect();
            (
                tx.txid(),
                tree.len(),
                contents(&tree),
                contents_backwards(&tree),
                gets,
            )
        });

        let (reader_txid, recorded) = snapshot_recorded.recv().unwrap();
        assert_same_entries(
            &recorded,
            &model.clone().into_iter().collect::<Vec<_>>(),
            "the snapshot taken",
        );

        // The writer rewrites and deletes the reader's keys and adds new ones, commit after commit,
        // until the file is ten times the size the reader saw.
        let mut round = 0;
        while round < 20 || file_len(&path) < 10 * len_at_snapshot {
            round += 1;
            assert!(
                round <= 1_000,
                "the file never grew tenfold: {} bytes",
                file_len(&path)
            );
            let mut tx = db.begin_write().unwrap();
            let mut t = tx.open_tree(b"t").unwrap();
            for i in (round % 4..2_000).step_by(4) {
                t.put(&key(i), &value(i, round)).unwrap();
                model.insert(key(i), value(i, round));
            }
            for i in (round % 10..2_000).step_by(50) {
                if t.delete(&key(i)).unwrap() {
                    model.remove(&key(i));
                }
            }
            for i in 2_000 + round * 1_000..2_000 + (round + 1) * 1_000 {
                t.put(&key(i), &value(i, round)).unwrap();
                model.insert(key(i), value(i, round));
            }
            tx.commit().unwrap();
        }
        // Every commit above returned while the reader was parked holding its snapshot.
        let grown = file_len(&path);
        println!("{round} commits grew the file from {len_at_snapshot} to {grown} bytes");
        assert!(
            grown >= 10 * len_at_snapshot,
            "{grown} bytes, from {len_at_snapshot}"
        );
        assert_eq!(db.stats().unwrap().file_bytes, grown);
        assert_clean(db, "with the old reader open");

        release.send(()).unwrap();
        let (txid, len, forwards, backwards, gets) = reader.join().expect("the reader thread");
        assert_eq!(txid, reader_txid, "the reader's snapshot id");
        assert_eq!(len, recorded.len() as u64, "the reader's entry count");
        assert_same_entries(&forwards, &recorded, "the reader's snapshot, read forwards");
        assert_same_entries(
            &backwards,
            &recorded,
            "the reader's snapshot, read backwards",
        );
        assert_same_entries(&gets, &recorded, "the reader's snapshot, key by key");
    });

    let tx = db.begin_read().unwrap();
    let tree = tx.tree(b"t").unwrap().unwrap();
    let want: Vec<Entry> = model.into_iter().collect();
    assert_same_entries(&contents(&tree), &want, "a new reader sees the new data");
    drop(tx);
    assert_clean(&db, "after the old reader closed");
}

#[test]
fn pages_freed_while_an_old_reader_is_open_are_not_reused_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("freed.folio");
    let db = Db::builder().page_size(512).open(&path).unwrap();
    let mut tx = db.begin_write().unwrap();
    let mut old = tx.open_tree(b"old").unwrap();
    for i in 0..1_000 {
        // Every tenth value overflows into a run of its own.
        let v = if i % 10 == 0 {
            value(i, 0).repeat(20)
        } else {
            value(i, 0)
        };
        old.put(&key(i), &v).unwrap();
    }
    tx.commit().unwrap();
    let stats = db.stats().unwrap();
    let old_stats = stats
        .trees
        .iter()
        .find(|t| t.name == b"old")
        .expect("stats of the old tree");
    let old_pages = old_stats.branch_pages + old_stats.leaf_pages + old_stats.overflow_pages;
    assert!(
        old_stats.overflow_pages > 0 && old_stats.depth >= 3,
        "{old_stats:?}"
    );

    let reader = db.begin_read().unwrap();
    let recorded = contents(&reader.tree(b"old").unwrap().unwrap());

    // In this same thread, with the reader open: a writer that waited for it would never return.
    let mut tx = db.begin_write().unwrap();
    assert!(tx.delete_tree(b"old").unwrap());
    tx.commit().unwrap();
    for round in 1..=5 {
        let mut tx = db.begin_write().unwrap();
        let mut new = tx.open_tree(b"new").unwrap();
        for i in 0..1_000 {
            let v = if i % 10 == 0 {
                value(i, round).repeat(20)
            } else {
                value(i, round)
            };
            new.put(&key(i), &v).unwrap();
        }
        tx.commit().unwrap();
        let pending = db.stats().unwrap().pending_pages;
        assert!(
            pending >= old_pages,
            "round {round}: {pending} pages held for readers, the old tree had {old_pages}"
        );
        assert_clean(&db, &format!("round {round}, with the old reader open"));
    }

    let tree = reader
        .tree(b"old")
        .unwrap()
        .expect("the reader still sees the deleted tree");
    assert_same_entries(
        &contents(&tree),
        &recorded,
        "the reader's snapshot, read forwards",
    );
    assert_same_entries(
        &contents_backwards(&tree),
        &recorded,
        "the reader's snapshot, read backwards",
    );
    for (k, v) in &recorded {
        assert!(
            tree.get(k).unwrap() == Some(v.as_slice()),
            "the reader's value of {}",
            String::from_utf8_lossy(k)
        );
    }
    assert!(
        db.begin_read().unwrap().tree(b"old").unwrap().is_none(),
        "a new reader sees the tree deleted"
    );
    drop(reader);

    // Once the reader is gone its pages are released to the next writer.
    let mut tx = db.begin_write().unwrap();
    tx.open_tree(b"new")
        .unwrap()
        .put(b"after", b"the reader")
        .unwrap();
    tx.commit().unwrap();
    let pending = db.stats().unwrap().pending_pages;
    assert!(
        pending < old_pages,
        "{pending} pages still held after the reader closed"
    );
    assert_clean(&db, "after the reader closed");
}

#[test]
fn a_reader_begun_beside_an_open_write_transaction_sees_only_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("beside.folio")).unwrap();
    let mut tx = db.begin_write().unwrap();
    tx.open_tree(b"t").unwrap().put(b"a", b"committed").unwrap();
    tx.commit().unwrap();

    // All in one thread: if beginning a reader, or committing, waited for the other side, the test
    // would hang here.
    let mut tx = db.begin_write().unwrap();
    tx.open_tree(b"t")
        .unwrap()
        .put(b"a", b"uncommitted")
        .unwrap();
    tx.open_tree(b"t")
        .unwrap()
        .put(b"b", b"uncommitted")
        .unwrap();
    let before = db.begin_read().unwrap();
    let t = before.tree(b"t").unwrap().unwrap();
    assert_eq!(t.get(b"a").unwrap(), Some(&b"committed"[..]));
    assert_eq!(t.get(b"b").unwrap(), None);
    tx.commit().unwrap();

    assert_eq!(
        t.get(b"a").unwrap(),
        Some(&b"committed"[..]),
        "the open reader keeps its snapshot"
    );
    assert_eq!(t.len(), 1);
    let after = db.begin_read().unwrap();
    let t = after.tree(b"t").unwrap().unwrap();
    assert_eq!(t.get(b"a").unwrap(), Some(&b"uncommitted"[..]));
    assert_eq!(t.get(b"b").unwrap(), Some(&b"uncommitted"[..]));
    drop((before, after));
    assert_clean(&db, "at the end");
}

#[test]
fn concurrent_group_commits_all_succeed_and_each_is_durable_and_visible_when_it_returns() {
    const THREADS: u64 = 4;
    const COMMITS: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let sim = SimStorage::create(&dir.path().join("group.folio")).unwrap();
    let db = Db::builder()
        .durability(Durability::Group)
        .create_with(Box::new(sim.clone()))
        .unwrap();
    let start = Barrier::new(THREADS as usize);
    std::thread::scope(|s| {
        for thread in 0..THREADS {
            let (db, start, sim, dir) = (&db, &start, &sim, &dir);
            s.spawn(move || {
                start.wait();
                for i in 0..COMMITS {
                    let k = format!("thread {thread} commit {i:02}").into_bytes();
                    let mut tx = db.begin_write().unwrap();
                    tx.open_tree(b"t")
                        .unwrap()
                        .put(&k, &i.to_le_bytes())
                        .unwrap();
                    tx.open_tree(b"count")
                        .unwrap()
                        .put(&thread.to_le_bytes(), &(i + 1).to_le_bytes())
                        .unwrap();
                    tx.commit().unwrap();
                    // Returned: visible to every new reader, and durable.
                    let read = db.begin_read().unwrap();
                    let t = read.tree(b"t").unwrap().unwrap();
                    assert_eq!(
                        t.get(&k).unwrap(),
                        Some(&i.to_le_bytes()[..]),
                        "thread {thread} commit {i}"
                    );
                    let name = format!("thread-{thread}-commit-{i}.folio");
                    let restored = after_power_loss(sim, &dir.path().join(name));
                    let read = restored.begin_read().unwrap();
                    let t = read.tree(b"t").unwrap().expect("a durable commit");
                    assert_eq!(
                        t.get(&k).unwrap(),
                        Some(&i.to_le_bytes()[..]),
                        "thread {thread} commit {i} durable"
                    );
                }
            });
        }
    });

    // What a power loss now would leave: every commit, since each one returned.
    let restored = after_power_loss(&sim, &dir.path().join("group-after-power-loss.folio"));
    for db in [&db, &restored] {
        let read = db.begin_read().unwrap();
        let t = read.tree(b"t").unwrap().unwrap();
        assert_eq!(t.len(), THREADS * COMMITS);
        for thread in 0..THREADS {
            for i in 0..COMMITS {
                let k = format!("thread {thread} commit {i:02}").into_bytes();
                assert_eq!(
                    t.get(&k).unwrap(),
                    Some(&i.to_le_bytes()[..]),
                    "thread {thread} commit {i}"
                );
            }
            let count = read.tree(b"count").unwrap().unwrap();
            assert_eq!(
                count.get(&thread.to_le_bytes()).unwrap(),
                Some(&COMMITS.to_le_bytes()[..])
            );
        }
        drop(read);
        assert_clean(db, "after the group commits");
    }
}

#[test]
fn commits_without_durability_survive_a_power_loss_once_synced() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimStorage::create(&dir.path().join("nosync.folio")).unwrap();
    let db = Db::builder()
        .durability(Durability::None)
        .create_with(Box::new(sim.clone()))
        .unwrap();
    let mut model = BTreeMap::new();
    for round in 0..10 {
        let mut tx = db.begin_write().unwrap();
        let mut t = tx.open_tree(b"t").unwrap();
        for i in round * 300..(round + 1) * 300 {
            t.put(&key(i), &value(i, round)).unwrap();
            model.insert(key(i), value(i, round));
        }
        for i in (0..round * 300).step_by(7) {
            t.put(&key(i), &value(i, round)).unwrap();
            model.insert(key(i), value(i, round));
        }
        tx.commit().unwrap();
    }
    // Unsynced, the commits are not yet durable: a power loss now keeps none of them.
    let before_sync = after_power_loss(&sim, &dir.path().join("before-sync.folio"));
    assert!(
        before_sync
            .begin_read()
            .unwrap()
            .tree(b"t")
            .unwrap()
            .is_none()
    );

    db.sync().unwrap();
    let after_sync = after_power_loss(&sim, &dir.path().join("after-sync.folio"));
    let read = after_sync.begin_read().unwrap();
    let t = read
        .tree(b"t")
        .unwrap()
        .expect("the synced tree survives the power loss");
    assert_same_entries(
        &contents(&t),
        &model.into_iter().collect::<Vec<_>>(),
        "after the power loss",
    );
    drop(read);
    assert_clean(&after_sync, "after the power loss");
}
