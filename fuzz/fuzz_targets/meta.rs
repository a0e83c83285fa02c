//! The meta page decoder, on arbitrary bytes and on bytes given folio's magic and a correct
//! checksum; a meta that decodes must be within the limits and encode back to itself.
#![no_main]

use folio::limits::{PAGE_SIZE_MAX, PAGE_SIZE_MIN, page_count_max};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let slot = u64::from(data.first().copied().unwrap_or(0) & 1);
    let _ = folio::fuzzing::meta(data, slot);
    let mut forged = data.to_vec();
    forged.resize(forged.len().max(96), 0);
    forged[..8].copy_from_slice(&slot.to_le_bytes());
    forged[8] = 1;
    forged[24..32].copy_from_slice(b"FOLIO\0DB");
    forged[32..36].copy_from_slice(&1u32.to_le_bytes());
    folio::fuzzing::seal(&mut forged[..96]);
    if let Ok(m) = folio::fuzzing::meta(&forged, slot) {
        assert!((PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(&m.page_size));
        assert!(m.page_count >= 2 && m.page_count <= page_count_max(m.page_size));
        assert!(m.page_count.checked_mul(u64::from(m.page_size)).is_some());
        assert!(m.catalog_root == 0 || m.catalog_root < m.page_count);
        assert!(m.freelist == 0 || m.freelist < m.page_count);
    }
});
