//! The threat: a crash in the middle of an MVCC compaction loses live data, leaves the revisions it
//! meant to drop on disk for good, moves the current revision, or leaves a store that cannot open.
//! Compaction records the revision it is scheduled at first, deletes in batches (each its own
//! commit) and records the revision it finished at last; opening the store must finish whatever a
//! crash interrupted.
//!
//! Each test counts the storage calls (writes, length changes, syncs) a compaction makes in a dry
//! run, then, for every call N, runs the same compaction on a fresh copy of the same image with a
//! crash armed at call N, and opens both what a power loss leaves (the synced bytes) and what a
//! process crash leaves (the file as written), and images of a power loss that reordered the
//! sectors written since the last sync (a random subset of them, at the old or new length). Opening
//! must succeed; the compacted revision must be
//! the old floor (the schedule never became durable, and then nothing is deleted) or the new one
//! (and then the compaction has finished by the time the store is open: exactly the revisions the
//! model keeps are stored); every read must agree with the model, including the errors below the
//! floor; the current revision must not move; the next write must get the next revision; and
//! `check` must find the file clean. Once a crash point leaves the new floor, every later one must.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::common::mvcc::{Live, apply};
use crate::common::rng::XorShift64Star as Rng;
use crate::common::{StorageCall, Watch, Watched, point_seed, reorder_seeds};
use folio::sim::{Fault, SimStorage};
use folio::{Db, Durability, Error, KeyRange, KeyValue, Op, RangeOptions, Store, StoreOptions};

const PAGE_SIZE: u32 = 512;

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// One change: a put (`Some(value)`) or a tombstone (`None`) in main revision `main`.
#[derive(Clone, Debug)]
struct Change {
    main: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default)]
struct Model {
    changes: Vec<Change>,
    current: i64,
}

impl Model {
    fn live_at(&self, rev: i64) -> Live {
        let mut live = Live::new();
        for c in self.changes.iter().take_while(|c| c.main <= rev) {
            apply(&mut live, c.main, &c.key, c.value.as_deref(), 0);
        }
        live
    }

    /// Revisions stored once a compaction at `floor` has finished: every change after it, the
    /// revision of each key live at it, and the tombstones exactly at it (etcd 3.5.16 keeps them).
    fn stored(&self, floor: i64) -> u64 {
        if floor < 0 {
            return self.changes.len() as u64;
        }
        let after = self.changes.iter().filter(|c| c.main > floor).count();
        let tombstones = self
            .changes
            .iter()
            .filter(|c| c.main == floor && c.value.is_none())
            .count();
        (after + self.live_at(floor).len() + tombstones) as u64
    }
}

/// Writes to the store and the model together, checking each revision.
struct Writer<'a> {
    store: &'a Store,
    model: Model,
}

impl Writer<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        let rev = self.store.put(key, value).expect("put");
        self.model.current += 1;
        assert_eq!(rev, self.model.current, "put revision");
        self.model.changes.push(Change {
            main: rev,
            key: key.to_vec(),
            value: Some(value.to_vec()),
        });
    }

    fn live_with_prefix(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.model
            .live_at(self.model.current)
            .into_keys()
            .filter(|k| k.starts_with(prefix))
            .collect()
    }

    /// Deletes every live key starting with `prefix`; a delete that finds none writes nothing.
    /// Returns whether it wrote.
    fn delete_prefix(&mut self, prefix: &[u8]) -> bool {
        let doomed = self.live_with_prefix(prefix);
        let d = self
            .store
            .delete_range(KeyRange::prefix(prefix))
            .expect("delete");
        assert_eq!(d.deleted, doomed.len() as u64, "deleted");
        if doomed.is_empty() {
            return false;
        }
        self.model.current += 1;
        assert_eq!(d.revision, self.model.current, "delete revision");
        for key in doomed {
            self.model.changes.push(Change {
                main: d.revision,
                key,
                value: None,
            });
        }
        true
    }

    /// One transaction: puts, then a delete of `gone` if it is live.
    fn txn(&mut self, puts: &[(Vec<u8>, Vec<u8>)], gone: &[u8]) {
        let deleting = !self.live_with_prefix(gone).is_empty()
            && !puts.iter().any(|(k, _)| k.starts_with(gone));
        let mut ops: Vec<Op> = puts.iter().map(|(k, v)| Op::put(k, v)).collect();
        if deleting {
            ops.push(Op::delete_range(KeyRange::prefix(gone)));
        }
        let doomed = if deleting {
            self.live_with_prefix(gone)
        } else {
            Vec::new()
        };
        let t = self.store.txn().then(ops).commit().expect("txn");
        self.model.current += 1;
        assert_eq!(t.revision, self.model.current, "txn revision");
        for (k, v) in puts {
            self.model.changes.push(Change {
                main: t.revision,
                key: k.clone(),
                value: Some(v.clone()),
            });
        }
        for key in doomed {
            self.model.changes.push(Change {
                main: t.revision,
                key,
                value: None,
            });
        }
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("k{i:02}").into_bytes()
}

