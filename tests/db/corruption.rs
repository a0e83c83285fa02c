//! Damage on disk. A flipped byte in any page is reported as a corruption naming that page (or the
//! first page of the run holding it); read with checksums verified it is never a wrong value; and
//! whatever it hits, opening, checking and reading never panic. A truncated file, an empty file, a
//! file that is not a folio database, a file with both meta pages damaged, a file from a newer
//! format version and a file already open each give their own error, in a clear sentence.
//!
//! To know which pages a flip should be noticed in, the test reads the layout of the undamaged
//! file itself (`docs/format.md`): the newest meta, the freelist run, and the run each live page
//! belongs to. Every page below the allocation frontier that is not free is live.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::data::{big, key, value};
use crate::common::{Contents, read_contents};
use folio::{Db, Error};

const PAGE_SIZE: usize = 512;
/// Bytes of a meta page covered by its checksum.
const META_LEN: usize = 96;

// ---------------------------------------------------------------------------------------------
// The database under test
// ---------------------------------------------------------------------------------------------

/// Where each page of the undamaged file stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Meta slot 0 or 1; `newest` when it holds the last commit.
    Meta { newest: bool },
    /// Reachable from the newest meta, or the freelist run; `run` is the first page of its run.
    Live { run: u64 },
    /// Listed in the newest meta's freelist.
    Free,
    /// Past the allocation frontier.
    Tail,
}

struct Fixture {
    dir: tempfile::TempDir,
    bytes: Vec<u8>,
    /// The contents after the last commit.
    last: Contents,
    classes: Vec<Class>,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// Three commits at page size 512: four trees, branch pages, overflow values, and pages freed and
/// reused, so that the file has live, free and tail pages of every kind.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.folio");
    let db = Db::builder()
        .page_size(PAGE_SIZE as u32)
        .open(&path)
        .unwrap();
    let mut model = Contents::new();
    let put =
        |model: &mut Contents, tx: &mut folio::WriteTxn<'_>, tree: &str, k: Vec<u8>, v: Vec<u8>| {
            tx.open_tree(tree.as_bytes()).unwrap().put(&k, &v).unwrap();
            model
                .entry(tree.as_bytes().to_vec())
                .or_default()
                .insert(k, v);
        };
    let delete = |model: &mut Contents, tx: &mut folio::WriteTxn<'_>, tree: &str, k: Vec<u8>| {
        assert!(tx.open_tree(tree.as_bytes()).unwrap().delete(&k).unwrap());
        model.get_mut(tree.as_bytes()).unwrap().remove(&k);
    };

    let mut tx = db.begin_write().unwrap();
    (0..150).for_each(|i| put(&mut model, &mut tx, "alpha", key(i), value(i, 0)));
    (0..40).for_each(|i| put(&mut model, &mut tx, "beta", key(i), value(i, 0)));
    put(&mut model, &mut tx, "beta", b"blob".to_vec(), big(2000, 1));
    (0..10).for_each(|i| put(&mut model, &mut tx, "gamma", key(i), value(i, 0)));
    tx.commit().unwrap();

    let mut tx = db.begin_write().unwrap();
    (0..150)
        .step_by(4)
        .for_each(|i| put(&mut model, &mut tx, "alpha", key(i), value(i, 1)));
    (1..150)
        .step_by(7)
        .for_each(|i| delete(&mut model, &mut tx, "alpha", key(i)));
    (0..10).for_each(|i| delete(&mut model, &mut tx, "beta", key(i)));
    (10..15).for_each(|i| put(&mut model, &mut tx, "gamma", key(i), value(i, 1)));
    tx.commit().unwrap();

    let mut tx = db.begin_write().unwrap();
    (150..170).for_each(|i| put(&mut model, &mut tx, "alpha", key(i), value(i, 2)));
    put(&mut model, &mut tx, "beta", b"blob".to_vec(), big(1500, 2));
    (0..3).for_each(|i| put(&mut model, &mut tx, "delta", key(i), value(i, 2)));
    tx.commit().unwrap();
    let stats = db.stats().unwrap();
    assert!(db.check().unwrap().is_clean());
    drop(db);

    let bytes = std::fs::read(&path).unwrap();
    let classes = classify(&bytes);
    // The layout read here is the one the library reports.
    let free = classes.iter().filter(|c| **c == Class::Free).count() as u64;
    assert_eq!(free, stats.free_pages, "free pages");
    let tail = classes.iter().filter(|c| **c == Class::Tail).count() as u64;
    assert_eq!(
        bytes.len() as u64 / PAGE_SIZE as u64 - tail,
        stats.page_count,
        "page count"
    );
    assert!(
        free > 0 && tail > 0,
        "the fixture has no free pages or no tail"
    );
    assert!(
        stats.overflow_pages > 1 && stats.branch_pages > 0,
        "the fixture lacks a page kind: {stats:?}"
    );
    Fixture {
        dir,
        bytes,
        last: model,
        classes,
    }
}

