//! The page header decoder and the checksum over arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = folio::fuzzing::page_header(data);
    // The same bytes with a correct checksum, as an attacker would forge them.
    let mut sealed = data.to_vec();
    folio::fuzzing::seal(&mut sealed);
    let _ = folio::fuzzing::page_header(&sealed);
});