/// 5 to 64 bytes, or now and then 300: too large to share a 512-byte leaf with much else.
fn value(rng: &mut Rng, rev: i64) -> Vec<u8> {
    let len = if rng.below(20) == 0 {
        300
    } else {
        5 + rng.below(60) as usize
    };
    let mut v = format!("{rev}:").into_bytes();
    v.resize(len, b'a' + (rev % 26) as u8);
    v
}

/// About `revisions` revisions over `keys` keys: overwrites, deletes of single keys and of
/// prefixes, recreated keys, multi-key transactions; the last revision deletes every live key
/// starting with `k1`, so a compaction at the current revision drops the newest revision of all.
fn workload(store: &Store, revisions: i64, keys: u64) -> Model {
    let mut w = Writer {
        store,
        model: Model {
            current: store.current_revision(),
            ..Model::default()
        },
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let end = w.model.current + revisions;
    while w.model.current < end - 1 {
        let k = key(rng.below(keys));
        match rng.below(30) {
            0..=2 => {
                w.delete_prefix(&k);
            }
            3 => {
                let puts: Vec<_> = (0..3)
                    .map(|_| (key(rng.below(keys)), value(&mut rng, w.model.current + 1)))
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .collect();
                w.txn(&puts, &k);
            }
            _ => {
                let v = value(&mut rng, w.model.current + 1);
                w.put(&k, &v);
            }
        }
    }
    assert!(w.delete_prefix(b"k1"), "the last revision deletes keys");
    assert!(
        w.model.live_at(w.model.current).len() > keys as usize / 3,
        "the workload leaves live keys"
    );
    w.model
}

// ---------------------------------------------------------------------------------------------
// A storage that logs its calls
// ---------------------------------------------------------------------------------------------

/// A storage call, as counted by `SimStorage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    /// A write; `meta` when it writes a meta page, the step that publishes a commit.
    Write {
        meta: bool,
    },
    SetLen,
    Sync,
}

/// A `SimStorage` that logs the calls made through it that went ahead.
type Counter = Watched<Arc<Mutex<Vec<Call>>>>;

impl Watch for Arc<Mutex<Vec<Call>>> {
    fn after(&self, change: StorageCall) {
        self.lock().unwrap().push(match change {
            StorageCall::Write { offset, .. } => Call::Write {
                meta: offset < 2 * u64::from(PAGE_SIZE),
            },
            StorageCall::SetLen => Call::SetLen,
            StorageCall::Sync => Call::Sync,
        });
    }
}

impl Watched<Arc<Mutex<Vec<Call>>>> {
    /// Calls made so far that went ahead.
    fn calls(&self) -> Vec<Call> {
        self.watch.lock().unwrap().clone()
    }

    /// Commits published so far: meta-page writes.
    fn commits(&self) -> u64 {
        self.calls()
            .iter()
            .filter(|c| **c == Call::Write { meta: true })
            .count() as u64
    }

    /// What a crash at call `n` leaves, labelled: a power loss, a process crash (`written`, the
    /// file as written), and a power loss that reordered the unsynced sectors, once per seed in
    /// `reorder`.
    fn crash_images(&self, n: u64, written: Vec<u8>, reorder: &[u64]) -> Vec<(String, Vec<u8>)> {
        let mut images = vec![
            ("power loss".to_string(), self.sim.crash_image(None)),
            ("process crash".to_string(), written),
        ];
        if self.sim.unsynced_blocks() > 0 {
            for seed in reorder.iter().map(|&s| point_seed(s, n as usize)) {
                images.push((
                    format!("power loss reordering unsynced sectors (seed {seed})"),
                    self.sim.crash_image_reordered(seed),
                ));
            }
        }
        images
    }
}

