//! The freelist decoder: the first 8 bytes are the database's page count, the rest the run, also
//! tried with its kind set to freelist and a correct checksum.
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
