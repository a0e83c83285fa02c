//! Online defrag under an etcd-like load: how long writers and readers are held, measured from
//! their side.
//!
//! ```sh
//! cargo run --release --example online_defrag              # a store file of about 1.2 GiB
//! cargo run --release --example online_defrag -- --gib4    # about 4 GiB
//! ```
//!
//! It builds a churned, compacted store (`support/etcd_workload.rs`), opens it with group
//! commit, starts 4 writer threads doing single durable puts of 1-4 KiB pods under
//! `/registry/pods/...` and 4 reader threads doing ranges (a namespace, 50 keys) and gets, lets
//! them run for `--before-secs` (default 5), then defragments online and lets them run 1 s more.
//! It prints every writer's put latency (p50, p99, p99.9, max) before and during the defrag, the
//! longest put and the longest read during it, throughput before and during, and the defrag's
//! report: total time, the writers' pause, rounds and file sizes.
//!
//! Flags: `--live-mb N` (live value bytes, default 400: a file over 1 GiB), `--gib4` (live 1,600
//! MiB: a file over 4 GiB), `--before-secs S`, `--dir D` (where to build; default a temporary
//! directory under the current one), `--cold` (drop the page cache before the defrag; needs
//! root).

#[path = "support/etcd_workload.rs"]
#[allow(dead_code)]
mod etcd_workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use etcd_workload::{Rng, Workload, build, drop_caches, pod_key};
use folio::{DefragOptions, KeyRange, RangeOptions, Store};

const WRITERS: u64 = 4;
const READERS: u64 = 4;
/// Phases of the run, as the threads tag their operations.
const WARMUP: u8 = 0;
const BEFORE: u8 = 1;
const DURING: u8 = 2;
const AFTER: u8 = 3;

struct Args {
    live_mb: u64,
    before: Duration,
    dir: Option<PathBuf>,
    cold: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        live_mb: 400,
        before: Duration::from_secs(5),
        dir: None,
        cold: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--live-mb" => a.live_mb = value()?.parse().map_err(|e| format!("--live-mb: {e}"))?,
            "--gib4" => a.live_mb = 1600,
            "--before-secs" => {
                a.before = Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|e| format!("--before-secs: {e}"))?,
                )
            }
            "--dir" => a.dir = Some(value()?.into()),
            "--cold" => a.cold = true,
            other => {
                return Err(format!(
                    "unknown flag {other} (see the top of examples/online_defrag.rs)"
                ));
            }
        }
    }
    Ok(a)
}

