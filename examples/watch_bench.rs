//! Measures watch: the put throughput of 4 writer threads with no watcher and with 1,000 watchers
//! over overlapping prefixes (read by consumer threads as the writes go), the events per second
//! delivered to those watchers, the CPU time per put, and the memory of an idle watcher (RSS and
//! anonymous memory before and after opening 100,000 of them).
//!
//! `cargo run --release --example watch_bench -- [--seconds S] [--rounds R] [--watchers N]
//! [--consumers C] [--consumer-nice P] [--shared | --batch] [--poll-ms M] [--idle N] [--dir D]`
//!
//! Each round writes for S seconds with no watcher, then for S seconds with the watchers (opened
//! afresh), so the two are interleaved and share the machine's noise; the summary gives the
//! median of the rounds.
//!
//! CPU time per put comes from `getrusage`: the writers' own threads (`RUSAGE_THREAD`, summed
//! over the 4 writers: the cost a watcher adds to the commit path) and the whole process
//! (`RUSAGE_SELF`: that plus the consumers' work). On a machine with few cores the consumer
//! threads compete with the writers for CPU, so the write throughput with watchers measures the
//! whole machine's work per put; `--consumer-nice 19` lowers the consumers' priority, and
//! `--consumers 0` reads nothing while writing (every watcher overflows into catch-up; the
//! events are then read after the writers stop, and counted apart). The consumers receive owned
//! events (`Watcher::try_recv`: a copy of each key and value per watcher), with `--shared`
//! events that share their bytes (`Watcher::try_recv_shared`: a shared reference per event), or
//! with `--batch` batches that lend them (`Watcher::try_recv_batch`: a shared reference per
//! revision); the consumer looks at each event's key either way. A consumer sweeps its share of
//! the watchers with `try_recv*` until each has nothing ready, and sleeps 1 ms after a sweep that
//! found nothing; with `--poll-ms M` it sleeps M ms after every sweep instead (fewer, larger
//! responses for up to M ms more latency). The events per response are reported: the receive's
//! fixed cost is paid per response. Threads are named (`writer-N`,
//! `consumer-N`) so that `perf report --sort comm` tells their costs apart.
//!
//! The watchers: one in ten watches everything under `/registry/`, the others one of 10 namespace
//! prefixes or one of 100 object-name prefixes, so each put matches about 150 watchers. Writers
//! put 100-byte values under `/registry/ns-X/obj-YYYY` with group commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use folio::{BatchResponse, KeyRange, SharedResponse, Store, WatchOptions, WatchResponse, Watcher};

struct Args {
    seconds: u64,
    rounds: usize,
    watchers: usize,
    consumers: usize,
    consumer_nice: i32,
    shared: bool,
    batch: bool,
    poll_ms: u64,
    idle: usize,
    dir: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5,
        rounds: 1,
        watchers: 1000,
        consumers: 2,
        consumer_nice: 0,
        shared: false,
        batch: false,
        poll_ms: 0,
        idle: 100_000,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--shared" {
            a.shared = true;
            continue;
        }
        if flag == "--batch" {
            a.batch = true;
            continue;
        }
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => a.seconds = value().parse().expect("--seconds S"),
            "--rounds" => a.rounds = value().parse().expect("--rounds R"),
            "--watchers" => a.watchers = value().parse().expect("--watchers N"),
            "--consumers" => a.consumers = value().parse().expect("--consumers C"),
            "--consumer-nice" => a.consumer_nice = value().parse().expect("--consumer-nice P"),
            "--poll-ms" => a.poll_ms = value().parse().expect("--poll-ms M"),
            "--idle" => a.idle = value().parse().expect("--idle N"),
            "--dir" => a.dir = Some(value().into()),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

const WRITERS: u64 = 4;

/// CPU time (user + system) of this thread or of the whole process, in seconds.
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes one `rusage` into the zeroed value we pass and reads nothing else.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Seconds this thread has waited on a run queue for a core (`/proc/thread-self/schedstat`'s
/// second field), 0 where the kernel does not say.
fn runqueue_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

/// What one write phase did.
struct Phase {
    puts: u64,
    /// CPU seconds of the writer threads, summed.
    writer_cpu: f64,
    /// Seconds the writer threads waited for a core, summed: the machine was full.
    writer_runqueue: f64,
    /// CPU seconds of the whole process over the phase.
    process_cpu: f64,
}

/// Puts from 4 threads for `secs`.
fn write_for(store: &Store, secs: u64) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let process0 = cpu_seconds(libc::RUSAGE_SELF);
    let threads: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
            let builder = thread::Builder::new().name(format!("writer-{t}"));
            builder
                .spawn(move || {
                    let (cpu0, queued0) = (cpu_seconds(libc::RUSAGE_THREAD), runqueue_seconds());
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("/registry/ns-{}/obj-{:04}", i % 10, i % 10_000);
                        store.put(key.as_bytes(), &[b'v'; 100]).unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                        i += WRITERS;
                    }
                    (
                        cpu_seconds(libc::RUSAGE_THREAD) - cpu0,
                        runqueue_seconds() - queued0,
                    )
                })
                .unwrap()
        })
        .collect();
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let (mut writer_cpu, mut writer_runqueue) = (0.0, 0.0);
    for t in threads {
        let (cpu, queued) = t.join().unwrap();
        writer_cpu += cpu;
        writer_runqueue += queued;
    }
    Phase {
        puts: done.load(Ordering::Relaxed),
        writer_cpu,
        writer_runqueue,
        process_cpu: cpu_seconds(libc::RUSAGE_SELF) - process0,
    }
}

