//! The freelist decoders: the first 8 bytes are the database's page count, the rest the run, tried
//! as a full list and as a delta, also with its kind set to each and a correct checksum.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((count, run)) = data.split_first_chunk::<8>() else {
        return;
    };
    let page_count = u64::from_le_bytes(*count);
    let _ = folio::fuzzing::freelist(run, page_count);
    let mut forged = run.to_vec();
    if let Some(kind) = forged.get_mut(8) {
        *kind = 5;
    }
    folio::fuzzing::seal(&mut forged);
    let _ = folio::fuzzing::freelist_delta(run, page_count);
    let mut delta = run.to_vec();
    if let Some(kind) = delta.get_mut(8) {
        *kind = 6;
    }
    folio::fuzzing::seal(&mut delta);
    if let Ok((previous, depth, changes)) = folio::fuzzing::freelist_delta(&delta, page_count) {
        assert!(
            previous >= 2 && previous < page_count,
            "the link inside the database"
        );
        assert!((1..=128).contains(&depth), "the depth in range");
        for (start, len, _) in changes {
            assert!(start >= 2 && len > 0, "a change is a run past the metas");
            let end = start.checked_add(len).expect("a change's end fits a u64");
            assert!(end <= page_count, "changes inside the database");
        }
    }
    if let Ok(extents) = folio::fuzzing::freelist(&forged, page_count) {
        let mut end = 2;
        for (start, len) in extents {
            assert!(
                start >= end && len > 0,
                "extents sorted, disjoint and not empty"
            );
            end = start.checked_add(len).expect("an extent's end fits a u64");
            assert!(end <= page_count, "extents inside the database");
        }
    }
});
