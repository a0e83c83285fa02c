//! The same client load against any etcd v3 endpoint, so `folio-server` and etcd itself can be
//! measured one beside the other (issue 15, "Measured beside etcd"). `bench/beside_etcd.sh` runs it
//! against both and prints one table.
//!
//! ```text
//! cargo run --release -p folio-server --example beside_etcd -- \
//!     --endpoint http://127.0.0.1:2379 --label etcd --pods 5000 --churn 4
//! ```
//!
//! The load, in order, with the etcd-client crate (one connection per client):
//!
//! 1. **Load** `--pods` pods of 1-4 KiB under `/registry/pods/<ns>/<name>`: the first fifth (at most
//!    2,000) by one client, one put after another; the rest by 16 clients at once. Each part gives
//!    a put throughput.
//! 2. **Ranges**: one client gets a random pod 2,000 times, then lists a random namespace (limit
//!    500) 200 times: latency p50 and p99 of each.
//! 3. **Churn** `--churn` rounds over every pod by 16 clients: 70% are updated with a new value of a
//!    new size, 15% deleted and created again, 15% left alone.
//! 4. **Compact** at the current revision (physical, so it has finished when the call returns), and
//!    read the file size and the size in use from `Status` (`db_size`, `db_size_in_use`).
//! 5. **Defrag under load**: one client puts (updates a random pod) and another gets a random pod,
//!    each every 2 ms, from one second before the Defragment call to one second after it returns.
//!    Reported: the defrag time, the longest put and the longest get whose time in flight overlaps
//!    the defrag (the stall a client saw), and how many requests failed. Then `Status` again.
//!
//! `--probe` only checks that the endpoint answers `Status` (exit code 0) and does nothing else.
//! The last line printed is one row of the table (`| label | ... |`); `--header` prints the header
//! first. Values are pseudo-random from `--seed` (printed), so both servers get the same data.
//! This is a program, not a test: it asserts nothing and its timings belong to the machine it ran on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, CompactionOptions, GetOptions};

/// The number of concurrent clients of the parallel phases.
const CLIENTS: usize = 16;
/// The namespaces the pods are spread over.
const NAMESPACES: usize = 20;
/// The smallest and largest pod, in bytes.
const POD_BYTES_MIN: usize = 1024;
const POD_BYTES_MAX: usize = 4096;
/// The period of the putting and the getting client during the defrag.
const DEFRAG_LOAD_PERIOD: Duration = Duration::from_millis(2);

/// The flags.
struct Args {
    endpoint: String,
    label: String,
    pods: usize,
    churn: usize,
    seed: u64,
    header: bool,
    probe: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: beside_etcd --endpoint URL [--label NAME] [--pods N] [--churn ROUNDS] [--seed S] [--header] [--probe]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        endpoint: "http://127.0.0.1:2379".into(),
        label: "server".into(),
        pods: 5000,
        churn: 4,
        seed: 15,
        header: false,
        probe: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--endpoint" => a.endpoint = value(),
            "--label" => a.label = value(),
            "--pods" => a.pods = value().parse().unwrap_or_else(|_| usage()),
            "--churn" => a.churn = value().parse().unwrap_or_else(|_| usage()),
            "--seed" => a.seed = value().parse().unwrap_or_else(|_| usage()),
            "--header" => a.header = true,
            "--probe" => a.probe = true,
            _ => usage(),
        }
    }
    if a.pods < 2 {
        usage()
    }
    a
}

/// SplitMix64: the same stream for the same seed on every machine.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The key of pod `i`.
fn pod_key(i: usize) -> String {
    format!("/registry/pods/ns-{:02}/pod-{:07}", i % NAMESPACES, i)
}

/// A pod of 1-4 KiB of printable bytes (neither server compresses).
fn pod_value(rng: &mut Rng) -> Vec<u8> {
    let len = POD_BYTES_MIN + rng.below(POD_BYTES_MAX - POD_BYTES_MIN + 1);
    (0..len).map(|_| b'a' + (rng.next() % 26) as u8).collect()
}

/// The `p`th percentile of sorted latencies.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn connect(endpoint: &str) -> Client {
    Client::connect([endpoint], None)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {endpoint}: {e}"))
}

