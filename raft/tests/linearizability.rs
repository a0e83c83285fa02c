//! A recorded history of concurrent puts, linearizable gets and compare-and-set transactions,
//! sent through every member while the leader is killed and restarted, checked for
//! linearizability with `folio_raft::lincheck`, over several seeds. Each run prints its seed;
//! `FOLIO_RAFT_SEED=<n>` runs one seed again, `FOLIO_RAFT_SEEDS=<n>` runs that many.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use folio_raft::lincheck::{self, Action, Operation};
use folio_raft::{
    Command, CompareSpec, CompareTarget, Consistency, Node, NodeConfig, NodeId, OpSpec, Relation,
};
use support::{Cluster, Rng};

const CLIENTS: usize = 4;
const OPS_PER_CLIENT: usize = 30;
const KEYS: u64 = 3;

type Members = Arc<RwLock<BTreeMap<NodeId, Arc<Node>>>>;

fn defaults(_: &mut NodeConfig) {}

fn cas(key: &[u8], expect: &Option<Vec<u8>>, new: &[u8]) -> Command {
    let compare = match expect {
        Some(v) => CompareSpec {
            key: key.to_vec(),
            target: CompareTarget::Value,
            relation: Relation::Equal,
            value: v.clone(),
            number: 0,
            range_end: Vec::new(),
        },
        None => CompareSpec {
            key: key.to_vec(),
            target: CompareTarget::Version,
            relation: Relation::Equal,
            value: Vec::new(),
            number: 0,
            range_end: Vec::new(),
        },
    };
    Command::Txn {
        compares: vec![compare],
        success: vec![OpSpec::Put {
            key: key.to_vec(),
            value: new.to_vec(),
            lease: 0,
            prev_kv: false,
        }],
        failure: Vec::new(),
    }
}

async fn client(
    id: usize,
    seed: u64,
    members: Members,
    start: Instant,
    history: Arc<Mutex<Vec<Operation>>>,
) {
    let mut rng = Rng(seed ^ (id as u64).wrapping_mul(0x5851_f42d_4c95_7f2d));
    let mut last_seen: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let now = || start.elapsed().as_nanos() as u64;
    for n in 0..OPS_PER_CLIENT {
        let node = {
            let m = members.read().unwrap();
            let ids: Vec<_> = m.keys().copied().collect();
            m[&ids[rng.below(ids.len() as u64) as usize]].clone()
        };
        let key = format!("k{}", rng.below(KEYS)).into_bytes();
        let value = format!("c{id}-{n}").into_bytes();
        let roll = rng.below(10);
        let call = now();
        let (action, ret) = if roll < 4 {
            let cmd = Command::Put {
                key: key.clone(),
                value: value.clone(),
                lease: 0,
            };
            let r = node.write(cmd).await;
            (Action::Put(value), r.is_ok().then(now))
        } else if roll < 8 {
            match node.read(&key, b"", Consistency::Linearizable).await {
                Ok(r) => {
                    let seen = r.kvs.first().map(|kv| kv.value.clone());
                    last_seen.insert(key.clone(), seen.clone());
                    (Action::Get(seen), Some(now()))
                }
                // A failed read had no effect: nothing to record.
                Err(_) => continue,
            }
        } else {
            let expect = last_seen.get(&key).cloned().flatten();
            let r = node.write(cas(&key, &expect, &value)).await;
            let ret = r.as_ref().ok().map(|_| now());
            let succeeded = r.map(|r| r.succeeded).unwrap_or(false);
            (
                Action::Cas {
                    expect,
                    new: value,
                    succeeded,
                },
                ret,
            )
        };
        history.lock().unwrap().push(Operation {
            client: id,
            key,
            action,
            call,
            ret,
        });
    }
}

async fn run(seed: u64) {
    println!("linearizability seed {seed} (FOLIO_RAFT_SEED={seed} runs it again)");
    let mut rng = Rng(seed);
    let mut c = Cluster::start(3, defaults).await;
    let members: Members = Arc::new(RwLock::new(
        c.running()
            .into_iter()
            .map(|id| (id, c.node(id).clone()))
            .collect(),
    ));
    let history = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(id, seed, members.clone(), start, history.clone())))
        .collect();
    // Kill the leader at a seeded moment, and bring it back a little later.
    tokio::time::sleep(Duration::from_millis(100 + rng.below(400))).await;
    let leader = c.leader().await;
    members.write().unwrap().remove(&leader);
    c.kill(leader).await;
    tokio::time::sleep(Duration::from_millis(300 + rng.below(700))).await;
    c.restart(leader).await;
    members
        .write()
        .unwrap()
        .insert(leader, c.node(leader).clone());
    for cl in clients {
        cl.await.unwrap();
    }
    let history = history.lock().unwrap().clone();
    let returned = history.iter().filter(|o| o.ret.is_some()).count();
    assert!(
        returned > CLIENTS * OPS_PER_CLIENT / 2,
        "seed {seed}: only {returned} operations returned"
    );
    if let Err(key) = lincheck::check(&history) {
        for op in history.iter().filter(|o| o.key == key) {
            println!("{op:?}");
        }
        panic!(
            "seed {seed}: the history of key {} is not linearizable",
            key.escape_ascii()
        );
    }
    drop(members);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn histories_with_leader_kills_are_linearizable() {
    let seeds: Vec<u64> = match std::env::var("FOLIO_RAFT_SEED") {
        Ok(s) => vec![s.parse().expect("FOLIO_RAFT_SEED is a number")],
        Err(_) => {
            let n = std::env::var("FOLIO_RAFT_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(6u64);
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            (0..n)
                .map(|i| base.wrapping_mul(31).wrapping_add(i))
                .collect()
        }
    };
    for seed in seeds {
        run(seed).await;
    }
}