/// Reads the class of every page from the newest meta and its freelist chain (see
/// `docs/format.md`).
fn classify(bytes: &[u8]) -> Vec<Class> {
    let txid = |slot: usize| u64_at(bytes, slot * PAGE_SIZE + 40);
    let newest = if txid(1) > txid(0) { 1 } else { 0 };
    let meta = &bytes[newest * PAGE_SIZE..];
    let (freelist, page_count) = (u64_at(meta, 56) as usize, u64_at(meta, 64) as usize);
    // The meta names the chain's head: deltas (kind 6) back to one full list (kind 5).
    let mut deltas = Vec::new();
    let mut head = freelist;
    while head != 0 && bytes[head * PAGE_SIZE + 8] == 6 {
        deltas.push(head);
        head = u64_at(bytes, head * PAGE_SIZE + 24) as usize;
    }
    let mut free = BTreeSet::new();
    if head != 0 {
        let run = &bytes[head * PAGE_SIZE..];
        for i in 0..u64_at(run, 24) as usize {
            let (start, len) = (u64_at(run, 32 + 16 * i), u64_at(run, 40 + 16 * i));
            free.extend(start as usize..(start + len) as usize);
        }
    }
    for delta in deltas.into_iter().rev() {
        let run = &bytes[delta * PAGE_SIZE..];
        for i in 0..u64_at(run, 40) as usize {
            let (start, word) = (u64_at(run, 48 + 16 * i), u64_at(run, 56 + 16 * i));
            let pages = start as usize..(start + (word & !(1 << 63))) as usize;
            if word >> 63 == 1 {
                pages.for_each(|p| assert!(free.remove(&p), "a delta takes page {p}, not free"));
            } else {
                pages.for_each(|p| assert!(free.insert(p), "a delta frees page {p}, free already"));
            }
        }
    }
    let mut classes = vec![
        Class::Meta {
            newest: newest == 0,
        },
        Class::Meta {
            newest: newest == 1,
        },
    ];
    while classes.len() < bytes.len() / PAGE_SIZE {
        let p = classes.len();
        if p >= page_count {
            classes.push(Class::Tail);
        } else if free.contains(&p) {
            classes.push(Class::Free);
        } else {
            let run_len = u32_at(bytes, p * PAGE_SIZE + 12) as usize + 1;
            classes.extend(std::iter::repeat_n(Class::Live { run: p as u64 }, run_len));
        }
    }
    classes
}

// ---------------------------------------------------------------------------------------------
// Flipping bytes
// ---------------------------------------------------------------------------------------------

/// Byte offsets flipped in every page: the header's id, kind, count, overflow and checksum fields,
/// the first slot, the meta's txid and page count, the last byte a meta checksum covers, the
/// middle and the end.
const OFFSETS: [usize; 12] = [0, 8, 10, 12, 17, 24, 40, 64, 95, 200, 256, 511];
/// A single bit, and every bit.
const MASKS: [u8; 2] = [0x01, 0xff];

struct Flip {
    page: u64,
    offset: usize,
    mask: u8,
    class: Class,
    path: PathBuf,
}

impl Flip {
    fn what(&self) -> String {
        format!(
            "byte {} of page {} ({:?}) xor {:#04x}",
            self.offset, self.page, self.class, self.mask
        )
    }
}

