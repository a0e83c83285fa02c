//! Corruption an attacker forges: pages with correct checksums whose pointers and counts lie.
//! crc32 is easy to forge, so a page that passes its checksum must still be bounded.
//!
//! What broke:
//! - Writing into a corrupted tree hung or freed a page twice. `touch_path` and `free_all` had no
//!   depth bound and no visited check: a branch pointing at itself made `put` and `delete_tree`
//!   loop forever with memory growing, and two branches sharing a child made `delete_tree` free it
//!   twice, which a release build accepted (only a `debug_assert` in the freelist), after which a
//!   page could be handed out twice.
//! - A meta page with a valid checksum and a forged page count aborted the process: `page_count`
//!   and `catalog_len` were unbounded at decode, `page_count * page_size` wrapped, the length check
//!   passed, and `check` then allocated 2^62 entries; a forged catalog length sized an allocation
//!   in defrag.
//!
//! Each test builds a real database, rewrites one page as an attacker would (sealed with a correct
//! crc32, see `docs/format.md`), and shows the operation returns `Error::Corrupted` (or the open
//! a clear error) and the database stays usable. Operations that used to loop run under a
//! watchdog, so a regression fails the test instead of hanging it.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use folio::{Db, Error, PageBody};

const PAGE: usize = 512;
const META_LEN: usize = 96;

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i:05}-{:08}", i * 7919).into_bytes()
}

fn open(path: &Path) -> Db {
    Db::builder()
        .page_size(PAGE as u32)
        .open(path)
        .expect("open")
}

/// A database at page size 512 with a tree `t` of `keys` entries and a small tree `other`, in two
/// commits.
fn build(keys: u32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forged.folio");
    let db = open(&path);
    let mut tx = db.begin_write().unwrap();
    {
        let mut t = tx.open_tree(b"t").unwrap();
        for i in 0..keys {
            t.put(&key(i), &value(i)).unwrap();
        }
    }
    tx.commit().unwrap();
    // A second commit, so that both meta slots hold the trees.
    let mut tx = db.begin_write().unwrap();
    tx.open_tree(b"other").unwrap().put(b"a", b"1").unwrap();
    tx.commit().unwrap();
    assert!(db.check().unwrap().is_clean());
    (dir, path)
}

/// The root page of tree `name`, read through the page dumps (meta, catalog leaf).
fn root_of(db: &Db, name: &[u8]) -> u64 {
    let current = [0, 1]
        .into_iter()
        .find_map(|slot| match db.dump_page(slot).unwrap().body {
            PageBody::Meta(m) if m.current => Some(m),
            _ => None,
        })
        .expect("a current meta");
    let PageBody::Leaf(entries) = db.dump_page(current.catalog_root).unwrap().body else {
        panic!("a catalog of two trees is one leaf")
    };
    let entry = entries.iter().find(|e| e.key == name).expect("tree listed");
    let folio::LeafValue::Inline(raw) = &entry.value else {
        panic!("descriptor inline")
    };
    u64::from_le_bytes(raw[..8].try_into().unwrap())
}

/// The entries of branch page `id`.
fn branch(db: &Db, id: u64) -> Vec<(Vec<u8>, u64)> {
    match db.dump_page(id).unwrap().body {
        PageBody::Branch(entries) => entries.into_iter().map(|e| (e.key, e.child)).collect(),
        other => panic!("page {id} is not a branch: {other:?}"),
    }
}

