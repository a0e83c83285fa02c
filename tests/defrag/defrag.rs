//! Defrag: the new file holds exactly what the old one did, packed, with no free pages; readers
//! that began before an online defrag read their snapshot to the end; writers commit during it; the
//! options, the report and the errors of the offline call.
//!
//! The model test runs random operation streams over three trees (small and overflow values,
//! deletes, a deleted tree) at 512-byte pages, defrags, and compares every tree with a `BTreeMap`.
//! It prints its seed; rerun with `PROPTEST_RNG_SEED=<seed> cargo test --test defrag`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::common::{Contents, contents};
use folio::{
    Db, DefragOptions, DefragProgress, Durability, Error, KeyRange, RangeOptions, Store, Tree,
};
use proptest::prelude::*;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;
type Model = Contents;

const PAGE_SIZE: u32 = 512;

fn entries(tree: &Tree<'_>) -> Map {
    tree.iter()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap()
}

fn assert_clean(db: &Db, context: &str) {
    let report = db.check().unwrap();
    assert!(report.is_clean(), "{context}: {report}");
}

/// The file after a defrag is exactly its live pages: no free pages, no tail, nothing else.
fn assert_packed(db: &Db, path: &Path, context: &str) {
    let stats = db.stats().unwrap();
    let file = std::fs::metadata(path).unwrap().len();
    assert_eq!(stats.free_pages, 0, "{context}: free pages after a defrag");
    assert_eq!(
        stats.freelist_pages, 0,
        "{context}: a freelist after a defrag"
    );
    assert_eq!(stats.file_bytes, file, "{context}");
    assert_eq!(
        stats.live_bytes(),
        file,
        "{context}: the file is not its live pages"
    );
    assert_eq!(stats.reclaimable_bytes(), 0, "{context}");
}

fn value(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i as u8).wrapping_mul(29)))
        .collect()
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u16, usize, u8),
    Delete(u8, u16),
    DeleteTree(u8),
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3u8, 0..400u16, prop_oneof![4 => 0..120usize, 1 => 200..3000usize], any::<u8>())
            .prop_map(|(t, k, len, seed)| Op::Put(t, k, len, seed)),
        3 => (0..3u8, 0..400u16).prop_map(|(t, k)| Op::Delete(t, k)),
        1 => Just(Op::Commit),
        1 => (0..3u8).prop_map(Op::DeleteTree),
    ]
}

fn tree_name(t: u8) -> Vec<u8> {
    format!("tree-{t}").into_bytes()
}

fn key(k: u16) -> Vec<u8> {
    format!("key-{k:05}").into_bytes()
}