/// Writes, for every flip of a page whose class `wanted` accepts, a damaged copy of the fixture,
/// and hands it to `test`.
fn for_each_flip(
    fx: &Fixture,
    wanted: impl Fn(Class) -> bool,
    mut test: impl FnMut(&Flip),
) -> usize {
    let mut count = 0;
    for (page, &class) in fx.classes.iter().enumerate() {
        if !wanted(class) {
            continue;
        }
        for offset in OFFSETS {
            for mask in MASKS {
                let mut bytes = fx.bytes.clone();
                bytes[page * PAGE_SIZE + offset] ^= mask;
                let path = fx
                    .dir
                    .path()
                    .join(format!("flip-{page}-{offset}-{mask}.folio"));
                std::fs::write(&path, &bytes).unwrap();
                test(&Flip {
                    page: page as u64,
                    offset,
                    mask,
                    class,
                    path: path.clone(),
                });
                std::fs::remove_file(&path).unwrap();
                count += 1;
            }
        }
    }
    count
}

/// The pages an error about a flip in `flip` may name: the page, or the first page of its run.
fn names(flip: &Flip) -> Vec<u64> {
    match flip.class {
        Class::Live { run } => vec![flip.page, run],
        _ => vec![flip.page],
    }
}

/// Opens a damaged file; a live page may make the open fail, but only with a corruption naming it.
fn open_damaged(path: &Path, verify: bool, flip: &Flip) -> Option<Db> {
    match Db::builder().verify_checksums(verify).open(path) {
        Ok(db) => Some(db),
        Err(Error::Corrupted { page, reason })
            if names(flip).contains(&page) && matches!(flip.class, Class::Live { .. }) =>
        {
            assert!(!reason.is_empty());
            None
        }
        Err(e) => panic!("{}: open failed with {e:?}", flip.what()),
    }
}

fn assert_clean_and_equal(db: &Db, model: &Contents, what: &str) {
    let report = db
        .check()
        .unwrap_or_else(|e| panic!("{what}: check could not run: {e}"));
    assert!(report.is_clean(), "{what}: {report}");
    let got = read_contents(db).unwrap_or_else(|e| panic!("{what}: reading failed: {e}"));
    assert!(
        got == *model,
        "{what}: the contents differ from the expected commit"
    );
}

/// Reads every tree every way the API offers, ignoring the results: whatever the bytes, none of
/// it may panic.
fn read_every_way(db: &Db, model: &Contents) {
    let Ok(tx) = db.begin_read() else { return };
    let _ = tx.tree_names();
    for (name, entries) in model {
        let Ok(Some(tree)) = tx.tree(name) else {
            continue;
        };
        let keys: Vec<&Vec<u8>> = entries.keys().collect();
        for k in &keys {
            let _ = tree.get(k);
        }
        let _ = tree.get(b"absent");
        tree.iter().for_each(drop);
        tree.iter().rev().for_each(drop);
        let (a, b) = (
            keys[keys.len() / 3].as_slice(),
            keys[2 * keys.len() / 3].as_slice(),
        );
        for range in [
            tree.range(a..b),
            tree.range(a..=b),
            tree.range(..b),
            tree.range(a..),
        ] {
            let mut range = range.unwrap();
            while let (Some(_), Some(_)) = (range.next(), range.next_back()) {}
        }
        let _ = (tree.first(), tree.last());
        let mut c = tree.cursor();
        let _ = c.seek(a);
        for _ in 0..5 {
            let _ = c.next();
        }
        for _ in 0..10 {
            let _ = c.prev();
        }
    }
}

/// With checksums verified, every read returns the right data or a corruption naming the flipped
/// page (or its run): never a wrong value.
fn read_verified(db: &Db, model: &Contents, flip: &Flip) {
    let what = flip.what();
    let allowed = |e: Error| match e {
        Error::Corrupted { page, .. } if names(flip).contains(&page) => {}
        e => panic!("{what}: expected a corruption naming the page, got {e:?}"),
    };
    let tx = db.begin_read().unwrap();
    match tx.tree_names() {
        Ok(names) => assert!(names.iter().eq(model.keys()), "{what}: wrong tree names"),
        Err(e) => allowed(e),
    }
    for (name, entries) in model {
        let tree = match tx.tree(name) {
            Ok(Some(tree)) => tree,
            Ok(None) => panic!("{what}: tree {name:?} is missing"),
            Err(e) => {
                allowed(e);
                continue;
            }
        };
        assert_eq!(tree.len(), entries.len() as u64, "{what}: wrong length");
        for (k, v) in entries {
            match tree.get(k) {
                Ok(got) => assert!(got == Some(v.as_slice()), "{what}: wrong value for {k:?}"),
                Err(e) => allowed(e),
            }
        }
        match tree.get(b"absent") {
            Ok(got) => assert!(got.is_none(), "{what}: a value for an absent key"),
            Err(e) => allowed(e),
        }
        let keys: Vec<&Vec<u8>> = entries.keys().collect();
        let (a, b) = (
            keys[keys.len() / 3].clone(),
            keys[2 * keys.len() / 3].clone(),
        );
        let sequences = [
            (tree.iter(), entries.iter().collect::<Vec<_>>()),
            (
                tree.range(a.as_slice()..b.as_slice()).unwrap(),
                entries.range(a.clone()..b.clone()).collect(),
            ),
        ];
        for (range, want) in sequences {
            expect_sequence(range, want.into_iter(), &allowed, &what);
        }
        expect_sequence(tree.iter().rev(), entries.iter().rev(), &allowed, &what);
    }
}