/// Stores a correct crc32 in the header of the run of `len` bytes at `offset`.
fn seal(bytes: &mut [u8], offset: usize, len: usize) {
    let run = &mut bytes[offset..offset + len];
    run[16..20].fill(0);
    let crc = crc32fast::hash(run);
    run[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// Rewrites page `id` of the file as a branch holding `entries`, sealed (see `docs/format.md`).
fn forge_branch(path: &Path, id: u64, entries: &[(Vec<u8>, u64)]) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = id as usize * PAGE;
    let page = &mut bytes[at..at + PAGE];
    page.fill(0);
    page[0..8].copy_from_slice(&id.to_le_bytes());
    page[8] = 2; // branch
    page[10..12].copy_from_slice(&(entries.len() as u16).to_le_bytes());
    let mut off = 24 + 2 * entries.len();
    for (i, (k, child)) in entries.iter().enumerate() {
        page[24 + 2 * i..26 + 2 * i].copy_from_slice(&(off as u16).to_le_bytes());
        page[off..off + 8].copy_from_slice(&child.to_le_bytes());
        page[off + 8..off + 10].copy_from_slice(&(k.len() as u16).to_le_bytes());
        page[off + 10..off + 10 + k.len()].copy_from_slice(k);
        off += 10 + k.len();
    }
    seal(&mut bytes, at, PAGE);
    std::fs::write(path, bytes).unwrap();
}

/// Runs `f` on its own thread and returns what it returns; fails the test if it has not returned
/// after a generous while, which means it loops (the thread is left behind).
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what} did not return: it loops on a corrupted tree"))
}

fn assert_corrupted<T: std::fmt::Debug>(what: &str, r: folio::Result<T>) {
    match r {
        Err(Error::Corrupted { .. }) => {}
        other => panic!("{what}: expected Error::Corrupted, got {other:?}"),
    }
}

/// The database still reads, and still takes a commit to a sound tree.
fn assert_still_usable(db: &Db, readable: &[u8]) {
    let tx = db.begin_read().unwrap();
    let t = tx.tree(b"t").unwrap().expect("tree t");
    assert!(
        t.get(readable).unwrap().is_some(),
        "a key under a sound child"
    );
    drop(tx);
    let mut tx = db.begin_write().unwrap();
    tx.open_tree(b"other").unwrap().put(b"b", b"2").unwrap();
    tx.commit().unwrap();
    let tx = db.begin_read().unwrap();
    let other = tx.tree(b"other").unwrap().unwrap();
    assert_eq!(other.get(b"b").unwrap(), Some(&b"2"[..]));
    // The checker finishes and reports the forgery.
    assert!(!db.check().unwrap().is_clean());
}

#[test]
fn a_branch_that_points_at_itself_makes_put_delete_and_delete_tree_corrupted_not_endless() {
    let (_dir, path) = build(200);
    let db = open(&path);
    let root = root_of(&db, b"t");
    let mut entries = branch(&db, root);
    assert!(entries.len() >= 3, "a two-level tree");
    entries[0].1 = root;
    drop(db);
    forge_branch(&path, root, &entries);

    let db = open(&path);
    let d = db.clone();
    assert_corrupted(
        "put under the looping child",
        bounded("put", move || {
            let mut tx = d.begin_write()?;
            tx.open_tree(b"t")?.put(&key(0), b"new")
        }),
    );
    let d = db.clone();
    assert_corrupted(
        "delete under the looping child",
        bounded("delete", move || {
            let mut tx = d.begin_write()?;
            tx.open_tree(b"t")?.delete(&key(0))
        }),
    );
    let d = db.clone();
    assert_corrupted(
        "delete_tree",
        bounded("delete_tree", move || d.begin_write()?.delete_tree(b"t")),
    );
    let d = db.clone();
    assert_corrupted(
        "a range over the tree",
        bounded("range", move || {
            let tx = d.begin_read()?;
            let t = tx.tree(b"t")?.expect("tree t");
            t.iter()
                .map(|e| e.map(|_| ()))
                .collect::<folio::Result<Vec<_>>>()
        }),
    );
    assert_still_usable(&db, &entries[1].0);
}

/// A three-level tree whose second branch's first child is forged to be the first branch's first
/// leaf: one leaf under two parents. Returns the key that routes to the leaf through the second
/// branch, and a key under a sound child.
fn share_a_leaf(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let db = open(path);
    let root = root_of(&db, b"t");
    let top = branch(&db, root);
    assert!(top.len() >= 2, "a three-level tree");
    let first = branch(&db, top[0].1);
    let mut second = branch(&db, top[1].1);
    let (routed, sound) = (second[0].0.clone(), second[1].0.clone());
    second[0].1 = first[0].1;
    drop(db);
    forge_branch(path, top[1].1, &second);
    (routed, sound)
}

