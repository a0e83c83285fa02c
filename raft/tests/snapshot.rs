//! A member that falls far behind (stopped while the others write and compact their logs past
//! it) receives the leader's store as a snapshot, a packed copy sent in many small chunks, and
//! catches up; the cluster's log is compacted after each snapshot.

mod support;

use std::sync::Arc;

use folio_raft::{Command, Consistency, NodeConfig};
use openraft::SnapshotPolicy;
use support::Cluster;

const CHUNK: u64 = 16 << 10;

fn snapshot_often(config: &mut NodeConfig) {
    // Concurrent writes share log entries (the proposer batches them), so the 304 writes
    // below may take only ~40 entries: snapshot every 10.
    config.raft.snapshot_policy = SnapshotPolicy::LogsSinceLast(10);
    config.raft.max_in_snapshot_log_to_keep = 0;
    config.raft.purge_batch_size = 1;
    config.raft.snapshot_max_chunk_size = CHUNK;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_far_behind_catches_up_from_a_snapshot_sent_in_chunks() {
    let mut c = Cluster::start(3, snapshot_often).await;
    let leader = c.leader().await;
    let behind = *c.running().iter().find(|id| **id != leader).unwrap();
    let behind_index = c.node(behind).status().raft_index;
    c.kill(behind).await;

    // 300 puts of 8 KiB values, eight at a time, while the member is away.
    let via = c.node(leader).clone();
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let via = via.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..38u32 {
                let cmd = Command::Put {
                    key: format!("big/{t}/{i:03}").into_bytes(),
                    value: vec![(t * 40 + i) as u8; 8 << 10],
                    lease: 0,
                };
                via.write(cmd).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let last = via
        .write(Command::Compact {
            revision: via.store().current_revision() - 10,
        })
        .await
        .unwrap();
    assert!(last.error.is_none(), "{last:?}");
    // However many entries the concurrent writes shared, these make at least 20 more, one each,
    // past the snapshot policy's 10.
    for i in 0..20u32 {
        let cmd = Command::Put {
            key: format!("seq/{i:03}").into_bytes(),
            value: vec![1; 64],
            lease: 0,
        };
        via.write(cmd).await.unwrap();
    }
    drop(via);

    // The leader snapshotted and purged its log past what the stopped member holds (both run
    // in the background after the writes: wait for them).
    let leader_node = Arc::clone(c.node(leader));
    let m = leader_node
        .raft()
        .wait(Some(std::time::Duration::from_secs(30)))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > behind_index + 10),
            "the leader purges its log past the stopped member",
        )
        .await
        .expect("the leader purged its log");
    let purged = m.purged.expect("the leader purged its log").index;
    assert!(
        purged > behind_index + 10,
        "purged only up to {purged}, the stopped member holds up to {behind_index}"
    );
    let snapshot = std::fs::read_dir(support::data_dir(c.dir.path(), leader).join("snapshots"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "folio"))
        .map(|e| e.metadata().unwrap().len())
        .max()
        .expect("a snapshot file");
    assert!(snapshot > 100 * CHUNK, "snapshot of {snapshot} bytes");

    c.restart(behind).await;
    c.settle().await;
    let node = c.node(behind);
    let chunks = node.snapshot_chunks_received();
    assert!(
        chunks * CHUNK >= snapshot / 2 && chunks > 50,
        "{chunks} chunks for {snapshot} bytes"
    );
    let m = node.raft().metrics().borrow().clone();
    assert!(m.snapshot.is_some_and(|s| s.index > 50), "{:?}", m.snapshot);
    let r = node
        .read(b"big/", b"big0", Consistency::Serializable)
        .await
        .unwrap();
    assert_eq!(r.kvs.len(), 8 * 38);
    assert_eq!(r.kvs[5].value, vec![5u8; 8 << 10]);
    c.assert_same_stores();
    // And it goes on taking entries after the snapshot.
    let leader = c.leader().await;
    c.node(leader)
        .write(Command::Put {
            key: b"after".to_vec(),
            value: b"1".to_vec(),
            lease: 0,
        })
        .await
        .unwrap();
    c.settle().await;
    let r = c
        .node(behind)
        .read(b"after", b"", Consistency::Serializable)
        .await
        .unwrap();
    assert_eq!(r.kvs.len(), 1);
    c.assert_same_stores();
    c.stop_all().await;
}
