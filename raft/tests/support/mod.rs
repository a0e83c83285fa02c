//! Starting, stopping and inspecting a loopback cluster of members in one process.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio_raft::{Node, NodeConfig, NodeId};

/// A cluster's members, some of them stopped.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: BTreeMap<NodeId, Option<Arc<Node>>>,
    pub addrs: BTreeMap<NodeId, SocketAddr>,
    pub tweak: fn(&mut NodeConfig),
}

pub fn data_dir(root: &Path, id: NodeId) -> PathBuf {
    root.join(format!("member-{id}"))
}

impl Cluster {
    /// Starts `n` members on free loopback ports and makes them a cluster.
    pub async fn start(n: u64, tweak: fn(&mut NodeConfig)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut members = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        for id in 1..=n {
            let mut config =
                NodeConfig::new(id, "127.0.0.1:0".parse().unwrap(), data_dir(dir.path(), id));
            tweak(&mut config);
            let node = Node::start(config).await.unwrap();
            addrs.insert(id, node.addr());
            members.insert(id, Some(Arc::new(node)));
        }
        let all = addrs.iter().map(|(id, a)| (*id, a.to_string())).collect();
        members[&1].as_ref().unwrap().initialize(all).await.unwrap();
        let c = Cluster {
            dir,
            members,
            addrs,
            tweak,
        };
        c.leader().await;
        c
    }

    pub fn node(&self, id: NodeId) -> &Arc<Node> {
        self.members[&id].as_ref().expect("a running member")
    }

    pub fn running(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|(_, m)| m.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The leader that a majority of the running members agree on, waiting up to 10 s for one.
    pub async fn leader(&self) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for id in self.running() {
                let s = self.node(id).status();
                if s.is_leader {
                    return id;
                }
            }
            assert!(Instant::now() < deadline, "no leader in 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops member `id`, as a crash would leave it: its files stay.
    pub async fn kill(&mut self, id: NodeId) {
        let node = self.members.get_mut(&id).unwrap().take().expect("running");
        node.shutdown().await.unwrap();
    }

    /// Starts member `id` again from its data dir, at its old address.
    pub async fn restart(&mut self, id: NodeId) {
        let mut config = NodeConfig::new(id, self.addrs[&id], data_dir(self.dir.path(), id));
        (self.tweak)(&mut config);
        let node = Node::start(config).await.unwrap();
        self.members.insert(id, Some(Arc::new(node)));
    }

    /// Waits until every running member has applied as far as the leader's log reaches.
    pub async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let leader = self.leader().await;
            let target = self.node(leader).status().raft_index;
            let behind: Vec<_> = self
                .running()
                .into_iter()
                .filter(|id| self.node(*id).status().applied_index < target)
                .collect();
            if behind.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                for id in self.running() {
                    let m = self.node(id).raft().metrics().borrow().clone();
                    println!("member {id}: {m:?}");
                }
                panic!("members {behind:?} did not apply up to {target} in 20 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asserts every running member's store has the same revision and `hash_by_rev` there.
    pub fn assert_same_stores(&self) -> i64 {
        let ids = self.running();
        let rev = self.node(ids[0]).store().current_revision();
        let want = self.node(ids[0]).store().hash_by_rev(rev).unwrap();
        for id in &ids[1..] {
            let store = self.node(*id).store();
            assert_eq!(store.current_revision(), rev, "member {id}'s revision");
            assert_eq!(
                store.hash_by_rev(rev).unwrap(),
                want,
                "member {id}'s hash at {rev}"
            );
        }
        rev
    }

    pub async fn stop_all(mut self) {
        for id in self.running() {
            self.kill(id).await;
        }
    }
}

// The workspace's seeded generator (splitmix64), so that a failing seed can be run again.
#[path = "../../../tests/common/rng.rs"]
#[allow(dead_code)]
mod rng;
#[allow(unused_imports)] // not every test binary draws numbers
pub use rng::SplitMix64 as Rng;
