//! Crash safety of commits: a power loss at any write or sync of any commit, a write or sync that
//! fails without a crash, and a commit that would pass the size limit each leave the database whole.
//! After reopening it passes `check` and holds the last commit that returned Ok or the commit that
//! was in flight: never anything else, and opening it is never an error.
//!
//! The crash model is `SimStorage`'s. A *power loss* keeps what was synced, plus, in a torn image, a
//! prefix of the last write made since the last sync, or, in a reordered image, any subset of the
//! sectors written since the last sync at the old or the new length (disks reorder writes between
//! flushes). A *process crash* keeps the file as written.
//! `Durability::Immediate` and `Durability::Group` survive both. `Durability::None` never syncs, so
//! it promises only to survive a process crash; its power-loss images are opened and read only to
//! show that doing so never panics, whatever they hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::common::data::{big, key, value};
use crate::common::{Contents, StorageCall, Watch, Watched, point_seed, reorder_seeds};
use folio::sim::{Fault, SimStorage};
use folio::storage::Storage;
use folio::{Db, Durability, Error, WriteTxn};

const PAGE_SIZE: u32 = 512;

// ---------------------------------------------------------------------------------------------
// The workload and its model
// ---------------------------------------------------------------------------------------------

/// One change inside a commit.
#[derive(Clone, Debug)]
enum Op {
    Put(&'static str, Vec<u8>, Vec<u8>),
    Delete(&'static str, Vec<u8>),
    DeleteTree(&'static str),
}

/// Eleven commits at page size 512: the file grows, trees split and merge, overflow runs come and
/// go, a whole tree is deleted, later commits reuse the pages earlier ones freed, the freelist is
/// written as deltas and as whole lists, and large commits write their pages in batches.
fn workload() -> Vec<Vec<Op>> {
    use Op::{Delete, DeleteTree, Put};
    vec![
        // 1. Two trees deep enough for branch pages; the file grows past its first 8 pages.
        (0..300)
            .map(|i| Put("accounts", key(i), value(i, 0)))
            .chain((0..60).map(|i| Put("index", key(i), value(i, 0))))
            .collect(),
        // 2. Overwrites with new lengths, deletes, and a value that needs an overflow run.
        (0..300)
            .step_by(3)
            .map(|i| Put("accounts", key(i), value(i, 1)))
            .chain((1..300).step_by(5).map(|i| Delete("accounts", key(i))))
            .chain([Put("index", b"blob".to_vec(), big(3000, 1))])
            .collect(),
        // 3. A whole tree deleted, overflow run and all, and a new tree.
        [DeleteTree("index")]
            .into_iter()
            .chain((0..120).map(|i| Put("log", key(i), value(i, 2))))
            .collect(),
        // 4. Another overflow value, and half of the largest tree deleted (its leaves merge).
        [Put("log", b"blob".to_vec(), big(6000, 2))]
            .into_iter()
            .chain((0..300).step_by(2).map(|i| Delete("accounts", key(i))))
            .collect(),
        // 5. The overflow value replaced by a small one; new keys fill freed pages.
        [Put("log", b"blob".to_vec(), b"small".to_vec())]
            .into_iter()
            .chain((300..420).map(|i| Put("accounts", key(i), value(i, 5))))
            .collect(),
        // 6. A tree emptied (it stays, with no entries), and a last round of overwrites.
        (0..120)
            .map(|i| Delete("log", key(i)))
            .chain([Delete("log", b"blob".to_vec())])
            .chain(
                (300..420)
                    .step_by(7)
                    .map(|i| Put("accounts", key(i), value(i, 6))),
            )
            .collect(),
        // 7 to 9. Single overwrites: each commit's changes to the freelist are few, so they go to
        //    deltas on its chain (format 2), and the chain is retired by a whole list.
        vec![Put("accounts", key(301), value(301, 7))],
        vec![Put("accounts", key(360), value(360, 8))],
        vec![Put("accounts", key(419), value(419, 9))],
        // 10. A commit of more than 64 pages (`WRITE_BATCH_PAGES` in `txn::write`): it writes its
        //     pages a batch at a time while its trees spill, before its freelist is settled.
        (0..600)
            .map(|i| Put("bulk", key(i), value(i, 10)))
            .collect(),
        // 11. One value of 118 pages, past the file's end: its overflow run is a batch of its
        //     own, written mid-spill after the file grows, and the commit's few runs fit the
        //     meta's proof (a meta that names a run written mid-spill).
        vec![Put("accounts", b"huge".to_vec(), big(60_000, 11))],
    ]
}

fn apply(model: &mut Contents, op: &Op) {
    match op {
        Op::Put(t, k, v) => {
            model
                .entry(t.as_bytes().to_vec())
                .or_default()
                .insert(k.clone(), v.clone());
        }
        Op::Delete(t, k) => {
            model.entry(t.as_bytes().to_vec()).or_default().remove(k);
        }
        Op::DeleteTree(t) => {
            model.remove(t.as_bytes());
        }
    }
}

/// `models[i]` is the database after the first `i` commits of `work`.
fn models(work: &[Vec<Op>]) -> Vec<Contents> {
    let mut model = Contents::new();
    let mut out = vec![model.clone()];
    for ops in work {
        ops.iter().for_each(|op| apply(&mut model, op));
        out.push(model.clone());
    }
    out
}

fn apply_to(tx: &mut WriteTxn<'_>, op: &Op) -> folio::Result<()> {
    match op {
        Op::Put(t, k, v) => tx.open_tree(t.as_bytes())?.put(k, v),
        Op::Delete(t, k) => tx.open_tree(t.as_bytes())?.delete(k).map(drop),
        Op::DeleteTree(t) => tx.delete_tree(t.as_bytes()).map(drop),
    }
}

fn commit(db: &Db, ops: &[Op]) -> folio::Result<()> {
    let mut tx = db.begin_write()?;
    for op in ops {
        apply_to(&mut tx, op)?;
    }
    tx.commit()
}

/// Runs commits until one fails. Returns how many returned Ok, and the error.
fn run_until_failure(db: &Db, work: &[Vec<Op>]) -> (usize, Option<Error>) {
    for (i, ops) in work.iter().enumerate() {
        if let Err(e) = commit(db, ops) {
            return (i, Some(e));
        }
    }
    (work.len(), None)
}

/// Reads every entry of every tree and checks nothing: for images that carry no promise.
fn read_all(db: &Db) -> folio::Result<usize> {
    let tx = db.begin_read()?;
    let mut n = 0;
    for name in tx.tree_names()? {
        if let Some(tree) = tx.tree(&name)? {
            for entry in tree.iter() {
                entry?;
                n += 1;
            }
        }
    }
    Ok(n)
}

fn read_contents(db: &Db) -> folio::Result<Contents> {
    let tx = db.begin_read()?;
    let mut out = Contents::new();
    for name in tx.tree_names()? {
        let tree = tx.tree(&name)?.expect("a listed tree exists");
        let entries: BTreeMap<Vec<u8>, Vec<u8>> = tree
            .iter()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()?;
        assert_eq!(
            tree.len(),
            entries.len() as u64,
            "tree {name:?} records a wrong length"
        );
        out.insert(name, entries);
    }
    Ok(out)
}

fn summary(c: &Contents) -> String {
    let trees: Vec<String> = c
        .iter()
        .map(|(name, t)| format!("{}: {} entries", String::from_utf8_lossy(name), t.len()))
        .collect();
    format!("{{{}}}", trees.join(", "))
}

/// Asserts that `db` passes `check` and holds exactly one of the commits in `allowed`.
fn assert_whole(db: &Db, models: &[Contents], allowed: &[usize], what: &str) {
    let report = db
        .check()
        .unwrap_or_else(|e| panic!("{what}: check could not run: {e}"));
    assert!(report.is_clean(), "{what}: {report}");
    let got = read_contents(db).unwrap_or_else(|e| panic!("{what}: reading failed: {e}"));
    assert!(
        allowed.iter().any(|&i| models[i] == got),
        "{what}: expected the state after commit {allowed:?}, found {} (the state after commit {:?})",
        summary(&got),
        models.iter().position(|m| *m == got),
    );
}

// ---------------------------------------------------------------------------------------------
// A storage that records the calls made through it
// ---------------------------------------------------------------------------------------------

/// A storage call, as the workload makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    SetLen,
    Write { offset: u64, len: usize },
    Sync,
}

impl Step {
    /// Whether this call belongs to making a commit durable (a sync or the meta write), after which
    /// a failure leaves the state on disk unknown to the process.
    fn makes_durable(self) -> bool {
        match self {
            Step::Sync => true,
            Step::Write { offset, .. } => offset < 2 * PAGE_SIZE as u64,
            Step::SetLen => false,
        }
    }
}

#[derive(Debug, Default)]
struct Log {
    /// Every call asked for, in order, whether or not it went ahead.
    steps: Vec<Step>,
    /// The length of the last write that went ahead since the last sync that did.
    last_unsynced_write: Option<usize>,
}

/// A `SimStorage` that logs the calls made through it.
type Recorder = Watched<Arc<Mutex<Log>>>;

impl Watch for Arc<Mutex<Log>> {
    fn before(&self, change: StorageCall) {
        self.lock().unwrap().steps.push(match change {
            StorageCall::Write { offset, len } => Step::Write { offset, len },
            StorageCall::SetLen => Step::SetLen,
            StorageCall::Sync => Step::Sync,
        });
    }

    fn after(&self, change: StorageCall) {
        let mut log = self.lock().unwrap();
        match change {
            StorageCall::Write { len, .. } => log.last_unsynced_write = Some(len),
            StorageCall::Sync => log.last_unsynced_write = None,
            StorageCall::SetLen => {}
        }
    }
}

impl Watched<Arc<Mutex<Log>>> {
    fn steps(&self) -> Vec<Step> {
        self.watch.lock().unwrap().steps.clone()
    }

    /// Images a power loss now could leave: the synced bytes alone, with a torn prefix of the last
    /// unsynced write (none, 17 bytes, half, all but one byte), and with the unsynced sectors
    /// reordered, one image per seed.
    fn power_loss_images(&self, reorder: &[u64]) -> Vec<(String, Vec<u8>)> {
        let mut images = vec![("power loss".to_string(), self.sim.crash_image(None))];
        if self.sim.unsynced_blocks() > 0 {
            for &seed in reorder {
                let label =
                    format!("power loss reordering the unsynced sectors (image seed {seed})");
                images.push((label, self.sim.crash_image_reordered(seed)));
            }
        }
        if let Some(len) = self.watch.lock().unwrap().last_unsynced_write {
            for torn in [0, 17, len / 2, len - 1] {
                let label =
                    format!("power loss tearing the last write after {torn} of {len} bytes");
                images.push((label, self.sim.crash_image(Some(torn))));
            }
        }
        images
    }
}

/// A database created on a fresh `SimStorage` at `dir/name`, with its log cleared so that call 1
/// is the first call of the first commit. (Creating through a storage is not atomic; creating at
/// a path is, and is not what this file tests.)
struct Rig {
    path: PathBuf,
    rec: Recorder,
    db: Db,
}

fn rig(dir: &Path, name: &str, durability: Durability) -> Rig {
    let path = dir.join(name);
    let rec = Recorder {
        sim: SimStorage::create(&path).unwrap(),
        watch: Arc::default(),
    };
    let db = Db::builder()
        .page_size(PAGE_SIZE)
        .durability(durability)
        .create_with(Box::new(rec.clone()))
        .unwrap();
    rec.watch.lock().unwrap().steps.clear();
    Rig { path, rec, db }
}

/// Reopens the same storage, as a restarted process would.
fn restart(rec: &Recorder, durability: Durability) -> Db {
    Db::builder()
        .durability(durability)
        .open_with(Box::new(rec.clone()))
        .unwrap_or_else(|e| panic!("reopening after a restart failed: {e}"))
}

fn open_image(dir: &Path, name: &str, image: &[u8]) -> folio::Result<Db> {
    let sim = SimStorage::with_image(&dir.join(name), image)?;
    Db::builder().open_with(Box::new(sim))
}

/// The fault-free run: the calls each commit makes. `ends[i]` is the number of calls made by the
/// end of commit `i + 1`.
struct DryRun {
    steps: Vec<Step>,
    ends: Vec<usize>,
}

impl DryRun {
    /// The calls made by the first `commits` commits.
    fn calls_before(&self, commits: usize) -> usize {
        if commits == 0 {
            0
        } else {
            self.ends[commits - 1]
        }
    }

    /// The commit (counting from 1) that makes call `n` (counting from 1).
    fn commit_of(&self, n: usize) -> usize {
        self.ends
            .iter()
            .position(|&end| n <= end)
            .expect("call within the workload")
            + 1
    }
}

fn dry_run(dir: &Path, durability: Durability, work: &[Vec<Op>]) -> DryRun {
    let Rig { rec, db, .. } = rig(dir, &format!("dry-{durability:?}"), durability);
    let mut ends = Vec::new();
    let mut frontiers = vec![db.stats().unwrap().page_count];
    let mut reused = false;
    for ops in work {
        let start = rec.steps().len();
        commit(&db, ops).unwrap();
        let steps = rec.steps();
        let frontier = *frontiers.last().unwrap();
        reused |= steps[start..].iter().any(|s| {
            matches!(*s, Step::Write { offset, .. } if offset >= 2 * PAGE_SIZE as u64 && offset / (PAGE_SIZE as u64) < frontier)
        });
        ends.push(steps.len());
        frontiers.push(db.stats().unwrap().page_count);
    }
    // The workload does what it claims: the file grows, and freed pages are written again.
    assert!(
        rec.sim.len().unwrap() > 16 * PAGE_SIZE as u64,
        "the file did not grow"
    );
    assert!(
        reused,
        "no commit reused a freed page (frontiers {frontiers:?})"
    );
    // The last commit grows the file and writes its overflow run mid-spill, then the rest in page
    // order below it (a commit written at once writes in page order).
    let last = steps_of(&rec.steps(), &ends, work.len() - 1);
    let writes: Vec<u64> = last
        .iter()
        .filter_map(|s| match *s {
            Step::Write { offset, .. } if offset >= 2 * PAGE_SIZE as u64 => Some(offset),
            _ => None,
        })
        .collect();
    assert!(
        matches!(last.first(), Some(Step::SetLen)) && writes.windows(2).any(|w| w[1] < w[0]),
        "the last commit wrote no batch mid-spill after growing the file: {last:?}"
    );
    assert_eq!(read_contents(&db).unwrap(), *models(work).last().unwrap());
    DryRun {
        steps: rec.steps(),
        ends,
    }
}

/// The calls commit `c` (from 0) made, given where each commit's calls end.
fn steps_of(steps: &[Step], ends: &[usize], c: usize) -> Vec<Step> {
    let start = if c == 0 { 0 } else { ends[c - 1] };
    steps[start..ends[c]].to_vec()
}

// ---------------------------------------------------------------------------------------------
// Crashes
// ---------------------------------------------------------------------------------------------

/// Crashes at every call of the workload in turn and checks every image the crash could leave.
fn crash_at_every_call(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let work = workload();
    let models = models(&work);
    let dry = dry_run(dir.path(), durability, &work);
    let reorder = reorder_seeds(&format!("crash_at_every_call({durability:?})"), 6);
    for n in 1..=dry.steps.len() {
        let Rig { path, rec, db } = rig(dir.path(), &format!("crash-{n}"), durability);
        rec.sim.arm(n as u64, Fault::Crash);
        let (ok, err) = run_until_failure(&db, &work);
        let what = format!(
            "{durability:?}, crash at call {n} ({:?}) of commit {}",
            dry.steps[n - 1],
            ok + 1
        );
        assert!(rec.sim.crashed(), "{what}: the armed call was never made");
        assert!(
            err.is_some(),
            "{what}: every commit returned Ok although a call crashed"
        );
        assert_eq!(
            ok + 1,
            dry.commit_of(n),
            "{what}: the crash ended a different commit than the one making the call"
        );
        drop(db);
        let allowed = [ok, ok + 1];

        // A process crash: everything written reached the file.
        let written = std::fs::read(&path).unwrap();
        let db = open_image(dir.path(), &format!("crash-{n}-written"), &written)
            .unwrap_or_else(|e| panic!("{what}: the file as written does not open: {e}"));
        assert_whole(&db, &models, &allowed, &format!("{what}, process crash"));

        // A power loss: only what was synced, and perhaps a torn prefix of the last write.
        let seeds: Vec<u64> = reorder.iter().map(|&s| point_seed(s, n)).collect();
        for (i, (label, image)) in rec.power_loss_images(&seeds).into_iter().enumerate() {
            let name = format!("crash-{n}-image-{i}");
            match durability {
                Durability::None => {
                    // No promise about the contents; opening, checking and reading must not panic.
                    if let Ok(db) = open_image(dir.path(), &name, &image) {
                        let _ = db.check();
                        let _ = read_all(&db);
                    }
                }
                _ => {
                    let db = open_image(dir.path(), &name, &image)
                        .unwrap_or_else(|e| panic!("{what}, {label}: does not open: {e}"));
                    assert_whole(&db, &models, &allowed, &format!("{what}, {label}"));
                }
            }
        }
    }
}

#[test]
fn a_crash_at_any_write_or_sync_keeps_the_last_commit_or_the_one_in_flight() {
    crash_at_every_call(Durability::Immediate);
}

#[test]
fn with_group_commit_a_crash_at_any_write_or_sync_keeps_the_last_commit_or_the_one_in_flight() {
    crash_at_every_call(Durability::Group);
}

/// `Durability::None` writes the meta without syncing, so after a power loss the synced bytes may
/// hold a meta whose pages never reached the disk. What it does promise is that the process may
/// die at any call: the file as written always holds a whole commit.
#[test]
fn without_syncs_a_process_crash_at_any_write_keeps_the_last_commit_or_the_one_in_flight() {
    crash_at_every_call(Durability::None);
}

// ---------------------------------------------------------------------------------------------
// Failures that are not crashes
// ---------------------------------------------------------------------------------------------

/// Fails every call of the workload in turn. A failure while writing pages rolls the commit back
/// and the same commit then succeeds; a failure while making the commit durable poisons the
/// database until it is reopened, and the reopened database holds a whole commit and goes on.
fn fail_at_every_call(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let work = workload();
    let models = models(&work);
    let dry = dry_run(dir.path(), durability, &work);
    for n in 1..=dry.steps.len() {
        let step = dry.steps[n - 1];
        let failing = dry.commit_of(n) - 1;
        let what = format!(
            "{durability:?}, call {n} ({step:?}) of commit {} fails",
            failing + 1
        );
        let Rig { rec, mut db, .. } = rig(dir.path(), &format!("fail-{n}"), durability);
        for ops in &work[..failing] {
            commit(&db, ops).unwrap_or_else(|e| panic!("{what}: an earlier commit failed: {e}"));
        }
        rec.sim
            .arm((n - dry.calls_before(failing)) as u64, Fault::Fail);
        let err =
            commit(&db, &work[failing]).expect_err(&format!("{what}: the commit returned Ok"));
        assert!(
            matches!(err, Error::Io(_)),
            "{what}: expected the I/O error, got {err:?}"
        );
        let poisoned = match db.begin_write() {
            Ok(_) => false,
            Err(Error::Poisoned) => true,
            Err(e) => panic!("{what}: begin_write failed with {e}"),
        };
        assert_eq!(
            poisoned,
            step.makes_durable(),
            "{what}: poisoned is {poisoned}"
        );

        let mut next = failing;
        if poisoned {
            // Readers still work. Immediate and None publish only after the meta is written;
            // Group publishes before it syncs, so readers may already see the failed commit.
            let visible: &[usize] = if durability == Durability::Group {
                &[failing, failing + 1]
            } else {
                &[failing]
            };
            assert_whole(
                &db,
                &models,
                visible,
                &format!("{what}, read before reopening"),
            );
            let refused = commit(&db, &work[failing]);
            assert!(
                matches!(refused, Err(Error::Poisoned)),
                "{what}: a later commit gave {refused:?}"
            );
            drop(db);
            if durability != Durability::None {
                let image = rec.sim.crash_image(None);
                let lost = open_image(dir.path(), &format!("fail-{n}-power-loss"), &image)
                    .unwrap_or_else(|e| panic!("{what}: the synced image does not open: {e}"));
                assert_whole(
                    &lost,
                    &models,
                    &[failing, failing + 1],
                    &format!("{what}, then a power loss"),
                );
            }
            db = restart(&rec, durability);
            let got = read_contents(&db).unwrap();
            assert_whole(
                &db,
                &models,
                &[failing, failing + 1],
                &format!("{what}, reopened"),
            );
            if got == models[failing + 1] {
                next += 1;
            }
        } else {
            // Nothing changed, and the database goes on: the same commit now succeeds.
            assert_whole(
                &db,
                &models,
                &[failing],
                &format!("{what}, read after the failure"),
            );
        }
        for ops in &work[next..] {
            commit(&db, ops).unwrap_or_else(|e| panic!("{what}: a later commit failed: {e}"));
        }
        assert_whole(&db, &models, &[work.len()], &format!("{what}, at the end"));
        drop(db);
        let db = restart(&rec, durability);
        assert_whole(
            &db,
            &models,
            &[work.len()],
            &format!("{what}, at the end, reopened"),
        );
    }
}

#[test]
fn a_failed_write_rolls_the_commit_back_and_a_failed_sync_poisons_writes_until_a_reopen_that_keeps_a_whole_commit()
 {
    for durability in [Durability::Immediate, Durability::Group, Durability::None] {
        fail_at_every_call(durability);
    }
}

// ---------------------------------------------------------------------------------------------
// A restart between a failed sync and a power loss
// ---------------------------------------------------------------------------------------------

/// A commit whose last sync fails leaves its meta written but not durable. A process that reopens
/// the file sees that commit; a power loss during its next commit must still leave that commit (or
/// the next): the pages the unsynced commit freed are the only copy of the commit before it, which
/// is the one a power loss would otherwise fall back to.
#[test]
fn a_power_loss_after_reopening_a_commit_whose_last_sync_failed_keeps_that_commit_or_a_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let work = workload();
    let models = models(&work);
    let dry = dry_run(dir.path(), Durability::Immediate, &work);
    let reorder = reorder_seeds("after a failed last sync", 3);
    for failing in 0..work.len() - 1 {
        let calls = dry.ends[failing] - dry.calls_before(failing);
        for n in 1.. {
            let what = format!(
                "last sync of commit {} fails; reopened; crash at call {n} of the next",
                failing + 1
            );
            let Rig { rec, db, .. } = rig(
                dir.path(),
                &format!("restart-{failing}-{n}"),
                Durability::Immediate,
            );
            for ops in &work[..failing] {
                commit(&db, ops).unwrap();
            }
            rec.sim.arm(calls as u64, Fault::Fail);
            assert!(
                commit(&db, &work[failing]).is_err(),
                "{what}: the failing commit returned Ok"
            );
            drop(db);
            let db = restart(&rec, Durability::Immediate);
            assert_whole(
                &db,
                &models,
                &[failing + 1],
                &format!("{what}, after the restart"),
            );
            rec.sim.arm(n, Fault::Crash);
            if commit(&db, &work[failing + 1]).is_ok() {
                assert!(
                    !rec.sim.crashed(),
                    "{what}: the commit returned Ok although a call crashed"
                );
                break;
            }
            drop(db);
            let seeds: Vec<u64> = reorder.iter().map(|&s| point_seed(s, n as usize)).collect();
            for (i, (label, image)) in rec.power_loss_images(&seeds).into_iter().enumerate() {
                let db = open_image(
                    dir.path(),
                    &format!("restart-{failing}-{n}-image-{i}"),
                    &image,
                )
                .unwrap_or_else(|e| panic!("{what}, {label}: does not open: {e}"));
                assert_whole(
                    &db,
                    &models,
                    &[failing + 1, failing + 2],
                    &format!("{what}, {label}"),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The size limit
// ---------------------------------------------------------------------------------------------

#[test]
fn a_commit_past_max_size_fails_with_database_full_changes_nothing_and_the_database_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.folio");
    let max = 64 * PAGE_SIZE as u64;
    let mut model = Contents::new();
    let db = Db::builder()
        .page_size(PAGE_SIZE)
        .max_size(max)
        .open(&path)
        .unwrap();
    let first: Vec<Op> = (0..50).map(|i| Op::Put("t", key(i), value(i, 0))).collect();
    commit(&db, &first).unwrap();
    first.iter().for_each(|op| apply(&mut model, op));

    // A value larger than the whole limit.
    let huge = [Op::Put("t", b"huge".to_vec(), big(40_000, 7))];
    match commit(&db, &huge) {
        Err(Error::DatabaseFull {
            needed,
            max: reported,
        }) => {
            assert_eq!(reported, max);
            assert!(needed > max, "needed {needed} is within the maximum {max}");
        }
        other => panic!("expected DatabaseFull, got {other:?}"),
    }
    assert_eq!(
        read_contents(&db).unwrap(),
        model,
        "the failed commit changed the contents"
    );
    let report = db.check().unwrap();
    assert!(report.is_clean(), "{report}");

    // The database goes on: commits that fit succeed, until the file really is full.
    let mut full = None;
    for round in 0..100u32 {
        let ops: Vec<Op> = (0..20)
            .map(|i| Op::Put("t", key(1000 + round * 20 + i), value(i, round)))
            .collect();
        match commit(&db, &ops) {
            Ok(()) => ops.iter().for_each(|op| apply(&mut model, op)),
            Err(Error::DatabaseFull { .. }) => {
                full = Some(ops);
                break;
            }
            Err(e) => panic!("round {round}: expected Ok or DatabaseFull, got {e}"),
        }
        assert!(
            std::fs::metadata(&path).unwrap().len() <= max,
            "the file passed its maximum size"
        );
    }
    let full = full.expect("the database never filled up");
    assert!(
        model["t".as_bytes()].len() > 50,
        "no commit succeeded after the first failure"
    );
    assert_eq!(read_contents(&db).unwrap(), model);
    let report = db.check().unwrap();
    assert!(report.is_clean(), "{report}");
    drop(db);

    // Reopened with room to grow, the refused commit goes through.
    let db = Db::builder().max_size(4 * max).open(&path).unwrap();
    assert_eq!(
        read_contents(&db).unwrap(),
        model,
        "reopening changed the contents"
    );
    commit(&db, &full).unwrap();
    full.iter().for_each(|op| apply(&mut model, op));
    assert_eq!(read_contents(&db).unwrap(), model);
    let report = db.check().unwrap();
    assert!(report.is_clean(), "{report}");
}