/// Asserts that `items` yields a prefix of `want`, then either ends with it whole or fails with
/// an allowed error.
fn expect_sequence<'a, 'm>(
    items: impl Iterator<Item = folio::Result<(&'a [u8], &'a [u8])>>,
    mut want: impl Iterator<Item = (&'m Vec<u8>, &'m Vec<u8>)>,
    allowed: &impl Fn(Error),
    what: &str,
) {
    for item in items {
        match item {
            Ok((k, v)) => {
                let (wk, wv) = want
                    .next()
                    .unwrap_or_else(|| panic!("{what}: an entry past the end"));
                assert!(
                    k == wk.as_slice() && v == wv.as_slice(),
                    "{what}: a wrong entry at {k:?}"
                );
            }
            Err(e) => return allowed(e),
        }
    }
    assert!(
        want.next().is_none(),
        "{what}: entries missing without an error"
    );
}

// ---------------------------------------------------------------------------------------------
// Flipped bytes
// ---------------------------------------------------------------------------------------------

#[test]
fn a_flipped_byte_in_any_live_page_is_reported_by_check_naming_that_page_and_reading_never_panics()
{
    let fx = fixture();
    let n = for_each_flip(
        &fx,
        |c| matches!(c, Class::Live { .. }),
        |flip| {
            let Some(db) = open_damaged(&flip.path, false, flip) else {
                return;
            };
            let report = db
                .check()
                .unwrap_or_else(|e| panic!("{}: check could not run: {e}", flip.what()));
            let named = names(flip);
            assert!(
                report
                    .problems
                    .iter()
                    .any(|p| p.page.is_some_and(|page| named.contains(&page))),
                "{}: check did not name the page: {report}",
                flip.what()
            );
            read_every_way(&db, &fx.last);
        },
    );
    assert!(n > 500, "only {n} flips");
}

#[test]
fn with_checksums_verified_a_flipped_byte_reads_as_the_right_data_or_a_corruption_naming_its_page()
{
    let fx = fixture();
    for_each_flip(
        &fx,
        |c| matches!(c, Class::Live { .. }),
        |flip| {
            let Some(db) = open_damaged(&flip.path, true, flip) else {
                return;
            };
            read_verified(&db, &fx.last, flip);
        },
    );
}

/// A clean close leaves the last commit's meta in both slots (`txn::sync`, rule 8), so a flip in
/// either meta page falls back to the other and loses nothing. (A crash leaves the slots one
/// commit apart; falling back then is the crash tests' subject.)
#[test]
fn a_flipped_byte_in_a_meta_page_falls_back_to_the_other_meta_whole() {
    let fx = fixture();
    let txid = |slot: usize| &fx.bytes[slot * PAGE_SIZE + 40..slot * PAGE_SIZE + 48];
    assert_eq!(
        txid(0),
        txid(1),
        "a clean close leaves one commit in both slots"
    );
    for_each_flip(
        &fx,
        |c| matches!(c, Class::Meta { .. }),
        |flip| {
            let model = &fx.last;
            for verify in [false, true] {
                let db = Db::builder()
                    .verify_checksums(verify)
                    .open(&flip.path)
                    .unwrap_or_else(|e| panic!("{}: open failed: {e}", flip.what()));
                assert_clean_and_equal(&db, model, &flip.what());
            }
        },
    );
}

