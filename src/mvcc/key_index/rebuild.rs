//! Rebuilding the index on open, from the `key` tree.
//!
//! The `key` tree is in revision order, and the index wants each key's revisions together, in
//! key order. The rebuild reads every record once, in place, and keeps only what the index needs
//! of it; then it groups and sorts:
//!
//! 1. **Scan** the tree: for each record its revision, tombstone mark, key, create revision and
//!    version (the record's head: the value is never read, nothing is copied). Each key gets a
//!    number the first time it is seen (a hash map of key slices into the mapping).
//! 2. **Group** the records by key number, keeping revision order (a counting sort).
//! 3. **Sort** the key numbers by key.
//! 4. **Pack** each key's history in key order and build the map from sorted keys, which fills
//!    its nodes.
//!
//! Only the keys and packed histories outlive the rebuild; the scratch (about 40 bytes per
//! revision and 24 per key) is a few large allocations, returned when it ends.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::btree::tree::Tree;
use crate::error::Result;
use crate::mvcc::key_index::{Generation, Index, KeyIndex, packed, restore};
use crate::mvcc::revision::{RecordHead, Revision};

/// One record's part in the index.
struct Record {
    rev: Revision,
    created: i64,
    version: i64,
    key: u32,
    tombstone: bool,
}

/// A fast hash for key slices (FxHash's mixing step): the map is private to the rebuild and its
/// keys come from the store's own file, so no defence against chosen collisions is needed.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds the index of the `key` tree `keys`; returns it and the newest main revision stored.
pub(crate) fn rebuild(keys: &Tree<'_>) -> Result<(Index, Option<i64>)> {
    // 1. Scan.
    let mut ids: HashMap<&[u8], u32, BuildHasherDefault<FxHasher>> = HashMap::default();
    let mut names: Vec<&[u8]> = Vec::new();
    let mut records: Vec<Record> = Vec::new();
    let mut newest = None;
    for entry in keys.iter() {
        let (k, v) = entry?;
        let (rev, tombstone) = Revision::decode(k)?;
        let head = RecordHead::decode(v)?;
        let key = *ids.entry(head.key).or_insert_with(|| {
            names.push(head.key);
            u32::try_from(names.len() - 1).expect("fewer than 2^32 keys")
        });
        records.push(Record {
            rev,
            created: head.create_revision,
            version: head.version,
            key,
            tombstone,
        });
        newest = Some(rev.main);
    }
    drop(ids);

    // 2. Group: `order` lists the records key by key, each key's in revision order.
    let mut start = vec![0usize; names.len() + 1];
    for r in &records {
        start[r.key as usize + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let mut next = start.clone();
    let mut order = vec![0usize; records.len()];
    for (i, r) in records.iter().enumerate() {
        let slot = &mut next[r.key as usize];
        order[*slot] = i;
        *slot += 1;
    }
    drop(next);

    // 3. Sort.
    let mut sorted: Vec<u32> = (0..names.len() as u32).collect();
    sorted.sort_unstable_by(|&a, &b| names[a as usize].cmp(names[b as usize]));

    // 4. Pack.
    let mut entries = Vec::with_capacity(names.len());
    let mut gens = vec![Generation::default()];
    let mut buf = Vec::new();
    for id in sorted {
        let (lo, hi) = (start[id as usize], start[id as usize + 1]);
        gens.clear();
        gens.push(Generation::default());
        for &i in &order[lo..hi] {
            let r = &records[i];
            let created = Revision {
                main: r.created,
                sub: 0,
            };
            restore(&mut gens, r.rev, r.tombstone, created, r.version);
        }
        buf.clear();
        packed::encode(&gens, &mut buf);
        entries.push((
            Box::<[u8]>::from(names[id as usize]),
            KeyIndex {
                packed: Box::from(buf.as_slice()),
            },
        ));
    }
    Ok((Index::from_sorted(entries), newest))
}
