//! Basic scenarios: many keys across splits and merges, reopen, large values, limits.

use std::collections::BTreeMap;

use folio::{Db, Error};

fn key(i: u64) -> Vec<u8> {
    format!("key-{:08}", i.wrapping_mul(2654435761) % 1_000_003).into_bytes()
}

#[test]
fn thousands_of_keys_survive_splits_merges_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut model = BTreeMap::new();
    {
        let db = Db::builder().page_size(512).open(&path).unwrap();
        for round in 0..10u64 {
            let mut tx = db.begin_write().unwrap();
            let mut t = tx.open_tree(b"t").unwrap();
            for i in round * 1000..(round + 1) * 1000 {
                let v = format!("value-{i}")
                    .repeat((i % 7) as usize + 1)
                    .into_bytes();
                t.put(&key(i), &v).unwrap();
                model.insert(key(i), v);
            }
            for i in (0..round * 1000).step_by(3) {
                if t.delete(&key(i)).unwrap() {
                    model.remove(&key(i));
                }
            }
            tx.commit().unwrap();
            let report = db.check().unwrap();
            assert!(report.is_clean(), "{report}");
        }
        let tx = db.begin_read().unwrap();
        let t = tx.tree(b"t").unwrap().unwrap();
        assert_eq!(t.len(), model.len() as u64);
        let got: Vec<(Vec<u8>, Vec<u8>)> = t
            .iter()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
        assert_eq!(got, want);
        let back: Vec<Vec<u8>> = t
            .iter()
            .rev()
            .map(|e| e.map(|(k, _)| k.to_vec()))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, model.keys().rev().cloned().collect::<Vec<_>>());
    }
    let db = Db::open(&path).unwrap();
    assert!(db.check().unwrap().is_clean());
    let tx = db.begin_read().unwrap();
    let t = tx.tree(b"t").unwrap().unwrap();
    for (k, v) in &model {
        assert_eq!(t.get(k).unwrap(), Some(v.as_slice()));
    }
}

#[test]
fn large_values_go_to_overflow_runs_and_come_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder()
        .page_size(1024)
        .open(dir.path().join("db"))
        .unwrap();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut tx = db.begin_write().unwrap();
    tx.open_tree(b"t").unwrap().put(b"big", &big).unwrap();
    tx.open_tree(b"t")
        .unwrap()
        .put(b"eight", b"12345678")
        .unwrap();
    tx.commit().unwrap();
    assert!(db.check().unwrap().is_clean());
    let tx = db.begin_read().unwrap();
    let t = tx.tree(b"t").unwrap().unwrap();
    assert_eq!(t.get(b"big").unwrap(), Some(big.as_slice()));
    assert_eq!(t.get(b"eight").unwrap(), Some(&b"12345678"[..]));
    drop(tx);
    let mut tx = db.begin_write().unwrap();
    tx.open_tree(b"t").unwrap().delete(b"big").unwrap();
    tx.commit().unwrap();
    let report = db.check().unwrap();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn empty_and_oversized_keys_and_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db")).unwrap();
    let mut tx = db.begin_write().unwrap();
    let mut t = tx.open_tree(b"t").unwrap();
    assert!(matches!(
        t.put(b"", b"v"),
        Err(Error::KeyLength { len: 0, .. })
    ));
    let long = vec![b'k'; db.key_len_max() + 1];
    assert!(matches!(t.put(&long, b"v"), Err(Error::KeyLength { .. })));
    t.put(&long[1..], b"v").unwrap();
    assert!(matches!(
        tx.open_tree(b""),
        Err(Error::TreeNameLength { .. })
    ));
}

#[test]
fn deleting_committed_trees_frees_their_pages_and_empties_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder()
        .page_size(512)
        .open(dir.path().join("db"))
        .unwrap();
    let mut tx = db.begin_write().unwrap();
    for name in [&b"a"[..], b"b"] {
        let mut t = tx.open_tree(name).unwrap();
        for i in 0..500u64 {
            t.put(&key(i), &[1u8; 40]).unwrap();
        }
    }
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    assert!(tx.delete_tree(b"a").unwrap());
    assert!(!tx.delete_tree(b"missing").unwrap());
    tx.commit().unwrap();
    assert!(db.check().unwrap().is_clean());
    assert_eq!(
        db.begin_read().unwrap().tree_names().unwrap(),
        vec![b"b".to_vec()]
    );
    let mut tx = db.begin_write().unwrap();
    assert!(tx.delete_tree(b"b").unwrap());
    tx.commit().unwrap();
    let report = db.check().unwrap();
    assert!(report.is_clean(), "{report}");
    let stats = db.stats().unwrap();
    assert_eq!(
        (stats.leaf_pages, stats.branch_pages, stats.trees.len()),
        (0, 0, 0)
    );
    assert!(db.begin_read().unwrap().tree_names().unwrap().is_empty());
}

