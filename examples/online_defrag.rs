//! Online defrag under an etcd-like load: how long writers and readers are held, measured from
//! their side.
//!
//! ```sh
//! cargo run --release --example online_defrag                  # a store file of about 1.2 GiB
//! cargo run --release --example online_defrag -- --gib4        # about 4 GiB
//! cargo run --release --example online_defrag -- --sizes 1,4   # both, one after the other
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
//! Before the load starts it syncs and waits for the kernel to finish writing the built file back,
//! so that the "before" figures are not the build's writeback. It also prints the longest puts
//! and reads with when they happened relative to the defrag's steps (copy, warm-up, catch-up,
//! pause, release), so a stall can be traced to its cause, and each longest figure again less
//! the time the thread waited for a core (`/proc/thread-self/schedstat`): with 8 threads busy on
//! a machine of few cores, an operation can wait tens of milliseconds for a core with no storage
//! cause at all.
//!
//! Flags: `--live-mb N` (live value bytes, default 400: a file over 1 GiB), `--gib4` (live 1,600
//! MiB: a file over 4 GiB), `--sizes 1,4` (runs the same load and defrag on each size in turn,
//! N standing for a file of about N GiB, 400 MiB live per GiB, and ends with a side-by-side
//! summary: the writers' pause, the longest put and read before and during, p99.9, the write
//! rate), `--before-secs S`, `--dir D` (where to build; default a temporary directory under
//! the current one), `--keep` (keep the built store of each size in that directory, as
//! `online-defrag-<live>mb.folio`, and let later runs with `--keep` copy it instead of building
//! it again; delete it to rebuild; it takes the disk space of a second copy: 2 GiB at 1 GiB,
//! 7 GiB at 4 GiB), `--cold` (drop the page cache before the defrag; needs
//! root), `--pace-mb N` (pace the defrag's own disk traffic to N MiB/s while writers
//! commit, see `DefragOptions::pace`; 0 is unpaced; without it, the library's default, 64 MiB/s), `--control-secs S` (the control run: the
//! same load, and with `--cold` the same cache drop, for S seconds with no defrag, so that a
//! stall can be told from what the load or the cold cache does alone), `--counters` (count each
//! operation's page faults and context switches, from `/proc/thread-self/stat` and `status`,
//! and print them beside the longest ones: what held a stalled operation, and the time it was
//! neither on a core nor waiting for one: blocked, or taken by the hypervisor, which
//! `examples/steal_probe.rs` measures alone), `--readers-cpu N` (keep the reader threads on core
//! N, e.g. off the core that serves the disk's interrupts).

#[path = "support/etcd_workload.rs"]
#[allow(dead_code)]
mod etcd_workload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_workload::{Built, Rng, Workload, build, drop_caches, pod_key};
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
    pace_mb: Option<u64>,
    control: Option<Duration>,
    /// Live MiB of each store to run on, in turn.
    sizes: Vec<u64>,
    /// Count each operation's page faults and context switches.
    counters: bool,
    /// Keep each built store in `dir` and reuse it.
    keep: bool,
    /// The core the reader threads are kept on, if any.
    readers_cpu: Option<usize>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        live_mb: 400,
        before: Duration::from_secs(5),
        dir: None,
        cold: false,
        pace_mb: None,
        control: None,
        sizes: Vec::new(),
        counters: false,
        keep: false,
        readers_cpu: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--live-mb" => a.live_mb = value()?.parse().map_err(|e| format!("--live-mb: {e}"))?,
            "--gib4" => a.live_mb = 1600,
            "--sizes" => {
                a.sizes = value()?
                    .split(',')
                    .map(|n| n.trim().parse::<u64>().map(|gib| gib * 400))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--sizes: {e} (say e.g. --sizes 1,4)"))?
            }
            "--before-secs" => {
                a.before = Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|e| format!("--before-secs: {e}"))?,
                )
            }
            "--dir" => a.dir = Some(value()?.into()),
            "--cold" => a.cold = true,
            "--counters" => a.counters = true,
            "--keep" => a.keep = true,
            "--readers-cpu" => {
                a.readers_cpu = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--readers-cpu: {e}"))?,
                )
            }
            "--pace-mb" => {
                a.pace_mb = Some(value()?.parse().map_err(|e| format!("--pace-mb: {e}"))?)
            }
            "--control-secs" => {
                a.control = Some(Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|e| format!("--control-secs: {e}"))?,
                ))
            }
            other => {
                return Err(format!(
                    "unknown flag {other} (see the top of examples/online_defrag.rs)"
                ));
            }
        }
    }
    if a.sizes.is_empty() {
        a.sizes = vec![a.live_mb];
    }
    Ok(a)
}