#[test]
fn a_flipped_byte_in_free_space_or_the_file_tail_is_harmless() {
    let fx = fixture();
    let n = for_each_flip(
        &fx,
        |c| matches!(c, Class::Free | Class::Tail),
        |flip| {
            let db = Db::builder()
                .verify_checksums(true)
                .open(&flip.path)
                .unwrap_or_else(|e| panic!("{}: open failed: {e}", flip.what()));
            assert_clean_and_equal(&db, &fx.last, &flip.what());
        },
    );
    assert!(n > 0);
}

// ---------------------------------------------------------------------------------------------
// Files that cannot be opened
// ---------------------------------------------------------------------------------------------

/// Writes `bytes` to a new file in `dir` and opens it, expecting an error; the file must be left
/// as it was.
fn open_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Error {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = match Db::open(&path) {
        Ok(_) => panic!("{name}: opened"),
        Err(e) => e,
    };
    assert!(
        std::fs::read(&path).unwrap() == bytes,
        "{name}: a failed open changed the file"
    );
    err
}

/// Stores a correct checksum for the first `META_LEN` bytes of the meta page at `slot`.
fn reseal_meta(bytes: &mut [u8], slot: usize) {
    let meta = &mut bytes[slot * PAGE_SIZE..slot * PAGE_SIZE + META_LEN];
    meta[16..20].fill(0);
    let crc = crc32fast::hash(meta);
    meta[16..20].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_file_cut_short_is_reported_as_truncated_with_the_size_it_needs() {
    let fx = fixture();
    let needed = |slot: usize| u64_at(&fx.bytes, slot * PAGE_SIZE + 64) * PAGE_SIZE as u64;
    let newest = fx
        .classes
        .iter()
        .position(|c| *c == Class::Meta { newest: true })
        .unwrap();
    // In the data pages, both metas survive and the newest sets the size; cut inside page 1,
    // only meta 0 does; cut inside meta 0's header, no meta can be read, and the least a
    // database needs is two pages.
    let cuts = [
        (needed(newest) as usize - 1, needed(newest)),
        (needed(newest) as usize / 2 + 100, needed(newest)),
        (3 * PAGE_SIZE, needed(newest)),
        (PAGE_SIZE + 50, needed(0)),
        (META_LEN, needed(0)),
        (50, 2 * PAGE_SIZE as u64),
        (20, 2 * PAGE_SIZE as u64),
    ];
    for (cut, needs) in cuts {
        let err = open_bytes(fx.dir.path(), &format!("cut-{cut}"), &fx.bytes[..cut]);
        let Error::Truncated { expected, actual } = err else {
            panic!("cut at {cut}: {err:?}")
        };
        assert_eq!((expected, actual), (needs, cut as u64), "cut at {cut}");
        assert_eq!(
            err.to_string(),
            format!("the file is truncated: it holds {cut} bytes but the database needs {needs}")
        );
    }
}

#[test]
fn an_empty_file_is_reported_as_empty_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_bytes(dir.path(), "empty", b"");
    assert!(matches!(err, Error::EmptyFile), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the file is empty: it is not a folio database (remove it to create a new database)"
    );
}

#[test]
fn a_file_of_random_bytes_or_of_text_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let random: Vec<u8> = (0..16 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let text = "# Notes\n\nThis is a plain text file that someone passed to folio by mistake.\n\
                It has a few lines, and none of them is a folio header.\n"
        .repeat(3);
    for (name, bytes) in [
        ("random", random.as_slice()),
        ("text", text.as_bytes()),
        ("short text", b"hello\n"),
    ] {
        let err = open_bytes(dir.path(), name, bytes);
        assert!(matches!(err, Error::NotADatabase), "{name}: {err:?}");
        assert_eq!(
            err.to_string(),
            "not a folio database (no folio header in either meta page)"
        );
    }
}

