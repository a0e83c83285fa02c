//! What the fuzz targets in `fuzz/` found, each kept as an ordinary test (through the hidden
//! `folio::fuzzing` entry points the targets use).

/// A freelist run.
fn freelist_run(extents: &[(u64, u64)], claimed: u64) -> Vec<u8> {
    let mut run = vec![0u8; 512];
    run[0..8].copy_from_slice(&7u64.to_le_bytes());
    run[8] = 5;
    run[24..32].copy_from_slice(&claimed.to_le_bytes());
    for (i, (start, len)) in extents.iter().enumerate() {
        run[32 + 16 * i..40 + 16 * i].copy_from_slice(&start.to_le_bytes());
        run[40 + 16 * i..48 + 16 * i].copy_from_slice(&len.to_le_bytes());
    }
    folio::fuzzing::seal(&mut run);
    run
}

/// What broke (fuzz target `freelist`): the decoder added an extent's start and length with
/// saturation, so an extent that runs past `u64::MAX` passed as one ending at `u64::MAX` when the
/// page count was that large, and anything adding them after it overflowed.
#[test]
fn a_freelist_extent_whose_end_passes_u64_is_refused() {
    let run = freelist_run(&[(2, u64::MAX)], 1);
    assert!(folio::fuzzing::freelist(&run, u64::MAX).is_err());
    let run = freelist_run(&[(2, 3), (u64::MAX - 1, 5)], 2);
    assert!(folio::fuzzing::freelist(&run, u64::MAX).is_err());
    let run = freelist_run(&[(2, 3), (9, 4)], 2);
    assert_eq!(
        folio::fuzzing::freelist(&run, 100).unwrap(),
        vec![(2, 3), (9, 4)]
    );
}

/// What broke (fuzz target `open_db`): a leaf whose keys are out of order, with a correct checksum.
/// A delete's cursor found the key, then the write path searched the copied leaf with a different
/// binary search, missed it, and panicked ("key was found"). It is now a corruption.
#[test]
fn deleting_from_a_leaf_whose_keys_are_out_of_order_is_a_corruption_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unordered.folio");
    let keys: [&[u8]; 3] = [b"k1-aaaa", b"k2-bbbb", b"k3-cccc"];
    {
        let db = folio::Db::builder().page_size(512).open(&path).unwrap();
        let mut tx = db.begin_write().unwrap();
        let mut t = tx.open_tree(b"t").unwrap();
        for k in keys {
            t.put(k, b"value").unwrap();
        }
        tx.commit().unwrap();
    }
    // Swap the second and third keys in their leaf (same lengths, same values), and reseal it:
    // the leaf reads [k1, k3, k2].
    let mut bytes = std::fs::read(&path).unwrap();
    let find = |k: &[u8]| bytes.windows(k.len()).position(|w| w == k).unwrap();
    let (b, c) = (find(keys[1]), find(keys[2]));
    assert_eq!(b / 512, c / 512, "both keys in one leaf");
    bytes[b..b + 7].copy_from_slice(keys[2]);
    bytes[c..c + 7].copy_from_slice(keys[1]);
    let page = b / 512;
    folio::fuzzing::seal(&mut bytes[page * 512..(page + 1) * 512]);
    std::fs::write(&path, &bytes).unwrap();

    let db = folio::Db::open(&path).unwrap();
    for k in keys {
        let mut tx = db.begin_write().unwrap();
        match tx.open_tree(b"t").unwrap().delete(k) {
            Ok(_) | Err(folio::Error::Corrupted { .. }) => {}
            Err(e) => panic!("deleting {k:?}: {e}"),
        }
    }
}