#[test]
fn two_branches_sharing_a_child_make_delete_tree_corrupted_instead_of_freeing_it_twice() {
    let (_dir, path) = build(800);
    let (routed, sound) = share_a_leaf(&path);
    let db = open(&path);
    let d = db.clone();
    assert_corrupted(
        "delete_tree",
        bounded("delete_tree", move || d.begin_write()?.delete_tree(b"t")),
    );
    // Both paths to the shared leaf in one transaction copy it twice: the second put is refused
    // rather than the page freed twice at commit.
    let d = db.clone();
    assert_corrupted(
        "a put reaching the shared leaf by its second parent",
        bounded("put", move || {
            let mut tx = d.begin_write()?;
            let mut t = tx.open_tree(b"t")?;
            t.put(&key(0), b"through the first parent")?;
            t.put(&routed, b"through the second parent")
        }),
    );
    assert_still_usable(&db, &sound);
}

#[test]
fn after_a_refused_double_free_every_page_is_handed_out_once() {
    let (_dir, path) = build(800);
    share_a_leaf(&path);
    let db = open(&path);
    assert_corrupted("delete_tree", db.begin_write().unwrap().delete_tree(b"t"));
    // Commits that free and reuse pages: each leaves a freelist whose extents are disjoint (the
    // decoder refuses overlaps) and a tree `other` that checks clean on its own pages.
    for round in 0..20u32 {
        let mut tx = db.begin_write().unwrap();
        let mut other = tx.open_tree(b"other").unwrap();
        for i in 0..50 {
            other.put(&key(i), &value(i + round)).unwrap();
        }
        tx.commit().unwrap();
    }
    let report = db.check().unwrap();
    assert!(
        report
            .problems
            .iter()
            .all(|p| !p.message.contains("both in use and free")),
        "a page both in use and free: {report}"
    );
    drop(db);
    let db = open(&path);
    let tx = db.begin_read().unwrap();
    let other = tx.tree(b"other").unwrap().unwrap();
    assert_eq!(other.get(&key(49)).unwrap(), Some(&value(49 + 19)[..]));
}

// ---------------------------------------------------------------------------------------------
// Forged meta pages
// ---------------------------------------------------------------------------------------------

const OFF_TXID: usize = 40;
const OFF_CATALOG: usize = 48;
const OFF_FREELIST: usize = 56;
const OFF_PAGE_COUNT: usize = 64;
const OFF_CATALOG_LEN: usize = 72;

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// The offset of the newest meta slot in a file's bytes.
fn newest_meta(bytes: &[u8]) -> usize {
    if u64_at(bytes, OFF_TXID) > u64_at(bytes, PAGE + OFF_TXID) {
        0
    } else {
        PAGE
    }
}

/// The file at `path` with `field` of both meta slots (or only the newest) set to `value`,
/// resealed, written to a new file beside it.
fn forge_meta(path: &Path, name: &str, field: usize, value: u64, both: bool) -> PathBuf {
    let mut bytes = std::fs::read(path).unwrap();
    let newest = newest_meta(&bytes) / PAGE;
    for slot in [0, 1] {
        if both || slot == newest {
            let at = slot * PAGE;
            bytes[at + field..at + field + 8].copy_from_slice(&value.to_le_bytes());
            seal(&mut bytes, at, META_LEN);
        }
    }
    let out = path.with_file_name(name);
    std::fs::write(&out, bytes).unwrap();
    out
}

fn open_err(path: &Path) -> Error {
    match Db::open(path) {
        Ok(_) => panic!("{}: opened", path.display()),
        Err(e) => e,
    }
}

#[test]
fn a_meta_with_a_forged_page_count_that_wraps_is_refused_and_the_other_meta_is_used() {
    let (_dir, path) = build(50);
    // 2^55 pages of 512 bytes is 2^64 bytes: the product wraps to the file's own length.
    let bytes = std::fs::read(&path).unwrap();
    let wraps = (1u64 << 55) + u64_at(&bytes, newest_meta(&bytes) + OFF_PAGE_COUNT);
    let both = forge_meta(&path, "both.folio", OFF_PAGE_COUNT, wraps, true);
    let err = open_err(&both);
    assert!(
        matches!(&err, Error::MetaDamaged { first, .. } if first.contains("page count")),
        "{err:?}"
    );
    let newest = forge_meta(&path, "newest.folio", OFF_PAGE_COUNT, wraps, false);
    let db = Db::open(&newest).expect("opens on the other meta");
    assert!(db.check().unwrap().is_clean());
    let tx = db.begin_read().unwrap();
    assert!(tx.tree(b"t").unwrap().is_some());
}