/// One operation: its phase, when it ended (since the load started) and how long it took.
#[derive(Clone, Copy)]
struct Sample {
    phase: u8,
    /// A read that was a range (a namespace, 50 keys, every key of it counted), not a get.
    range: bool,
    at: Duration,
    latency: Duration,
    /// Of `latency`, the time the thread was runnable but waited for a core: the machine's
    /// share of the latency, not the store's.
    queued: Duration,
    /// What the thread's kernel counters moved by during the operation, with `--counters`.
    counts: Counts,
}

/// A thread's page faults and context switches (`/proc/thread-self/stat` and `status`).
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// Faults served without the disk (the page cache, or a fresh zeroed page).
    minor: u64,
    /// Faults that read from the disk.
    major: u64,
    /// The thread gave up its core: it blocked (a lock, I/O, a fault's wait).
    voluntary: u64,
    /// The scheduler took its core away.
    involuntary: u64,
    /// Nanoseconds the thread ran (`schedstat`'s first field). Interrupts served meanwhile count
    /// (no `IRQ_TIME_ACCOUNTING` here); time the hypervisor took from the virtual CPU does not
    /// (`PARAVIRT_TIME_ACCOUNTING`), so an operation that neither ran, nor waited for a core,
    /// nor blocked (no voluntary switch) for part of its time lost that part to the hypervisor.
    on_cpu: u64,
}

impl Counts {
    fn since(self, earlier: Counts) -> Counts {
        Counts {
            minor: self.minor.saturating_sub(earlier.minor),
            major: self.major.saturating_sub(earlier.major),
            voluntary: self.voluntary.saturating_sub(earlier.voluntary),
            involuntary: self.involuntary.saturating_sub(earlier.involuntary),
            on_cpu: self.on_cpu.saturating_sub(earlier.on_cpu),
        }
    }
}

/// The calling thread's [`Counts`], read through files kept open; all zero without
/// `--counters` or where the kernel does not say.
struct Counters(Option<(std::fs::File, std::fs::File, std::fs::File)>);

impl Counters {
    /// Opens the calling thread's counters if `on`; use it only on that thread.
    fn of_this_thread(on: bool) -> Counters {
        let open = |name: &str| std::fs::File::open(format!("/proc/thread-self/{name}")).ok();
        Counters(
            on.then(|| Some((open("stat")?, open("status")?, open("schedstat")?)))
                .flatten(),
        )
    }

