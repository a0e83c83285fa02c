//! Measures the MVCC store: puts per second from 1 and 8 threads, range reads at the current and
//! at an old revision, compaction throughput with the longest put latency seen while it runs, and
//! the time to open (rebuild the index of) a large store.
//!
//! `cargo run --release --example mvcc_bench -- [--keys N] [--revisions R] [--value-bytes B] [--dir D]
//! [--puts P] [--put-reps K]`
//!
//! Defaults: 250,000 keys × 5 revisions of 100-byte values; compacting at the last revision keeps
//! the newest revision of each key and removes the other 1,000,000. `--keys 1000000` gives the 1M × 5 open time.
//!
//! The durable puts run `P` puts (default 4,000) from 1 thread, then from 8, `K` times (default 3)
//! in turn, each on a fresh store, and report the medians: syncs on a shared disk vary from one
//! moment to the next, and taking turns lets a slow moment fall on both. They also report the
//! syncs per put (counted by a storage wrapped around the file): how many ways group commit shared
//! each sync, which the disk's mood does not change; and per group-commit round (per meta write)
//! the puts it carried, its write calls, the time a sync took and the time from one round to the
//! next, so that a round's sync can be told from what else it waits for. Run them on the disk (`--dir` under a real
//! file system, not tmpfs): with syncs that cost nothing, 8 threads on a small machine only
//! compete for its cores.

#[path = "support/counted.rs"]
mod counted;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use folio::storage::FileStorage;
use folio::{Db, Durability, KeyRange, Op, RangeOptions, Store};

struct Args {
    keys: u64,
    revisions: u64,
    value_bytes: usize,
    dir: Option<PathBuf>,
    puts: u64,
    put_reps: usize,
}