/// Runs `work(client, rng, i)` for every `i` of `items` on `CLIENTS` connections at once; returns
/// the elapsed time.
async fn in_parallel<F, Fut>(endpoint: &str, items: Vec<usize>, seed: u64, work: F) -> Duration
where
    F: Fn(Client, Rng, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Rng> + Send,
{
    let work = Arc::new(work);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(connect(endpoint).await);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in clients.into_iter().enumerate() {
        let mine: Vec<usize> = items.iter().copied().skip(c).step_by(CLIENTS).collect();
        let work = work.clone();
        let mut rng = Rng(seed ^ (c as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
        tasks.push(tokio::spawn(async move {
            for i in mine {
                rng = work(client.clone(), rng, i).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("a client task panicked");
    }
    started.elapsed()
}

/// What one client saw while the defrag ran.
#[derive(Default)]
struct Seen {
    /// (sent at, time in flight) of each request, failed or not.
    requests: Vec<(Instant, Duration)>,
    failed: u64,
}

impl Seen {
    /// The longest time in flight of a request whose flight overlaps `[from, to]`.
    fn longest_overlapping(&self, from: Instant, to: Instant) -> Duration {
        self.requests
            .iter()
            .filter(|(sent, took)| *sent <= to && *sent + *took >= from)
            .map(|(_, took)| *took)
            .max()
            .unwrap_or_default()
    }
}

/// A client that puts (`put == true`) or gets a random pod every `DEFRAG_LOAD_PERIOD` until `stop`
/// is set.
async fn steady_client(
    mut client: Client,
    pods: usize,
    seed: u64,
    put: bool,
    stop: Arc<AtomicU64>,
) -> Seen {
    let mut rng = Rng(seed);
    let mut seen = Seen::default();
    let mut tick = tokio::time::interval(DEFRAG_LOAD_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while stop.load(Ordering::Relaxed) == 0 {
        tick.tick().await;
        let key = pod_key(rng.below(pods));
        let sent = Instant::now();
        let ok = if put {
            let value = pod_value(&mut rng);
            client.put(key, value, None).await.is_ok()
        } else {
            client.get(key, None).await.is_ok()
        };
        seen.requests.push((sent, sent.elapsed()));
        if !ok {
            seen.failed += 1;
        }
    }
    seen
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = parse_args();
    let endpoint = args.endpoint.clone();
    if args.probe {
        // Exits 0 once the endpoint answers Status: the script waits for a server with it.
        let answered = tokio::time::timeout(Duration::from_secs(1), async {
            let mut c = Client::connect([endpoint.as_str()], None).await.ok()?;
            c.status().await.ok()
        })
        .await;
        let code = if matches!(answered, Ok(Some(_))) {
            0
        } else {
            1
        };
        std::process::exit(code);
    }
    eprintln!(
        "{}: {} pods, {} churn rounds, seed {}, endpoint {}",
        args.label, args.pods, args.churn, args.seed, endpoint
    );
    let mut client = connect(&endpoint).await;

    // 1. Load: one client, then sixteen.
    let single = (args.pods / 5).clamp(1, 2000);
    let mut rng = Rng(args.seed);
    let started = Instant::now();
    for i in 0..single {
        client
            .put(pod_key(i), pod_value(&mut rng), None)
            .await
            .expect("put");
    }
    let put_1 = single as f64 / started.elapsed().as_secs_f64();
    let took = in_parallel(
        &endpoint,
        (single..args.pods).collect(),
        args.seed ^ 1,
        |mut c, mut rng, i| async move {
            c.put(pod_key(i), pod_value(&mut rng), None)
                .await
                .expect("put");
            rng
        },
    )
    .await;
    let put_16 = (args.pods - single) as f64 / took.as_secs_f64();
    eprintln!("load: {put_1:.0} puts/s with 1 client, {put_16:.0} puts/s with {CLIENTS}");

    // 2. Ranges: single gets, then lists of a namespace.
    let mut gets = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let key = pod_key(rng.below(args.pods));
        let sent = Instant::now();
        let r = client.get(key, None).await.expect("get");
        gets.push(sent.elapsed());
        assert_eq!(r.kvs().len(), 1, "every pod is there after the load");
    }
    gets.sort();
    let mut lists = Vec::with_capacity(200);
    for _ in 0..200 {
        let ns = format!("/registry/pods/ns-{:02}/", rng.below(NAMESPACES));
        let sent = Instant::now();
        client
            .get(ns, Some(GetOptions::new().with_prefix().with_limit(500)))
            .await
            .expect("list");
        lists.push(sent.elapsed());
    }
    lists.sort();
    eprintln!(
        "ranges: get p50 {:.2} ms p99 {:.2} ms; list of 500 p50 {:.2} ms p99 {:.2} ms",
        ms(percentile(&gets, 0.5)),
        ms(percentile(&gets, 0.99)),
        ms(percentile(&lists, 0.5)),
        ms(percentile(&lists, 0.99)),
    );

    // 3. Churn: updates, deletes and re-creates.
    let churn_started = Instant::now();
    for round in 0..args.churn {
        in_parallel(
            &endpoint,
            (0..args.pods).collect(),
            args.seed ^ ((round as u64 + 2) << 8),
            |mut c, mut rng, i| async move {
                match rng.below(100) {
                    0..70 => {
                        c.put(pod_key(i), pod_value(&mut rng), None)
                            .await
                            .expect("update");
                    }
                    70..85 => {
                        c.delete(pod_key(i), None).await.expect("delete");
                        c.put(pod_key(i), pod_value(&mut rng), None)
                            .await
                            .expect("re-create");
                    }
                    _ => {}
                }
                rng
            },
        )
        .await;
    }
    eprintln!(
        "churn: {} rounds in {:.1} s",
        args.churn,
        churn_started.elapsed().as_secs_f64()
    );

    // 4. Compact, physically, and the sizes.
    let rev = client
        .get("/registry/pods/", Some(GetOptions::new().with_count_only()))
        .await
        .expect("revision")
        .header()
        .expect("a response header")
        .revision();
    let started = Instant::now();
    client
        .compact(rev, Some(CompactionOptions::new().with_physical()))
        .await
        .expect("compact");
    let compact_took = started.elapsed();
    let before = client.status().await.expect("status");
    eprintln!(
        "compacted at {rev} in {:.2} s: file {:.1} MiB, {:.1} MiB in use",
        compact_took.as_secs_f64(),
        mib(before.db_size()),
        mib(before.raft_used_db_size())
    );

    // 5. Defrag while one client puts and another gets every 2 ms.
    let stop = Arc::new(AtomicU64::new(0));
    let putter = tokio::spawn(steady_client(
        connect(&endpoint).await,
        args.pods,
        args.seed ^ 0xD1,
        true,
        stop.clone(),
    ));
    let getter = tokio::spawn(steady_client(
        connect(&endpoint).await,
        args.pods,
        args.seed ^ 0xD2,
        false,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut maintenance = connect(&endpoint).await.maintenance_client();
    let defrag_from = Instant::now();
    let defragged = maintenance.defragment().await;
    let defrag_to = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(1, Ordering::Relaxed);
    let puts = putter.await.expect("the putting client");
    let reads = getter.await.expect("the getting client");
    if let Err(e) = &defragged {
        eprintln!("defragment failed: {e}");
    }
    let defrag_took = defrag_to - defrag_from;
    let write_stall = puts.longest_overlapping(defrag_from, defrag_to);
    let read_stall = reads.longest_overlapping(defrag_from, defrag_to);
    let failed = puts.failed + reads.failed;
    let after = client.status().await.expect("status");
    eprintln!(
        "defrag: {:.3} s, file {:.1} -> {:.1} MiB ({:.1} MiB in use); longest put {:.1} ms, \
         longest get {:.1} ms; {} puts and {} gets, {} failed",
        defrag_took.as_secs_f64(),
        mib(before.db_size()),
        mib(after.db_size()),
        mib(after.raft_used_db_size()),
        ms(write_stall),
        ms(read_stall),
        puts.requests.len(),
        reads.requests.len(),
        failed
    );

    if args.header {
        println!(
            "| server | puts/s, 1 client | puts/s, {CLIENTS} clients | get p50 / p99 ms | \
             list-500 p50 / p99 ms | file before defrag MiB (in use) | after MiB | defrag s | \
             longest put during defrag ms | longest get ms | failed |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
    }
    println!(
        "| {} | {:.0} | {:.0} | {:.2} / {:.2} | {:.2} / {:.2} | {:.1} ({:.1}) | {:.1} | {:.3}{} | {:.1} | {:.1} | {} |",
        args.label,
        put_1,
        put_16,
        ms(percentile(&gets, 0.5)),
        ms(percentile(&gets, 0.99)),
        ms(percentile(&lists, 0.5)),
        ms(percentile(&lists, 0.99)),
        mib(before.db_size()),
        mib(before.raft_used_db_size()),
        mib(after.db_size()),
        defrag_took.as_secs_f64(),
        if defragged.is_ok() { "" } else { " (failed)" },
        ms(write_stall),
        ms(read_stall),
        failed
    );
}
