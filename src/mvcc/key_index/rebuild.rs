//! Rebuilding the index on open, from the `key` tree.
//!
//! The `key` tree is in revision order, and the index wants each key's revisions together, in
//! key order. The rebuild reads every record once, in place, and keeps only what the index needs
//! of it; then it groups and sorts:
//!
//! 1. **Scan** the tree, its two halves of revisions on two threads: for each record its
//!    revision, tombstone mark, key, create revision and version (the record's head: the value is
//!    never read). Each key gets a number the first time a half sees it, and its bytes are copied
//!    once into that half's arena ([`Names`]); the second half's numbers are then mapped onto the
//!    first's.
//! 2. **Group** the records by key number, keeping revision order (a counting sort).
//! 3. **Sort** the key numbers by key: by 8 bytes of the key at a time, carried in the array
//!    being sorted (so the sort itself reads no key bytes), then again by the next 8 within each
//!    run of equal bytes. The two halves of the key space sort on two threads.
//! 4. **Pack** each key's history, in key order, on two threads, and build the map from sorted
//!    keys, which fills its nodes.
//!
//! Only the keys and packed histories outlive the rebuild; the scratch (about 40 bytes per
//! revision and 60 per key) is a few large allocations, returned when it ends. None of it is
//! freed before the last key and history are allocated: glibc's malloc serves an allocation of
//! up to 32 MiB from the heap instead of a fresh mapping once a mapping that large has been
//! freed, and scratch freed from below the index's small allocations would stay resident (a
//! third more memory per key, measured).

use crate::btree::tree::Tree;
use crate::error::Result;
use crate::mvcc::key_index::{Index, KeyIndex, packed};
use crate::mvcc::revision::{RecordHead, Revision, malformed, next_record};

/// A key and its packed history, as the index holds them.
type Entry = (Box<[u8]>, KeyIndex);

/// One record's part in the index.
struct Record {
    rev: Revision,
    created: i64,
    version: i64,
    key: u32,
    tombstone: bool,
}

/// FxHash's mixing step, then a finalizer so that the low bits (the slot) depend on every byte.
/// The table is private to the rebuild and its keys come from the store's own file, so no
/// defence against chosen collisions is needed.
fn hash(key: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let word = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ word).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Bits of a [`Slot`]'s `at` that hold the key's length (keys are far shorter: a quarter page).
const LEN_BITS: u32 = 24;
const _: () = assert!(crate::limits::key_len_max(crate::limits::PAGE_SIZE_MAX) < 1 << LEN_BITS);

/// A place in [`Names`]'s hash table.
#[derive(Clone, Copy, Default)]
struct Slot {
    /// 0 for an empty slot, otherwise the key's number + 1.
    id: u32,
    /// The high half of the key's hash, so most mismatches are settled in the slot.
    high: u32,
    /// Where the key's bytes start in the arena, shifted left by [`LEN_BITS`], and their length:
    /// a hit reads the slot and the key, and nothing between.
    at: u64,
}

impl Slot {
    fn range(self) -> std::ops::Range<usize> {
        let start = (self.at >> LEN_BITS) as usize;
        start..start + (self.at & ((1 << LEN_BITS) - 1)) as usize
    }
}

/// The keys a scan has seen, numbered from 0 in the order first seen, their bytes in one arena.
#[derive(Default)]
struct Names {
    arena: Vec<u8>,
    /// Where each key starts in `arena`; one more entry than keys.
    starts: Vec<usize>,
    hashes: Vec<u64>,
    /// Open addressing, a power of two long, at most half full.
    slots: Vec<Slot>,
    /// Tables outgrown, freed with the rest of the scratch (see [`rebuild`] on the allocator).
    retired: Vec<Vec<Slot>>,
}

impl Names {
    fn new() -> Names {
        Names {
            starts: vec![0],
            slots: vec![Slot::default(); 1024],
            ..Names::default()
        }
    }

    fn len(&self) -> usize {
        self.hashes.len()
    }

    fn get(&self, id: u32) -> &[u8] {
        &self.arena[self.starts[id as usize]..self.starts[id as usize + 1]]
    }

    /// Where the probe for hash `h` begins.
    fn home(&self, h: u64) -> usize {
        h as usize & (self.slots.len() - 1)
    }

