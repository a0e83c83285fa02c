//! Corrupted bytes came back as data by default (issue 11, defect 2): `verify_checksums` was off
//! unless asked for, `Store::open` could not turn it on, and a flipped byte of a value was read as
//! the flipped value. Now every read verifies with default options: for a flip of any byte of any
//! page but the two metas (whose damage falls back to the other meta; `tests/db/corruption.rs`), each
//! read through `Db` (get, range, cursor) and `Store` (get, range) gives exactly the undamaged
//! answer or fails with `Error::Corrupted`, never other data.
//!
//! A page is verified once and trusted until the writer rewrites it: the last tests check that a
//! page rewritten after it was verified, and the pages of a defrag's new file, are verified again.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::common::rng::SplitMix64 as Rng;
use folio::{Db, Durability, Error, KeyRange, PageUse, RangeOptions, RangeResponse, Store};

const PAGE_SIZE: u32 = 512;

/// The seed for this run: `FOLIO_FLIP_SEED` if set, else random; printed.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("FOLIO_FLIP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(crate::common::random_seed);
    println!("{test}: seed {seed} (rerun with FOLIO_FLIP_SEED={seed})");
    seed
}

fn value(i: u32) -> Vec<u8> {
    let len = 8 + (i * 37) % 50;
    (0..len).map(|j| b'a' + ((i + j) % 26) as u8).collect()
}

