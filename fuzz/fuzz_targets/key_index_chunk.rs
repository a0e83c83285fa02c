//! The persisted key index's chunk decoder (`src/mvcc/key_index/persist.rs`), on arbitrary bytes:
//! what it accepts, the key index must be able to read without a panic (the packed decoder it
//! feeds trusts its input).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (max, chunk) = data.split_at(data.len().min(1));
    let revision_max = i64::from(max.first().copied().unwrap_or(255));
    let _ = folio::fuzzing::key_index_chunk(chunk, revision_max);
});