    fn read(&self) -> Counts {
        use std::os::unix::fs::FileExt;
        let Some((stat, status, schedstat)) = &self.0 else {
            return Counts::default();
        };
        let mut buf = [0u8; 2048];
        let mut text = |f: &std::fs::File| -> String {
            let n = f.read_at(&mut buf, 0).unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        let stat = text(stat);
        // Fields after the command's closing parenthesis start at field 3 (state); minflt is
        // field 10 and majflt field 12.
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .map(|f| f.parse().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).copied().unwrap_or(0);
        let status = text(status);
        let line = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let on_cpu = text(schedstat)
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Counts {
            on_cpu,
            minor: field(10),
            major: field(12),
            voluntary: line("voluntary_ctxt_switches:"),
            involuntary: line("nonvoluntary_ctxt_switches:"),
        }
    }
}

impl Sample {
    /// The latency less the wait for a core: what the store held the caller.
    fn held(&self) -> Duration {
        self.latency.saturating_sub(self.queued)
    }
}

/// The calling thread's total wait for a core so far (`/proc/thread-self/schedstat`'s second
/// field), read through a file kept open: zero where the kernel does not say.
struct RunQueue(Option<std::fs::File>);

impl RunQueue {
    /// Opens the calling thread's counter; use it only on that thread.
    fn of_this_thread() -> RunQueue {
        RunQueue(std::fs::File::open("/proc/thread-self/schedstat").ok())
    }

    fn waited(&self) -> Duration {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 128];
        let Some(n) = self.0.as_ref().and_then(|f| f.read_at(&mut buf, 0).ok()) else {
            return Duration::ZERO;
        };
        let ns = std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        Duration::from_nanos(ns)
    }
}

/// The machine's CPU time so far, in clock ticks: (all, stolen by the hypervisor), from
/// `/proc/stat`'s first line; zeros where it does not say.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    (fields.iter().sum(), fields.get(7).copied().unwrap_or(0))
}