// ---------------------------------------------------------------------------------------------
// Images and checks
// ---------------------------------------------------------------------------------------------

/// A store holding a workload, synced: the image every crash run starts from.
struct Base {
    image: Vec<u8>,
    model: Model,
    /// The floor before the compaction under test (-1 for none).
    floor: i64,
}

/// Builds the base image at `dir/name`: the workload, then a first compaction at `first` if
/// given. Written without syncs, then synced once.
fn base(dir: &Path, name: &str, revisions: i64, keys: u64, first: Option<i64>) -> Base {
    let sim = SimStorage::create(&dir.join(name)).unwrap();
    let db = Db::builder()
        .page_size(PAGE_SIZE)
        .durability(Durability::None)
        .create_with(Box::new(sim.clone()))
        .unwrap();
    let store = Store::with_db(db).unwrap();
    let model = workload(&store, revisions, keys);
    let floor = first.map_or(-1, |f| {
        store.compact(f).unwrap();
        f
    });
    store.db().sync().unwrap();
    drop(store);
    Base {
        image: sim.crash_image(None),
        model,
        floor,
    }
}

/// Opens `image` as a new storage at `dir/name`, committing with `durability`.
fn open_image(dir: &Path, name: &str, image: &[u8], durability: Durability) -> (Counter, Db) {
    let counter = Counter {
        sim: SimStorage::with_image(&dir.join(name), image).unwrap(),
        watch: Arc::default(),
    };
    let db = Db::builder()
        .durability(durability)
        .open_with(Box::new(counter.clone()))
        .unwrap_or_else(|e| panic!("{name}: the database does not open: {e}"));
    (counter, db)
}

/// Asserts `store` holds `model` compacted at `floor`: the revisions, the stored revisions, reads
/// at the readable revisions (every one, or every `every`th and both ends), the error below the
/// floor, and a clean `check`.
fn assert_store(store: &Store, model: &Model, floor: i64, every: i64, what: &str) {
    assert_eq!(
        store.compacted_revision(),
        floor,
        "{what}: compacted revision"
    );
    assert_eq!(
        store.current_revision(),
        model.current,
        "{what}: current revision"
    );
    assert_eq!(
        crate::common::key_tree_len(store.db()),
        model.stored(floor),
        "{what}: revisions stored"
    );
    let first = floor.max(1);
    for rev in (first..=model.current)
        .filter(|r| (r - first) % every == 0 || *r == first + 1 || *r == model.current)
    {
        let got = store
            .range(KeyRange::all(), RangeOptions::at(rev))
            .unwrap_or_else(|e| panic!("{what}: reading at {rev}: {e}"));
        let want: Vec<KeyValue> = model.live_at(rev).into_values().collect();
        assert_eq!(got.kvs, want, "{what}: everything at {rev}");
    }
    if floor > 1 {
        let got = store.range(KeyRange::all(), RangeOptions::at(floor - 1));
        assert!(
            matches!(got, Err(Error::Compacted { requested, compacted }) if requested == floor - 1 && compacted == floor),
            "{what}: a read below the floor gave {got:?}"
        );
    }
    let report = store.db().check().expect("check runs");
    assert!(report.is_clean(), "{what}: {report}");
}

// ---------------------------------------------------------------------------------------------
// Crashes during a compaction
// ---------------------------------------------------------------------------------------------

/// What the crash runs found.
struct Found {
    /// Images that held a scheduled, half-done compaction, which the open finished.
    resumed: u64,
    /// The first image that held a half-done compaction (for the crash-while-resuming test).
    half_done: Option<Vec<u8>>,
}