#[test]
fn a_file_with_both_meta_pages_damaged_cannot_be_opened() {
    let fx = fixture();
    let mut bytes = fx.bytes.clone();
    bytes[40] ^= 0x01;
    bytes[PAGE_SIZE + 64] ^= 0x80;
    let err = open_bytes(fx.dir.path(), "both-metas", &bytes);
    let Error::MetaDamaged { first, second } = &err else {
        panic!("{err:?}")
    };
    assert!(
        first.starts_with("checksum mismatch") && second.starts_with("checksum mismatch"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("both meta pages are damaged (page 0: checksum mismatch")
            && err.to_string().ends_with("; the database cannot be opened"),
        "{err}"
    );
}

#[test]
fn a_file_from_a_newer_format_version_is_refused_even_when_only_its_newest_meta_is_newer() {
    let fx = fixture();
    let newest = fx
        .classes
        .iter()
        .position(|c| *c == Class::Meta { newest: true })
        .unwrap();
    for slots in [vec![0, 1], vec![newest]] {
        let mut bytes = fx.bytes.clone();
        for &slot in &slots {
            bytes[slot * PAGE_SIZE + 32..slot * PAGE_SIZE + 36]
                .copy_from_slice(&4u32.to_le_bytes());
            reseal_meta(&mut bytes, slot);
        }
        let err = open_bytes(fx.dir.path(), &format!("version-4-in-{slots:?}"), &bytes);
        assert!(
            matches!(err, Error::UnsupportedVersion(4)),
            "version 4 in slots {slots:?}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            "unsupported file format version 4 (this build reads versions 1 to 3)"
        );
    }
}

#[test]
fn a_second_open_of_a_database_already_open_is_locked_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.folio");
    let db = Db::open(&path).unwrap();
    let err = Db::open(&path).expect_err("a second open succeeded");
    assert!(matches!(err, Error::Locked), "{err:?}");
    assert_eq!(
        err.to_string(),
        "database is locked by another process or by another open handle in this process (a folio file has one read-write handle or any number of read-only ones at a time)"
    );
    drop(db);
    let db = Db::open(&path).unwrap();
    assert!(db.check().unwrap().is_clean());
}

// ---------------------------------------------------------------------------------------------
// A crash's proved meta
// ---------------------------------------------------------------------------------------------

/// The image a power loss leaves after two commits that returned, with the second's meta still
/// carrying its proof (no clean close): what open must prove.
fn proved_image(dir: &Path) -> (Vec<u8>, Contents, Contents) {
    let sim = folio::sim::SimStorage::create(&dir.join("proved")).unwrap();
    let db = Db::builder()
        .page_size(PAGE_SIZE as u32)
        .create_with(Box::new(sim.clone()))
        .unwrap();
    let mut model = Contents::new();
    let mut commit = |round: u32, keys: std::ops::Range<u32>| {
        let mut tx = db.begin_write().unwrap();
        for i in keys {
            let v = value(i, round);
            tx.open_tree(b"alpha").unwrap().put(&key(i), &v).unwrap();
            model
                .entry(b"alpha".to_vec())
                .or_default()
                .insert(key(i), v);
        }
        tx.commit().unwrap();
        model.clone()
    };
    let first = commit(0, 0..40);
    let model = commit(1, 0..5);
    let image = sim.crash_image(None);
    drop(db);
    (image, first, model)
}

/// The newest slot of `image` and the first run its proof names.
fn newest_proved_run(image: &[u8]) -> (usize, usize) {
    let u64_at = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().unwrap());
    let newest = usize::from(u64_at(PAGE_SIZE + 40) > u64_at(40));
    let proof_len = u32::from_le_bytes(image[newest * PAGE_SIZE + 80..][..4].try_into().unwrap());
    assert!(proof_len > 0, "a small commit's meta carries a proof");
    (newest, u64_at(newest * PAGE_SIZE + META_LEN) as usize)
}

