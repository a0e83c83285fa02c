//! Overflow runs: the first 10 bytes choose the page size, the value's length and first page and
//! whether checksums are verified; the rest is the file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((head, file)) = data.split_first_chunk::<10>() else {
        return;
    };
    let page_size = 512u32 << (head[0] % 7);
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let id = u64::from(u32::from_le_bytes([head[5], head[6], head[7], head[8]]));
    let verify = head[9] & 1 == 1;
    let _ = folio::fuzzing::overflow(file, page_size, id, len, verify);
    // With the first page's header naming it and a correct checksum over the run it claims.
    let mut forged = file.to_vec();
    let start = (id as usize).saturating_mul(page_size as usize);
    if let Some(run) = forged.get_mut(start..) {
        if run.len() >= 24 {
            run[..8].copy_from_slice(&id.to_le_bytes());
            run[8] = 4;
        }
        let pages = (24 + len as usize).div_ceil(page_size as usize);
        let end = (pages * page_size as usize).min(run.len());
        folio::fuzzing::seal(&mut run[..end]);
    }
    let _ = folio::fuzzing::overflow(&forged, page_size, id, len, true);
});