/// Runs `ops` against `db` and `model`, committing at each `Commit` and at the end.
fn run(db: &Db, model: &mut Model, ops: &[Op]) {
    let mut tx = db.begin_write().unwrap();
    for op in ops {
        match op {
            Op::Put(t, k, len, seed) => {
                let v = value(*len, *seed);
                tx.open_tree(&tree_name(*t))
                    .unwrap()
                    .put(&key(*k), &v)
                    .unwrap();
                model.entry(tree_name(*t)).or_default().insert(key(*k), v);
            }
            Op::Delete(t, k) => {
                if let Some(mut tree) = tx.tree(&tree_name(*t)).unwrap() {
                    tree.delete(&key(*k)).unwrap();
                    model.get_mut(&tree_name(*t)).unwrap().remove(&key(*k));
                }
            }
            Op::DeleteTree(t) => {
                tx.delete_tree(&tree_name(*t)).unwrap();
                model.remove(&tree_name(*t));
            }
            Op::Commit => {
                tx.commit().unwrap();
                tx = db.begin_write().unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

fn small_db(path: &Path) -> Db {
    Db::builder()
        .page_size(PAGE_SIZE)
        .durability(Durability::None)
        .open(path)
        .unwrap()
}

proptest! {
    #![proptest_config(crate::common::proptest_config("defrag_model", 48))]

    #[test]
    fn a_defragged_file_holds_exactly_the_same_trees_packed_with_no_free_pages(
        ops in prop::collection::vec(op(), 1..600),
        more in prop::collection::vec(op(), 0..100),
        fill in prop_oneof![Just(1.0), 0.5..1.0f64],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.folio");
        let db = small_db(&path);
        let mut model = Model::new();
        run(&db, &mut model, &ops);
        let before = db.stats().unwrap();

        let report = db.defrag(&DefragOptions::default().fill(fill)).unwrap();
        prop_assert_eq!(contents(&db), model.clone());
        assert_clean(&db, "after the defrag");
        if fill == 1.0 {
            assert_packed(&db, &path, "after the defrag");
        }
        prop_assert_eq!(report.size_before, before.file_bytes);
        prop_assert_eq!(report.size_after, std::fs::metadata(&path).unwrap().len());
        prop_assert_eq!(report.live_bytes, before.live_bytes());
        prop_assert_eq!(report.pages_written * PAGE_SIZE as u64, report.size_after);

        // Writes go on in the new file, and a reopen finds it.
        run(&db, &mut model, &more);
        prop_assert_eq!(contents(&db), model.clone());
        assert_clean(&db, "after writes that follow the defrag");
        drop(db);
        let db = small_db(&path);
        prop_assert_eq!(contents(&db), model);
        assert_clean(&db, "after a reopen");
    }
}

#[test]
fn a_packed_file_is_no_larger_than_the_live_pages_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grow.folio");
    let db = small_db(&path);
    let mut model = Model::new();
    // Many small commits of random-order keys leave leaves half full and the file full of holes.
    for round in 0..40u16 {
        let ops: Vec<Op> = (0..50u16)
            .map(|i| {
                Op::Put(
                    (i % 2) as u8,
                    (i * 37 + round * 101) % 2000,
                    40,
                    round as u8,
                )
            })
            .chain((0..20u16).map(|i| Op::Delete(0, (i * 53 + round * 7) % 2000)))
            .collect();
        run(&db, &mut model, &ops);
    }
    let before = db.stats().unwrap();
    let report = db.defrag(&DefragOptions::default()).unwrap();
    let after = db.stats().unwrap();
    assert_eq!(contents(&db), model);
    assert_packed(&db, &path, "after the defrag");
    assert!(
        report.size_after < before.live_bytes(),
        "packing should shrink the live pages: {} before, {} after",
        before.live_bytes(),
        report.size_after
    );
    for (b, a) in before.trees.iter().zip(&after.trees) {
        assert_eq!((&b.name, b.len), (&a.name, a.len));
        assert!(
            a.fill(PAGE_SIZE) > 0.9,
            "tree {:?} is {:.2} full after a defrag at fill 1.0",
            String::from_utf8_lossy(&a.name),
            a.fill(PAGE_SIZE)
        );
    }
}

#[test]
fn an_empty_database_and_an_empty_tree_survive_a_defrag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.folio");
    let db = small_db(&path);
    db.defrag(&DefragOptions::default()).unwrap();
    assert_eq!(contents(&db), Model::new());
    assert_packed(&db, &path, "an empty database");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        2 * PAGE_SIZE as u64
    );

    let mut tx = db.begin_write().unwrap();
    tx.open_tree(b"empty").unwrap();
    tx.open_tree(b"one").unwrap().put(b"k", b"v").unwrap();
    tx.commit().unwrap();
    db.defrag(&DefragOptions::default()).unwrap();
    let want: Model = [
        (b"empty".to_vec(), Map::new()),
        (b"one".to_vec(), [(b"k".to_vec(), b"v".to_vec())].into()),
    ]
    .into();
    assert_eq!(contents(&db), want);
    assert_packed(&db, &path, "one empty tree and one small one");
}

#[test]
fn a_reader_that_began_before_an_online_defrag_reads_its_snapshot_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reader.folio");
    let db = small_db(&path);
    let mut model = Model::new();
    let ops: Vec<Op> = (0..1500u16)
        .map(|i| Op::Put((i % 3) as u8, i % 700, (i as usize * 7) % 150, i as u8))
        .chain((0..700u16).step_by(3).map(|i| Op::Delete(1, i)))
        .collect();
    run(&db, &mut model, &ops);

    let old = db.begin_read().unwrap();
    let old_tree = old.tree(&tree_name(0)).unwrap().unwrap();
    let mut iter = old_tree.iter();
    let first: Vec<_> = iter.by_ref().take(10).map(|e| e.unwrap()).collect();

    db.defrag(&DefragOptions::default()).unwrap();
    // The writer reuses the new file's pages freely while the old reader is still open.
    let mut newer = model.clone();
    run(
        &db,
        &mut newer,
        &(0..700u16)
            .map(|i| Op::Put(0, i, 90, 0xee))
            .collect::<Vec<_>>(),
    );

    let rest: Vec<_> = iter.map(|e| e.unwrap()).collect();
    let seen: Map = first
        .into_iter()
        .chain(rest)
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    assert_eq!(
        &seen,
        &model[&tree_name(0)],
        "the old reader's snapshot changed"
    );
    for name in old.tree_names().unwrap() {
        let tree = old.tree(&name).unwrap().unwrap();
        assert_eq!(entries(&tree), model[&name]);
    }
    drop(old);
    assert_eq!(contents(&db), newer);
    assert_clean(&db, "after the defrag and the writes that followed");
}

