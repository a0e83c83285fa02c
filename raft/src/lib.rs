//! Replication of a folio [`Store`](folio::Store) on [openraft]: three (or five) members hold the
//! same store, writes go through the leader, and a member that falls behind catches up from the
//! log or from a snapshot.
//!
//! - [`LogStore`] (`log_store`): the Raft log, the vote and the committed index, in a folio
//!   database of their own.
//! - [`StateMachine`] (`state_machine`): the store, each entry applied as one store transaction
//!   that also records the entry's log id; snapshots are packed copies of the store's database
//!   made by the defrag's bulk loader, sent in chunks and installed by an atomic rename.
//! - `network`: the members' gRPC service (tonic) on loopback.
//! - [`Node`] (`node`): a member: start it, write through it, read from it (linearizable or
//!   serializable), initialize a cluster, ask its status.
//! - [`lincheck`]: a Wing–Gong linearizability checker for recorded histories.
//!
//! ```no_run
//! # async fn run() -> Result<(), folio_raft::NodeError> {
//! use folio_raft::{Command, Node, NodeConfig};
//! let node = Node::start(NodeConfig::new(1, "127.0.0.1:21001".parse().unwrap(), "/tmp/m1")).await?;
//! node.initialize([(1, "127.0.0.1:21001".to_string())].into()).await?;
//! let r = node.write(Command::Put { key: b"k".to_vec(), value: b"v".to_vec(), lease: 0 }).await?;
//! println!("written at revision {}", r.revision);
//! # Ok(()) }
//! ```

// openraft's storage traits return its `StorageError` (224 bytes) and tonic's handlers its
// `Status`: the sizes of the errors are theirs, and the helpers here return what they return.
#![allow(clippy::result_large_err)]
#![warn(missing_docs)]

pub mod command;
pub mod lincheck;
mod log_store;
mod network;
mod node;
mod state_machine;

pub use command::{
    Command, CompareSpec, CompareTarget, Kv, MEMBERS_TREE, MemberInfo, OpResult, OpSpec, RangeSpec,
    Refusal, Relation, Response, members,
};
pub use log_store::LogStore;
pub use node::{Consistency, Node, NodeConfig, NodeError, ReadResult, Status};
pub use state_machine::{APPLIED_TREE, StateMachine};

/// A member's id.
pub type NodeId = u64;

/// What the cluster knows of a member: its address.
pub type Peer = openraft::BasicNode;

openraft::declare_raft_types!(
    /// The types the cluster runs on: store commands in the log, snapshots as files.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = Peer,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle of a member.
pub type Raft = openraft::Raft<TypeConfig>;
