//! The range index against brute force: random inserts and removes of keys, prefixes and
//! arbitrary bounds over a small alphabet (so ranges overlap, nest, touch and are empty), each
//! lookup compared with a scan of every live range. Seeded: the test prints its seed, and
//! `FOLIO_SEED=<seed>` reruns it.

use std::ops::Bound;

use super::{RangeIndex, Shape, contains, shape};
use crate::mvcc::types::KeyRange;
use crate::testing::{Rng, seed};

/// A key of 0 to 3 bytes from `a`, `b` and `0xff` (the byte a prefix's end carries past).
fn key(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(4);
    (0..len)
        .map(|_| [b'a', b'b', 0xff][rng.below(3) as usize])
        .collect()
}

fn bound(rng: &mut Rng) -> Bound<Vec<u8>> {
    match rng.below(5) {
        0 => Bound::Unbounded,
        1 | 2 => Bound::Included(key(rng)),
        _ => Bound::Excluded(key(rng)),
    }
}

fn range(rng: &mut Rng) -> KeyRange {
    match rng.below(5) {
        0 => KeyRange::key(&key(rng)),
        1 | 2 => KeyRange::prefix(&key(rng)),
        3 if rng.below(4) == 0 => KeyRange::all(),
        _ => KeyRange {
            start: bound(rng),
            end: bound(rng),
        },
    }
}

#[test]
fn the_range_index_finds_exactly_the_ranges_that_contain_a_key() {
    let seed = seed("range index model");
    for case in 0..200 {
        let mut rng = Rng(seed.wrapping_add(case));
        let mut index = RangeIndex::default();
        let mut live: Vec<(KeyRange, u64)> = Vec::new();
        for id in 0..rng.below(120) {
            match rng.below(4) {
                0 if !live.is_empty() => {
                    let (r, victim) = live.swap_remove(rng.below(live.len() as u64) as usize);
                    assert!(
                        index.remove(&r, |&x| x == victim),
                        "seed {seed} case {case}"
                    );
                    assert!(
                        !index.remove(&r, |&x| x == victim),
                        "seed {seed} case {case}"
                    );
                }
                _ => {
                    let r = range(&mut rng);
                    index.insert(&r, id);
                    live.push((r, id));
                }
            }
            for _ in 0..8 {
                let k = key(&mut rng);
                let mut found = Vec::new();
                index.for_each_match(&k, |&id| found.push(id));
                found.sort_unstable();
                let mut want: Vec<u64> = live
                    .iter()
                    .filter(|(r, _)| contains(r, &k))
                    .map(|(_, id)| *id)
                    .collect();
                want.sort_unstable();
                assert_eq!(
                    found, want,
                    "seed {seed} case {case}, key {k:?}, live {live:?}"
                );
            }
        }
        for (r, id) in live.drain(..) {
            assert!(index.remove(&r, |&x| x == id), "seed {seed} case {case}");
        }
        assert!(
            index.keys.is_empty()
                && index.prefixes.is_empty()
                && index.prefix_lengths.is_empty()
                && index.ranges.is_empty(),
            "seed {seed} case {case}: an emptied index keeps {index:?}"
        );
    }
}

#[test]
fn keys_and_prefixes_are_filed_by_hash_and_other_bounds_in_the_sorted_list() {
    assert_eq!(shape(&KeyRange::key(b"a")), Shape::Key(b"a"));
    assert_eq!(shape(&KeyRange::prefix(b"a")), Shape::Prefix(b"a"));
    assert_eq!(shape(&KeyRange::prefix(b"a\xff")), Shape::Prefix(b"a\xff"));
    assert_eq!(shape(&KeyRange::prefix(b"\xff")), Shape::Prefix(b"\xff"));
    assert_eq!(shape(&KeyRange::all()), Shape::Prefix(b""));
    assert_eq!(shape(&KeyRange::prefix(b"")), Shape::Prefix(b""));
    let r = KeyRange::bounds::<&[u8]>(&b"a"[..]..&b"c"[..]);
    assert_eq!(shape(&r), Shape::Other);
    let r = KeyRange::bounds::<&[u8]>(&b"a"[..]..&b"b"[..]);
    assert_eq!(shape(&r), Shape::Prefix(b"a"), "[a, b) is the prefix a");
}
