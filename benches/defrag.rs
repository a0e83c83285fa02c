//! Defrag against the disk's floor, with criterion: the etcd-like store of `examples/defrag.rs`
//! (its file 2 GiB before defrag by default; `FOLIO_DEFRAG_LIVE_MB` sets the live size), defragged
//! online (with the page-cache warm-up it does before the swap, and without), beside a plain copy
//! (read, write, fsync) of the same number of bytes, and the same copy with its writes around the
//! page cache (`O_DIRECT`), as the defrag's are. Then what writers notice: the same defrag with 4
//! writers doing single durable puts of 1-4 KiB throughout, where each sample's time is the
//! longest put that overlapped the defrag (`online_longest_put`) and how long the defrag held
//! writers (`online_writers_held`).
//!
//! `cargo bench --bench defrag`
//!
//! Each quiet sample defrags the same fragmented file: it is hard-linked to a fresh name, opened
//! there, and defragged; the rename at the end replaces only that name, so the original is never
//! changed and no time goes into copying it between samples. Samples under load write to the file,
//! so each works on a copy, synced before the writers start. Page cache warm, as after the build.

#[path = "../examples/support/etcd_workload.rs"]
#[allow(dead_code)]
mod etcd_workload;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etcd_workload::{Rng, Workload, build, direct_copy, plain_copy, pod_key};
use folio::{Db, DefragOptions, DefragReport, Store};

fn live_mb() -> u64 {
    std::env::var("FOLIO_DEFRAG_LIVE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

/// Defrags a fresh name for `source` with `options`; returns the report.
fn defrag_once(source: &Path, dir: &Path, options: &DefragOptions) -> DefragReport {
    let work = dir.join("work.folio");
    let _ = std::fs::remove_file(&work);
    std::fs::hard_link(source, &work).unwrap();
    let db = Db::open(&work).unwrap();
    db.defrag(options).unwrap()
}

/// Defrags a copy of `source` while 4 writers put pods of 1-4 KiB; returns the longest put that
/// overlapped the defrag, and how long the defrag held writers.
fn defrag_under_load(source: &Path, dir: &Path, pods: u64) -> (Duration, Duration) {
    let work = dir.join("loaded.folio");
    std::fs::copy(source, &work).unwrap();
    std::fs::File::open(&work).unwrap().sync_all().unwrap();
    let store = Store::open(&work).unwrap();
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let (spans, report) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let (store, stop) = (&store, &stop);
                s.spawn(move || {
                    let mut rng = Rng::new(0x5eed + t);
                    let mut spans = Vec::new();
                    let mut value = Vec::with_capacity(4096);
                    while !stop.load(Ordering::Relaxed) {
                        let key = pod_key(rng.below(pods));
                        value.resize(1024 + rng.below(3073) as usize, t as u8);
                        let started = t0.elapsed();
                        store.put(&key, &value).unwrap();
                        spans.push((started, t0.elapsed()));
                    }
                    spans
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let from = t0.elapsed();
        let report = store.defrag(&DefragOptions::default()).unwrap();
        let to = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        let spans: Vec<(Duration, Duration)> = writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .filter(|&(started, ended)| started < to && ended > from)
            .collect();
        (spans, report)
    });
    drop(store);
    std::fs::remove_file(&work).unwrap();
    let longest = spans.iter().map(|&(s, e)| e - s).max().unwrap_or_default();
    (longest, report.pause)
}

fn defrag(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("folio-defrag-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let source = dir.path().join("fragmented.folio");
    let built = build(
        &source,
        Workload {
            live_bytes: live_mb() << 20,
            rounds: 3,
        },
    )
    .unwrap();
    let file_len = std::fs::metadata(&source).unwrap().len();
    let out_len = defrag_once(&source, dir.path(), &DefragOptions::default()).size_after;
    eprintln!(
        "defrag bench: {} pods, {} revisions; file {} MiB before defrag, {} MiB after",
        built.pods,
        built.revisions,
        file_len >> 20,
        out_len >> 20
    );

    let mut group = c.benchmark_group("defrag");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Bytes(out_len));
    // The whole defrag: the copy, the warm-up of the new file, the catch-up and the swap.
    group.bench_function("folio_defrag", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| defrag_once(&source, dir.path(), &DefragOptions::default()).duration)
                .sum()
        })
    });
    // Without the warm-up: what the copy costs beside the disk's floor.
    let cold_cache = DefragOptions::default().warm_cache(false);
    group.bench_function("folio_defrag_no_warm", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| defrag_once(&source, dir.path(), &cold_cache).duration)
                .sum()
        })
    });
    let packed = dir.path().join("work.folio");
    let copy = dir.path().join("copy");
    group.bench_function("plain_copy", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| plain_copy(&packed, &copy, out_len).unwrap())
                .sum()
        })
    });
    // The same bytes written around the page cache, as the defrag writes them.
    if direct_copy(&packed, &copy, out_len).unwrap().is_some() {
        group.bench_function("direct_copy", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| direct_copy(&packed, &copy, out_len).unwrap().unwrap())
                    .sum()
            })
        });
    }
    group.finish();

    // Under load: the time of each sample is what the writers noticed, not the defrag's.
    let mut group = c.benchmark_group("defrag_under_load");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.bench_function("online_longest_put", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| defrag_under_load(&source, dir.path(), built.pods).0)
                .sum()
        })
    });
    group.bench_function("online_writers_held", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| defrag_under_load(&source, dir.path(), built.pods).1)
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, defrag);
criterion_main!(benches);
