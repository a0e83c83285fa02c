//! folio-server as a three-member cluster in one process (issue 17): writes through every
//! member while the leader (then a follower) is killed and restarted, every acknowledged write on
//! every member and HashKV equal at one revision; a watch on a follower sees writes made through
//! the leader; a lease granted through a follower is expired by the leader alone and revoked at
//! one revision on every member; Status, MemberList and Defragment as a cluster reports them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use folio::ManualClock;
use folio_server::config::{LeaseClock, member_id};
use folio_server::pb::etcdserverpb::cluster_client::ClusterClient;
use folio_server::pb::etcdserverpb::kv_client::KvClient;
use folio_server::pb::etcdserverpb::lease_client::LeaseClient;
use folio_server::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use folio_server::pb::etcdserverpb::watch_client::WatchClient;
use folio_server::pb::etcdserverpb::watch_request::RequestUnion;
use folio_server::pb::etcdserverpb::{
    DefragmentRequest, DeleteRangeRequest, HashKvRequest, LeaseGrantRequest, LeaseKeepAliveRequest,
    LeaseLeasesRequest, LeaseTimeToLiveRequest, MemberListRequest, PutRequest, RangeRequest,
    StatusRequest, StatusResponse, WatchCreateRequest, WatchRequest,
};
use folio_server::pb::mvccpb::event::EventType;
use folio_server::{Config, Running};
use tokio::sync::Mutex;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const NAMES: [&str; 3] = ["m1", "m2", "m3"];