/// Appends, one key per commit, leave full pages behind them at every level (`tree_mut`,
/// invariant 6): each leaf holds as many entries as fit, where splits in halves left them half
/// full. Then random inserts into that tree still leave every page valid and every key readable.
#[test]
fn appends_one_per_commit_fill_their_pages() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder()
        .page_size(4096)
        .open(dir.path().join("db"))
        .unwrap();
    // Entries of 7 header bytes, an 8-byte key and 1,000 bytes of value, plus a 2-byte slot:
    // four fit a 4 KiB leaf with its header (4,068 bytes), and halves would hold two.
    let value = [7u8; 1000];
    const N: u64 = 3000;
    for i in 0..N {
        let mut tx = db.begin_write().unwrap();
        tx.open_tree(b"t")
            .unwrap()
            .put(&i.to_be_bytes(), &value)
            .unwrap();
        tx.commit().unwrap();
    }
    let stats = db.stats().unwrap();
    let t = &stats.trees[0];
    assert_eq!(t.len, N);
    assert_eq!(t.leaf_pages, N / 4, "four entries to every leaf");
    // 750 leaves under branch entries of 18 bytes with their slots (8-byte keys): 4 full branches
    // and a root, where halves made about twice as many.
    assert!(t.branch_pages <= 6, "{} branch pages", t.branch_pages);
    let mut tx = db.begin_write().unwrap();
    let mut t = tx.open_tree(b"t").unwrap();
    // Between two appended keys: `i` then one more byte sorts after `i` and before `i + 1`.
    let between = |i: u64| [&i.to_be_bytes()[..], &[1]].concat();
    for i in (0..N).step_by(7) {
        t.put(&between(i), &value[..10]).unwrap();
    }
    tx.commit().unwrap();
    let report = db.check().unwrap();
    assert!(report.is_clean(), "{report}");
    let tx = db.begin_read().unwrap();
    let t = tx.tree(b"t").unwrap().unwrap();
    for i in 0..N {
        assert_eq!(
            t.get(&i.to_be_bytes()).unwrap(),
            Some(&value[..]),
            "key {i}"
        );
        let inserted = (i % 7 == 0).then_some(&value[..10]);
        assert_eq!(t.get(&between(i)).unwrap(), inserted, "key {i} and a byte");
    }
    assert_eq!(t.len(), N + N.div_ceil(7));
}

/// The last leaf packs full only when its inserts were appends: five entries (four fit a leaf)
/// put in key order split four and one, put out of order they split in halves, so that one
/// more entry among the first ones fits without another split.
#[test]
fn the_last_leaf_packs_full_only_after_appends() {
    // Entries of 7 header bytes, an 8-byte key and 1,000 bytes of value, with their slots: four
    // fit a 4 KiB leaf.
    let value = [7u8; 1000];
    let leaves_after = |order: [u64; 5]| {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::builder()
            .page_size(4096)
            .open(dir.path().join("db"))
            .unwrap();
        let mut tx = db.begin_write().unwrap();
        let mut t = tx.open_tree(b"t").unwrap();
        for i in order {
            t.put(&(10 * i).to_be_bytes(), &value).unwrap();
        }
        tx.commit().unwrap();
        let mut tx = db.begin_write().unwrap();
        tx.open_tree(b"t")
            .unwrap()
            .put(&5u64.to_be_bytes(), &value)
            .unwrap();
        tx.commit().unwrap();
        assert!(db.check().unwrap().is_clean());
        db.stats().unwrap().trees[0].leaf_pages
    };
    // In order: 4 + 1, and the sixth entry splits the full leaf again.
    assert_eq!(leaves_after([0, 1, 2, 3, 4]), 3);
    // Out of order: 3 + 2 (or 2 + 3), and the sixth entry fits.
    assert_eq!(leaves_after([3, 0, 4, 1, 2]), 2);
}
