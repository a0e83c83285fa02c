#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // tests of a decoder

use super::*;
use crate::btree::source::Verify;
use crate::error::Error;

const PAGE: u32 = 512;
const PAGES: u64 = 64;

/// A file of `PAGES` pages of `PAGE` bytes, all zero.
fn file() -> Vec<u8> {
    vec![0; (PAGES * PAGE as u64) as usize]
}

fn pages(file: &[u8]) -> Pages<'_> {
    Pages {
        data: file,
        page_size: PAGE,
        page_count: PAGES,
        verify: Verify::Off,
    }
}

fn run_mut(file: &mut [u8], id: PageId, len: u64) -> &mut [u8] {
    let at = (id * PAGE as u64) as usize;
    &mut file[at..at + (len * PAGE as u64) as usize]
}

/// Writes the full list `runs` as a one-page run at `id`.
fn put_full(file: &mut [u8], id: PageId, runs: &[(PageId, u64)]) {
    let bytes = FreeList::encode(runs, id, 1, PAGE);
    run_mut(file, id, 1).copy_from_slice(&bytes);
}

/// Writes a one-page delta at `id`.
fn put_delta(file: &mut [u8], id: PageId, previous: PageId, depth: u64, changes: &[Change]) {
    encode_delta(changes, previous, depth, id, run_mut(file, id, 1), 1);
}

/// Runs of pages: (first page, pages).
type Runs = Vec<(PageId, u64)>;

/// The free runs and the chain's runs of the chain at `head`.
fn loaded(file: &[u8], head: PageId) -> Result<(Runs, Runs)> {
    let (list, chain) = load(&pages(file), head)?;
    Ok((list.extents().collect(), chain.runs().to_vec()))
}

fn corruption(result: Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::Corrupted { reason, .. }) => reason,
        other => panic!("expected a corruption, got {other:?}"),
    }
}

#[test]
fn a_chain_takes_deltas_until_they_would_outgrow_the_full_list_or_reach_the_most_deltas() {
    assert!(Chain::default().wants_full(1), "no chain yet");
    let mut chain = Chain::full(10, 3);
    assert!(
        !chain.wants_full(3),
        "three delta pages fit a three-page list"
    );
    assert!(chain.wants_full(4));
    chain.push_delta(20, 2);
    assert!(!chain.wants_full(1));
    assert!(chain.wants_full(2));
    assert_eq!(chain.depth(), 1);
    assert_eq!(chain.pages(), 5);
    assert_eq!(chain.head(), Some(20));

    let mut long = Chain::full(2, FREELIST_DELTAS_MAX * 4);
    for i in 0..FREELIST_DELTAS_MAX {
        assert!(!long.wants_full(1), "delta {i}");
        long.push_delta(1000 + i, 1);
    }
    assert!(long.wants_full(1), "the chain holds the most deltas");
}