#[test]
fn a_proved_meta_whose_run_does_not_hold_its_checksum_gives_way_to_the_other_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (image, first, second) = proved_image(dir.path());
    let db = open_copy(dir.path(), "whole", &image);
    assert_clean_and_equal(&db, &second, "the image as synced");
    drop(db);
    let (newest, run) = newest_proved_run(&image);

    // Once a clean close (here with no commit at all) has rewritten the meta without its proof,
    // damage to that run is reported as a corruption naming the page, not rolled back.
    let mut settled = std::fs::read(dir.path().join("whole")).unwrap();
    settled[run * PAGE_SIZE + 100] ^= 0x40;
    let db = open_copy(dir.path(), "settled", &settled);
    let report = db.check().unwrap();
    assert!(
        report.to_string().contains(&format!("page {run}")),
        "a damaged page after a clean close: {report}"
    );
    drop(db);

    // A flipped byte in the proved meta itself: the other slot, one commit older.
    let mut flipped = image.clone();
    flipped[newest * PAGE_SIZE + 44] ^= 0x01;
    let db = open_copy(dir.path(), "meta-flipped", &flipped);
    assert_clean_and_equal(&db, &first, "the newest meta flipped");
    drop(db);

    // A run the proof names holds something else: the second commit never fully reached the
    // disk, so the database is the first.
    let mut torn = image.clone();
    torn[run * PAGE_SIZE + 100] ^= 0x40;
    let db = open_copy(dir.path(), "torn", &torn);
    assert_clean_and_equal(&db, &first, "a proved run flipped");
    drop(db);

    // And when the other slot is damaged too, nothing can be opened, and the error says why.
    torn[(1 - newest) * PAGE_SIZE + 40] ^= 0x01;
    let err = open_bytes(dir.path(), "torn-and-damaged", &torn);
    let Error::MetaDamaged { first, second } = &err else {
        panic!("expected MetaDamaged, got {err:?}");
    };
    let (proved, other) = if newest == 0 {
        (first, second)
    } else {
        (second, first)
    };
    assert!(
        proved.contains("did not all reach the disk") && proved.contains(&format!("page {run}")),
        "{err}"
    );
    assert!(other.contains("checksum mismatch"), "{err}");
}

/// Opens a copy of `bytes` written to `dir/name`.
fn open_copy(dir: &Path, name: &str, bytes: &[u8]) -> Db {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    Db::open(&path).unwrap_or_else(|e| panic!("{name}: open failed: {e}"))
}

// ---------------------------------------------------------------------------------------------
// An explicit close
// ---------------------------------------------------------------------------------------------

/// The proof length of each meta slot of `image`.
fn proof_lens(image: &[u8]) -> [u32; 2] {
    let at =
        |slot: usize| u32::from_le_bytes(image[slot * PAGE_SIZE + 80..][..4].try_into().unwrap());
    [at(0), at(1)]
}

#[test]
fn close_leaves_no_proof_and_reports_a_failure_that_a_drop_would_swallow() {
    let dir = tempfile::tempdir().unwrap();
    let commit = |db: &Db, i: u32| {
        let mut tx = db.begin_write().unwrap();
        tx.open_tree(b"alpha")
            .unwrap()
            .put(&key(i), &value(i, 0))
            .unwrap();
        tx.commit().unwrap();
    };

    let create = |name: &str| {
        let sim = folio::sim::SimStorage::create(&dir.path().join(name)).unwrap();
        let db = Db::builder()
            .page_size(PAGE_SIZE as u32)
            .create_with(Box::new(sim.clone()))
            .unwrap();
        (sim, db)
    };
    let assert_holds = |image: &[u8], name: &str, i: u32| {
        let reopened = open_copy(dir.path(), name, image);
        let tx = reopened.begin_read().unwrap();
        let alpha = tx.tree(b"alpha").unwrap().unwrap();
        assert!(alpha.get(&key(i)).unwrap().is_some(), "{name}: key {i}");
    };

    // A clean close: the newest meta is rewritten without its proof, and the commit is there.
    let (sim, db) = create("clean");
    commit(&db, 1);
    assert!(
        proof_lens(&sim.crash_image(None)).iter().any(|&n| n > 0),
        "a small commit's meta carries a proof until the close"
    );
    db.close().expect("a clean close");
    let image = sim.crash_image(None);
    let txids = txids(&image);
    let newest = txids[0].max(txids[1]);
    assert!(
        (0..2).any(|slot| txids[slot] == newest && proof_lens(&image)[slot] == 0),
        "the close wrote the newest meta without its proof: txids {txids:?}, proofs {:?}",
        proof_lens(&image)
    );
    assert_holds(&image, "clean-copy", 1);

    // The close's meta write fails: `close` says so (dropping would not), and the file still
    // holds the commit, under its proved meta.
    let (sim, db) = create("failing");
    commit(&db, 2);
    sim.arm(1, folio::sim::Fault::Fail);
    let err = db.close().expect_err("the settle's write failed");
    assert!(matches!(err, folio::Error::Io(_)), "{err}");
    assert_holds(&sim.crash_image(None), "failing-copy", 2);
}

/// The txid of each meta slot of `image`.
fn txids(image: &[u8]) -> [u64; 2] {
    let at =
        |slot: usize| u64::from_le_bytes(image[slot * PAGE_SIZE + 40..][..8].try_into().unwrap());
    [at(0), at(1)]
}
