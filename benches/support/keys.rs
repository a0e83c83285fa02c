//! The keys the storage benchmarks load, shared by `benches/btree.rs` and `benches/verify.rs`.

/// A random-looking but reproducible 16-byte key for index `i`: a splitmix64 hash of `i`, then `i`
/// itself, so every index gives a distinct key and keys arrive in no particular order.
pub fn key(i: u64) -> [u8; 16] {
    let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&x.to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}
