//! Reproducible data: a splitmix64 generator, random keys kept in one buffer, value bytes, and the
//! changes one write transaction applies. Every engine gets exactly the same keys and values.

/// splitmix64: tiny, fast and good enough to spread keys; seeded, so every run writes the same data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// A number in `0..n` (Lemire's multiply-shift; the bias is far below what a benchmark notices).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    /// `count` indices in `0..n`, for lookups and scan starts.
    pub fn indices(&mut self, count: usize, n: usize) -> Vec<u32> {
        assert!(n <= u32::MAX as usize);
        (0..count).map(|_| self.below(n) as u32).collect()
    }
}

/// Shortest and longest key, in bytes.
pub const KEY_LEN_MIN: usize = 16;
pub const KEY_LEN_MAX: usize = 32;

/// Random keys of 16 to 32 bytes, stored end to end in one buffer. With at least 128 random bits
/// per key, two keys in a few million collide with a probability far below 10^-25.
pub struct Keys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Keys {
    pub fn random(count: usize, seed: u64) -> Keys {
        let mut rng = Rng::new(seed);
        let mut bytes = Vec::with_capacity(count * (KEY_LEN_MIN + KEY_LEN_MAX) / 2);
        let mut ends = Vec::with_capacity(count);
        for _ in 0..count {
            let start = bytes.len();
            bytes.resize(start + rng.between(KEY_LEN_MIN, KEY_LEN_MAX), 0);
            rng.fill(&mut bytes[start..]);
            ends.push(bytes.len());
        }
        Keys { bytes, ends }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// The keys at `indices`, in that order.
    pub fn pick<'k>(&'k self, indices: &'k [u32]) -> impl Iterator<Item = &'k [u8]> + 'k {
        indices.iter().map(|&i| self.get(i as usize))
    }
}

/// Random bytes to cut values from: value `i` starts at an offset derived from `i`, so values
/// differ from key to key and nothing compresses.
pub struct Values {
    pool: Vec<u8>,
}

impl Values {
    const POOL_LEN: usize = 4 << 20;

    pub fn new(seed: u64) -> Values {
        let mut pool = vec![0; Self::POOL_LEN];
        Rng::new(seed).fill(&mut pool);
        Values { pool }
    }

    /// `len` bytes for value number `i`.
    pub fn get(&self, i: usize, len: usize) -> &[u8] {
        assert!(len <= Self::POOL_LEN / 2);
        let start = i.wrapping_mul(4099) % (Self::POOL_LEN - len);
        &self.pool[start..start + len]
    }
}

/// One change inside a write transaction.
pub enum Change<'a> {
    Put(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
}