fn prefix(i: usize) -> KeyRange {
    if i.is_multiple_of(10) {
        KeyRange::prefix(b"/registry/")
    } else if i.is_multiple_of(2) {
        KeyRange::prefix(format!("/registry/ns-{}/", i % 10).as_bytes())
    } else {
        KeyRange::prefix(format!("/registry/ns-{}/obj-{:02}", i % 10, i % 100).as_bytes())
    }
}

/// `(VmRSS, RssAnon)` of this process in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

/// How the consumers receive.
#[derive(Clone, Copy)]
enum Mode {
    Owned,
    Shared,
    Batch,
}

/// Reads every ready response of `w`, looking at each event's key; returns the events and the
/// responses with events read.
fn receive(w: &Watcher, mode: Mode) -> (u64, u64) {
    let (mut got, mut responses) = (0, 0);
    match mode {
        Mode::Shared => {
            while let Some(r) = w.try_recv_shared().unwrap() {
                if let SharedResponse::Events { events, .. } = r {
                    got += events.iter().filter(|e| !e.kv().key.is_empty()).count() as u64;
                    responses += 1;
                }
            }
        }
        Mode::Batch => {
            while let Some(r) = w.try_recv_batch().unwrap() {
                if let BatchResponse::Events(batch) = r {
                    got += batch.iter().filter(|e| !e.kv().key.is_empty()).count() as u64;
                    responses += 1;
                }
            }
        }
        Mode::Owned => {
            while let Some(r) = w.try_recv().unwrap() {
                if let WatchResponse::Events { events, .. } = r {
                    got += events.iter().filter(|e| !e.kv.key.is_empty()).count() as u64;
                    responses += 1;
                }
            }
        }
    }
    (got, responses)
}

/// Reads every ready response of `watchers`; returns the events read.
fn drain(watchers: &[Watcher], mode: Mode) -> u64 {
    watchers.iter().map(|w| receive(w, mode).0).sum()
}

/// What one phase with watchers did.
struct Watched {
    phase: Phase,
    events_per_sec: f64,
    /// Events per response with events.
    events_per_response: f64,
    /// Events read after the writers stopped (with no consumer thread).
    drained: u64,
}

