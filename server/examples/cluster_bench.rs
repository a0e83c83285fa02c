//! Issue 17's benchmark (Done-when 4): write throughput and latency of a three-member
//! folio-server cluster against the single server, and the write stall clients see while the
//! cluster's leader defragments. Everything runs in this process on loopback ports, each server
//! in its own temporary data directory.
//!
//! ```text
//! cargo run --release -p folio-server --example cluster_bench -- [SECONDS] [KEYS]
//! ```
//!
//! Per setup (single, cluster): puts of 1 KiB values under `/registry/pods/` by 1 and by 16
//! clients for SECONDS (default 5) each, through the server or the cluster's leader: puts per
//! second, latency p50/p99/max. Then, on each setup: KEYS (default 20,000) keys of 1 KiB loaded,
//! churned (half rewritten, a quarter deleted) and compacted; one client puts every 2 ms while
//! another asks the (leader) member to Defragment; reported: defrag time, file size before and
//! after, and the longest put latency during the defrag beside the longest in the same time
//! before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use folio_server::config::member_id;
use folio_server::pb::etcdserverpb::kv_client::KvClient;
use folio_server::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use folio_server::pb::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, StatusRequest,
};
use folio_server::{Config, Running};
use tonic::transport::Channel;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_string())
        .unwrap()
        .timeout(Duration::from_secs(60))
        .connect_lazy()
}

/// A running setup: its servers and the URL writes go to (the single server or the leader).
struct Setup {
    running: Vec<Running>,
    url: String,
    _dir: tempfile::TempDir,
}

fn quiet(c: &mut Config) {
    // No automatic defrag or compaction in a benchmark.
    c.auto_defrag_threshold = 0.0;
}

async fn single() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut c = Config::for_test(dir.path().join("single"), &url);
    quiet(&mut c);
    let running = vec![folio_server::start(c).await.unwrap()];
    Setup {
        running,
        url,
        _dir: dir,
    }
}

async fn cluster() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let names = ["m1", "m2", "m3"];
    let initial = names
        .iter()
        .map(|n| format!("{n}=http://127.0.0.1:{}", free_port()))
        .collect::<Vec<_>>()
        .join(",");
    let mut running = Vec::new();
    let mut urls = Vec::new();
    for name in names {
        let url = format!("http://127.0.0.1:{}", free_port());
        let mut c = Config::for_test(dir.path().join(name), &url);
        c.name = name.to_string();
        c.initial_cluster = initial.clone();
        quiet(&mut c);
        running.push(folio_server::start(c).await.unwrap());
        urls.push(url);
    }
    // The leader, once every member agrees on it.
    let leader = loop {
        let mut seen = Vec::new();
        for u in &urls {
            let s = MaintenanceClient::new(channel(u))
                .status(StatusRequest {})
                .await
                .map(|s| s.into_inner().leader)
                .unwrap_or(0);
            seen.push(s);
        }
        if seen[0] != 0 && seen.iter().all(|s| *s == seen[0]) {
            break names.iter().position(|n| member_id(n) == seen[0]).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Setup {
        running,
        url: urls[leader].clone(),
        _dir: dir,
    }
}

fn pod(n: u64) -> Vec<u8> {
    format!("/registry/pods/default/pod-{n:08}").into_bytes()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `clients` clients putting for `secs`: puts per second and the latencies.
async fn throughput(url: &str, clients: u64, secs: u64) -> (f64, Vec<Duration>) {
    let until = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let mut kv = KvClient::new(channel(url));
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut n = c * 1_000_000;
                while Instant::now() < until {
                    let t = Instant::now();
                    kv.put(PutRequest {
                        key: pod(n),
                        value: vec![b'x'; 1024],
                        ..PutRequest::default()
                    })
                    .await
                    .unwrap();
                    lat.push(t.elapsed());
                    n += 1;
                }
                lat
            })
        })
        .collect();
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

/// Puts every 2 ms until `stop`; the longest latency seen.
async fn ticker(url: String, stop: Arc<AtomicBool>) -> Duration {
    let mut kv = KvClient::new(channel(&url));
    let mut worst = Duration::ZERO;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        kv.put(PutRequest {
            key: format!("/registry/ticks/{}", n % 100).into_bytes(),
            value: vec![b't'; 512],
            ..PutRequest::default()
        })
        .await
        .unwrap();
        worst = worst.max(t.elapsed());
        n += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    worst
}

async fn defrag_stall(setup: &Setup, keys: u64) {
    let url = setup.url.clone();
    // Load, churn, compact (16 loaders).
    let loaders: Vec<_> = (0..16u64)
        .map(|c| {
            let mut kv = KvClient::new(channel(&url));
            tokio::spawn(async move {
                for n in (c..keys).step_by(16) {
                    let put = |v: u8| PutRequest {
                        key: pod(n),
                        value: vec![v; 1024],
                        ..PutRequest::default()
                    };
                    kv.put(put(b'a')).await.unwrap();
                    if n % 2 == 0 {
                        kv.put(put(b'b')).await.unwrap();
                    }
                    if n % 4 == 1 {
                        kv.delete_range(DeleteRangeRequest {
                            key: pod(n),
                            ..DeleteRangeRequest::default()
                        })
                        .await
                        .unwrap();
                    }
                }
            })
        })
        .collect();
    for l in loaders {
        l.await.unwrap();
    }
    let mut kv = KvClient::new(channel(&url));
    let rev = kv
        .put(PutRequest {
            key: b"/registry/marker".to_vec(),
            value: b"m".to_vec(),
            ..PutRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;
    kv.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .unwrap();
    let mut maint = MaintenanceClient::new(channel(&url));
    let before = maint.status(StatusRequest {}).await.unwrap().into_inner();

    // The same ticker for as long as the defrag takes, before it and during it.
    let stop = Arc::new(AtomicBool::new(false));
    let t = tokio::spawn(ticker(url.clone(), stop.clone()));
    let started = Instant::now();
    maint.defragment(DefragmentRequest {}).await.unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let during = t.await.unwrap();
    let after = maint.status(StatusRequest {}).await.unwrap().into_inner();
    let stop = Arc::new(AtomicBool::new(false));
    let t = tokio::spawn(ticker(url.clone(), stop.clone()));
    tokio::time::sleep(took.max(Duration::from_millis(200))).await;
    stop.store(true, Ordering::Relaxed);
    let quiet = t.await.unwrap();
    println!(
        "  defrag: {:.3} s, file {:.1} -> {:.1} MB; longest put during it {:.1} ms (without a defrag, same span: {:.1} ms)",
        took.as_secs_f64(),
        before.db_size as f64 / 1e6,
        after.db_size as f64 / 1e6,
        ms(during),
        ms(quiet)
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let keys: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    for replicated in [false, true] {
        let setup = if replicated {
            println!("3-member cluster (writes through the leader):");
            cluster().await
        } else {
            println!("single server:");
            single().await
        };
        for clients in [1, 16] {
            let (rate, lat) = throughput(&setup.url, clients, secs).await;
            println!(
                "  puts, {clients:>2} clients: {rate:>8.0}/s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                ms(*lat.last().unwrap_or(&Duration::ZERO))
            );
        }
        defrag_stall(&setup, keys).await;
        for r in setup.running {
            r.stop().await;
        }
    }
}
