//! A member of a cluster: its Raft, its store, and the gRPC service its peers call.
//!
//! Writes go through the leader: a member that is not the leader forwards the command to the one
//! it knows, and tries again (for up to [`NodeConfig::write_timeout`]) while there is none or
//! it has just changed. A command is sent again only when it surely did not take effect: the
//! member it went to was not the leader (and appended nothing), or the connection never opened.
//! Any other failure is [`NodeError::Unknown`]: the write may or may not have happened.
//!
//! Reads are served from the member's own store: [`Consistency::Serializable`] at once (it may
//! be behind the leader), [`Consistency::Linearizable`] after the read-index protocol: the
//! leader confirms with a quorum that it still leads and names its commit index, and the member
//! waits until it has applied that far.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use folio::{RangeOptions, Store};
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::InstallSnapshotRequest;
use openraft::{ServerState, SnapshotPolicy};
use tokio::task::JoinHandle;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use crate::command::{Command, Kv, Response, key_range};
use crate::log_store::LogStore;
use crate::network::{
    Frame, KIND_APPEND, KIND_READ_INDEX, KIND_SNAPSHOT, KIND_VOTE, KIND_WRITE, Network, RaftServer,
    RaftService, client, frame, not_sent, unframe,
};
use crate::state_machine::StateMachine;
use crate::{NodeId, Peer, Raft, TypeConfig};

/// How to start a member.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The member's id, unique in the cluster.
    pub id: NodeId,
    /// The address its peers reach it at (port 0 picks one: see [`Node::addr`]).
    pub addr: SocketAddr,
    /// Where its log, store and snapshots live.
    pub data_dir: PathBuf,
    /// openraft's settings: timeouts, when to snapshot, the snapshot chunk size.
    pub raft: openraft::Config,
    /// How long a write may look for a leader before it fails with [`NodeError::NoLeader`].
    pub write_timeout: Duration,
}

impl NodeConfig {
    /// A member with loopback-friendly timeouts (heartbeat 100 ms, election 400–800 ms), a
    /// snapshot every 2,000 entries keeping 500 behind it, and 256 KiB snapshot chunks.
    pub fn new(id: NodeId, addr: SocketAddr, data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            id,
            addr,
            data_dir: data_dir.into(),
            raft: openraft::Config {
                cluster_name: "folio".into(),
                heartbeat_interval: 100,
                election_timeout_min: 400,
                election_timeout_max: 800,
                install_snapshot_timeout: 2000,
                snapshot_policy: SnapshotPolicy::LogsSinceLast(2000),
                max_in_snapshot_log_to_keep: 500,
                snapshot_max_chunk_size: 256 << 10,
                ..openraft::Config::default()
            },
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a member could not do what it was asked.
#[derive(Debug)]
pub enum NodeError {
    /// The store or the log failed.
    Store(folio::Error),
    /// No leader was found in time, or the write was refused for a reason of Raft's.
    NoLeader(String),
    /// The write may or may not have taken effect (the leader was lost while it was in flight).
    Unknown(String),
    /// openraft failed (starting, initializing, a fatal error).
    Raft(String),
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeError::Store(e) => write!(f, "store: {e}"),
            NodeError::NoLeader(e) => write!(f, "no leader: {e}"),
            NodeError::Unknown(e) => write!(f, "outcome unknown: {e}"),
            NodeError::Raft(e) => write!(f, "raft: {e}"),
        }
    }
}

impl std::error::Error for NodeError {}

impl From<folio::Error> for NodeError {
    fn from(e: folio::Error) -> Self {
        NodeError::Store(e)
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Sees every write acknowledged before the read began (read index through the leader).
    Linearizable,
    /// The member's own store as it is: may be behind the leader.
    Serializable,
}

/// The answer to a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResult {
    /// The keys.
    pub kvs: Vec<Kv>,
    /// The member's store revision the read was made at.
    pub revision: i64,
}

/// A member's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The member's id.
    pub id: NodeId,
    /// The leader it knows, if any.
    pub leader: Option<NodeId>,
    /// Its current term.
    pub term: u64,
    /// The index of its last log entry.
    pub raft_index: u64,
    /// The index of the last entry it applied to its store.
    pub applied_index: u64,
    /// Its store's current revision.
    pub revision: i64,
    /// Whether it is the leader.
    pub is_leader: bool,
}

/// A running member.
pub struct Node {
    id: NodeId,
    addr: SocketAddr,
    raft: Raft,
    sm: StateMachine,
    write_timeout: Duration,
    /// Counts snapshot chunks received (see [`Node::snapshot_chunks_received`]).
    chunks: Arc<AtomicU64>,
    server: Mutex<Option<Listening>>,
}