/// Opens an image a crash left and checks it; see the module docs. Returns whether the image held
/// the new floor, and whether it held a half-done compaction.
fn check_crash_image(
    plan: &Plan<'_>,
    dir: &Path,
    name: &str,
    image: &[u8],
    what: &str,
) -> (bool, bool) {
    let Plan {
        base,
        target,
        options,
        every,
        durability,
        ..
    } = plan;
    let (target, every, durability) = (*target, *every, *durability);
    let model = &base.model;
    // What the crash left on disk, before the store opens and finishes it.
    let (_, db) = open_image(dir, &format!("{name}-peek"), image, durability);
    let stored_at_crash = crate::common::key_tree_len(&db);
    drop(db);

    let (counter, db) = open_image(dir, name, image, durability);
    let store = Store::with_db_options(db, options.clone())
        .unwrap_or_else(|e| panic!("{what}: the store does not open: {e}"));
    let floor = store.compacted_revision();
    let new_floor = floor == target;
    assert!(
        new_floor || floor == base.floor,
        "{what}: the floor is {floor}, neither the old {} nor the new {target}",
        base.floor
    );
    assert_store(&store, model, floor, every, what);
    let half_done = new_floor && stored_at_crash > model.stored(target);
    if new_floor {
        // The hash of the target: the one the compaction recorded (as before the compaction,
        // against the old floor), or, when the open had to finish the compaction, none recorded
        // (its first attempt may have deleted what the hash needs) and one against the new floor.
        let h = store.hash_by_rev(target).unwrap();
        if half_done {
            assert_eq!(
                h.compact_revision, target,
                "{what}: a resumed compaction's hash"
            );
        } else if h.compact_revision == base.floor {
            let (_, db) = open_image(dir, &format!("{name}-before"), &base.image, durability);
            let before = Store::with_db(db).unwrap().hash_by_rev(target).unwrap();
            assert_eq!(
                (h.hash, h.compact_revision),
                (before.hash, before.compact_revision),
                "{what}: the recorded hash is the hash before the compaction"
            );
        }
        // The compaction has finished: a second open has nothing left to do.
        drop(store);
        let commits = counter.commits();
        let db = Db::builder()
            .durability(durability)
            .open_with(Box::new(counter.clone()))
            .unwrap_or_else(|e| panic!("{what}: the second open fails: {e}"));
        let store = Store::with_db_options(db, options.clone()).unwrap();
        assert_eq!(
            counter.commits(),
            commits,
            "{what}: a second open wrote again (the finished compaction was not recorded)"
        );
        assert_store(
            &store,
            model,
            target,
            every,
            &format!("{what}, opened again"),
        );
        let rev = store.put(b"after", b"the crash").unwrap();
        assert_eq!(rev, model.current + 1, "{what}: the next write's revision");
    } else {
        assert_eq!(
            stored_at_crash,
            model.stored(base.floor),
            "{what}: revisions were deleted before the schedule was durable"
        );
        // The compaction never happened; run it again.
        store
            .compact(target)
            .unwrap_or_else(|e| panic!("{what}: compacting again: {e}"));
        assert_store(
            &store,
            model,
            target,
            every,
            &format!("{what}, compacted again"),
        );
        let rev = store.put(b"after", b"the crash").unwrap();
        assert_eq!(rev, model.current + 1, "{what}: the next write's revision");
    }
    (new_floor, half_done)
}

/// A compaction to crash: of `base` at `target`, with `options`, committing with `durability`;
/// reads are checked at every `every`th revision.
struct Plan<'a> {
    test: &'a str,
    base: &'a Base,
    target: i64,
    options: StoreOptions,
    every: i64,
    durability: Durability,
}

