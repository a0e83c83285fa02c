//! Storage-core benchmarks: bulk insert, random point reads and range scans.
//!
//! `cargo bench --bench btree`. Bulk insert loads 1,000,000 random 16-byte keys with 100-byte
//! values, 10,000 per transaction, with durable (immediate) commits; the reads run against that
//! store. `durable_commits` compares one-put commits from one thread (immediate durability) with
//! eight threads sharing syncs (group commit). Quote medians and ratios from one run; the machine
//! is shared and noisy.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use folio::{Db, Durability};

#[path = "support/keys.rs"]
mod keys;
use keys::key;

const KEYS: u64 = 1_000_000;
const PER_TXN: u64 = 10_000;
const VALUE_LEN: usize = 100;

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

/// Small durable commits (one 100-byte put each): one thread with immediate durability, and eight
/// threads with group commit sharing syncs.
fn durable_commits(c: &mut Criterion) {
    const PER_THREAD: u64 = 50;
    let mut g = c.benchmark_group("durable_commits");
    g.sample_size(10);
    for (label, threads, durability) in [
        ("immediate_1_thread", 1u64, Durability::Immediate),
        ("group_8_threads", 8, Durability::Group),
    ] {
        g.throughput(Throughput::Elements(threads * PER_THREAD));
        g.bench_function(label, |b| {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::builder()
                .durability(durability)
                .open(dir.path().join("commits.folio"))
                .unwrap();
            let mut round = 0u64;
            b.iter(|| {
                round += 1;
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let db = &db;
                        s.spawn(move || {
                            for i in 0..PER_THREAD {
                                let mut tx = db.begin_write().unwrap();
                                let k = key(round * 1_000_000 + t * PER_THREAD + i);
                                tx.open_tree(b"bench")
                                    .unwrap()
                                    .put(&k, &[1u8; VALUE_LEN])
                                    .unwrap();
                                tx.commit().unwrap();
                            }
                        });
                    }
                });
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bulk_insert, reads, durable_commits);
criterion_main!(benches);