#[test]
/// Writers no longer wait for the copy (they did before the defrag went online): they commit to
/// the old file while it runs and every commit is in the new file after it.
fn writers_commit_during_online_defrags_and_every_commit_lands_in_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("writer.folio");
    let db = Db::builder().page_size(PAGE_SIZE).open(&path).unwrap();
    let mut model = Model::new();
    let ops: Vec<Op> = (0..3000u16)
        .map(|i| Op::Put((i % 2) as u8, i % 900, 60, i as u8))
        .collect();
    run(&db, &mut model, &ops);

    let writes = 200u16;
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0..writes {
                let mut tx = db.begin_write().unwrap();
                tx.open_tree(b"during").unwrap().put(&key(i), b"w").unwrap();
                tx.commit().unwrap();
            }
        });
        for _ in 0..3 {
            db.defrag(&DefragOptions::default()).unwrap();
        }
        writer.join().unwrap();
    });
    let got = contents(&db);
    assert_eq!(got[&b"during".to_vec()].len(), writes as usize);
    for (name, map) in &model {
        assert_eq!(&got[name], map);
    }
    assert_clean(&db, "after defrags beside a writer");
    drop(db);
    let db = Db::open(&path).unwrap();
    assert_eq!(contents(&db), got);
}

#[test]
fn a_store_keeps_every_revision_and_hash_through_a_defrag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.folio");
    let store = Store::open(&path).unwrap();
    for round in 0..6u32 {
        for i in 0..300u32 {
            let k = format!("/registry/pods/ns-{}/pod-{i:04}", i % 7);
            store
                .put(
                    k.as_bytes(),
                    &value(100 + (i as usize * 13) % 2000, round as u8),
                )
                .unwrap();
        }
        let start = format!("/registry/pods/ns-{round}/");
        store
            .delete_range(KeyRange::prefix(start.as_bytes()))
            .unwrap();
    }
    let compact_at = store.current_revision() - 500;
    store.compact(compact_at).unwrap();
    let current = store.current_revision();
    let at = |store: &Store, rev: i64| {
        store
            .range(KeyRange::all(), RangeOptions::at(rev))
            .unwrap()
            .kvs
    };
    let revs: Vec<i64> = (compact_at..=current)
        .step_by(37)
        .chain([current])
        .collect();
    let before: Vec<_> = revs.iter().map(|&r| at(&store, r)).collect();
    let hash_before = store.hash_by_rev(current).unwrap();
    let keys_before = crate::common::key_tree_len(store.db());

    let report = store.defrag(&DefragOptions::default()).unwrap();
    assert!(report.size_after < report.size_before);
    assert_packed(store.db(), &path, "the store after a defrag");
    assert_eq!(crate::common::key_tree_len(store.db()), keys_before);
    assert_eq!(store.hash_by_rev(current).unwrap(), hash_before);
    for (r, want) in revs.iter().zip(&before) {
        assert_eq!(&at(&store, *r), want, "revision {r}");
    }
    let next = store.put(b"/registry/after", b"defrag").unwrap();
    assert_eq!(next, current + 1);
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.current_revision(), next);
    assert_eq!(store.compacted_revision(), compact_at);
    assert_eq!(store.hash_by_rev(current).unwrap().hash, hash_before.hash);
    for (r, want) in revs.iter().zip(&before) {
        assert_eq!(&at(&store, *r), want, "revision {r} after a reopen");
    }
}