fn args() -> Args {
    let mut a = Args {
        keys: 250_000,
        revisions: 5,
        value_bytes: 100,
        dir: None,
        puts: 4000,
        put_reps: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--keys" => a.keys = value().parse().expect("--keys N"),
            "--revisions" => a.revisions = value().parse().expect("--revisions R"),
            "--value-bytes" => a.value_bytes = value().parse().expect("--value-bytes B"),
            "--dir" => a.dir = Some(value().into()),
            "--puts" => a.puts = value().parse().expect("--puts P"),
            "--put-reps" => a.put_reps = value().parse::<usize>().expect("--put-reps K").max(1),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn key(i: u64) -> Vec<u8> {
    format!("/registry/pods/ns-{:03}/pod-{:08}", i % 100, i).into_bytes()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// What one run of durable single puts measured.
struct PutRun {
    /// Puts per second.
    rate: f64,
    syncs_per_put: f64,
    /// Puts per group-commit round (per meta write).
    puts_per_round: f64,
    /// Write calls per round, the meta's included.
    writes_per_round: f64,
    /// Milliseconds a sync took, on average.
    sync_ms: f64,
    /// Milliseconds from one round to the next: the sync and everything else a round waits for
    /// (waking the writers, their next commit).
    round_ms: f64,
}

/// Durable single puts with `threads` threads, each put its own commit, in a fresh store (as
/// [`Store::open`] makes it: group commit), counted by a storage wrapped around the file.
fn puts_per_second(dir: &Path, threads: u64, per_thread: u64, value: &[u8]) -> PutRun {
    let path = dir.join(format!("puts-{threads}.folio"));
    let _ = std::fs::remove_file(&path);
    let counts = Arc::new(counted::Counts::default());
    let file = counted::Counted {
        file: FileStorage::create_new(&path).unwrap(),
        counts: counts.clone(),
    };
    let db = Db::builder()
        .durability(Durability::Group)
        .create_with(Box::new(file))
        .unwrap();
    let store = Store::with_db(db).unwrap();
    let read = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let before = [
        &counts.syncs,
        &counts.metas,
        &counts.writes,
        &counts.sync_nanos,
    ]
    .map(read);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let store = &store;
            s.spawn(move || {
                for i in 0..per_thread {
                    store.put(&key(t * per_thread + i), value).unwrap();
                }
            });
        }
    });
    let puts = (threads * per_thread) as f64;
    let elapsed = start.elapsed().as_secs_f64();
    let after = [
        &counts.syncs,
        &counts.metas,
        &counts.writes,
        &counts.sync_nanos,
    ]
    .map(read);
    let [syncs, rounds, writes, sync_nanos] =
        std::array::from_fn(|i| (after[i] - before[i]) as f64);
    let rounds = rounds.max(1.0);
    PutRun {
        rate: puts / elapsed,
        syncs_per_put: syncs / puts,
        puts_per_round: puts / rounds,
        writes_per_round: writes / rounds,
        sync_ms: sync_nanos / 1e6 / syncs.max(1.0),
        round_ms: elapsed * 1e3 / rounds,
    }
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().unwrap();
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let value = vec![b'v'; a.value_bytes];
    println!(
        "folio MVCC benchmark: {} keys x {} revisions, {}-byte values, in {}",
        a.keys,
        a.revisions,
        a.value_bytes,
        dir.display()
    );

    let (mut ones, mut eights) = (Vec::new(), Vec::new());
    for _ in 0..a.put_reps {
        ones.push(puts_per_second(&dir, 1, a.puts, &value));
        eights.push(puts_per_second(&dir, 8, a.puts / 8, &value));
    }
    let show = |runs: &[PutRun], f: fn(&PutRun) -> f64, digits: usize| {
        runs.iter()
            .map(|r| format!("{:.digits$}", f(r)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    type Row = (&'static str, fn(&PutRun) -> f64, usize);
    let rows: [Row; 6] = [
        ("puts/s, durable", |r| r.rate, 0),
        ("syncs per put", |r| r.syncs_per_put, 2),
        ("puts per round", |r| r.puts_per_round, 2),
        ("write calls per round", |r| r.writes_per_round, 2),
        ("ms per sync", |r| r.sync_ms, 3),
        ("ms per round", |r| r.round_ms, 3),
    ];
    for (what, f, digits) in rows {
        println!("{what}, 1 thread, each run:  {}", show(&ones, f, digits));
        println!("{what}, 8 threads, each run: {}", show(&eights, f, digits));
    }
    let median_of = |runs: &[PutRun], f: fn(&PutRun) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (one, eight) = (median_of(&ones, |r| r.rate), median_of(&eights, |r| r.rate));
    let one_syncs = median_of(&ones, |r| r.syncs_per_put);
    let eight_syncs = median_of(&eights, |r| r.syncs_per_put);
    println!("puts/s, durable, 1 thread:   {one:>10.0}  ({one_syncs:.2} syncs per put)");
    println!(
        "puts/s, durable, 8 threads:  {eight:>10.0}  ({:.1}x, group commit; {eight_syncs:.2} syncs per put, {:.1}x fewer)",
        eight / one,
        one_syncs / eight_syncs
    );

    // Load: each round rewrites every key, 1,000 puts per transaction (one revision each).
    let path = dir.join("store.folio");
    // A store left by an earlier run (with `--keys` of another size) would be opened, not made.
    let _ = std::fs::remove_file(&path);
    let store = Store::open(&path).unwrap();
    let start = Instant::now();
    let mut round_end = Vec::new();
    for _round in 0..a.revisions {
        for chunk in (0..a.keys).collect::<Vec<_>>().chunks(1000) {
            let ops: Vec<Op> = chunk.iter().map(|&i| Op::put(&key(i), &value)).collect();
            store.txn().then(ops).commit().unwrap();
        }
        round_end.push(store.current_revision());
    }
    let revisions = a.keys * a.revisions;
    let load = start.elapsed();
    println!(
        "load {revisions} revisions: {:.1} s ({:.0} revisions/s); file {} MiB",
        load.as_secs_f64(),
        revisions as f64 / load.as_secs_f64(),
        std::fs::metadata(&path).unwrap().len() >> 20
    );

    // Range reads of 500 keys under one namespace prefix, now and at the end of the first round.
    for (label, rev) in [("current", 0), ("old (round 1)", round_end[0])] {
        let mut times = Vec::new();
        for i in 0..200u64 {
            let prefix = format!("/registry/pods/ns-{:03}/", i % 100);
            let t = Instant::now();
            let r = store
                .range(
                    KeyRange::prefix(prefix.as_bytes()),
                    RangeOptions::at(rev).limit(500),
                )
                .unwrap();
            times.push(t.elapsed());
            assert_eq!(r.kvs.len() as u64, (a.keys / 100).min(500));
        }
        println!(
            "range 500 keys at {label:<14} median {:>8.1} µs",
            median(times).as_secs_f64() * 1e6
        );
    }

    // Open time: rebuild the key index from the key tree.
    drop(store);
    let t = Instant::now();
    let store = Store::open(&path).unwrap();
    println!(
        "open ({} keys x {} revisions): {:.2} s",
        a.keys,
        a.revisions,
        t.elapsed().as_secs_f64()
    );

    // Compaction of everything but the newest revision of each key, while a writer keeps putting.
    let at = *round_end.last().expect("at least one round");
    let stored = |store: &Store| {
        let stats = store.db().stats().unwrap();
        stats
            .trees
            .iter()
            .find(|t| t.name == b"mvcc.key")
            .map_or(0, |t| t.len)
    };
    let before = stored(&store);
    let done = AtomicBool::new(false);
    let (compact_time, worst, puts) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let (mut worst, mut n) = (Duration::ZERO, 0u64);
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                store.put(&key(a.keys + n % 1000), &value).unwrap();
                worst = worst.max(t.elapsed());
                n += 1;
            }
            (worst, n)
        });
        let t = Instant::now();
        store.compact(at).unwrap();
        let elapsed = t.elapsed();
        done.store(true, Ordering::Relaxed);
        let (worst, n) = writer.join().unwrap();
        (elapsed, worst, n)
    });
    let removed = before + puts - stored(&store);
    println!(
        "compact {removed} revisions: {:.1} s ({:.0} revisions/s); {puts} puts ran meanwhile, the longest took {:.1} ms",
        compact_time.as_secs_f64(),
        removed as f64 / compact_time.as_secs_f64(),
        worst.as_secs_f64() * 1e3
    );
    let report = store.db().check().unwrap();
    println!("check: {report}");
}
