//! The keys and values the workloads write: deterministic, so a model can say what each holds.

/// Key `i`: `key-` and five digits, so keys sort by number.
pub fn key(i: u32) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

/// A value of 8 to 97 bytes that differs by key and by generation.
pub fn value(i: u32, generation: u32) -> Vec<u8> {
    let len = 8 + (i * 37 + generation * 11) % 90;
    (0..len)
        .map(|j| b'a' + ((i + j + generation) % 26) as u8)
        .collect()
}

/// A value of `len` bytes from `seed`; at more than a few hundred bytes it is too large for a
/// 512-byte leaf and lives in an overflow run.
pub fn big(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|j| (j.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

/// A value described by its length and a seed, so failing proptest cases print short.
#[derive(Clone, Copy, Debug)]
pub struct Value {
    pub len: usize,
    pub seed: u8,
}

impl Value {
    pub fn bytes(self) -> Vec<u8> {
        (0..self.len)
            .map(|i| self.seed.wrapping_add((i as u8).wrapping_mul(31)))
            .collect()
    }
}