/// Compacts as `plan` says with a crash at each storage call in turn; see the module docs.
fn crash_at_every_call(plan: &Plan<'_>) -> Found {
    let Plan {
        test,
        base,
        target,
        ref options,
        every,
        durability,
    } = *plan;
    let dir = tempfile::tempdir().unwrap();
    let model = &base.model;

    // The dry run: how many calls and commits the compaction makes.
    let (counter, db) = open_image(dir.path(), "dry", &base.image, durability);
    let store = Store::with_db_options(db, options.clone()).unwrap();
    assert_store(&store, model, base.floor, every, &format!("{test}: before"));
    let (calls_before, commits_before) = (counter.calls().len(), counter.commits());
    store.compact(target).unwrap();
    let log = counter.calls()[calls_before..].to_vec();
    let calls = log.len() as u64;
    let commits = counter.commits() - commits_before;
    assert!(
        commits >= 4,
        "{test}: the compaction made {commits} commits: it should record its schedule and \
         delete in several batches"
    );
    assert_store(&store, model, target, every, &format!("{test}: dry run"));
    drop(store);
    // The first commit records the schedule. It is in the file once its meta page is written
    // (call `written`), and survives a power loss once the sync after that returns (`synced`).
    let written = 1 + log
        .iter()
        .position(|c| *c == Call::Write { meta: true })
        .expect("a meta write") as u64;
    let synced = written
        + 1
        + log[written as usize..]
            .iter()
            .position(|c| *c == Call::Sync)
            .expect("a sync after the meta write") as u64;

    let mut found = Found {
        resumed: 0,
        half_done: None,
    };
    // The first crash point whose image held the new floor, for each kind of image.
    let mut first_new: [Option<u64>; 2] = [None, None];
    let reorder = reorder_seeds(test, 3);
    for n in 1..=calls {
        let name = format!("crash-{n}");
        let (counter, db) = open_image(dir.path(), &name, &base.image, durability);
        let store = Store::with_db_options(db, options.clone()).unwrap();
        let opened = counter.commits();
        counter.sim.arm(n, Fault::Crash);
        let result = store.compact(target);
        let at = format!(
            "{test}: crash at call {n} of {calls} ({:?}, in commit {} of {commits})",
            log[n as usize - 1],
            counter.commits() - opened + 1
        );
        assert!(counter.sim.crashed(), "{at}: the armed call was never made");
        assert!(result.is_err(), "{at}: compact returned Ok");
        drop(store);
        let written = std::fs::read(dir.path().join(&name)).unwrap();
        let images = [
            ("power loss", counter.sim.crash_image(None)),
            ("process crash", written),
        ];
        for (i, (label, image)) in images.iter().enumerate() {
            let what = format!("{at}, {label}");
            let (new_floor, half_done) =
                check_crash_image(plan, dir.path(), &format!("{name}-{i}"), image, &what);
            if new_floor {
                first_new[i].get_or_insert(n);
            } else if let Some(first) = first_new[i] {
                panic!("{what}: the old floor, though the crash at call {first} left the new one");
            }
            if half_done {
                found.resumed += 1;
                if found.half_done.is_none() && i == 0 {
                    found.half_done = Some(image.clone());
                }
            }
        }
        // Reordered images: either floor is fine until the schedule is synced (a subset may or
        // may not hold its meta), and after that only the new one.
        if counter.sim.unsynced_blocks() > 0 {
            for seed in reorder.iter().map(|&s| point_seed(s, n as usize)) {
                let image = counter.sim.crash_image_reordered(seed);
                let what = format!("{at}, power loss reordering unsynced sectors (seed {seed})");
                let (new_floor, _) =
                    check_crash_image(plan, dir.path(), &format!("{name}-r{seed}"), &image, &what);
                assert!(
                    new_floor || n <= synced,
                    "{what}: the old floor, though the schedule was synced at call {synced}"
                );
            }
        }
    }
    // The floor moves exactly when the schedule is durable: a crash at any later call leaves it.
    assert_eq!(
        first_new,
        [Some(synced + 1), Some(written + 1)],
        "{test}: the first crash points that leave the new floor (power loss, process crash)"
    );
    println!(
        "{test}: {calls} calls in {commits} commits; the new floor from call {:?} (power loss) and \
         {:?} (process crash); {} images held a half-done compaction",
        first_new[0], first_new[1], found.resumed
    );
    assert!(
        found.resumed > 0,
        "{test}: no crash left a half-done compaction, so resuming one was never tested"
    );
    found
}

#[test]
fn a_crash_at_any_call_of_a_batched_compaction_leaves_the_old_floor_or_a_compaction_the_next_open_finishes()
 {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path(), "base", 300, 24, None);
    // At the current revision: the newest revision, a delete, keeps its tombstones (etcd 3.5.16).
    let target = base.model.current;
    crash_at_every_call(&Plan {
        test: "batches of 16, floor at the current revision",
        base: &base,
        target,
        options: StoreOptions {
            compaction_batch: 16,
            ..StoreOptions::default()
        },
        every: 1,
        durability: Durability::Immediate,
    });
}