/// The member's service: its accept loop, its server, and a handle on every connection it
/// accepted, so that stopping it closes them (as a crash would) rather than leaving peers
/// talking to a stopped member.
struct Listening {
    accept: JoinHandle<()>,
    server: JoinHandle<()>,
    connections: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Listening {
    fn stop(self) {
        self.accept.abort();
        self.server.abort();
        for c in self.connections.lock().expect("connections lock").drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Accepts peers' connections, keeping a second handle on each to close it at shutdown.
async fn accept(
    listener: tokio::net::TcpListener,
    accepted: tokio::sync::mpsc::Sender<std::io::Result<tokio::net::TcpStream>>,
    connections: Arc<Mutex<Vec<std::net::TcpStream>>>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let registered = stream.into_std().and_then(|s| {
            let handle = s.try_clone()?;
            connections.lock().expect("connections lock").push(handle);
            tokio::net::TcpStream::from_std(s)
        });
        if accepted.send(registered).await.is_err() {
            return;
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish()
    }
}

struct Service {
    raft: Raft,
    chunks: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl RaftService for Service {
    async fn call(
        &self,
        request: tonic::Request<Frame>,
    ) -> Result<tonic::Response<Frame>, tonic::Status> {
        let f = request.into_inner();
        let answer = match f.kind {
            KIND_APPEND => frame(f.kind, &self.raft.append_entries(unframe(&f)?).await),
            KIND_VOTE => frame(f.kind, &self.raft.vote(unframe(&f)?).await),
            KIND_SNAPSHOT => {
                let mut req: InstallSnapshotRequest<TypeConfig> = unframe(&f)?;
                req.data = f.data;
                self.chunks.fetch_add(1, Ordering::Relaxed);
                frame(f.kind, &self.raft.install_snapshot(req).await)
            }
            KIND_WRITE => {
                let cmd: Command = unframe(&f)?;
                frame(f.kind, &self.raft.client_write(cmd).await.map(|r| r.data))
            }
            KIND_READ_INDEX => frame(
                f.kind,
                &self
                    .raft
                    .get_read_log_id()
                    .await
                    .map(|(read, _)| read.map(|l| l.index)),
            ),
            k => {
                return Err(tonic::Status::invalid_argument(format!(
                    "unknown request kind {k}"
                )));
            }
        };
        Ok(tonic::Response::new(answer))
    }
}

type WriteResult = Result<Response, RaftError<NodeId, ClientWriteError<NodeId, Peer>>>;
type ReadIndexResult =
    Result<Option<u64>, RaftError<NodeId, openraft::error::CheckIsLeaderError<NodeId, Peer>>>;

impl Node {
    /// Starts a member: opens (or creates) its log and store in the data dir, and listens for
    /// its peers. A new member does nothing until [`Node::initialize`] is called on one member
    /// of the cluster; a restarted one rejoins its cluster by itself.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        std::fs::create_dir_all(&config.data_dir).map_err(folio::Error::from)?;
        let log = LogStore::open(&config.data_dir.join("raft-log.folio"))?;
        let sm = StateMachine::open(&config.data_dir)?;
        let raft_config = Arc::new(
            config
                .raft
                .validate()
                .map_err(|e| NodeError::Raft(e.to_string()))?,
        );
        let raft = Raft::new(config.id, raft_config, Network::default(), log, sm.clone())
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(folio::Error::from)?;
        let addr = listener.local_addr().map_err(folio::Error::from)?;
        let chunks = Arc::new(AtomicU64::new(0));
        let service = RaftServer::new(Service {
            raft: raft.clone(),
            chunks: chunks.clone(),
        })
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (accepted, incoming) = tokio::sync::mpsc::channel(16);
        let accept = tokio::spawn(accept(listener, accepted, connections.clone()));
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(ReceiverStream::new(incoming))
                .await;
        });
        Ok(Node {
            id: config.id,
            addr,
            raft,
            sm,
            write_timeout: config.write_timeout,
            chunks,
            server: Mutex::new(Some(Listening {
                accept,
                server,
                connections,
            })),
        })
    }

    /// The member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address its peers reach it at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its openraft handle, for what this API does not cover.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Its store as it is now (reads at once, like [`Consistency::Serializable`]). A snapshot
    /// install replaces the store: take it again after one.
    pub fn store(&self) -> Store {
        self.sm.store()
    }

    /// Makes a new cluster of `members` (id → address), this member among them. Call it on one
    /// member, once; the others learn of it from the leader.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<(), NodeError> {
        let members: BTreeMap<NodeId, Peer> = members
            .into_iter()
            .map(|(id, addr)| (id, Peer { addr }))
            .collect();
        self.raft
            .initialize(members)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))
    }

    /// Writes `command` through the leader and returns its answer once it is committed and
    /// applied on the leader (see the module docs for how it finds the leader).
    pub async fn write(&self, command: Command) -> Result<Response, NodeError> {
        let deadline = Instant::now() + self.write_timeout;
        loop {
            let leader = match self.raft.client_write(command.clone()).await {
                Ok(r) => return Ok(r.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f.leader_node,
                Err(e) => return Err(NodeError::Unknown(e.to_string())),
            };
            if let Some(leader) = leader {
                let mut c = client(&leader.addr);
                match c.call(frame(KIND_WRITE, &command)).await {
                    Ok(answer) => match unframe::<WriteResult>(answer.get_ref()) {
                        Ok(Ok(r)) => return Ok(r),
                        // It was not the leader any more: it appended nothing.
                        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {}
                        Ok(Err(e)) => return Err(NodeError::Unknown(e.to_string())),
                        Err(e) => return Err(NodeError::Unknown(e.to_string())),
                    },
                    Err(status) if not_sent(&status) => {}
                    Err(status) => return Err(NodeError::Unknown(status.to_string())),
                }
            }
            if Instant::now() >= deadline {
                return Err(NodeError::NoLeader(format!(
                    "member {} found no leader in {:?}",
                    self.id, self.write_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The index a linearizable read must wait for: the leader's, confirmed by a quorum.
    async fn read_index(&self) -> Result<u64, NodeError> {
        let deadline = Instant::now() + self.write_timeout;
        loop {
            let leader = match self.raft.get_read_log_id().await {
                Ok((read, _)) => return Ok(read.map_or(0, |l| l.index)),
                Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                    f,
                ))) => f.leader_node,
                Err(e) => return Err(NodeError::NoLeader(e.to_string())),
            };
            if let Some(leader) = leader {
                let mut c = client(&leader.addr);
                if let Ok(answer) = c.call(frame(KIND_READ_INDEX, &())).await
                    && let Ok(Ok(index)) = unframe::<ReadIndexResult>(answer.get_ref())
                {
                    return Ok(index.unwrap_or(0));
                }
            }
            if Instant::now() >= deadline {
                return Err(NodeError::NoLeader(format!(
                    "member {} found no leader to read through in {:?}",
                    self.id, self.write_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until this member's store holds every write acknowledged before the call (the
    /// read-index protocol, through the leader): a read of [`Node::store`] after it is
    /// linearizable.
    pub async fn read_barrier(&self) -> Result<(), NodeError> {
        let index = self.read_index().await?;
        self.raft
            .wait(Some(self.write_timeout))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map_err(|e| NodeError::NoLeader(e.to_string()))?;
        Ok(())
    }

    /// The cluster's voting members as this member knows them: id → the address peers reach
    /// it at.
    pub fn members(&self) -> BTreeMap<NodeId, String> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, peer)| (*id, peer.addr.clone()))
            .collect()
    }

    /// Reads the keys `key`..`range_end` (etcd's range) from this member's store.
    pub async fn read(
        &self,
        key: &[u8],
        range_end: &[u8],
        consistency: Consistency,
    ) -> Result<ReadResult, NodeError> {
        if consistency == Consistency::Linearizable {
            self.read_barrier().await?;
        }
        let r = self
            .store()
            .range(key_range(key, range_end), RangeOptions::current())?;
        Ok(ReadResult {
            kvs: r.kvs.into_iter().map(Kv::from_store).collect(),
            revision: r.revision,
        })
    }

    /// What this member knows of the cluster now.
    pub fn status(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        Status {
            id: self.id,
            leader: m.current_leader,
            term: m.current_term,
            raft_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            revision: self.store().current_revision(),
            is_leader: m.state == ServerState::Leader,
        }
    }

    /// How many snapshot chunks this member has received since it started.
    pub fn snapshot_chunks_received(&self) -> u64 {
        self.chunks.load(Ordering::Relaxed)
    }

    /// Stops the member, as a crash would (its files stay, and [`Node::start`] on the same data
    /// dir brings it back): its Raft, then its listener. Calls on it fail from then on. Its
    /// store's file is closed once the last handle to the member is dropped.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        let stopped = self
            .raft
            .shutdown()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()));
        let server = self.server.lock().expect("server lock").take();
        if let Some(server) = server {
            // Not a graceful stop: peers keep their connections open, and it would wait for them.
            server.stop();
        }
        stopped
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(server) = self.server.get_mut().expect("server lock").take() {
            server.stop();
            let raft = self.raft.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = raft.shutdown().await;
                });
            }
        }
    }
}