    /// Loads what a lookup of hash `h` will read first (its home slot and the key there), so a
    /// batch of lookups waits for its cache misses together; returns a byte of it to keep the
    /// loads from being optimized away.
    fn touch(&self, h: u64) -> u8 {
        let slot = self.slots[self.home(h)];
        if slot.id != 0 && slot.high == (h >> 32) as u32 {
            self.arena.get(slot.range().start).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// The number of `key`, whose hash is `h`, given it if it is new.
    fn id(&mut self, key: &[u8], h: u64) -> u32 {
        let mask = self.slots.len() - 1;
        let high = (h >> 32) as u32;
        let mut i = h as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot.id == 0 {
                break;
            }
            if slot.high == high && self.arena[slot.range()] == *key {
                return slot.id - 1;
            }
            i = (i + 1) & mask;
        }
        let id = u32::try_from(self.len()).expect("fewer than 2^32 keys");
        let start = self.arena.len();
        self.arena.extend_from_slice(key);
        self.starts.push(self.arena.len());
        self.hashes.push(h);
        self.slots[i] = Slot {
            id: id + 1,
            high,
            at: ((start as u64) << LEN_BITS) | key.len() as u64,
        };
        if self.len() * 2 > self.slots.len() {
            self.grow();
        }
        id
    }

    fn grow(&mut self) {
        let mut slots = vec![Slot::default(); self.slots.len() * 2];
        let mask = slots.len() - 1;
        for (id, &h) in self.hashes.iter().enumerate() {
            let mut i = h as usize & mask;
            while slots[i].id != 0 {
                i = (i + 1) & mask;
            }
            let (start, end) = (self.starts[id], self.starts[id + 1]);
            slots[i] = Slot {
                id: id as u32 + 1,
                high: (h >> 32) as u32,
                at: ((start as u64) << LEN_BITS) | (end - start) as u64,
            };
        }
        self.retired.push(std::mem::replace(&mut self.slots, slots));
    }
}

/// What a scan of some revisions found.
struct Scan {
    names: Names,
    records: Vec<Record>,
}

/// 1. Scans the records with revision keys in `[from, to)` (`None`: unbounded), with a forward
///    cursor: a double-ended range would compare every key with its back end's, and decode that.
///    Revisions must rise from record to record (the cursor checks only across leaves), or the
///    histories would come out of order: a record that does not rise is [`Error::MalformedStore`].
fn scan(keys: &Tree<'_>, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<Scan> {
    let mut s = Scan {
        names: Names::new(),
        // Room for every record: only the pages written are resident, and a vector that never
        // grows is never copied.
        records: Vec::with_capacity(usize::try_from(keys.len()).unwrap_or(0)),
    };
    // Records are taken a batch at a time, and the batch's hash slots loaded first, together:
    // the loads are independent, so their cache misses overlap instead of following each other.
    const BATCH: usize = 16;
    let mut batch: Vec<(Revision, bool, RecordHead<'_>, u64)> = Vec::with_capacity(BATCH);
    let mut cursor = keys.cursor();
    let mut entry = match from {
        Some(from) => cursor.seek(from)?,
        None => cursor.first()?,
    };
    let mut previous: Option<Revision> = None;
    loop {
        batch.clear();
        while batch.len() < BATCH {
            let Some((k, v)) = entry else { break };
            if to.is_some_and(|to| k >= to) {
                entry = None;
                break;
            }
            let (rev, tombstone, head) = next_record(k, v, &mut previous)?;
            batch.push((rev, tombstone, head, hash(head.key)));
            entry = cursor.next()?;
        }
        let mut touched = 0u8;
        for &(_, _, _, h) in &batch {
            touched ^= s.names.touch(h);
        }
        std::hint::black_box(touched);
        for &(rev, tombstone, head, h) in &batch {
            let key = s.names.id(head.key, h);
            s.records.push(Record {
                rev,
                created: head.create_revision,
                version: head.version,
                key,
                tombstone,
            });
        }
        if batch.len() < BATCH {
            return Ok(s);
        }
    }
}

/// 3. Sorts `items` (8 bytes of a key at `offset`, how many of its bytes remain there up to 8,
///    its number) by key, given that they agree on the bytes before `offset`.
fn sort_by_key(names: &Names, items: &mut [(u64, u8, u32)], offset: usize) {
    for item in items.iter_mut() {
        let key = names.get(item.2);
        let rest = key.get(offset..).unwrap_or_default();
        let n = rest.len().min(8);
        let mut chunk = [0u8; 8];
        chunk[..n].copy_from_slice(&rest[..n]);
        // Big-endian: integer order is byte order; a shorter key sorts first among equal bytes.
        *item = (u64::from_be_bytes(chunk), n as u8, item.2);
    }
    items.sort_unstable_by_key(|&(chunk, n, _)| (chunk, n));
    let mut i = 0;
    while i < items.len() {
        let (chunk, n, _) = items[i];
        let run = items[i..]
            .iter()
            .take_while(|&&(c, m, _)| (c, m) == (chunk, n))
            .count();
        if run > 1 && n == 8 {
            // Equal so far and longer: distinct keys differ further on.
            sort_by_key(names, &mut items[i..i + run], offset + 8);
        }
        i += run;
    }
}

/// Builds the index of the `key` tree `keys`; returns it and the newest main revision stored.
pub(crate) fn rebuild(keys: &Tree<'_>) -> Result<(Index, Option<i64>)> {
    let (Some((first, _)), Some((last, _))) = (keys.first()?, keys.last()?) else {
        return Ok((Index::default(), None));
    };
    let (first, _) = Revision::decode(first)?;
    let (newest, _) = Revision::decode(last)?;
    let middle = Revision {
        main: first.main + (newest.main - first.main) / 2,
        sub: 0,
    }
    .encode(false);

    // 1. Scan, the halves on two threads.
    let (low, high) = std::thread::scope(|s| {
        let high = s.spawn(|| scan(keys, Some(&middle), None));
        let low = scan(keys, None, Some(&middle));
        (low, high.join().expect("the scan does not panic"))
    });
    let (mut low, high) = (low?, high?);
    // The high half's key numbers, as numbers of the low half's (which takes its new keys).
    let renumber: Vec<u32> = (0..high.names.len() as u32)
        .map(|id| {
            low.names
                .id(high.names.get(id), high.names.hashes[id as usize])
        })
        .collect();
    let names = low.names;
    let records = |i: usize| -> (&Record, u32) {
        match low.records.get(i) {
            Some(r) => (r, r.key),
            None => {
                let r = &high.records[i - low.records.len()];
                (r, renumber[r.key as usize])
            }
        }
    };
    let total = low.records.len() + high.records.len();

    // 2. Group: `order` lists the records key by key, each key's in revision order. Record
    //    numbers are `u32`s, half the memory (and the first touches of it) of `usize`s.
    let total_u32 = u32::try_from(total)
        .map_err(|_| malformed(format!("{total} records: the index holds fewer than 2^32")))?;
    let mut start = vec![0u32; names.len() + 1];
    for i in 0..total {
        start[records(i).1 as usize + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let mut next = start.clone();
    let mut order = vec![0u32; total];
    for i in 0..total_u32 {
        let slot = &mut next[records(i as usize).1 as usize];
        order[*slot as usize] = i;
        *slot += 1;
    }

    // 3. Sort: split the numbers around a middling key, sort each side on its own thread.
    let mut items: Vec<(u64, u8, u32)> = (0..names.len() as u32).map(|id| (0, 0, id)).collect();
    let pivot = names.get(names.len() as u32 / 2);
    let split = partition(&mut items, |&(_, _, id)| names.get(id) < pivot);
    let (lower, upper) = items.split_at_mut(split);
    std::thread::scope(|s| {
        s.spawn(|| sort_by_key(&names, upper, 0));
        sort_by_key(&names, lower, 0);
    });

    // 4. Pack, in key number order (near the order the records were read), each half of the
    //    numbers on its own thread, and copy each key out of the arena there too (in number
    //    order the arena is read front to back); then take keys and histories out in key order.
    let pack = |first: u32, out: &mut [Option<Entry>]| {
        let mut revs = Vec::new();
        let mut buf = Vec::new();
        for (id, slot) in (first..).zip(out) {
            buf.clear();
            let mut generation: Option<(i64, i64)> = None;
            for &i in &order[start[id as usize] as usize..start[id as usize + 1] as usize] {
                let (r, _) = records(i as usize);
                // A generation takes its creation from its first record (after a compaction
                // its first revisions are gone), its version from its last. A tombstone ends
                // it; its record holds no version, so it is the put's before it plus one, as
                // `KeyIndex::tombstone` counts it (a generation compacted down to its tombstone
                // keeps 0: nothing is visible in it).
                match (generation, r.tombstone) {
                    (None, false) => generation = Some((r.created, r.version)),
                    (None, true) => generation = Some((0, 0)),
                    (Some((created, _)), false) => generation = Some((created, r.version)),
                    (Some((created, version)), true) => {
                        generation = Some((created, version.wrapping_add(1)));
                    }
                }
                revs.push(r.rev);
                if r.tombstone {
                    let (created, version) = generation.take().unwrap_or_default();
                    packed::encode_generation(&mut buf, version, created, &revs);
                    revs.clear();
                }
            }
            let (created, version) = generation.unwrap_or_default();
            packed::encode_generation(&mut buf, version, created, &revs);
            revs.clear();
            *slot = Some((
                Box::from(names.get(id)),
                KeyIndex {
                    packed: Box::from(buf.as_slice()),
                },
            ));
        }
    };
    let half = names.len() / 2;
    let mut histories: Vec<Option<Entry>> = Vec::with_capacity(names.len());
    histories.resize_with(names.len(), || None);
    let (lower, upper) = histories.split_at_mut(half);
    std::thread::scope(|s| {
        s.spawn(|| pack(half as u32, upper));
        pack(0, lower);
    });
    let entries: Vec<(Box<[u8]>, KeyIndex)> = items
        .iter()
        .map(|&(_, _, id)| histories[id as usize].take().expect("each key once"))
        .collect();
    Ok((Index::from_sorted(entries), Some(newest.main)))
}

/// Moves the items for which `is_low` holds to the front; returns how many there are.
fn partition<T>(items: &mut [T], is_low: impl Fn(&T) -> bool) -> usize {
    let mut split = 0;
    for i in 0..items.len() {
        if is_low(&items[i]) {
            items.swap(i, split);
            split += 1;
        }
    }
    split
}

#[cfg(test)]
mod tests {
    //! The index a reopen rebuilds answers as the index the writes built, over random histories
    //! of puts, transactions, deletes and compactions (seeded: the seed is printed, and
    //! `FOLIO_SEED=<seed>` reruns one).

    use crate::mvcc::key_index::test_writes::{self, Answers, Write, write};
    use crate::{Db, Durability, Store};

    /// Every key's answers at every revision from the compacted one to the current one.
    fn answers(store: &Store) -> Answers {
        let state = store.inner.state.read();
        test_writes::answers(&state.index, state.compacted.max(0), state.current + 1)
    }

    #[test]
    fn a_rebuilt_index_answers_as_the_index_the_writes_built() {
        let seed = crate::testing::seed("index rebuild");
        let mut rng = crate::testing::Rng(seed);
        let mut next = move |n: u64| rng.below(n);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.folio");
        let builder = Db::builder().durability(Durability::None);
        for round in 0..8 {
            let store = Store::open_with(&path, &builder).unwrap();
            for _ in 0..150 {
                let kind = match next(10) {
                    0..=3 => Write::Put,
                    4..=6 => Write::Txn,
                    7 | 8 => Write::DeleteRange,
                    _ => Write::Compact,
                };
                write(&store, kind, &mut next);
            }
            let built = answers(&store);
            drop(store);
            let rebuilt = answers(&Store::open_with(&path, &builder).unwrap());
            let keys = |a: &[(Vec<u8>, _, _)]| a.iter().map(|k| k.0.clone()).collect::<Vec<_>>();
            assert_eq!(
                keys(&rebuilt),
                keys(&built),
                "seed {seed}, round {round}: keys"
            );
            if let Some((r, b)) = rebuilt.iter().zip(&built).find(|(r, b)| r != b) {
                panic!("seed {seed}, round {round}: rebuilt {r:?}, written {b:?}");
            }
        }
    }
}