/// `Store::open` commits with `Durability::Group`: each batch is published before its sync, so the
/// next writer can share it.
#[test]
fn with_group_commit_a_crash_at_any_call_of_a_batched_compaction_leaves_the_old_floor_or_a_compaction_the_next_open_finishes()
 {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path(), "base", 300, 24, None);
    let target = base.model.current;
    crash_at_every_call(&Plan {
        test: "group commit, batches of 16, floor at the current revision",
        base: &base,
        target,
        options: StoreOptions {
            compaction_batch: 16,
            ..StoreOptions::default()
        },
        every: 1,
        durability: Durability::Group,
    });
}

#[test]
fn a_crash_at_any_call_of_a_second_compaction_leaves_the_first_floor_or_the_second() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path(), "base", 300, 24, Some(90));
    crash_at_every_call(&Plan {
        test: "batches of 16, from floor 90 to 240",
        base: &base,
        target: 240,
        options: StoreOptions {
            compaction_batch: 16,
            ..StoreOptions::default()
        },
        every: 1,
        durability: Durability::Immediate,
    });
}

/// The default batch is 1,000 revisions: 2,500 revisions make a compaction of several batches.
#[test]
fn a_crash_at_any_call_of_a_compaction_in_default_batches_of_a_thousand_revisions_is_finished_on_open()
 {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path(), "base", 2_500, 40, None);
    let target = base.model.current - 1;
    crash_at_every_call(&Plan {
        test: "default batches, 2,500 revisions",
        base: &base,
        target,
        options: StoreOptions::default(),
        every: 97,
        durability: Durability::Immediate,
    });
}