fn big(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|j| (j.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

/// A directory for the flipped copies: in memory where there is a tmpfs (`/dev/shm`), since each
/// open syncs the file and there are tens of thousands of them.
fn flip_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// Calls `test` with the path of a copy of `bytes` in which one byte was flipped, for every byte
/// of every page from page 2 on; returns how many flips it made.
fn for_each_flip(dir: &Path, bytes: &[u8], rng: &mut Rng, mut test: impl FnMut(&Path, String)) {
    let path = dir.join("flipped.folio");
    let page_size = PAGE_SIZE as usize;
    for at in 2 * page_size..bytes.len() {
        let mask = rng.mask();
        let mut copy = bytes.to_vec();
        copy[at] ^= mask;
        std::fs::write(&path, &copy).unwrap();
        let what = format!(
            "byte {} of page {} xor {mask:#04x}",
            at % page_size,
            at / page_size
        );
        test(&path, what);
    }
}

/// Passes `Ok` answers to `check` and lets `Error::Corrupted` through; panics on any other error.
fn or_corrupted<T>(what: &str, step: &str, r: folio::Result<T>, check: impl FnOnce(T)) {
    match r {
        Ok(t) => check(t),
        Err(Error::Corrupted { .. }) => {}
        Err(e) => panic!("{what}: {step} failed with {e:?}, not a corruption"),
    }
}

// ---------------------------------------------------------------------------------------------
// Db
// ---------------------------------------------------------------------------------------------

type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

/// A database at 512-byte pages: two trees, branch pages, two overflow values, and free pages from
/// a second commit. Returns its bytes and its entries.
fn db_fixture(path: &Path) -> (Vec<u8>, BTreeMap<Vec<u8>, Entries>) {
    let db = Db::builder().page_size(PAGE_SIZE).open(path).unwrap();
    let mut model: BTreeMap<Vec<u8>, Entries> = BTreeMap::new();
    let mut tx = db.begin_write().unwrap();
    for i in 0..120 {
        let k = format!("key-{i:04}").into_bytes();
        tx.open_tree(b"t").unwrap().put(&k, &value(i)).unwrap();
        model.entry(b"t".to_vec()).or_default().insert(k, value(i));
    }
    for (k, v) in [(b"blob-a", big(1500, 1)), (b"blob-b", big(700, 2))] {
        tx.open_tree(b"t").unwrap().put(k, &v).unwrap();
        model
            .entry(b"t".to_vec())
            .or_default()
            .insert(k.to_vec(), v);
    }
    for i in 0..5 {
        let k = format!("u-{i}").into_bytes();
        tx.open_tree(b"u").unwrap().put(&k, &value(i)).unwrap();
        model.entry(b"u".to_vec()).or_default().insert(k, value(i));
    }
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    for i in (0..120).step_by(5) {
        let k = format!("key-{i:04}").into_bytes();
        tx.open_tree(b"t").unwrap().delete(&k).unwrap();
        model.get_mut(&b"t"[..]).unwrap().remove(&k);
    }
    tx.commit().unwrap();
    let stats = db.stats().unwrap();
    assert!(
        stats.branch_pages > 0 && stats.overflow_pages > 2 && stats.free_pages > 0,
        "the fixture lacks a kind of page: {stats:?}"
    );
    drop(db);
    (std::fs::read(path).unwrap(), model)
}

/// Reads `db` every way the API offers and checks each answer against `model`.
fn read_db(db: &Db, model: &BTreeMap<Vec<u8>, Entries>, what: &str) {
    let tx = db.begin_read().unwrap();
    or_corrupted(what, "tree_names", tx.tree_names(), |names| {
        assert!(names.iter().eq(model.keys()), "{what}: wrong tree names");
    });
    for (name, entries) in model {
        let tree = match tx.tree(name) {
            Ok(Some(tree)) => tree,
            Ok(None) => panic!("{what}: tree {name:?} missing"),
            Err(Error::Corrupted { .. }) => continue,
            Err(e) => panic!("{what}: tree failed with {e:?}"),
        };
        for (k, v) in entries {
            or_corrupted(what, "get", tree.get(k), |got| {
                assert!(got == Some(v.as_slice()), "{what}: wrong value for {k:?}")
            });
        }
        or_corrupted(what, "get", tree.get(b"key-0005"), |got| {
            assert!(got.is_none(), "{what}: a deleted key came back")
        });
        let keys: Vec<&Vec<u8>> = entries.keys().collect();
        let (a, b) = (
            keys[keys.len() / 4].clone(),
            keys[keys.len() * 3 / 4].clone(),
        );
        type Read<'a> = folio::Result<Vec<(&'a [u8], &'a [u8])>>;
        type Want<'a> = Vec<(&'a Vec<u8>, &'a Vec<u8>)>;
        let reads: [(Read<'_>, Want<'_>); 3] = [
            (tree.iter().collect(), entries.iter().collect()),
            (
                tree.range(a.as_slice()..b.as_slice())
                    .and_then(|r| r.collect()),
                entries.range(a.clone()..b.clone()).collect(),
            ),
            (
                tree.range(a.as_slice()..).and_then(|r| r.rev().collect()),
                entries.range(a.clone()..).rev().collect(),
            ),
        ];
        for (got, want) in reads {
            or_corrupted(what, "range", got, |got| {
                assert!(
                    got.len() == want.len()
                        && got
                            .iter()
                            .zip(&want)
                            .all(|((k, v), (wk, wv))| *k == wk.as_slice() && *v == wv.as_slice()),
                    "{what}: a range read other entries"
                )
            });
        }
        // A cursor: seek, then forward and back again.
        let mut cursor = tree.cursor();
        let mut want = entries.range(b.clone()..);
        let mut seen = Vec::new();
        for i in 0..6 {
            let step = if i == 0 {
                cursor.seek(&b)
            } else {
                cursor.next()
            };
            match step {
                Ok(got) => {
                    let w = want.next();
                    assert!(
                        got == w.map(|(k, v)| (k.as_slice(), v.as_slice())),
                        "{what}: the cursor read other entries"
                    );
                    seen.push(got);
                }
                Err(Error::Corrupted { .. }) => break,
                Err(e) => panic!("{what}: cursor failed with {e:?}"),
            }
        }
        if seen.len() == 6 && seen.iter().all(Option::is_some) {
            for back in seen[..5].iter().rev() {
                match cursor.prev() {
                    Ok(got) => assert!(got == *back, "{what}: the cursor went back elsewhere"),
                    Err(Error::Corrupted { .. }) => break,
                    Err(e) => panic!("{what}: cursor failed with {e:?}"),
                }
            }
        }
    }
}

#[test]
fn with_default_options_a_flipped_byte_anywhere_is_read_by_db_as_the_right_data_or_a_corruption() {
    let mut rng = Rng(seed("db"));
    let dir = flip_dir();
    let (bytes, model) = db_fixture(&dir.path().join("fixture.folio"));
    let (mut flips, mut opened) = (0, 0);
    for_each_flip(dir.path(), &bytes, &mut rng, |path, what| {
        flips += 1;
        match Db::open(path) {
            Ok(db) => {
                opened += 1;
                read_db(&db, &model, &what);
            }
            Err(Error::Corrupted { .. }) => {}
            Err(e) => panic!("{what}: open failed with {e:?}"),
        }
    });
    assert!(flips > 10_000 && opened > flips / 2, "{opened} of {flips}");
}

// ---------------------------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------------------------

fn pod(i: u32) -> Vec<u8> {
    format!("/registry/pods/ns-{}/pod-{i:03}", i % 3).into_bytes()
}

/// The reads compared through a store: each key, everything now, a prefix with a limit, and
/// everything at an older revision.
fn store_reads(store: &Store, keys: &[Vec<u8>], old: i64) -> Vec<folio::Result<RangeResponse>> {
    let mut reads: Vec<_> = keys
        .iter()
        .map(|k| store.range(KeyRange::key(k), RangeOptions::current()))
        .collect();
    reads.push(store.range(KeyRange::all(), RangeOptions::current()));
    reads.push(store.range(
        KeyRange::prefix(b"/registry/pods/ns-1/"),
        RangeOptions::current().limit(4),
    ));
    reads.push(store.range(KeyRange::all(), RangeOptions::at(old)));
    reads
}

#[test]
fn with_default_options_a_flipped_byte_anywhere_is_read_by_store_as_the_right_data_or_a_corruption()
{
    let mut rng = Rng(seed("store"));
    let dir = flip_dir();
    let path = dir.path().join("store.folio");
    let keys: Vec<Vec<u8>> = (0..40).map(pod).chain([b"big".to_vec()]).collect();
    let old = {
        let db = Db::builder()
            .page_size(PAGE_SIZE)
            .durability(Durability::None)
            .open(&path)
            .unwrap();
        let store = Store::with_db(db).unwrap();
        for i in 0..40 {
            store.put(&pod(i), &value(i)).unwrap();
        }
        store.put(b"big", &big(1200, 3)).unwrap();
        let old = store.current_revision();
        for i in (0..40).step_by(3) {
            store.put(&pod(i), &value(i + 1)).unwrap();
        }
        store.delete_range(KeyRange::key(&pod(7))).unwrap();
        store.db().sync().unwrap();
        let stats = store.db().stats().unwrap();
        assert!(
            stats.branch_pages > 0 && stats.overflow_pages > 1,
            "the fixture lacks a kind of page: {stats:?}"
        );
        old
    };
    let bytes = std::fs::read(&path).unwrap();
    let want: Vec<RangeResponse> = {
        let store = Store::open(&path).unwrap();
        store_reads(&store, &keys, old)
            .into_iter()
            .map(Result::unwrap)
            .collect()
    };
    let (mut flips, mut opened) = (0, 0);
    for_each_flip(dir.path(), &bytes, &mut rng, |path, what| {
        flips += 1;
        let store = match Store::open(path) {
            Ok(store) => store,
            Err(Error::Corrupted { .. }) => return,
            Err(e) => panic!("{what}: open failed with {e:?}"),
        };
        opened += 1;
        for (got, want) in store_reads(&store, &keys, old).into_iter().zip(&want) {
            or_corrupted(&what, "range", got, |got| {
                assert!(
                    got == *want,
                    "{what}: read other data: {:?}",
                    got.kvs.first()
                )
            });
        }
    });
    // Opening reads every record (the key index is rebuilt), so most flips in live pages stop it;
    // flips in free pages and the file's tail open.
    assert!(flips > 10_000 && opened > 0, "{opened} of {flips}");
}

// ---------------------------------------------------------------------------------------------
// Verified once, until rewritten
// ---------------------------------------------------------------------------------------------

/// Flips a byte of `needle` where it lies in page `page` of the file at `path`, through the file
/// (the database's mapping sees it), as a disk going bad under an open database would.
fn flip_in_page(path: &Path, page_size: u32, page: u64, needle: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut bytes = vec![0; page_size as usize];
    file.read_exact_at(&mut bytes, page * page_size as u64)
        .unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:?} is not in page {page}"));
    let offset = page * page_size as u64 + (at + needle.len() / 2) as u64;
    file.write_all_at(&[bytes[at + needle.len() / 2] ^ 0x20], offset)
        .unwrap();
}

/// The first page of the newest commit used as `page_use`.
fn first_page_of(db: &Db, page_use: PageUse) -> u64 {
    let map = db.page_map().unwrap();
    map.runs
        .iter()
        .find(|r| r.page_use == page_use)
        .unwrap_or_else(|| panic!("no {page_use:?} page"))
        .start
}

/// A page is trusted once verified, so the writer must forget that it was verified before it
/// writes new bytes there: otherwise a reader would trust new bytes no one has verified. Here a
/// leaf (and an overflow run) is read, freed, and rewritten in place with a new value, and then
/// damaged on disk under the open database; the next read must verify the page again and fail.
#[test]
fn a_page_rewritten_after_a_reader_verified_it_is_verified_again() {
    for (page_use, len) in [(PageUse::Leaf, 20), (PageUse::Overflow, 1500)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reuse.folio");
        let db = Db::builder().page_size(PAGE_SIZE).open(&path).unwrap();
        let value = |round: u32| -> Vec<u8> {
            let mut v = format!("value-{round:04}-").into_bytes();
            v.resize(len, b'a' + (round % 26) as u8);
            v
        };
        let put = |round: u32| {
            let mut tx = db.begin_write().unwrap();
            tx.open_tree(b"t")
                .unwrap()
                .put(b"k", &value(round))
                .unwrap();
            tx.commit().unwrap();
        };
        let get = || -> folio::Result<Vec<u8>> {
            let tx = db.begin_read()?;
            let tree = tx.tree(b"t")?.expect("the tree");
            Ok(tree.get(b"k")?.expect("the key").to_vec())
        };
        put(0);
        let page = first_page_of(&db, page_use);
        assert_eq!(get().unwrap(), value(0), "verifies (and remembers) {page}");
        // Each commit moves the value to a free page; sooner or later back to `page`.
        let round = (1..50)
            .find(|&round| {
                put(round);
                first_page_of(&db, page_use) == page
            })
            .unwrap_or_else(|| panic!("{page_use:?} page {page} was never reused"));
        flip_in_page(
            &path,
            PAGE_SIZE,
            page,
            format!("value-{round:04}").as_bytes(),
        );
        match get() {
            Err(Error::Corrupted { page: p, .. }) => assert_eq!(p, page, "{page_use:?}"),
            other => panic!("{page_use:?} page {page}, rewritten in round {round}: {other:?}"),
        }
    }
}

/// The verified pages belong to one file: a defrag's new file numbers its pages afresh, so what
/// was verified in the old file says nothing about it.
#[test]
fn after_a_defrag_the_new_files_pages_are_verified_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("defrag.folio");
    let db = Db::builder().page_size(PAGE_SIZE).open(&path).unwrap();
    let value = |i: u32| format!("value-{i:04}-padding-padding").into_bytes();
    for round in 0..3 {
        let mut tx = db.begin_write().unwrap();
        let mut t = tx.open_tree(b"t").unwrap();
        for i in (round..300).step_by(3) {
            t.put(format!("key-{i:04}").as_bytes(), &value(i)).unwrap();
        }
        tx.commit().unwrap();
    }
    // Read everything: every page of the old file is verified and remembered.
    let read_all = || -> folio::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let tx = db.begin_read()?;
        let tree = tx.tree(b"t")?.expect("the tree");
        tree.iter()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect()
    };
    let before = read_all().unwrap();
    let old_leaves: Vec<u64> = {
        let map = db.page_map().unwrap();
        map.runs
            .iter()
            .filter(|r| r.page_use == PageUse::Leaf)
            .flat_map(|r| r.start..r.start + r.len)
            .collect()
    };
    db.defrag(&folio::DefragOptions::default()).unwrap();
    // A leaf of the new file at a page number that was a verified leaf in the old one.
    let map = db.page_map().unwrap();
    let page = map
        .runs
        .iter()
        .filter(|r| r.page_use == PageUse::Leaf)
        .flat_map(|r| r.start..r.start + r.len)
        .find(|p| old_leaves.contains(p))
        .expect("a new leaf where an old one was");
    let mut bytes = vec![0; PAGE_SIZE as usize];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut bytes, page * PAGE_SIZE as u64)
        .unwrap();
    let (_, v) = before
        .iter()
        .find(|(_, v)| bytes.windows(v.len()).any(|w| w == v.as_slice()))
        .expect("a value of the leaf");
    flip_in_page(&path, PAGE_SIZE, page, v);
    match read_all() {
        Err(Error::Corrupted { page: p, .. }) => assert_eq!(p, page),
        Err(e) => panic!("new leaf {page}: {e:?}"),
        Ok(entries) => panic!(
            "new leaf {page} damaged, yet {} entries read",
            entries.len()
        ),
    }
}