fn write_watched(store: &Store, a: &Args) -> Watched {
    let watchers: Vec<Watcher> = (0..a.watchers)
        .map(|i| store.watch(prefix(i), WatchOptions::new()).unwrap())
        .collect();
    let watchers = Arc::new(watchers);
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let responses = Arc::new(AtomicU64::new(0));
    let n = a.consumers;
    let (nice, poll_ms) = (a.consumer_nice, a.poll_ms);
    let mode = match (a.shared, a.batch) {
        (_, true) => Mode::Batch,
        (true, false) => Mode::Shared,
        (false, false) => Mode::Owned,
    };
    let consumers: Vec<_> = (0..n)
        .map(|c| {
            let (watchers, stop) = (watchers.clone(), stop.clone());
            let (delivered, responses) = (delivered.clone(), responses.clone());
            let builder = thread::Builder::new().name(format!("consumer-{c}"));
            builder
                .spawn(move || {
                    if nice != 0 {
                        // SAFETY: gettid and setpriority take and return plain integers.
                        unsafe {
                            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                            libc::setpriority(libc::PRIO_PROCESS, tid, nice);
                        }
                    }
                    while !stop.load(Ordering::Relaxed) {
                        let (mut got, mut sent) = (0, 0);
                        for w in watchers.iter().skip(c).step_by(n) {
                            let (events, r) = receive(w, mode);
                            got += events;
                            sent += r;
                        }
                        delivered.fetch_add(got, Ordering::Relaxed);
                        responses.fetch_add(sent, Ordering::Relaxed);
                        if poll_ms > 0 {
                            thread::sleep(Duration::from_millis(poll_ms));
                        } else if got == 0 {
                            thread::sleep(Duration::from_millis(1));
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    let phase = write_for(store, a.seconds);
    let events = delivered.load(Ordering::Relaxed);
    let sent = responses.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for c in consumers {
        c.join().unwrap();
    }
    let drained = if n == 0 { drain(&watchers, mode) } else { 0 };
    Watched {
        phase,
        events_per_sec: events as f64 / secs,
        events_per_response: events as f64 / sent.max(1) as f64,
        drained,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().unwrap();
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let store = Store::open(dir.join("watch_bench.folio")).unwrap();
    // Warm up: every key exists, so both phases write the same tree.
    write_for(&store, 1);

    let us = |cpu: f64, puts: u64| 1e6 * cpu / puts.max(1) as f64;
    let (mut ratios, mut none_rates, mut with_rates, mut event_rates) =
        (vec![], vec![], vec![], vec![]);
    let (mut writer_us, mut process_us, mut queued_us) = (vec![], vec![], vec![]);
    for round in 1..=a.rounds.max(1) {
        let none = write_for(&store, a.seconds);
        let none_rate = none.puts as f64 / a.seconds as f64;
        let with = write_watched(&store, &a);
        let with_rate = with.phase.puts as f64 / a.seconds as f64;
        println!(
            "round {round}: no watcher {none_rate:>7.0} puts/s, CPU/put writers {:>5.1} us (+{:.1} us waiting \
             for a core), process {:>5.1} us | {} watchers, {} consumers (nice {}{}): {with_rate:>7.0} puts/s \
             ({:.0}%), CPU/put writers {:>5.1} us (+{:.1} us waiting for a core), process {:>5.1} us, \
             {:>8.0} events/s ({:.0} per put, {:.1} per response){}",
            us(none.writer_cpu, none.puts),
            us(none.writer_runqueue, none.puts),
            us(none.process_cpu, none.puts),
            a.watchers,
            a.consumers,
            a.consumer_nice,
            match (a.shared, a.batch) {
                (_, true) => ", batch",
                (true, false) => ", shared",
                (false, false) => "",
            },
            100.0 * with_rate / none_rate,
            us(with.phase.writer_cpu, with.phase.puts),
            us(with.phase.writer_runqueue, with.phase.puts),
            us(with.phase.process_cpu, with.phase.puts),
            with.events_per_sec,
            with.events_per_sec * a.seconds as f64 / with.phase.puts.max(1) as f64,
            with.events_per_response,
            if a.consumers == 0 {
                format!(", {} events read after", with.drained)
            } else {
                String::new()
            },
        );
        ratios.push(with_rate / none_rate);
        none_rates.push(none_rate);
        with_rates.push(with_rate);
        event_rates.push(with.events_per_sec);
        writer_us.push((
            us(none.writer_cpu, none.puts),
            us(with.phase.writer_cpu, with.phase.puts),
        ));
        process_us.push((
            us(none.process_cpu, none.puts),
            us(with.phase.process_cpu, with.phase.puts),
        ));
        queued_us.push((
            us(none.writer_runqueue, none.puts),
            us(with.phase.writer_runqueue, with.phase.puts),
        ));
    }
    println!(
        "median of {} rounds: puts/s no watcher {:.0}, with {} watchers {:.0}, ratio {:.0}%; events/s {:.0}; \
         CPU/put writers {:.1} -> {:.1} us, process {:.1} -> {:.1} us; writers' wait for a core per put \
         {:.1} -> {:.1} us",
        a.rounds.max(1),
        median(none_rates),
        a.watchers,
        median(with_rates),
        100.0 * median(ratios),
        median(event_rates),
        median(writer_us.iter().map(|w| w.0).collect()),
        median(writer_us.iter().map(|w| w.1).collect()),
        median(process_us.iter().map(|w| w.0).collect()),
        median(process_us.iter().map(|w| w.1).collect()),
        median(queued_us.iter().map(|w| w.0).collect()),
        median(queued_us.iter().map(|w| w.1).collect()),
    );

    if a.idle == 0 {
        return;
    }
    let (rss0, anon0) = memory_kib();
    let idle: Vec<Watcher> = (0..a.idle)
        .map(|i| {
            store
                .watch(format!("/idle/{i:08}").as_bytes(), WatchOptions::new())
                .unwrap()
        })
        .collect();
    let (rss1, anon1) = memory_kib();
    println!(
        "idle watchers: {}; RSS +{} KiB, anonymous +{} KiB: {:.0} bytes (RSS) / {:.0} bytes (anon) per watcher",
        idle.len(),
        rss1.saturating_sub(rss0),
        anon1.saturating_sub(anon0),
        rss1.saturating_sub(rss0) as f64 * 1024.0 / a.idle as f64,
        anon1.saturating_sub(anon0) as f64 * 1024.0 / a.idle as f64
    );
}