#[test]
fn a_crash_while_the_open_resumes_a_compaction_leaves_an_image_the_next_open_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path(), "base", 300, 24, None);
    let target = base.model.current;
    let options = StoreOptions {
        compaction_batch: 16,
        ..StoreOptions::default()
    };
    let found = crash_at_every_call(&Plan {
        test: "to find a half-done image",
        base: &base,
        target,
        options: options.clone(),
        every: 25,
        durability: Durability::Immediate,
    });
    let half_done = found.half_done.expect("a half-done image");
    let resuming = Base {
        image: half_done,
        model: base.model.clone(),
        floor: target,
    };

    // The dry run: the calls the open makes to finish the compaction.
    let (counter, db) = open_image(
        dir.path(),
        "resume-dry",
        &resuming.image,
        Durability::Immediate,
    );
    let before = counter.calls().len();
    let store = Store::with_db_options(db, options.clone()).unwrap();
    let calls = (counter.calls().len() - before) as u64;
    assert!(calls > 0, "the open did not resume the compaction");
    assert_store(&store, &base.model, target, 1, "resumed without a crash");
    drop(store);

    let reorder = reorder_seeds("resume", 3);
    for n in 1..=calls {
        let name = format!("resume-{n}");
        let (counter, db) = open_image(dir.path(), &name, &resuming.image, Durability::Immediate);
        counter.sim.arm(n, Fault::Crash);
        let what =
            format!("a crash at call {n} of {calls} of the open that resumes the compaction");
        assert!(
            Store::with_db_options(db, options.clone()).is_err(),
            "{what}: the open returned Ok"
        );
        let written = std::fs::read(dir.path().join(&name)).unwrap();
        let images = counter.crash_images(n, written, &reorder);
        for (i, (label, image)) in images.iter().enumerate() {
            let plan = Plan {
                test: "resume",
                base: &resuming,
                target,
                options: options.clone(),
                every: 1,
                durability: Durability::Immediate,
            };
            let (new_floor, _) = check_crash_image(
                &plan,
                dir.path(),
                &format!("{name}-{i}"),
                image,
                &format!("{what}, {label}"),
            );
            assert!(new_floor, "{what}, {label}: the floor went back");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Crashes while the key index is persisted
// ---------------------------------------------------------------------------------------------

/// The threat: a crash while `Store::persist_index` writes the index leaves a half-written or
/// stale index that the next open trusts, and the store answers from a wrong index. The persist
/// is one commit: a crash before its meta page is durable leaves the index persisted before (at
/// the base's revision, and the open replays the writes after it), after that the new one (and
/// the open replays nothing). Either way every read agrees with the model; and once a crash
/// point leaves the new index, every later one does (from the call after the meta write, for a
/// process crash).
#[test]
fn a_crash_at_any_call_of_persisting_the_key_index_leaves_the_old_index_or_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let durability = Durability::Immediate;
    // The base, with its index persisted at its current revision.
    let base = {
        let base = base(dir.path(), "base", 300, 24, Some(90));
        let (counter, db) = open_image(dir.path(), "base-persisted", &base.image, durability);
        Store::with_db(db).unwrap().persist_index().unwrap();
        Base {
            image: counter.sim.crash_image(None),
            ..base
        }
    };
    let persisted = base.model.current;
    // The writes after the base, the same in every run.
    let write = |store: &Store| -> Model {
        let mut w = Writer {
            store,
            model: base.model.clone(),
        };
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for i in 0..40u64 {
            let k = key(rng.below(30));
            if i % 7 == 3 {
                w.delete_prefix(&k);
            } else {
                let v = value(&mut rng, w.model.current + 1);
                w.put(&k, &v);
            }
        }
        w.model
    };
    let loaded = |store: &Store| match store.index_origin() {
        folio::IndexOrigin::Loaded { revision, replayed } => (revision, replayed),
        other => panic!("the persisted index was not loaded: {other:?}"),
    };

    // The dry run: the calls of the persist.
    let (counter, db) = open_image(dir.path(), "dry", &base.image, durability);
    let store = Store::with_db(db).unwrap();
    assert_eq!(loaded(&store), (persisted, 0), "the base's index");
    let model = write(&store);
    let records = model.stored(base.floor) - base.model.stored(base.floor);
    let before = counter.calls().len();
    store.persist_index().unwrap();
    let log = counter.calls()[before..].to_vec();
    let calls = log.len() as u64;
    assert!(
        log.contains(&Call::Write { meta: true }),
        "the persist committed"
    );
    drop(store);

    let mut first_new: [Option<u64>; 2] = [None, None];
    let reorder = reorder_seeds("persist", 3);
    for n in 1..=calls {
        let name = format!("persist-{n}");
        let (counter, db) = open_image(dir.path(), &name, &base.image, durability);
        let store = Store::with_db(db).unwrap();
        assert_eq!(write(&store).current, model.current);
        counter.sim.arm(n, Fault::Crash);
        let at = format!("a crash at call {n} of {calls} ({:?})", log[n as usize - 1]);
        assert!(
            store.persist_index().is_err(),
            "{at}: the persist returned Ok"
        );
        assert!(counter.sim.crashed(), "{at}: the armed call was never made");
        drop(store);
        let written = std::fs::read(dir.path().join(&name)).unwrap();
        let images = counter.crash_images(n, written, &reorder);
        for (i, (label, image)) in images.iter().enumerate() {
            let what = format!("{at}, {label}");
            let (_, db) = open_image(dir.path(), &format!("{name}-{i}"), image, durability);
            let store = Store::with_db(db)
                .unwrap_or_else(|e| panic!("{what}: the store does not open: {e}"));
            let origin = loaded(&store);
            let new = origin == (model.current, 0);
            assert!(
                new || origin == (persisted, records),
                "{what}: {origin:?}: neither the old index with the writes after it replayed \
                 nor the new one"
            );
            assert_store(&store, &model, base.floor, 1, &what);
            if i < 2 {
                if new {
                    first_new[i].get_or_insert(n);
                } else if let Some(first) = first_new[i] {
                    panic!("{what}: the old index, though the crash at call {first} left the new");
                }
            }
        }
    }
    println!("persist: {calls} calls; the new index from call {first_new:?}");
    // The new index is in the file once the commit's meta page is written; a power loss keeps it
    // only after the sync that follows, the persist's last call, so no crash point inside it.
    let written = 1 + log
        .iter()
        .position(|c| *c == Call::Write { meta: true })
        .expect("a meta write") as u64;
    assert_eq!(log.last(), Some(&Call::Sync), "the persist ends in a sync");
    assert_eq!(
        first_new,
        [None, Some(written + 1)],
        "the first crash points that leave the new index (power loss, process crash)"
    );
}
