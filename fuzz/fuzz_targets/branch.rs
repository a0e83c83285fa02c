//! The branch page view: arbitrary bytes with the header's kind set to branch, every key and child
//! read, and a search.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut page = data.to_vec();
    if let Some(kind) = page.get_mut(8) {
        *kind = 2;
    }
    if let Some(overflow) = page.get_mut(12..16) {
        overflow.fill(0);
    }
    let _ = folio::fuzzing::node(&page);
});