/// A loopback port free now (the members need theirs before they start, to name each other).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Three members, their flags (to restart one as it was) and the lease clock they share.
struct Cluster {
    _dir: tempfile::TempDir,
    configs: Vec<Config>,
    running: Vec<Option<Running>>,
    urls: Vec<String>,
    clock: Arc<ManualClock>,
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_with(|_| {}).await
    }

    /// Three members, each started with `tweak` applied to its flags. The ports are picked
    /// free, then bound by the members: another test may take one between, so a start that
    /// fails is tried again on new ports (the error is printed).
    async fn start_with(tweak: impl Fn(&mut Config)) -> Cluster {
        let mut tries = 0;
        loop {
            match Cluster::try_start(&tweak).await {
                Ok(cluster) => {
                    cluster.leader().await;
                    return cluster;
                }
                Err(e) if tries < 3 => {
                    eprintln!("a member did not start ({e}); trying again on other ports");
                    tries += 1;
                }
                Err(e) => panic!("a member did not start: {e}"),
            }
        }
    }

    async fn try_start(tweak: &impl Fn(&mut Config)) -> Result<Cluster, String> {
        let dir = tempfile::tempdir().unwrap();
        let peers: Vec<u16> = NAMES.iter().map(|_| free_port()).collect();
        let initial = NAMES
            .iter()
            .zip(&peers)
            .map(|(n, p)| format!("{n}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let clock = Arc::new(ManualClock::new());
        let mut configs = Vec::new();
        let mut urls = Vec::new();
        for name in NAMES {
            let url = format!("http://127.0.0.1:{}", free_port());
            let mut c = Config::for_test(dir.path().join(name), &url);
            c.name = name.to_string();
            c.initial_cluster = initial.clone();
            c.lease_clock = LeaseClock(clock.clone());
            tweak(&mut c);
            configs.push(c);
            urls.push(url);
        }
        let mut running = Vec::new();
        for c in &configs {
            match folio_server::start(c.clone()).await {
                Ok(r) => running.push(Some(r)),
                Err(e) => {
                    for r in running.into_iter().flatten() {
                        r.stop().await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(Cluster {
            _dir: dir,
            configs,
            running,
            urls,
            clock,
        })
    }

    fn channel(&self, i: usize) -> Channel {
        Channel::from_shared(self.urls[i].clone())
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(15))
            .connect_lazy()
    }

    fn kv(&self, i: usize) -> KvClient<Channel> {
        KvClient::new(self.channel(i))
    }

    fn maintenance(&self, i: usize) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel(i))
    }

    fn lease(&self, i: usize) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel(i))
    }

    /// A watch stream on member `i` with one watcher made by `create`, once it is created; the
    /// sender keeps the stream open.
    async fn watch(
        &self,
        i: usize,
        create: WatchCreateRequest,
    ) -> (
        tokio::sync::mpsc::Sender<WatchRequest>,
        tonic::Streaming<folio_server::pb::etcdserverpb::WatchResponse>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut watch = WatchClient::new(self.channel(i))
            .watch(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        tx.send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        })
        .await
        .unwrap();
        assert!(watch.message().await.unwrap().unwrap().created);
        (tx, watch)
    }

    /// The members running now.
    fn up(&self) -> Vec<usize> {
        (0..NAMES.len())
            .filter(|&i| self.running[i].is_some())
            .collect()
    }

    async fn status(&self, i: usize) -> Option<StatusResponse> {
        self.maintenance(i)
            .status(StatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// The index of the leader every running member agrees on (waits up to 20 s for one).
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut seen = Vec::new();
            for i in self.up() {
                seen.push(self.status(i).await.map(|s| s.leader));
            }
            if let Some(Some(l)) = seen.first()
                && *l != 0
                && seen.iter().all(|s| *s == Some(*l))
                && let Some(i) = NAMES.iter().position(|n| member_id(n) == *l)
                && self.running[i].is_some()
            {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader agreed on: {seen:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Member `i`'s Raft node.
    fn node(&self, i: usize) -> &Arc<folio_raft::Node> {
        let running = self.running[i].as_ref().expect("a running member");
        running.shared().member().expect("a cluster member").node()
    }

    async fn kill(&mut self, i: usize) {
        self.running[i].take().unwrap().kill().await;
    }

    async fn restart(&mut self, i: usize) {
        let r = folio_server::start(self.configs[i].clone()).await.unwrap();
        self.running[i] = Some(r);
    }

    /// Waits until every running member's store is at the same revision, and returns it.
    async fn settled(&self) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut revs = Vec::new();
            for i in self.up() {
                revs.push(
                    self.status(i)
                        .await
                        .and_then(|s| s.header)
                        .map(|h| h.revision),
                );
            }
            if revs.iter().all(|r| r.is_some() && *r == revs[0]) {
                return revs[0].unwrap();
            }
            assert!(Instant::now() < deadline, "members never settled: {revs:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        for r in self.running.iter_mut() {
            if let Some(r) = r.take() {
                r.stop().await;
            }
        }
    }
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..PutRequest::default()
    }
}

fn prefix(p: &str, serializable: bool) -> RangeRequest {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    RangeRequest {
        key: p.into(),
        range_end: end,
        serializable,
        ..RangeRequest::default()
    }
}

/// Puts `w<i>/<n>` through member `i` until `stop`, recording each acknowledged key and value.
async fn writer(
    url: String,
    i: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, String>>>,
) {
    let channel = Channel::from_shared(url)
        .unwrap()
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_secs(15))
        .connect_lazy();
    let mut kv = KvClient::new(channel);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (key, value) = (format!("w{i}/{n:06}"), format!("v{n}"));
        n += 1;
        match kv.put(put(&key, &value)).await {
            Ok(_) => {
                acked.lock().await.insert(key, value);
            }
            // The member is down or between leaders: the outcome is unknown, so the key is not
            // counted; try the next one.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits until `acked` holds `n` more keys than now.
async fn more_acked(acked: &Mutex<BTreeMap<String, String>>, n: usize) {
    let target = acked.lock().await.len() + n;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().await.len() < target {
        assert!(Instant::now() < deadline, "the writers stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills the leader mid-load and restarts it, then a follower: every acknowledged put is on
/// every member afterwards, and HashKV agrees on all three at one revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_survives_leader_and_follower_kills_on_every_member() {
    let mut cluster = Cluster::start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let writers: Vec<_> = (0..NAMES.len())
        .map(|i| {
            tokio::spawn(writer(
                cluster.urls[i].clone(),
                i,
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();
    more_acked(&acked, 150).await;

    let leader = cluster.leader().await;
    cluster.kill(leader).await;
    more_acked(&acked, 150).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader, "a new leader among the two left");
    cluster.restart(leader).await;
    more_acked(&acked, 100).await;

    let now_leading = cluster.leader().await;
    let follower = (now_leading + 1) % NAMES.len();
    cluster.kill(follower).await;
    more_acked(&acked, 100).await;
    cluster.restart(follower).await;
    more_acked(&acked, 100).await;

    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    for i in 0..NAMES.len() {
        assert!(
            acked.keys().any(|k| k.starts_with(&format!("w{i}/"))),
            "writes through member {i} were acknowledged"
        );
    }
    let revision = cluster.settled().await;
    let mut hashes = Vec::new();
    for i in 0..NAMES.len() {
        let got = cluster
            .kv(i)
            .range(prefix("w", true))
            .await
            .unwrap()
            .into_inner();
        let held: BTreeMap<String, String> = got
            .kvs
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                )
            })
            .collect();
        for (k, v) in &acked {
            assert_eq!(held.get(k), Some(v), "member {i} lacks acknowledged {k}");
        }
        let h = cluster
            .maintenance(i)
            .hash_kv(HashKvRequest { revision })
            .await
            .unwrap()
            .into_inner();
        hashes.push((h.hash, h.header.unwrap().revision));
    }
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "HashKV at revision {revision} differs: {hashes:?}"
    );
    println!(
        "{} acknowledged writes on every member; HashKV {:x} at revision {revision}",
        acked.len(),
        hashes[0].0
    );
    cluster.stop().await;
}

/// A watch on a follower sees what the follower applied: the writes made through the leader,
/// at the revisions the leader answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_on_a_follower_sees_writes_made_through_the_leader() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % NAMES.len();
    let mut end = b"watched/".to_vec();
    *end.last_mut().unwrap() += 1;
    let (tx, mut watch) = cluster
        .watch(
            follower,
            WatchCreateRequest {
                key: b"watched/".to_vec(),
                range_end: end,
                ..WatchCreateRequest::default()
            },
        )
        .await;
    let mut written = Vec::new();
    let mut kv = cluster.kv(leader);
    for n in 0..5 {
        let key = format!("watched/{n}");
        let r = kv.put(put(&key, "x")).await.unwrap().into_inner();
        written.push((key, r.header.unwrap().revision));
    }
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let r = tokio::time::timeout(Duration::from_secs(20), watch.message())
            .await
            .expect("events within 20 s")
            .unwrap()
            .unwrap();
        for e in r.events {
            assert_eq!(e.r#type, EventType::Put as i32);
            let kv = e.kv.unwrap();
            seen.push((
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            ));
        }
    }
    assert_eq!(seen, written);
    drop(tx);
    cluster.stop().await;
}

/// A watch on a follower goes on when a snapshot replaces the follower's store: the follower,
/// cut off from its peers while the leader writes, snapshots and purges its log, catches up from
/// a snapshot once joined again; the watch, made before, sees every write once and in order,
/// and the writes after. It used to stop silently at the install: its watcher held the old
/// store, which got nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_on_a_follower_goes_on_after_a_snapshot_replaces_its_store() {
    let cluster = Cluster::start_with(|c| {
        c.snapshot_count = 4;
        c.experimental_snapshot_catchup_entries = 0;
    })
    .await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % NAMES.len();
    let (tx, mut watch) = cluster
        .watch(
            follower,
            WatchCreateRequest {
                key: b"snap/".to_vec(),
                range_end: b"snap0".to_vec(),
                ..WatchCreateRequest::default()
            },
        )
        .await;

    // (key, event type, revision) of each write, in the order the leader acknowledged them.
    let mut written: Vec<(String, i32, i64)> = Vec::new();
    let mut kv = cluster.kv(leader);
    let mut write = async |n: usize, delete: bool| {
        let key = format!("snap/{n:03}");
        let (kind, revision) = if delete {
            let r = kv
                .delete_range(DeleteRangeRequest {
                    key: format!("snap/{:03}", n - 1).into(),
                    ..DeleteRangeRequest::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.deleted, 1);
            (EventType::Delete, r.header.unwrap().revision)
        } else {
            let r = kv.put(put(&key, "v")).await.unwrap().into_inner();
            (EventType::Put, r.header.unwrap().revision)
        };
        let key = if delete {
            format!("snap/{:03}", n - 1)
        } else {
            key
        };
        (key, kind as i32, revision)
    };
    for n in 0..3 {
        written.push(write(n, false).await);
    }

    // Cut off, the follower falls behind while the leader snapshots and purges its log.
    let behind = cluster.node(follower).status().raft_index;
    cluster.node(follower).isolate(true);
    // The leader snapshots and purges in the background: write until it has purged past what
    // the follower holds (37 writes did in most runs), at most 20 s.
    let leader_node = cluster.node(leader);
    let purged = || {
        leader_node
            .raft()
            .metrics()
            .borrow()
            .purged
            .map(|l| l.index)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 3;
    while n < 40 || purged().is_none_or(|p| p <= behind) {
        assert!(
            Instant::now() < deadline,
            "the leader purged its log up to {:?}; the follower holds up to {behind}",
            purged()
        );
        written.push(write(n, n % 5 == 4).await);
        n += 1;
        if n >= 40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    cluster.node(follower).isolate(false);
    cluster.settled().await;
    assert!(
        *cluster.node(follower).installs().borrow() >= 1,
        "the follower caught up without a snapshot install"
    );
    for n in n..n + 3 {
        written.push(write(n, false).await);
    }

    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let Ok(r) = tokio::time::timeout(Duration::from_secs(20), watch.message()).await else {
            panic!(
                "no events in 20 s; seen {} of {}",
                seen.len(),
                written.len()
            );
        };
        let r = r.unwrap().unwrap();
        assert!(!r.canceled, "the watch was canceled: {r:?}");
        for e in r.events {
            let kv = e.kv.unwrap();
            seen.push((
                String::from_utf8_lossy(&kv.key).into_owned(),
                e.r#type,
                kv.mod_revision,
            ));
        }
    }
    assert_eq!(seen, written);
    drop(tx);
    cluster.stop().await;
}

/// A lease granted through a follower: kept alive through a follower (forwarded to the leader),
/// it outlives its TTL; left alone, the leader expires it and the revoke deletes its key at one
/// revision on every member, which a watch on a follower sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_granted_through_a_follower_expires_at_one_revision_on_every_member() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
    let granted = cluster
        .lease(f1)
        .lease_grant(LeaseGrantRequest { ttl: 10, id: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(granted.ttl, 10);
    let id = granted.id;
    cluster
        .kv(f2)
        .put(PutRequest {
            lease: id,
            ..put("leased", "v")
        })
        .await
        .unwrap();
    // TimeToLive through a follower is the leader's answer (and puts the lease in its table).
    let ttl = cluster
        .lease(f2)
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (ttl.ttl, ttl.granted_ttl, ttl.keys),
        (10, 10, vec![b"leased".to_vec()])
    );

    // Kept alive through a follower, it outlives its TTL.
    cluster.clock.advance(Duration::from_secs(6));
    let (ka, rx) = tokio::sync::mpsc::channel(1);
    let mut answers = cluster
        .lease(f1)
        .lease_keep_alive(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    ka.send(LeaseKeepAliveRequest { id }).await.unwrap();
    assert_eq!(answers.message().await.unwrap().unwrap().ttl, 10);
    cluster.clock.advance(Duration::from_secs(6));
    let ttl = cluster
        .lease(f1)
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ttl.ttl, 4, "12 s after the grant, 6 s after the keep-alive");

    // A watch on a follower, then the lease runs out.
    let (tx, mut watch) = cluster
        .watch(
            f2,
            WatchCreateRequest {
                key: b"leased".to_vec(),
                ..WatchCreateRequest::default()
            },
        )
        .await;
    cluster.clock.advance(Duration::from_secs(5));
    let deleted = loop {
        let r = tokio::time::timeout(Duration::from_secs(20), watch.message())
            .await
            .expect("the expiry within 20 s")
            .unwrap()
            .unwrap();
        if let Some(e) = r.events.first() {
            assert_eq!(e.r#type, EventType::Delete as i32);
            break e.kv.as_ref().unwrap().mod_revision;
        }
    };
    let revision = cluster.settled().await;
    assert_eq!(revision, deleted, "nothing else was written");
    let mut hashes = Vec::new();
    for i in 0..3 {
        let mut kv = cluster.kv(i);
        let before = kv
            .range(RangeRequest {
                key: b"leased".to_vec(),
                revision: deleted - 1,
                serializable: true,
                ..RangeRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        let after = kv
            .range(RangeRequest {
                key: b"leased".to_vec(),
                revision: deleted,
                serializable: true,
                ..RangeRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((before.count, after.count), (1, 0), "member {i}");
        let leases = cluster
            .lease(i)
            .lease_leases(LeaseLeasesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(
            leases.leases.is_empty(),
            "member {i} still holds {leases:?}"
        );
        let h = cluster
            .maintenance(i)
            .hash_kv(HashKvRequest { revision })
            .await
            .unwrap()
            .into_inner();
        hashes.push(h.hash);
    }
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    drop((tx, ka));
    cluster.stop().await;
}

/// Status reports the real raft leader, term and index on every member; MemberList lists the
/// three with their peer and client URLs; a Defragment on the leader leaves it the leader of a
/// cluster that keeps serving writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_member_list_and_defragment_are_the_clusters() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let r = cluster
        .kv((leader + 1) % 3)
        .put(put("k", "v"))
        .await
        .unwrap()
        .into_inner();
    let header = r.header.unwrap();
    assert_eq!(header.member_id, member_id(NAMES[(leader + 1) % 3]));
    assert!(header.raft_term >= 1);
    cluster.settled().await;
    let mut terms = Vec::new();
    for i in 0..3 {
        let s = cluster.status(i).await.unwrap();
        assert_eq!(s.leader, member_id(NAMES[leader]), "member {i}");
        assert!(s.raft_index >= 2 && s.raft_applied_index <= s.raft_index);
        terms.push(s.raft_term);
    }
    assert!(terms.iter().all(|t| *t == terms[0] && *t >= 1), "{terms:?}");

    // Every member publishes itself; MemberList on any member lists all three.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = ClusterClient::new(cluster.channel(2))
            .member_list(MemberListRequest::default())
            .await
            .unwrap()
            .into_inner();
        let mut got: Vec<(String, Vec<String>, usize)> = list
            .members
            .iter()
            .map(|m| (m.name.clone(), m.client_ur_ls.clone(), m.peer_ur_ls.len()))
            .collect();
        got.sort();
        let want: Vec<(String, Vec<String>, usize)> = (0..3)
            .map(|i| (NAMES[i].to_string(), vec![cluster.urls[i].clone()], 1))
            .collect();
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "{got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cluster
        .maintenance(leader)
        .defragment(DefragmentRequest {})
        .await
        .unwrap();
    let after = cluster
        .kv(leader)
        .put(put("k2", "v"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cluster.leader().await, leader);
    let revision = cluster.settled().await;
    assert_eq!(revision, after.header.unwrap().revision);
    cluster.stop().await;
}

/// Writes through a follower keep etcd's options on their way through the log: a put's and a
/// delete's prev_kv, ignore_value, a txn's compare over a range and on a lease, its range's
/// limit and count; and the store's refusals come back as etcd's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_through_a_follower_keep_etcds_options_and_errors() {
    use folio_server::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
    use folio_server::pb::etcdserverpb::request_op::Request as ReqOp;
    use folio_server::pb::etcdserverpb::response_op::Response as RespOp;
    use folio_server::pb::etcdserverpb::{CompactionRequest, Compare, RequestOp, TxnRequest};
    let cluster = Cluster::start().await;
    let follower = (cluster.leader().await + 1) % 3;
    let mut kv = cluster.kv(follower);
    kv.put(put("o/a", "1")).await.unwrap();
    let second = kv
        .put(PutRequest {
            prev_kv: true,
            ..put("o/a", "2")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.prev_kv.unwrap().value, b"1");
    kv.put(put("o/b", "1")).await.unwrap();
    let kept = kv
        .put(PutRequest {
            key: b"o/b".to_vec(),
            ignore_value: true,
            prev_kv: true,
            ..PutRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.prev_kv.unwrap().value, b"1");
    let t = kv
        .txn(TxnRequest {
            compare: vec![
                Compare {
                    key: b"o/".to_vec(),
                    range_end: b"o0".to_vec(),
                    target: CompareTarget::Version as i32,
                    result: CompareResult::Greater as i32,
                    target_union: Some(TargetUnion::Version(0)),
                },
                Compare {
                    key: b"o/a".to_vec(),
                    target: CompareTarget::Lease as i32,
                    result: CompareResult::Equal as i32,
                    target_union: Some(TargetUnion::Lease(0)),
                    ..Compare::default()
                },
            ],
            success: vec![
                RequestOp {
                    request: Some(ReqOp::RequestRange(RangeRequest {
                        limit: 1,
                        ..prefix("o/", false)
                    })),
                },
                RequestOp {
                    request: Some(ReqOp::RequestDeleteRange(DeleteRangeRequest {
                        key: b"o/a".to_vec(),
                        prev_kv: true,
                        ..DeleteRangeRequest::default()
                    })),
                },
            ],
            failure: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(t.succeeded);
    match (&t.responses[0].response, &t.responses[1].response) {
        (Some(RespOp::ResponseRange(r)), Some(RespOp::ResponseDeleteRange(d))) => {
            assert_eq!((r.kvs.len(), r.count, r.more), (1, 2, true));
            assert_eq!((d.deleted, d.prev_kvs[0].value.as_slice()), (1, &b"2"[..]));
        }
        other => panic!("{other:?}"),
    }
    let now = t.header.unwrap().revision;
    kv.compact(CompactionRequest {
        revision: now,
        physical: false,
    })
    .await
    .unwrap();
    let again = kv
        .compact(CompactionRequest {
            revision: now - 1,
            physical: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (again.code(), again.message()),
        (
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted"
        )
    );
    let no_lease = kv
        .put(PutRequest {
            lease: 12345,
            ..put("o/c", "1")
        })
        .await
        .unwrap_err();
    assert_eq!(no_lease.message(), "etcdserver: requested lease not found");
    cluster.stop().await;
}