#[test]
fn progress_counts_every_source_page_once_and_ends_at_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("progress.folio");
    let db = small_db(&path);
    let mut model = Model::new();
    // More source pages than one progress interval (2048), so that progress is reported before
    // the end as well as at it.
    let ops: Vec<Op> = (0..20_000u16)
        .map(|i| {
            Op::Put(
                (i % 3) as u8,
                i % 15_000,
                if i % 50 == 0 { 2000 } else { 30 },
                i as u8,
            )
        })
        .collect();
    run(&db, &mut model, &ops);
    let stats = db.stats().unwrap();
    let seen: Arc<Mutex<Vec<DefragProgress>>> = Arc::default();
    let log = seen.clone();
    db.defrag(&DefragOptions::default().progress(move |p| log.lock().unwrap().push(p)))
        .unwrap();
    let seen = seen.lock().unwrap();
    let tree_pages = stats.branch_pages + stats.leaf_pages + stats.overflow_pages;
    assert!(seen.len() >= 2, "progress reported {} times", seen.len());
    assert!(seen.windows(2).all(|w| w[0].pages_done <= w[1].pages_done));
    assert!(seen.iter().all(|p| p.pages_total == tree_pages));
    assert_eq!(seen.last().unwrap().pages_done, tree_pages);
}

#[test]
fn the_page_cache_is_warmed_before_the_swap_unless_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warm.folio");
    let db = small_db(&path);
    let mut model = Model::new();
    let ops: Vec<Op> = (0..3000u16)
        .map(|i| Op::Put((i % 2) as u8, i % 1000, 300, i as u8))
        .collect();
    run(&db, &mut model, &ops);
    // A small file fits in memory, so the default warms it.
    let warmed = db.defrag(&DefragOptions::default()).unwrap();
    assert!(warmed.warm.is_some(), "{warmed}");
    assert!(warmed.to_string().contains("page cache warmed"), "{warmed}");
    let cold = db
        .defrag(&DefragOptions::default().warm_cache(false))
        .unwrap();
    assert_eq!(cold.warm, None);
    assert_eq!(contents(&db), model);
    assert!(db.check().unwrap().is_clean());
}

#[test]
fn a_fill_outside_half_to_full_or_a_pace_of_zero_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fill.folio");
    let db = small_db(&path);
    let mut model = Model::new();
    run(&db, &mut model, &[Op::Put(0, 1, 10, 1)]);
    let len = std::fs::metadata(&path).unwrap().len();
    for fill in [0.49, 1.01, f64::NAN] {
        let err = db.defrag(&DefragOptions::default().fill(fill)).unwrap_err();
        assert!(matches!(err, Error::InvalidOption(_)), "fill {fill}: {err}");
    }
    let err = db
        .defrag(&DefragOptions::default().pace(Some(0)))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "pace 0: {err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    assert_eq!(contents(&db), model);
}

#[test]
fn offline_defrag_refuses_a_missing_file_without_creating_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.folio");
    let err = folio::defrag(&path, &DefragOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
    assert!(!path.exists());
}

#[test]
fn offline_defrag_refuses_a_file_another_handle_has_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.folio");
    let db = small_db(&path);
    let mut model = Model::new();
    run(&db, &mut model, &[Op::Put(0, 1, 10, 1)]);
    let err = folio::defrag(&path, &DefragOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Locked), "{err}");
    assert_eq!(contents(&db), model);
    drop(db);

    let report = folio::defrag(&path, &DefragOptions::default()).unwrap();
    assert_eq!(report.size_after, std::fs::metadata(&path).unwrap().len());
    let db = small_db(&path);
    assert_eq!(contents(&db), model);
    assert_packed(&db, &path, "after an offline defrag");
}

#[test]
fn a_leftover_defrag_file_is_removed_on_open_and_the_database_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leftover.folio");
    let leftover = dir.path().join("leftover.folio.defrag");
    let mut model = Model::new();
    {
        let db = small_db(&path);
        run(
            &db,
            &mut model,
            &[Op::Put(0, 1, 10, 1), Op::Put(1, 2, 900, 2)],
        );
    }
    std::fs::write(&leftover, b"half of a defragged file").unwrap();
    let db = small_db(&path);
    assert!(!leftover.exists(), "the leftover is still there");
    assert_eq!(contents(&db), model);
    assert_clean(&db, "after removing a leftover");
}