#[test]
fn a_delta_round_trips_and_one_out_of_range_is_refused() {
    let changes = [
        Change::Took(5, 2),
        Change::Pending(6, 9, 1),
        Change::Pending(7, 30, 4),
    ];
    let mut buf = vec![0; PAGE as usize];
    encode_delta(&changes, 3, 2, 12, &mut buf, 1);
    let delta = decode_delta(&buf, 12, PAGES).unwrap();
    assert_eq!(
        delta,
        Delta {
            previous: 3,
            depth: 2,
            changes: vec![(5, 2, true), (9, 1, false), (30, 4, false)],
        }
    );

    let refused = |changes: &[Change], previous: PageId, depth: u64, page_count: u64| {
        let mut buf = vec![0; PAGE as usize];
        encode_delta(
            changes,
            previous,
            depth.clamp(1, FREELIST_DELTAS_MAX),
            12,
            &mut buf,
            1,
        );
        if depth == 0 || depth > FREELIST_DELTAS_MAX {
            buf[OFF_DEPTH..OFF_DEPTH + 8].copy_from_slice(&depth.to_le_bytes());
            page::seal(&mut buf);
        }
        corruption(decode_delta(&buf, 12, page_count))
    };
    assert!(refused(&changes, 3, 2, 33).contains("out of range"));
    assert!(refused(&changes, 1, 2, PAGES).contains("outside the database"));
    assert!(refused(&changes, PAGES, 2, PAGES).contains("outside the database"));
    assert!(refused(&changes, 3, 0, PAGES).contains("depth 0"));
    let too_deep = FREELIST_DELTAS_MAX + 1;
    assert!(refused(&changes, 3, too_deep, PAGES).contains(&format!("depth {too_deep}")));
    assert!(refused(&[Change::Took(1, 1)], 3, 1, PAGES).contains("out of range"));

    // A count past what the run holds, and a bad checksum.
    let mut buf = vec![0; PAGE as usize];
    encode_delta(&changes, 3, 2, 12, &mut buf, 1);
    buf[OFF_COUNT..OFF_COUNT + 8].copy_from_slice(&1000u64.to_le_bytes());
    page::seal(&mut buf);
    assert!(corruption(decode_delta(&buf, 12, PAGES)).contains("more than its run holds"));
    buf[OFF_COUNT..OFF_COUNT + 8].copy_from_slice(&3u64.to_le_bytes());
    assert!(decode_delta(&buf, 12, PAGES).is_err(), "checksum");
}

#[test]
fn loading_applies_the_deltas_oldest_first_to_the_full_list() {
    let mut f = file();
    put_full(&mut f, 2, &[(10, 10), (40, 2)]);
    // Delta 1 took pages 10 and 11 and left 30 and 31 pending.
    put_delta(
        &mut f,
        3,
        2,
        1,
        &[Change::Took(10, 2), Change::Pending(4, 30, 2)],
    );
    // Delta 2 took what delta 1 added, and left a page beside the first extent pending.
    put_delta(
        &mut f,
        4,
        3,
        2,
        &[Change::Took(30, 2), Change::Pending(5, 20, 1)],
    );
    let (free, runs) = loaded(&f, 4).unwrap();
    assert_eq!(free, vec![(12, 9), (40, 2)]);
    assert_eq!(runs, vec![(2, 1), (3, 1), (4, 1)]);
    // The older head still loads as it was.
    let (free, runs) = loaded(&f, 3).unwrap();
    assert_eq!(free, vec![(12, 8), (30, 2), (40, 2)]);
    assert_eq!(runs, vec![(2, 1), (3, 1)]);
}

/// A forged or damaged chain must not loop, must not take pages that are not free, and must not
/// free pages twice: each would hand one page out twice.
#[test]
fn a_chain_that_breaks_an_invariant_is_a_corruption() {
    let mut f = file();
    put_full(&mut f, 2, &[(10, 10)]);

    put_delta(&mut f, 3, 2, 1, &[Change::Took(25, 1)]);
    assert!(corruption(loaded(&f, 3)).contains("not all free"));

    put_delta(&mut f, 3, 2, 1, &[Change::Pending(4, 19, 2)]);
    assert!(corruption(loaded(&f, 3)).contains("already free"));

    // A delta at depth 2 straight after the full list; a delta that links to itself.
    put_delta(&mut f, 3, 2, 2, &[]);
    assert!(corruption(loaded(&f, 3)).contains("at depth 1"));
    put_delta(&mut f, 3, 3, 1, &[]);
    assert!(corruption(loaded(&f, 3)).contains("where the chain needs depth 0"));
    put_delta(&mut f, 3, 3, FREELIST_DELTAS_MAX, &[]);
    assert!(corruption(loaded(&f, 3)).contains("where the chain needs depth"));

    // A link to a page that is not a freelist page.
    put_delta(&mut f, 3, 5, 1, &[]);
    assert!(loaded(&f, 3).is_err());

    // A list that lists one of the chain's own pages as free.
    put_delta(&mut f, 3, 2, 1, &[Change::Pending(4, 3, 1)]);
    assert!(corruption(loaded(&f, 3)).contains("inside its own run"));
}