/// Waits (up to a minute) until the kernel has written back all but a little of what is dirty,
/// after a `sync`; returns how long that took.
fn settle() -> Duration {
    let started = Instant::now();
    let _ = std::process::Command::new("sync").status();
    let pending = || -> Option<u64> {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib = |name: &str| -> Option<u64> {
            info.lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        Some(kib("Dirty:")? + kib("Writeback:")?)
    };
    while started.elapsed() < Duration::from_secs(60) && pending().is_some_and(|k| k > 16 << 10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

/// The defrag's steps as seen from outside, since the load started.
#[derive(Default)]
struct Steps {
    started: Duration,
    copied: Option<Duration>,
    rounds: Vec<(Duration, bool)>,
    returned: Duration,
    /// A control run: no defrag, only the load.
    control: bool,
}

/// The steps an operation can end in, as [`Steps::step`] numbers them.
const STEP_NAMES: [&str; 5] = ["before", "copy", "warm-up", "catch-up to swap", "after"];

impl Steps {
    /// Which of [`STEP_NAMES`] an operation that ended at `at` fell in (a control run's are all
    /// "copy").
    fn step(&self, at: Duration) -> usize {
        let first = self.rounds.first().map_or(self.returned, |r| r.0);
        if at < self.started {
            0
        } else if at > self.returned {
            4
        } else if self.control || self.copied.is_none_or(|c| at <= c) {
            1
        } else if at <= first {
            2
        } else {
            3
        }
    }

    /// Which step of the defrag an operation that ended at `at` overlapped.
    fn name(&self, at: Duration) -> String {
        let since = |t: Duration| format!("{:+.0} ms", (at.as_secs_f64() - t.as_secs_f64()) * 1e3);
        if at < self.started {
            return "before".into();
        }
        if self.control {
            return format!("control run ({} from its start)", since(self.started));
        }
        if at > self.returned {
            return format!(
                "after the swap ({} after it returned)",
                since(self.returned)
            );
        }
        match self.copied {
            Some(c) if at <= c => format!("copy ({} from its start)", since(self.started)),
            Some(c) => {
                let first = self.rounds.first().map_or(self.returned, |r| r.0);
                if at <= first {
                    format!("warm-up ({} after the copy)", since(c))
                } else {
                    format!(
                        "catch-up, pause or swap ({} from the first round)",
                        since(first)
                    )
                }
            }
            None => format!("copy ({} from its start)", since(self.started)),
        }
    }
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
    let mut summaries = Vec::new();
    for (i, &live_mb) in a.sizes.iter().enumerate() {
        if a.sizes.len() > 1 {
            println!(
                "\n=== run {} of {}: {live_mb} MiB live ===",
                i + 1,
                a.sizes.len()
            );
        }
        summaries.push(run(&a, live_mb)?);
    }
    if summaries.len() > 1 {
        print_summaries(&summaries);
    }
    Ok(())
}

/// What one run measured, for the side-by-side summary.
struct Summary {
    live_mb: u64,
    file: u64,
    load: String,
    report: Option<folio::DefragReport>,
    put_longest: [Duration; 2],
    put_p999: [Duration; 2],
    read_longest: [Duration; 2],
    /// The longest put and read less their wait for a core, before and during.
    put_held: [Duration; 2],
    read_held: [Duration; 2],
    write_rate: f64,
}

/// Prints the runs side by side, one column each.
fn print_summaries(runs: &[Summary]) {
    println!("\n=== summary: each size in turn, in this one run ===");
    let row = |name: &str, cell: &dyn Fn(&Summary) -> String| {
        let cells: Vec<String> = runs.iter().map(|r| format!("{:>22}", cell(r))).collect();
        println!("{name:<44}{}", cells.join(""));
    };
    let pair = |d: [Duration; 2]| {
        format!(
            "{:.1} -> {:.1} ms",
            d[0].as_secs_f64() * 1e3,
            d[1].as_secs_f64() * 1e3
        )
    };
    let report = |r: &Summary, f: &dyn Fn(&folio::DefragReport) -> String| {
        r.report.as_ref().map_or_else(|| "(control)".into(), f)
    };
    row("live, file", &|r| {
        format!("{} MiB, {}", r.live_mb, mib(r.file))
    });
    row("load average at the start", &|r| {
        r.load
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    });
    row("writers held (the pause)", &|r| report(r, &|d| ms(d.pause)));
    row("swap made durable after it", &|r| {
        report(r, &|d| ms(d.finish))
    });
    row("defrag total, catch-up rounds", &|r| {
        report(r, &|d| {
            format!("{:.1} s, {}", d.duration.as_secs_f64(), d.rounds.len())
        })
    });
    row("longest put, before -> during", &|r| pair(r.put_longest));
    row("  less its wait for a core", &|r| pair(r.put_held));
    row("put p99.9 (all writers), before -> during", &|r| {
        pair(r.put_p999)
    });
    row("longest read, before -> during", &|r| pair(r.read_longest));
    row("  less its wait for a core", &|r| pair(r.read_held));
    row("write rate during / before", &|r| {
        format!("{:.0}%", r.write_rate)
    });
}

/// Builds (or copies) a store of `live_mb` MiB live, runs the load on it, defrags it (or not, in
/// a control run) and prints what it measured.
fn run(a: &Args, live_mb: u64) -> Result<Summary, Box<dyn std::error::Error>> {
    let dir = a.dir.clone().unwrap_or_else(|| ".".into());
    std::fs::create_dir_all(&dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("folio-online-")
        .tempdir_in(&dir)?;
    let path = tmp.path().join("etcd.folio");
    let workload = Workload {
        live_bytes: live_mb << 20,
        rounds: 3,
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "folio online defrag under load: {} live pods of 1-4 KiB, {WRITERS} writers (single durable puts, group commit), {READERS} readers (ranges of 50 and gets)",
        mib(workload.live_bytes)
    );
    println!(
        "defrag pace while writers commit: {}; load average at the start: {}",
        match a.pace_mb {
            None => "the default (64 MiB/s)".to_string(),
            Some(0) => "none".to_string(),
            Some(mb) => format!("{mb} MiB/s"),
        },
        load.trim()
    );
    let built = if a.keep {
        kept(&dir, &path, workload)?
    } else {
        build(&path, workload)?
    };
    let settled = settle();
    println!(
        "the built file was written back in {:.1} s before the load started",
        settled.as_secs_f64()
    );
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

    let t0 = Instant::now();
    let steps = Arc::new(Mutex::new(Steps::default()));
    let phase = AtomicU8::new(WARMUP);
    let stop = AtomicBool::new(false);
    let mut phase_time = [Duration::ZERO; 4];
    let counters_on = a.counters;
    let readers_cpu = a.readers_cpu;
    let (writers, readers, report) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let (store, phase, stop, t0) = (&store, &phase, &stop, t0);
                s.spawn(move || {
                    let mut rng = Rng::new(0xa11ce + t);
                    let run_queue = RunQueue::of_this_thread();
                    let counters = Counters::of_this_thread(counters_on);
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
                        let counted = counters.read();
                        let (started, queued) = (Instant::now(), run_queue.waited());
                        store.put(&key, &value).expect("put");
                        out.push(Sample {
                            phase: p.max(phase.load(Ordering::Relaxed)),
                            range: false,
                            at: t0.elapsed(),
                            latency: started.elapsed(),
                            queued: run_queue.waited().saturating_sub(queued),
                            counts: counters.read().since(counted),
                        });
                    }
                    out
                })
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|t| {
                let (store, phase, stop, t0) = (&store, &phase, &stop, t0);
                s.spawn(move || {
                    if let Some(id) = readers_cpu
                        && !core_affinity::set_for_current(core_affinity::CoreId { id })
                    {
                        eprintln!("reader {t}: could not keep it on core {id}");
                    }
                    let mut rng = Rng::new(0xbeef + t);
                    let run_queue = RunQueue::of_this_thread();
                    let counters = Counters::of_this_thread(counters_on);
                    let mut out = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let p = phase.load(Ordering::Relaxed);
                        let counted = counters.read();
                        let (started, queued) = (Instant::now(), run_queue.waited());
                        let range = rng.below(2) == 0;
                        if range {
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
                            range,
                            at: t0.elapsed(),
                            latency: started.elapsed(),
                            queued: run_queue.waited().saturating_sub(queued),
                            counts: counters.read().since(counted),
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
        let ticks = cpu_ticks();
        let started = Instant::now();
        steps.lock().unwrap().started = t0.elapsed();
        steps.lock().unwrap().control = a.control.is_some();
        let (on_copy, on_round) = (steps.clone(), steps.clone());
        let mut options = DefragOptions::default();
        if let Some(mb) = a.pace_mb {
            options = options.pace((mb > 0).then_some(mb << 20));
        }
        let options = options
            .progress(move |p| {
                if p.pages_done == p.pages_total {
                    on_copy.lock().unwrap().copied = Some(t0.elapsed());
                }
            })
            .on_round(move |r| {
                on_round
                    .lock()
                    .unwrap()
                    .rounds
                    .push((t0.elapsed() - r.duration - r.write_back, r.last))
            });
        let report = match a.control {
            None => Some(store.defrag(&options)),
            Some(secs) => {
                std::thread::sleep(secs);
                None
            }
        };
        steps.lock().unwrap().returned = t0.elapsed();
        phase_time[DURING as usize] = started.elapsed();
        let now = cpu_ticks();
        let (all, stolen) = (now.0.saturating_sub(ticks.0), now.1.saturating_sub(ticks.1));
        println!(
            "CPU time the hypervisor took from this machine's virtual CPUs during the defrag: {:.1}%",
            100.0 * stolen as f64 / all.max(1) as f64
        );
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
    let report = report.transpose()?;

    println!("put latency per writer (p50 / p99 / p99.9 / max):");
    for (i, w) in writers.iter().enumerate() {
        for (name, p) in [("before", BEFORE), ("during", DURING), ("1 s after", AFTER)] {
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
    let (after, reads_after) = (latencies(&all, AFTER), latencies(&readers, AFTER));
    let longest = |l: &[Duration]| ms(l.last().copied().unwrap_or_default());
    println!(
        "longest put: before {}, during the defrag {}, in the second after it {}",
        longest(&before),
        longest(&during),
        longest(&after)
    );
    println!(
        "longest read (range or get): before {}, during the defrag {}, in the second after it {}",
        longest(&reads_before),
        longest(&reads_during),
        longest(&reads_after)
    );
    println!("reads less their wait for a core, p50 / p99 / p99.9 / max (count):");
    for (kind, range) in [("range", true), ("get", false)] {
        for (name, p) in [("before", BEFORE), ("during", DURING)] {
            let mut l: Vec<Duration> = readers
                .iter()
                .filter(|s| s.phase == p && s.range == range)
                .map(Sample::held)
                .collect();
            l.sort_unstable();
            println!(
                "  {kind} {name}: {} / {} / {} / {} ({})",
                ms(percentile(&l, 0.5)),
                ms(percentile(&l, 0.99)),
                ms(percentile(&l, 0.999)),
                ms(l.last().copied().unwrap_or_default()),
                l.len()
            );
        }
    }
    let steps = steps.lock().unwrap();
    let most_held = |samples: &[Sample], phase: u8| {
        samples
            .iter()
            .filter(|s| s.phase == phase)
            .max_by_key(|s| s.held())
            .copied()
    };
    let held = |s: Option<Sample>| s.map_or_else(String::new, |s| ms(s.held()));
    for (what, samples) in [("put", &all[..]), ("read", &readers[..])] {
        let during = most_held(samples, DURING);
        println!(
            "longest {what} less its wait for a core: before {}, during the defrag {}{}, in the second after it {}",
            held(most_held(samples, BEFORE)),
            held(during),
            during.map_or_else(String::new, |s| format!(
                " (ended in the {})",
                steps.name(s.at)
            )),
            held(most_held(samples, AFTER))
        );
    }
    for (what, samples) in [("put", &all[..]), ("read", &readers[..])] {
        let mut longest = [(Duration::ZERO, Duration::ZERO); 5];
        for s in samples {
            let l = &mut longest[steps.step(s.at)];
            *l = (l.0.max(s.latency), l.1.max(s.held()));
        }
        println!(
            "longest {what} (less its wait for a core) by the step it ended in: {}",
            STEP_NAMES
                .iter()
                .zip(longest)
                .map(|(name, (l, h))| format!("{name} {} ({})", ms(l), ms(h)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (what, samples) in [("puts", &all[..]), ("reads", &readers[..])] {
        let mut slow: Vec<Sample> = samples
            .iter()
            .filter(|s| s.phase >= DURING)
            .copied()
            .collect();
        let by_latency: fn(&Sample) -> Duration = |s| s.latency;
        let by_held: fn(&Sample) -> Duration = Sample::held;
        for (title, key) in [
            ("longest", by_latency),
            ("longest less their wait for a core", by_held),
        ] {
            slow.sort_unstable_by_key(|s| std::cmp::Reverse(key(s)));
            println!("  the {title} {what} from the defrag's start, and where they ended:");
            for s in slow.iter().take(5) {
                let c = s.counts;
                println!(
                    "    {}{} ({} of it waiting for a core) in the {}{}",
                    if what == "reads" {
                        if s.range { "a range of " } else { "a get of " }
                    } else {
                        ""
                    },
                    ms(s.latency),
                    ms(s.queued),
                    steps.name(s.at),
                    if a.counters {
                        format!(
                            "; on a core {}, neither on one nor waiting for one {} (blocked, or taken by the hypervisor); faults {} minor, {} major; switches {} voluntary, {} involuntary",
                            ms(Duration::from_nanos(c.on_cpu)),
                            ms(s.held().saturating_sub(Duration::from_nanos(c.on_cpu))),
                            c.minor,
                            c.major,
                            c.voluntary,
                            c.involuntary
                        )
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    println!(
        "write throughput: before {:.0} puts/s, during {:.0} puts/s ({:.0}%); reads: before {:.0}/s, during {:.0}/s",
        rate(before.len(), BEFORE),
        rate(during.len(), DURING),
        100.0 * rate(during.len(), DURING) / rate(before.len(), BEFORE),
        rate(reads_before.len(), BEFORE),
        rate(reads_during.len(), DURING),
    );
    let put_p999 = |l: &[Duration]| percentile(l, 0.999);
    let last = |l: &[Duration]| l.last().copied().unwrap_or_default();
    let held_of = |samples: &[Sample], phase: u8| {
        most_held(samples, phase).map_or(Duration::ZERO, |s| s.held())
    };
    let mut summary = Summary {
        live_mb,
        file: size_before,
        load,
        report: None,
        put_longest: [last(&before), last(&during)],
        put_p999: [put_p999(&before), put_p999(&during)],
        read_longest: [last(&reads_before), last(&reads_during)],
        put_held: [held_of(&all, BEFORE), held_of(&all, DURING)],
        read_held: [held_of(&readers, BEFORE), held_of(&readers, DURING)],
        write_rate: 100.0 * rate(during.len(), DURING) / rate(before.len(), BEFORE),
    };
    let Some(report) = report else {
        println!(
            "control run: no defrag; the load ran {:.0} s in its place",
            phase_time[DURING as usize].as_secs_f64()
        );
        return Ok(summary);
    };
    let (entries, bytes) = report.caught_up();
    println!(
        "defrag: {} -> {} in {:.2} s; writers held {} (the last round and the swap), then the swap made durable in {} (commits meanwhile acknowledged after it); {} catch-up rounds copied {entries} entries ({}); rounds: {}",
        mib(report.size_before),
        mib(report.size_after),
        report.duration.as_secs_f64(),
        ms(report.pause),
        ms(report.finish),
        report.rounds.len(),
        mib(bytes),
        report
            .rounds
            .iter()
            .map(|r| if r.last {
                format!("{} in {} (writers held)", r.entries, ms(r.duration))
            } else {
                format!(
                    "{} in {} + {} commit{} written back in {}",
                    r.entries,
                    ms(r.duration),
                    r.commits,
                    if r.commits == 1 { "" } else { "s" },
                    ms(r.write_back)
                )
            })
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
    summary.report = Some(report);
    Ok(summary)
}

/// The store of `workload` kept in `dir` (built there first if it is not), copied to `path`.
/// The kept file is never opened by the load: each run defrags its own copy.
fn kept(dir: &Path, path: &Path, workload: Workload) -> Result<Built, Box<dyn std::error::Error>> {
    let name = format!("online-defrag-{}mb", workload.live_bytes >> 20);
    let (store, about) = (
        dir.join(format!("{name}.folio")),
        dir.join(format!("{name}.built")),
    );
    let built = match std::fs::read_to_string(&about) {
        Ok(text) if store.exists() => {
            let mut n = text.split_whitespace().map(str::parse::<i64>);
            let mut next = || -> Result<i64, String> {
                n.next().and_then(Result::ok).ok_or(format!(
                    "{} is not `pods revisions`: delete it",
                    about.display()
                ))
            };
            let (pods, revisions) = (next()? as u64, next()?);
            println!("reusing the store built before: {}", store.display());
            Built {
                pods,
                revisions,
                compacted: revisions - 1,
                build: Duration::ZERO,
                compact: Duration::ZERO,
            }
        }
        _ => {
            let _ = std::fs::remove_file(&store);
            let built = build(&store, workload)?;
            std::fs::write(&about, format!("{} {}\n", built.pods, built.revisions))?;
            println!(
                "built the store and kept it for later runs: {}",
                store.display()
            );
            built
        }
    };
    let started = Instant::now();
    std::fs::copy(&store, path)?;
    println!(
        "copied it for this run in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(built)
}