/// One operation: its phase, when it ended (since the start) and how long it took.
#[derive(Clone, Copy)]
struct Sample {
    phase: u8,
    latency: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn latencies(samples: &[Sample], phase: u8) -> Vec<Duration> {
    let mut l: Vec<Duration> = samples
        .iter()
        .filter(|s| s.phase == phase)
        .map(|s| s.latency)
        .collect();
    l.sort_unstable();
    l
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    let tmp = tempfile::Builder::new()
        .prefix("folio-online-")
        .tempdir_in(a.dir.clone().unwrap_or_else(|| ".".into()))?;
    let path = tmp.path().join("etcd.folio");
    let workload = Workload {
        live_bytes: a.live_mb << 20,
        rounds: 3,
    };
    println!(
        "folio online defrag under load: {} live pods of 1-4 KiB, {WRITERS} writers (single durable puts, group commit), {READERS} readers (ranges of 50 and gets)",
        mib(workload.live_bytes)
    );
    let built = build(&path, workload)?;
    let pods = built.pods;
    let store = Store::open(&path)?;
    let size_before = std::fs::metadata(&path)?.len();
    println!(
        "built {} pods, {} revisions in {:.1} s; file {}",
        pods,
        built.revisions,
        built.build.as_secs_f64(),
        mib(size_before)
    );

    let phase = AtomicU8::new(WARMUP);
    let stop = AtomicBool::new(false);
    let mut phase_time = [Duration::ZERO; 4];
    let (writers, readers, report) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let (store, phase, stop) = (&store, &phase, &stop);
                s.spawn(move || {
                    let mut rng = Rng::new(0xa11ce + t);
                    let mut out = Vec::new();
                    let mut value = Vec::with_capacity(4096);
                    while !stop.load(Ordering::Relaxed) {
                        let key = pod_key(rng.below(pods));
                        let len = 1024 + rng.below(3073) as usize;
                        value.clear();
                        while value.len() < len {
                            value.extend_from_slice(&rng.next().to_le_bytes());
                        }
                        value.truncate(len);
                        let p = phase.load(Ordering::Relaxed);
                        let started = Instant::now();
                        store.put(&key, &value).expect("put");
                        out.push(Sample {
                            phase: p.max(phase.load(Ordering::Relaxed)),
                            latency: started.elapsed(),
                        });
                    }
                    out
                })
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|t| {
                let (store, phase, stop) = (&store, &phase, &stop);
                s.spawn(move || {
                    let mut rng = Rng::new(0xbeef + t);
                    let mut out = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let p = phase.load(Ordering::Relaxed);
                        let started = Instant::now();
                        if rng.below(2) == 0 {
                            let ns = format!("/registry/pods/ns-{:02}/", rng.below(50));
                            store
                                .range(
                                    KeyRange::prefix(ns.as_bytes()),
                                    RangeOptions::current().limit(50),
                                )
                                .expect("range");
                        } else {
                            store
                                .range(
                                    KeyRange::key(&pod_key(rng.below(pods))),
                                    RangeOptions::current(),
                                )
                                .expect("get");
                        }
                        out.push(Sample {
                            phase: p.max(phase.load(Ordering::Relaxed)),
                            latency: started.elapsed(),
                        });
                    }
                    out
                })
            })
            .collect();

        std::thread::sleep(Duration::from_secs(1));
        phase.store(BEFORE, Ordering::Relaxed);
        std::thread::sleep(a.before);
        phase_time[BEFORE as usize] = a.before;
        if a.cold && !drop_caches() {
            eprintln!("--cold needs root to write /proc/sys/vm/drop_caches; going on warm");
        }
        phase.store(DURING, Ordering::Relaxed);
        let started = Instant::now();
        let report = store.defrag(&DefragOptions::default());
        phase_time[DURING as usize] = started.elapsed();
        phase.store(AFTER, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        let writers: Vec<Vec<Sample>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        let readers: Vec<Sample> = readers
            .into_iter()
            .flat_map(|r| r.join().unwrap())
            .collect();
        (writers, readers, report)
    });
    let report = report?;

    println!("put latency per writer (p50 / p99 / p99.9 / max):");
    for (i, w) in writers.iter().enumerate() {
        for (name, p) in [("before", BEFORE), ("during", DURING)] {
            let l = latencies(w, p);
            println!(
                "  writer {i} {name}: {} / {} / {} / {} ({} puts)",
                ms(percentile(&l, 0.5)),
                ms(percentile(&l, 0.99)),
                ms(percentile(&l, 0.999)),
                ms(l.last().copied().unwrap_or_default()),
                l.len()
            );
        }
    }
    let all: Vec<Sample> = writers.iter().flatten().copied().collect();
    let (before, during) = (latencies(&all, BEFORE), latencies(&all, DURING));
    let reads_before = latencies(&readers, BEFORE);
    let reads_during = latencies(&readers, DURING);
    let rate = |n: usize, p: u8| n as f64 / phase_time[p as usize].as_secs_f64();
    println!(
        "longest put: before {}, during the defrag {}",
        ms(before.last().copied().unwrap_or_default()),
        ms(during.last().copied().unwrap_or_default())
    );
    println!(
        "longest read (range or get): before {}, during the defrag {}",
        ms(reads_before.last().copied().unwrap_or_default()),
        ms(reads_during.last().copied().unwrap_or_default())
    );
    println!(
        "write throughput: before {:.0} puts/s, during {:.0} puts/s ({:.0}%); reads: before {:.0}/s, during {:.0}/s",
        rate(before.len(), BEFORE),
        rate(during.len(), DURING),
        100.0 * rate(during.len(), DURING) / rate(before.len(), BEFORE),
        rate(reads_before.len(), BEFORE),
        rate(reads_during.len(), DURING),
    );
    let (entries, bytes) = report.caught_up();
    println!(
        "defrag: {} -> {} in {:.2} s; writers held {} (the last round and the swap); {} catch-up rounds copied {entries} entries ({}); rounds: {}",
        mib(report.size_before),
        mib(report.size_after),
        report.duration.as_secs_f64(),
        ms(report.pause),
        report.rounds.len(),
        mib(bytes),
        report
            .rounds
            .iter()
            .map(|r| format!("{} in {}", r.entries, ms(r.duration)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(warm) = report.warm {
        println!(
            "the new file was read into the page cache in {:.2} s before the swap",
            warm.as_secs_f64()
        );
    }
    let check = store.db().check()?;
    println!(
        "after: check {}",
        if check.is_clean() { "clean" } else { "FAILED" }
    );
    if !check.is_clean() {
        return Err(format!("check failed: {check}").into());
    }
    Ok(())
}
