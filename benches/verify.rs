//! What verifying checksums by default costs a warm reader: random `get`s and range scans of
//! 1,000 entries on a 500,000-key database, with verification on (the default: each page verified
//! once, then remembered) and off (`Builder::verify_checksums(false)`), in one run.
//!
//! `nice cargo bench --bench verify`. The same file is copied twice and each copy opened one way,
//! then read whole once, so both are in the page cache and every page of the verified one has been
//! verified: what is measured is the steady state, where verification costs one bit test per page
//! visited. Each sample alternates the two ways in small chunks and keeps both times, and the
//! median ratio of verified to unverified time over all samples is printed at the end of each
//! group: on a shared, noisy machine that paired ratio is the figure to quote, since criterion's
//! medians of the two functions are taken at different moments.

use std::cell::RefCell;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use folio::{Db, Durability};

#[path = "support/keys.rs"]
mod keys;
use keys::key;

const KEYS: u64 = 500_000;
const PER_TXN: u64 = 50_000;
const VALUE_LEN: usize = 100;
const SCAN: usize = 1_000;

fn load(path: &Path) {
    let db = Db::builder()
        .durability(Durability::None)
        .open(path)
        .unwrap();
    let value = [7u8; VALUE_LEN];
    for batch in 0..KEYS / PER_TXN {
        let mut tx = db.begin_write().unwrap();
        let mut t = tx.open_tree(b"bench").unwrap();
        for i in batch * PER_TXN..(batch + 1) * PER_TXN {
            t.put(&key(i), &value).unwrap();
        }
        tx.commit().unwrap();
    }
    db.sync().unwrap();
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // Two copies of one file, so that neither side has the page cache's history of the load.
    let built = dir.path().join("built.folio");
    let on_path = dir.path().join("verified.folio");
    let off_path = dir.path().join("unverified.folio");
    load(&built);
    std::fs::copy(&built, &on_path).unwrap();
    std::fs::copy(&built, &off_path).unwrap();
    std::fs::remove_file(&built).unwrap();
    let dbs = [
        (
            "verified",
            Db::builder().verify_checksums(true).open(&on_path),
        ),
        (
            "unverified",
            Db::builder().verify_checksums(false).open(&off_path),
        ),
    ];
    let txs: Vec<_> = dbs
        .iter()
        .map(|(name, db)| {
            let db = db.as_ref().unwrap();
            let tx = db.begin_read().unwrap();
            // Warm: every page read once (and, verified, verified once).
            let tree = tx.tree(b"bench").unwrap().unwrap();
            assert_eq!(tree.iter().count() as u64, KEYS);
            (*name, tx)
        })
        .collect();

    let get = |tx: &folio::ReadTxn<'_>, i: &mut u64| {
        let tree = tx.tree(b"bench").unwrap().unwrap();
        *i = (*i + 7919) % KEYS;
        black_box(tree.get(&key(*i)).unwrap().unwrap());
    };
    let scan = |tx: &folio::ReadTxn<'_>, i: &mut u64| {
        let tree = tx.tree(b"bench").unwrap().unwrap();
        *i = (*i + 7919) % KEYS;
        let start = key(*i);
        let mut n = 0;
        for entry in tree.range(start.as_slice()..).unwrap().take(SCAN) {
            black_box(entry.unwrap());
            n += 1;
        }
        black_box(n);
    };
    let (on, off) = (&txs[0].1, &txs[1].1);
    let (mut a, mut b) = (0u64, 0u64);
    paired(
        c,
        "verify/random_get",
        1,
        16,
        &mut || get(on, &mut a),
        &mut || get(off, &mut b),
    );
    paired(
        c,
        "verify/range_1000",
        SCAN as u64,
        1,
        &mut || scan(on, &mut a),
        &mut || scan(off, &mut b),
    );
}

/// Benchmarks `verified` and `unverified` as two functions of the group `name`. Every sample of
/// either runs both, alternating in chunks of `chunk` calls, and reports its own side's time; the
/// pair's ratio is kept, and the median ratio over all samples is printed at the end. The two
/// sides of a sample meet the same load, so on a shared, noisy machine the median ratio is the
/// figure to quote; criterion's medians of the two functions come from different moments.
fn paired(
    c: &mut Criterion,
    name: &str,
    elements: u64,
    chunk: u64,
    verified: &mut dyn FnMut(),
    unverified: &mut dyn FnMut(),
) {
    let ratios = RefCell::new(Vec::new());
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(elements));
    g.bench_function("verified", |bench| {
        bench.iter_custom(|n| {
            let (on, off) = interleaved(n, chunk, verified, unverified);
            ratios
                .borrow_mut()
                .push(on.as_secs_f64() / off.as_secs_f64());
            on
        })
    });
    g.bench_function("unverified", |bench| {
        bench.iter_custom(|n| {
            let (off, on) = interleaved(n, chunk, unverified, verified);
            ratios
                .borrow_mut()
                .push(on.as_secs_f64() / off.as_secs_f64());
            off
        })
    });
    g.finish();
    let mut ratios = ratios.into_inner();
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q) as usize];
    println!(
        "{name}: verified / unverified, paired samples: median {:.3} (quartiles {:.3}-{:.3}, {} samples)",
        at(0.5),
        at(0.25),
        at(0.75),
        ratios.len()
    );
}

/// Runs `iters` calls of `measured` and as many of `other`, alternating in chunks of `chunk`;
/// returns the time each side's calls took.
fn interleaved(
    iters: u64,
    chunk: u64,
    measured: &mut dyn FnMut(),
    other: &mut dyn FnMut(),
) -> (Duration, Duration) {
    let (mut mine, mut theirs) = (Duration::ZERO, Duration::ZERO);
    let mut done = 0;
    while done < iters {
        let n = chunk.min(iters - done);
        let started = Instant::now();
        for _ in 0..n {
            measured();
        }
        let middle = Instant::now();
        for _ in 0..n {
            other();
        }
        mine += middle - started;
        theirs += middle.elapsed();
        done += n;
    }
    (mine, theirs)
}

criterion_group!(benches, reads);
criterion_main!(benches);
