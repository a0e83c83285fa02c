//! Storage-core benchmarks: bulk insert, random point reads and range scans.
//!
//! `cargo bench --bench btree`. Bulk insert loads 1,000,000 random 16-byte keys with 100-byte
//! values, 10,000 per transaction, with durable (immediate) commits; the reads run against that
//! store. Quote medians and ratios from one run; the machine is shared and noisy.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use folio::{Db, Durability};

const KEYS: u64 = 1_000_000;
const PER_TXN: u64 = 10_000;
const VALUE_LEN: usize = 100;

/// A random-looking but reproducible 16-byte key for index `i`.
fn key(i: u64) -> [u8; 16] {
    let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&x.to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn load(path: &Path, durability: Durability) -> Db {
    let db = Db::builder().durability(durability).open(path).unwrap();
    let value = [7u8; VALUE_LEN];
    for batch in 0..KEYS / PER_TXN {
        let mut tx = db.begin_write().unwrap();
        let mut t = tx.open_tree(b"bench").unwrap();
        for i in batch * PER_TXN..(batch + 1) * PER_TXN {
            t.put(&key(i), &value).unwrap();
        }
        tx.commit().unwrap();
    }
    db
}

fn bulk_insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("bulk_insert");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(60))
        .throughput(Throughput::Elements(KEYS));
    g.bench_function("1M_keys_100B_10k_per_txn", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                black_box(load(&dir.path().join("bulk.folio"), Durability::Immediate));
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = load(&dir.path().join("reads.folio"), Durability::None);
    db.sync().unwrap();
    let tx = db.begin_read().unwrap();
    let tree = tx.tree(b"bench").unwrap().unwrap();

    let mut g = c.benchmark_group("reads");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("random_get", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(tree.get(&key(i)).unwrap().unwrap());
        })
    });
    g.throughput(Throughput::Elements(1000));
    let mut j = 0u64;
    g.bench_function("range_scan_1000", |b| {
        b.iter(|| {
            j = (j + 104_729) % KEYS;
            let mut n = 0;
            for e in tree.range(key(j).as_slice()..).unwrap().take(1000) {
                let (k, v) = e.unwrap();
                n += k.len() + v.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bulk_insert, reads);
criterion_main!(benches);
