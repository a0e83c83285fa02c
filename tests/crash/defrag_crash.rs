//! Crash safety of defrag, through `SimStorage`: a power loss at every call a defrag makes (each
//! write of the new file, its sync, the rename, the directory sync) and at every call of the commit
//! that follows it; and a failure without a crash at each of those calls.
//!
//! A power loss keeps what was synced, perhaps with a torn prefix of the last write, or any subset
//! of the sectors written since the last sync (a disk reorders writes between flushes). After it
//! the database path holds, with the directory as last synced or as it stood
//! (a rename may reach the disk before the directory sync does), either the old file byte for
//! byte, or the new file whole: it opens, passes `check`, and holds the same trees as before the
//! defrag, or those after the commit that followed it. Never a mix, never an error.
//!
//! After a failure without a crash the database goes on as before: same contents, no file left
//! beside it, and the next commit works. The exception is a failure in the swap's finish (the
//! sync of the new file, the rename and the directory sync, the defrag's last three calls, made
//! after the writers are released): the writers already write the new file, so it poisons the
//! database until a reopen, which finds the contents as before the defrag.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::fragmented::{self, PAGE_SIZE, Shape, value};
use crate::common::{Contents, contents, point_seed, reorder_seeds};
use folio::sim::{DirState, Fault, SimStorage};
use folio::{Db, DefragOptions, Durability, Error};

type Model = Contents;

/// A fragmented database image of more than one defrag write (8 MiB): commits that
/// overwrite and delete in two trees, with overflow values.
fn fragmented_image(dir: &Path) -> Vec<u8> {
    let shape = Shape {
        rounds: 8,
        puts: 8000,
        keys: 20_000,
        digits: 6,
        // Half the values take a two-page overflow run at 512-byte pages.
        overflow_every: 2,
        small_len: 60,
    };
    fragmented::image(dir, &shape)
}

/// The commit made after the defrag.
fn commit_after(db: &Db) -> folio::Result<()> {
    let mut tx = db.begin_write()?;
    let mut t = tx.open_tree(b"alpha")?;
    for i in 0..300u32 {
        t.put(format!("after-{i:04}").as_bytes(), &value(i, 80))?;
    }
    t.delete(b"key-000007")?;
    tx.commit()
}

/// A database opened on a fresh machine holding `image` at `dir/name`.
fn open(dir: &Path, name: &str, image: &[u8]) -> (PathBuf, SimStorage, Db) {
    let path = dir.join(name);
    let sim = SimStorage::with_image(&path, image).unwrap();
    let db = Db::builder()
        .durability(Durability::Immediate)
        .open_with(Box::new(sim.clone()))
        .unwrap();
    (path, sim, db)
}

struct Expected {
    old_image: Vec<u8>,
    before: Model,
    after: Model,
    /// Calls made by the defrag, and by the defrag and the commit after it.
    defrag_calls: u64,
    all_calls: u64,
}

fn expected(dir: &Path, image: &[u8]) -> Expected {
    let (path, sim, db) = open(dir, "dry.folio", image);
    let before = contents(&db);
    let old_image = std::fs::read(&path).unwrap();
    let start = sim.calls();
    let report = db.defrag(&DefragOptions::default()).unwrap();
    assert!(
        report.pages_written as usize * PAGE_SIZE as usize > 8 << 20,
        "the image should take several writes: {report}"
    );
    let defrag_calls = sim.calls() - start;
    commit_after(&db).unwrap();
    let all_calls = sim.calls() - start;
    let after = contents(&db);
    assert_ne!(before, after);
    Expected {
        old_image,
        before,
        after,
        defrag_calls,
        all_calls,
    }
}

/// What a power loss keeps of the writes since the last sync.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// Nothing, or a torn prefix of the last write.
    Torn(Option<usize>),
    /// A subset of the written sectors, chosen by this seed.
    Reordered(u64),
}