#[test]
fn a_corrupt_source_page_stops_the_defrag_and_leaves_the_database_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.folio");
    let mut model = Model::new();
    {
        let db = small_db(&path);
        let ops: Vec<Op> = (0..2000u16).map(|i| Op::Put(0, i, 50, i as u8)).collect();
        run(&db, &mut model, &ops);
    }
    // A first defrag packs the file, so every page in it is live; then a byte flips in the middle
    // of a leaf, and its checksum fails.
    folio::defrag(&path, &DefragOptions::default()).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let page = PAGE_SIZE as usize;
    let leaves: Vec<usize> = (2..bytes.len() / page)
        .filter(|p| bytes[p * page + 8] == 3)
        .collect();
    let victim = leaves[leaves.len() / 2];
    bytes[victim * page + 300] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    let victim = victim as u64;

    let err = folio::defrag(&path, &DefragOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::Corrupted { page, .. } if page == victim),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file changed");
    assert!(!dir.path().join("corrupt.folio.defrag").exists());
}

#[test]
fn runs_around_the_write_buffer_size_are_copied_whole_at_every_page_size() {
    // The defrag gathers pages in buffers of DEFRAG_WRITE_LEN; an overflow run goes into the
    // buffer when it fits (after flushing a buffer it would overflow), or straight from the source
    // when it is larger than a buffer. Runs one page under, at, one page over and two buffers past
    // the size, between runs of small entries, take each path; the smallest, middle and largest
    // page sizes put the runs at aligned and unaligned file offsets. Paced, every write is cut
    // into pieces of DEFRAG_PACE_PIECE, which must land at the same offsets.
    let buffer = folio::limits::DEFRAG_WRITE_LEN;
    let paces = [None, Some(4u64 << 30)];
    for (page_size, pace) in [512u32, 4096, 32768]
        .into_iter()
        .flat_map(|p| paces.map(|pace| (p, pace)))
    {
        let ps = page_size as usize;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.folio");
        let db = Db::builder().page_size(page_size).open(&path).unwrap();
        let runs = [buffer - ps, buffer, buffer + ps, 2 * buffer + ps, 3 * ps];
        // A run of n bytes holds a value of n bytes less the one page header.
        let lens: Vec<usize> = runs
            .iter()
            .map(|r| r - folio::limits::PAGE_HEADER_LEN)
            .collect();
        let mut tx = db.begin_write().unwrap();
        let mut t = tx.open_tree(b"t").unwrap();
        for (i, &len) in lens.iter().enumerate() {
            for j in 0..i * 37 + 5 {
                t.put(format!("a{i}-{j:04}").as_bytes(), &value(60, j as u8))
                    .unwrap();
            }
            t.put(format!("b{i}").as_bytes(), &value(len, i as u8))
                .unwrap();
        }
        tx.commit().unwrap();
        db.defrag(&DefragOptions::default().pace(pace)).unwrap();
        assert_packed(&db, &path, &format!("page size {ps}, pace {pace:?}"));
        let same = |db: &Db, when: &str| {
            let tx = db.begin_read().unwrap();
            let t = tx.tree(b"t").unwrap().unwrap();
            for (i, &len) in lens.iter().enumerate() {
                let got = t.get(format!("b{i}").as_bytes()).unwrap();
                assert!(
                    got == Some(&value(len, i as u8)[..]),
                    "page size {ps}, pace {pace:?}, {when}: the run of {} bytes changed",
                    runs[i]
                );
                for j in 0..i * 37 + 5 {
                    let small = t.get(format!("a{i}-{j:04}").as_bytes()).unwrap();
                    assert_eq!(small, Some(&value(60, j as u8)[..]), "page size {ps}");
                }
            }
            drop(tx);
            assert_clean(db, &format!("page size {ps}, {when}"));
        };
        same(&db, "after the defrag");
        drop(db);
        same(&Db::open(&path).unwrap(), "after a reopen");
    }
}

#[test]
fn a_defrag_keeps_the_file_mode_and_replaces_the_file_a_symlink_points_to() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.folio");
    let link = dir.path().join("link.folio");
    let mut model = Model::new();
    {
        let db = small_db(&real);
        run(
            &db,
            &mut model,
            &[Op::Put(0, 1, 10, 1), Op::Put(0, 2, 900, 2)],
        );
    }
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();

    folio::defrag(&link, &DefragOptions::default()).unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the symlink was replaced by a file"
    );
    let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the defragged file's mode");
    let db = small_db(&real);
    assert_eq!(contents(&db), model);
    assert_packed(&db, &real, "the file behind the symlink");
}
