//! Three members in one process on loopback: writes through every member while the leader and
//! then a follower are killed and restarted from their data dirs. Every acknowledged write must
//! be on every member afterwards, and the members' stores must hash the same at the same
//! revision.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use folio_raft::{Command, Consistency, Node, NodeConfig, OpResult};
use support::Cluster;

type Acked = Arc<Mutex<BTreeMap<Vec<u8>, (Vec<u8>, i64)>>>;

fn defaults(_: &mut NodeConfig) {}

fn put(key: &[u8], value: &[u8]) -> Command {
    Command::Put {
        key: key.to_vec(),
        value: value.to_vec(),
        lease: 0,
    }
}

/// Writes `count` keys of its own through `node`, recording each acknowledged one. A write that
/// fails (its member was killed, or its outcome is unknown) is not acknowledged.
async fn writer(node: Arc<Node>, prefix: String, count: usize, acked: Acked) {
    for i in 0..count {
        let key = format!("{prefix}/{i:04}").into_bytes();
        let value = format!("v{i}-{prefix}").into_bytes();
        match node.write(put(&key, &value)).await {
            Ok(r) => {
                assert!(r.error.is_none(), "{r:?}");
                acked.lock().unwrap().insert(key, (value, r.revision));
            }
            Err(e) => println!("{prefix}/{i:04}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_survives_leader_and_follower_kills_on_every_member() {
    let mut c = Cluster::start(3, defaults).await;
    let acked: Acked = Arc::default();

    // Phase 1: writes through every member; the leader is killed mid-load, then restarted.
    let leader = c.leader().await;
    let writers: Vec<_> = c
        .running()
        .into_iter()
        .map(|id| {
            let node = c.node(id).clone();
            tokio::spawn(writer(node, format!("p1-m{id}"), 60, acked.clone()))
        })
        .collect();
    while acked.lock().unwrap().len() < 15 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.kill(leader).await;
    for w in writers {
        w.await.unwrap();
    }
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);
    c.restart(leader).await;

    // Phase 2: a follower is killed under load and restarted.
    let follower = *c.running().iter().find(|id| **id != new_leader).unwrap();
    for i in 0..30 {
        let key = format!("p2/{i:04}").into_bytes();
        let via = c.node(c.leader().await).clone();
        let r = via.write(put(&key, b"x")).await.unwrap();
        acked
            .lock()
            .unwrap()
            .insert(key, (b"x".to_vec(), r.revision));
        if i == 10 {
            c.kill(follower).await;
        }
    }
    let via = c.node(c.leader().await).clone();
    let r = via
        .write(Command::DeleteRange {
            key: b"p2/0000".to_vec(),
            range_end: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        r.results,
        vec![OpResult::DeleteRange {
            deleted: 1,
            prev_kvs: Vec::new()
        }]
    );
    acked.lock().unwrap().remove(&b"p2/0000"[..]);
    c.restart(follower).await;
    c.settle().await;

    // Every acknowledged write, on every member, at the revision it was acknowledged with.
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 45,
        "only {} writes were acknowledged",
        acked.len()
    );
    for id in c.running() {
        let all = c
            .node(id)
            .read(b"p", b"q", Consistency::Serializable)
            .await
            .unwrap();
        let stored: BTreeMap<_, _> = all
            .kvs
            .iter()
            .map(|kv| (kv.key.clone(), (kv.value.clone(), kv.mod_revision)))
            .collect();
        for (key, want) in &acked {
            assert_eq!(
                stored.get(key),
                Some(want),
                "member {id}, key {}",
                key.escape_ascii()
            );
        }
    }
    let rev = c.assert_same_stores();
    assert!(rev > acked.len() as i64);

    // A linearizable read through a follower sees the newest write; status names the leader.
    let leader = c.leader().await;
    let r = c.node(leader).write(put(b"p3", b"newest")).await.unwrap();
    let follower = *c.running().iter().find(|id| **id != leader).unwrap();
    let read = c
        .node(follower)
        .read(b"p3", b"", Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(read.kvs[0].value, b"newest");
    assert!(read.revision >= r.revision);
    // A lease granted and revoked through a follower: its key goes on every member.
    let granted = c
        .node(follower)
        .write(Command::LeaseGrant { id: 0, ttl: 60 })
        .await
        .unwrap();
    let Some(OpResult::LeaseGranted { id, .. }) = granted.results.first().cloned() else {
        panic!("{granted:?}");
    };
    let leased = Command::Put {
        key: b"p4".to_vec(),
        value: b"leased".to_vec(),
        lease: id,
    };
    assert!(
        c.node(follower)
            .write(leased)
            .await
            .unwrap()
            .error
            .is_none()
    );
    let revoked = c
        .node(follower)
        .write(Command::LeaseRevoke { id })
        .await
        .unwrap();
    assert!(revoked.error.is_none(), "{revoked:?}");
    c.settle().await;
    for m in c.running() {
        let r = c
            .node(m)
            .read(b"p4", b"", Consistency::Serializable)
            .await
            .unwrap();
        assert!(r.kvs.is_empty(), "member {m} still has the leased key");
    }
    c.assert_same_stores();
    let s = c.node(follower).status();
    assert_eq!(s.leader, Some(leader));
    assert!(
        s.term >= 2 && s.raft_index >= s.applied_index && s.applied_index > 0,
        "{s:?}"
    );
    c.stop_all().await;
}
