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
