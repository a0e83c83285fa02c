//! Defrag against the disk's floor, with criterion: the etcd-like store of `examples/defrag.rs`
//! (its file 2 GiB before defrag by default; `FOLIO_DEFRAG_LIVE_MB` sets the live size), defragged
//! online (the defrag proper, and with the page-cache warm-up that follows it), beside a plain
//! copy (read, write, fsync) of the same number of bytes, and the same copy with its writes around
//! the page cache (`O_DIRECT`), as the defrag's are.
//!
//! `cargo bench --bench defrag`
//!
//! Each sample defrags the same fragmented file: it is hard-linked to a fresh name, opened there,
//! and defragged; the rename at the end replaces only that name, so the original is never changed
//! and no time goes into copying it between samples. Page cache warm, as after the build.

#[path = "../examples/support/etcd_workload.rs"]
#[allow(dead_code)]
mod etcd_workload;

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etcd_workload::{Workload, build, direct_copy, plain_copy};
use folio::{Db, DefragOptions, DefragReport};

fn live_mb() -> u64 {
    std::env::var("FOLIO_DEFRAG_LIVE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

/// Defrags a fresh name for `source` with the default options (so the page cache is warmed after
/// the swap); returns the report.
fn defrag_once(source: &Path, dir: &Path) -> DefragReport {
    let work = dir.join("work.folio");
    let _ = std::fs::remove_file(&work);
    std::fs::hard_link(source, &work).unwrap();
    let db = Db::open(&work).unwrap();
    db.defrag(&DefragOptions::default()).unwrap()
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
    let out_len = defrag_once(&source, dir.path()).size_after;
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
    // The defrag proper: from taking the write lock to the swap, what writers wait for.
    group.bench_function("folio_defrag", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| defrag_once(&source, dir.path()).duration)
                .sum()
        })
    });
    // And with the page-cache warm-up that follows it before `defrag` returns.
    group.bench_function("folio_defrag_and_warm", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let r = defrag_once(&source, dir.path());
                    r.duration + r.warm.unwrap_or_default()
                })
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
}

criterion_group!(benches, defrag);
criterion_main!(benches);