#[test]
fn a_meta_with_a_page_count_past_the_file_is_truncated_with_the_size_it_names() {
    let (_dir, path) = build(50);
    let forged = forge_meta(&path, "far.folio", OFF_PAGE_COUNT, 1 << 40, false);
    let err = open_err(&forged);
    let len = std::fs::metadata(&forged).unwrap().len();
    assert!(
        matches!(err, Error::Truncated { expected, actual } if expected == (1 << 40) * PAGE as u64 && actual == len),
        "{err:?}"
    );
}

#[test]
fn a_meta_with_a_forged_catalog_length_is_refused_before_anything_is_sized_by_it() {
    let (_dir, path) = build(50);
    for (name, len) in [("max.folio", u64::MAX), ("large.folio", 1 << 40)] {
        let forged = forge_meta(&path, name, OFF_CATALOG_LEN, len, true);
        let err = open_err(&forged);
        assert!(
            matches!(&err, Error::MetaDamaged { first, second } if first.contains("catalog length") && second.contains("catalog length")),
            "{name}: {err:?}"
        );
    }
    // A wrong count within bounds opens; check reports it and defrag refuses to copy.
    let forged = forge_meta(&path, "wrong.folio", OFF_CATALOG_LEN, 7, true);
    let db = Db::open(&forged).unwrap();
    let report = db.check().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.message.contains("catalog holds 2 trees")),
        "{report}"
    );
    assert_corrupted("defrag", db.defrag(&folio::DefragOptions::default()));
}

#[test]
fn a_meta_whose_catalog_or_freelist_root_lies_outside_the_pages_is_refused() {
    let (_dir, path) = build(50);
    let bytes = std::fs::read(&path).unwrap();
    let page_count = u64_at(&bytes, newest_meta(&bytes) + OFF_PAGE_COUNT);
    for (field, what) in [(OFF_CATALOG, "catalog"), (OFF_FREELIST, "freelist")] {
        for (i, root) in [1, page_count, u64::MAX].into_iter().enumerate() {
            let name = format!("{what}-{i}.folio");
            let forged = forge_meta(&path, &name, field, root, true);
            let err = open_err(&forged);
            assert!(
                matches!(&err, Error::MetaDamaged { first, .. } if first.contains("out of range")),
                "{name}: {err:?}"
            );
        }
    }
}

#[test]
fn a_freelist_page_with_forged_counts_is_a_corruption_at_open() {
    let (_dir, path) = build(50);
    // A second commit frees pages, so the newest meta has a freelist.
    let db = open(&path);
    let mut tx = db.begin_write().unwrap();
    tx.open_tree(b"t").unwrap().put(&key(0), b"again").unwrap();
    tx.commit().unwrap();
    drop(db);
    let bytes = std::fs::read(&path).unwrap();
    let newest = newest_meta(&bytes);
    let freelist = u64_at(&bytes, newest + OFF_FREELIST) as usize;
    assert_ne!(freelist, 0);
    // (offset in the freelist page, value): the extent count of a full list or the link of a
    // delta (whichever the head is), and the run length in the header.
    for (i, (off, bytes_len, forged)) in [(24, 8, u64::MAX), (12, 4, u32::MAX as u64)]
        .into_iter()
        .enumerate()
    {
        let mut image = bytes.clone();
        let at = freelist * PAGE;
        image[at + off..at + off + bytes_len].copy_from_slice(&forged.to_le_bytes()[..bytes_len]);
        seal(&mut image, at, PAGE);
        let out = path.with_file_name(format!("freelist-{i}.folio"));
        std::fs::write(&out, image).unwrap();
        let err = open_err(&out);
        assert!(
            matches!(&err, Error::Corrupted { page, .. } if *page as usize == freelist),
            "freelist forgery {i}: {err:?}"
        );
    }
}