#[test]
fn a_power_loss_at_any_call_of_a_defrag_leaves_the_old_file_or_the_new_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let image = fragmented_image(dir.path());
    let want = expected(dir.path(), &image);
    let mut outcomes = BTreeMap::<&str, usize>::new();
    let reorder = reorder_seeds("defrag power loss", 2);
    for n in 1..=want.all_calls {
        let (path, sim, db) = open(dir.path(), &format!("crash-{n}.folio"), &image);
        sim.arm(n, Fault::Crash);
        let defragged = db.defrag(&DefragOptions::default());
        if defragged.is_ok() {
            let _ = commit_after(&db);
        }
        assert!(sim.crashed(), "call {n} was never made");
        drop(db);

        for dir_state in [DirState::Synced, DirState::Current] {
            let torn = [None, Some(0), Some(PAGE_SIZE as usize / 2)].map(Loss::Torn);
            let reordered = reorder
                .iter()
                .map(|&s| Loss::Reordered(point_seed(s, n as usize)));
            for loss in torn.into_iter().chain(reordered) {
                let context = format!("crash at call {n}, directory {dir_state:?}, {loss:?}");
                let image = match loss {
                    Loss::Torn(torn) => sim.crash_image_at(&path, dir_state, torn),
                    Loss::Reordered(seed) => sim.crash_image_reordered_at(&path, dir_state, seed),
                }
                .unwrap_or_else(|| panic!("{context}: no file at the database path"));
                let name = format!("crash-{n}-reopened.folio");
                let _ = std::fs::remove_file(dir.path().join(&name));
                let reopened = SimStorage::with_image(&dir.path().join(&name), &image).unwrap();
                let db = Db::builder()
                    .open_with(Box::new(reopened))
                    .unwrap_or_else(|e| panic!("{context}: reopening failed: {e}"));
                let report = db.check().unwrap();
                assert!(report.is_clean(), "{context}: {report}");
                let got = contents(&db);
                let stats = db.stats().unwrap();
                let outcome = if image == want.old_image {
                    "old file"
                } else if got == want.before && stats.free_pages == 0 {
                    "new file"
                } else if got == want.after {
                    "new file after the commit"
                } else {
                    panic!("{context}: neither the old file nor the new one");
                };
                assert_eq!(
                    got,
                    if outcome == "new file after the commit" {
                        want.after.clone()
                    } else {
                        want.before.clone()
                    },
                    "{context}"
                );
                *outcomes.entry(outcome).or_default() += 1;
            }
        }
    }
    // Every outcome was reached by some crash.
    assert_eq!(outcomes.len(), 3, "outcomes: {outcomes:?}");
}

#[test]
fn a_defrag_and_a_commit_that_returned_survive_a_power_loss() {
    let dir = tempfile::tempdir().unwrap();
    let image = fragmented_image(dir.path());
    let want = expected(dir.path(), &image);
    let (path, sim, db) = open(dir.path(), "acknowledged.folio", &image);
    db.defrag(&DefragOptions::default()).unwrap();
    commit_after(&db).unwrap();
    drop(db);
    // Whatever the directory looked like, the rename was synced before the defrag returned.
    for dir_state in [DirState::Synced, DirState::Current] {
        let image = sim.crash_image_at(&path, dir_state, None).unwrap();
        let (_, _, db) = open(
            dir.path(),
            &format!("acknowledged-{dir_state:?}.folio"),
            &image,
        );
        assert_eq!(contents(&db), want.after, "directory {dir_state:?}");
        assert!(db.check().unwrap().is_clean());
    }
}

#[test]
fn a_failure_at_any_call_of_a_defrag_leaves_the_database_unchanged_and_poisons_only_in_the_finish()
{
    let dir = tempfile::tempdir().unwrap();
    let image = fragmented_image(dir.path());
    let want = expected(dir.path(), &image);
    for n in 1..=want.defrag_calls {
        let (path, sim, db) = open(dir.path(), &format!("fail-{n}.folio"), &image);
        sim.arm(n, Fault::Fail);
        let err = db
            .defrag(&DefragOptions::default())
            .expect_err("an injected failure must fail the defrag");
        // The injected error itself, whichever thread met it (not the walk's "writer stopped").
        assert!(
            matches!(&err, Error::Io(e) if e.to_string().starts_with("injected failure")),
            "call {n}: {err}"
        );
        assert!(
            !dir.path().join(format!("fail-{n}.folio.defrag")).exists(),
            "call {n}: the new file was left behind"
        );
        assert_eq!(contents(&db), want.before, "call {n}");
        assert!(db.check().unwrap().is_clean(), "call {n}");

        // The finish: the new file's sync, the rename, the directory sync.
        let in_finish = n + 3 > want.defrag_calls;
        match commit_after(&db) {
            Ok(()) => assert!(
                !in_finish,
                "call {n}: a failed finish must poison the database"
            ),
            Err(Error::Poisoned) => assert!(in_finish, "call {n}: poisoned"),
            Err(e) => panic!("call {n}: the commit after a failed defrag failed: {e}"),
        }
        drop(db);
        // A restart: the file the path names now, as the OS shows it.
        let (_, _, db) = open(
            dir.path(),
            &format!("fail-{n}-reopened.folio"),
            &std::fs::read(&path).unwrap(),
        );
        let got = contents(&db);
        assert_eq!(
            got,
            if in_finish {
                want.before.clone()
            } else {
                want.after.clone()
            }
        );
        assert!(db.check().unwrap().is_clean(), "call {n} after a reopen");
    }
}
