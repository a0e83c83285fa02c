//! The threat: free pages that never come back. With no reader open, the pages each commit frees
//! must be reused by the commits after it, so a database whose live data stays the same size stays
//! the same size on disk however often it is rewritten. A freelist that leaks pages, or holds them
//! pending forever, shows up here as a file that grows round after round.

use std::path::Path;

use folio::Db;

const KEYS: u64 = 10_000;
const ROUNDS: u64 = 50;

fn key(i: u64) -> Vec<u8> {
    format!("key-{:08}", i.wrapping_mul(2_654_435_761) % 1_000_003).into_bytes()
}

/// The value of key `i` in `round`, `len` bytes long.
fn value(i: u64, round: u64, len: usize) -> Vec<u8> {
    let mut v = format!("round {round:02} key {i:05} ").into_bytes();
    v.resize(len, b'.');
    v
}

/// 60 to 140 bytes, the same in every round: the live data keeps its size.
fn steady_len(i: u64) -> usize {
    60 + (i * 31 % 81) as usize
}

/// 60 to 140 bytes, different in every round: leaves grow, split and shrink.
fn changing_len(i: u64, round: u64) -> usize {
    60 + ((i * 31 + round * 17) % 81) as usize
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

/// Writes every key in one commit, each value `len(i)` bytes long.
fn rewrite_all(db: &Db, round: u64, len: impl Fn(u64) -> usize) {
    let mut tx = db.begin_write().unwrap();
    let mut t = tx.open_tree(b"t").unwrap();
    for i in 0..KEYS {
        t.put(&key(i), &value(i, round, len(i))).unwrap();
    }
    tx.commit().unwrap();
}

fn assert_holds_round(db: &Db, round: u64, len: impl Fn(u64) -> usize) {
    let report = db.check().unwrap();
    assert!(report.is_clean(), "{report}");
    let tx = db.begin_read().unwrap();
    let t = tx.tree(b"t").unwrap().unwrap();
    assert_eq!(t.len(), KEYS);
    for i in 0..KEYS {
        let want = value(i, round, len(i));
        assert!(
            t.get(&key(i)).unwrap() == Some(want.as_slice()),
            "the value of key {i} in round {round}"
        );
    }
}

/// Each value keeps its length from round to round, so the live data keeps its size: a rewrite
/// needs a second copy of the tree while the first is still the durable commit, and with reuse
/// nothing more.
#[test]
fn rewriting_ten_thousand_keys_fifty_times_keeps_the_file_within_three_times_its_first_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reuse.folio");
    let db = Db::open(&path).unwrap();
    rewrite_all(&db, 0, steady_len);
    let after_first_round = file_len(&path);
    for round in 1..ROUNDS {
        rewrite_all(&db, round, steady_len);
        let len = file_len(&path);
        assert!(
            len <= 3 * after_first_round,
            "after round {round} the file is {len} bytes, over three times the {after_first_round} of the first"
        );
    }
    println!(
        "the file is {} bytes, {after_first_round} after the first round",
        file_len(&path)
    );
    assert_holds_round(&db, ROUNDS - 1, steady_len);
}

/// When values change length the live data itself grows (rewritten leaves split and fill to about
/// 60%, where the first bulk load packed them full), so the file's size is no measure of reuse.
/// The allocation frontier is one: a commit takes pages past it only when the free pages (every
/// page but the previous commit's) run out, so it never passes the live pages of the two largest
/// consecutive commits.
#[test]
fn with_values_that_change_length_the_pages_in_use_never_pass_two_consecutive_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("changing.folio")).unwrap();
    rewrite_all(&db, 0, |i| changing_len(i, 0));
    let mut live_before = db.stats().unwrap().live_pages();
    let mut bound = 0;
    for round in 1..ROUNDS {
        rewrite_all(&db, round, |i| changing_len(i, round));
        let stats = db.stats().unwrap();
        bound = bound.max(live_before + stats.live_pages());
        assert!(
            stats.page_count <= bound,
            "round {round}: {} pages in use or free, but the two largest consecutive commits hold {bound}",
            stats.page_count
        );
        live_before = stats.live_pages();
    }
    assert_holds_round(&db, ROUNDS - 1, |i| changing_len(i, ROUNDS - 1));
}
