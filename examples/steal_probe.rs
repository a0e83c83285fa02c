//! How long this machine takes its cores away from a thread that only spins: the floor under
//! every latency figure measured here, whatever the store does.
//!
//! `cargo run --release --example steal_probe -- [--secs S]`
//!
//! One thread per core, kept on it, reads the clock and its own `/proc/thread-self/schedstat`
//! (time on a core, time waiting for one) in a loop. Every gap of over 1 ms between two turns of
//! the loop is split into the time the thread waited for a core (another thread had it), the time
//! it ran (interrupts served meanwhile count here, as this kernel has no `IRQ_TIME_ACCOUNTING`),
//! and the rest: time it neither ran nor waited, which for a thread that never blocks is time the
//! hypervisor gave the virtual CPU to someone else (steal; `PARAVIRT_TIME_ACCOUNTING` keeps it out
//! of the other two). It prints the longest gaps of each core and the steal in total.

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// Nanoseconds on a core and waiting for one, from the calling thread's `schedstat`.
fn schedstat(file: &std::fs::File) -> (u64, u64) {
    let mut buf = [0u8; 128];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(0));
    (fields.next().unwrap_or(0), fields.next().unwrap_or(0))
}

/// One gap between two turns of the loop, in milliseconds.
#[derive(Clone, Copy)]
struct Gap {
    wall: f64,
    waited: f64,
    ran: f64,
}

impl Gap {
    fn stolen(&self) -> f64 {
        (self.wall - self.waited - self.ran).max(0.0)
    }
}

fn spin(core: usize, secs: Duration) -> Vec<Gap> {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        eprintln!("core {core}: could not keep the thread on it; its figures are any core's");
    }
    let file = std::fs::File::open("/proc/thread-self/schedstat").expect("schedstat");
    let start = Instant::now();
    let (mut last, (mut ran, mut waited)) = (start, schedstat(&file));
    let mut gaps = Vec::new();
    while last.duration_since(start) < secs {
        let now = Instant::now();
        let (r, w) = schedstat(&file);
        let wall = now.duration_since(last);
        if wall > Duration::from_millis(1) {
            gaps.push(Gap {
                wall: wall.as_secs_f64() * 1e3,
                waited: w.saturating_sub(waited) as f64 / 1e6,
                ran: r.saturating_sub(ran) as f64 / 1e6,
            });
        }
        (last, ran, waited) = (now, r, w);
    }
    gaps
}

fn main() {
    let mut secs = Duration::from_secs(10);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--secs" => {
                let s: u64 = args.next().and_then(|v| v.parse().ok()).expect("--secs S");
                secs = Duration::from_secs(s);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{cores} spinning threads, one per core, for {} s: gaps of over 1 ms",
        secs.as_secs()
    );
    let per_core: Vec<Vec<Gap>> = std::thread::scope(|s| {
        let spinners: Vec<_> = (0..cores).map(|c| s.spawn(move || spin(c, secs))).collect();
        spinners
            .into_iter()
            .map(|t| t.join().expect("spinner"))
            .collect()
    });
    for (core, mut gaps) in per_core.into_iter().enumerate() {
        let stolen: f64 = gaps.iter().map(Gap::stolen).sum();
        gaps.sort_by(|a, b| b.stolen().total_cmp(&a.stolen()));
        println!(
            "core {core}: {} gaps, {stolen:.0} ms stolen in all ({:.2}% of the time); the longest (ms: gap = waited + ran + stolen):",
            gaps.len(),
            100.0 * stolen / (secs.as_secs_f64() * 1e3)
        );
        for g in gaps.iter().take(5) {
            println!(
                "    {:.1} = {:.1} + {:.1} + {:.1}",
                g.wall,
                g.waited,
                g.ran,
                g.stolen()
            );
        }
    }
}
