//! The threat: openraft 0.9 syncs the leader's log once per entry, in its core loop, one entry
//! after another; with one entry per client write, the cluster's write rate is one leader sync
//! per write however many clients write at once. Concurrent writes must share entries (and so
//! syncs), each still answered with its own revision, all of them on every member.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use folio::RangeOptions;
use folio_raft::{Command, NodeConfig};
use support::Cluster;

fn defaults(_: &mut NodeConfig) {}

const WRITES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_log_entries_and_each_gets_its_own_revision() {
    let c = Cluster::start(3, defaults).await;
    let leader = c.leader().await;
    let node = c.node(leader).clone();
    let index_before = node.status().raft_index;
    let writes: Vec<_> = (0..WRITES)
        .map(|i| {
            let node = Arc::clone(&node);
            tokio::spawn(async move {
                node.write(Command::Put {
                    key: format!("k/{i:03}").into_bytes(),
                    value: format!("v{i}").into_bytes(),
                    lease: 0,
                })
                .await
                .unwrap()
            })
        })
        .collect();
    let mut revisions = BTreeSet::new();
    for w in writes {
        let r = w.await.unwrap();
        assert!(r.error.is_none(), "{r:?}");
        assert!(
            revisions.insert(r.revision),
            "revision {} twice",
            r.revision
        );
    }
    let entries = node.status().raft_index - index_before;
    println!("{WRITES} concurrent writes took {entries} log entries");
    assert!(
        (entries as usize) < WRITES / 2,
        "{WRITES} concurrent writes took {entries} log entries"
    );
    // Each write's revision holds its own key and value.
    let store = node.store();
    for i in 0..WRITES {
        let r = store
            .range(format!("k/{i:03}").as_bytes(), RangeOptions::current())
            .unwrap();
        assert_eq!(r.kvs[0].value, format!("v{i}").into_bytes());
        assert!(revisions.contains(&r.kvs[0].mod_revision));
    }
    c.settle().await;
    c.assert_same_stores();
    c.stop_all().await;
}
