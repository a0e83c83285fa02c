//! A member of a cluster: its Raft, its store, and the gRPC service its peers call.
//!
//! Writes go through the leader: a member that is not the leader forwards the command to the one
//! it knows, and tries again (for up to [`NodeConfig::write_timeout`]) while there is none or
//! it has just changed. A command is sent again only when it surely did not take effect: the
//! member it went to was not the leader (and appended nothing), or the connection never opened.
//! Any other failure is [`NodeError::Unknown`]: the write may or may not have happened.
//!
//! **Proposals are batched.** openraft 0.9.25 writes the leader's log in its core loop and
//! waits there for each append to be durable (`RaftCore::append_to_log` awaits the flush
//! before the core runs its next command, and before it sends the entry to the followers), and
//! `client_write` makes one entry per call: every client write was one leader sync, one after
//! another, however many clients wrote at once (measured: a cluster capped near 400 puts/s at
//! 16 clients on a disk whose sync takes ~2.5 ms). So a member's writes go through its
//! *proposer*: a task that takes every batchable command ([`Command::batchable`]) queued while
//! [`PROPOSALS_IN_FLIGHT`] proposals are already in flight and proposes them as one
//! [`Command::Batch`] entry (at most [`BATCH_COMMANDS_MAX`] commands and about
//! [`BATCH_BYTES_MAX`] bytes), then hands each caller its own answer. One sync on each member
//! then carries a whole batch; each command is still its own store revision with its own
//! answer, and is acknowledged only once its entry is committed (durable on a majority) and
//! applied, as before. Lease grants and revokes, compactions and member attributes are
//! proposed alone.
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
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::command::{Command, Kv, Response, key_range};
use crate::log_store::LogStore;
use crate::network::{
    Cut, Frame, KIND_APPEND, KIND_READ_INDEX, KIND_SNAPSHOT, KIND_VOTE, KIND_WRITE,
    MESSAGE_BYTES_MAX, Network, RaftClient, RaftServer, RaftService, client, frame, not_sent,
    unframe,
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

    /// Snapshot every `entries` committed entries, keeping `keep` entries in the log behind
    /// each snapshot (a member less than that behind catches up from the log).
    pub fn snapshot_every(mut self, entries: u64, keep: u64) -> NodeConfig {
        self.raft.snapshot_policy = SnapshotPolicy::LogsSinceLast(entries);
        self.raft.max_in_snapshot_log_to_keep = keep;
        self
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
    proposer: Proposer,
    sm: StateMachine,
    write_timeout: Duration,
    /// A client to the leader this member last forwarded to (one connection, not one per
    /// forwarded write).
    leader_client: Mutex<Option<(String, RaftClient<Channel>)>>,
    /// Counts snapshot chunks received (see [`Node::snapshot_chunks_received`]).
    chunks: Arc<AtomicU64>,
    server: Mutex<Option<Listening>>,
    /// Set while the member is cut off from its peers ([`Node::isolate`]).
    cut: Cut,
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
    proposer: Proposer,
    chunks: Arc<AtomicU64>,
    cut: Cut,
}

#[tonic::async_trait]
impl RaftService for Service {
    async fn call(
        &self,
        request: tonic::Request<Frame>,
    ) -> Result<tonic::Response<Frame>, tonic::Status> {
        self.cut.check()?;
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
                frame(f.kind, &self.proposer.write(&self.raft, cmd).await)
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

/// How many batch proposals a member's proposer keeps in flight at once: while they are, the
/// commands that arrive queue up and go together in the next one.
pub const PROPOSALS_IN_FLIGHT: usize = 2;

/// The most commands in one [`Command::Batch`].
pub const BATCH_COMMANDS_MAX: usize = 512;

/// About the most bytes of keys and values in one [`Command::Batch`] (one command larger than
/// this still goes, alone); well below the cap on one append-entries message
/// ([`crate::network::APPEND_BYTES_MAX`]) once base64 has made it 4/3 as large.
pub const BATCH_BYTES_MAX: usize = 1 << 20;

const _: () = assert!(BATCH_BYTES_MAX * 2 < crate::network::APPEND_BYTES_MAX);

/// A command waiting for the proposer, and where its answer goes.
struct Proposal {
    command: Command,
    answer: oneshot::Sender<WriteResult>,
}

/// The sending side of a member's proposer (see the module docs).
#[derive(Clone)]
struct Proposer {
    queue: mpsc::UnboundedSender<Proposal>,
}

impl Proposer {
    /// Starts the proposer of `raft`; it stops once every clone of the returned handle is
    /// dropped.
    fn start(raft: Raft) -> Proposer {
        let (queue, proposals) = mpsc::unbounded_channel();
        tokio::spawn(propose(raft, proposals));
        Proposer { queue }
    }

    /// Proposes `command` to the local Raft (batched with others when it can be) and waits
    /// for its answer: the same as `Raft::client_write`'s.
    async fn write(&self, raft: &Raft, command: Command) -> WriteResult {
        if !command.batchable() {
            return raft.client_write(command).await.map(|r| r.data);
        }
        let (answer, answered) = oneshot::channel();
        if self.queue.send(Proposal { command, answer }).is_err() {
            return Err(RaftError::Fatal(openraft::error::Fatal::Stopped));
        }
        answered
            .await
            .unwrap_or(Err(RaftError::Fatal(openraft::error::Fatal::Stopped)))
    }
}

/// The proposer: waits for a free slot, takes what is queued (up to the caps), proposes it as
/// one entry in a task of its own, and answers each command.
async fn propose(raft: Raft, mut proposals: mpsc::UnboundedReceiver<Proposal>) {
    let slots = Arc::new(Semaphore::new(PROPOSALS_IN_FLIGHT));
    let mut carried: Option<Proposal> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match proposals.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.command.size_hint();
        let mut batch = vec![first];
        while batch.len() < BATCH_COMMANDS_MAX {
            let Ok(p) = proposals.try_recv() else { break };
            bytes += p.command.size_hint();
            if bytes > BATCH_BYTES_MAX {
                carried = Some(p);
                break;
            }
            batch.push(p);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if batch.len() == 1 {
                let p = batch.pop().expect("one proposal");
                let _ = p
                    .answer
                    .send(raft.client_write(p.command).await.map(|r| r.data));
                return;
            }
            let (commands, answers): (Vec<Command>, Vec<_>) =
                batch.into_iter().map(|p| (p.command, p.answer)).unzip();
            match raft.client_write(Command::Batch { commands }).await {
                Ok(r) => {
                    let mut each = r.data.batch.into_iter();
                    for a in answers {
                        let _ = a.send(Ok(each.next().unwrap_or_default()));
                    }
                }
                Err(e) => {
                    for a in answers {
                        let _ = a.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}
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
        let cut = Cut::default();
        let network = Network { cut: cut.clone() };
        let raft = Raft::new(config.id, raft_config, network, log, sm.clone())
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(folio::Error::from)?;
        let addr = listener.local_addr().map_err(folio::Error::from)?;
        let chunks = Arc::new(AtomicU64::new(0));
        let proposer = Proposer::start(raft.clone());
        let service = RaftServer::new(Service {
            raft: raft.clone(),
            proposer: proposer.clone(),
            chunks: chunks.clone(),
            cut: cut.clone(),
        })
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX);
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
            proposer,
            sm,
            write_timeout: config.write_timeout,
            leader_client: Mutex::new(None),
            chunks,
            server: Mutex::new(Some(Listening {
                accept,
                server,
                connections,
            })),
            cut,
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

    /// A receiver that changes each time a snapshot install replaces the store (see
    /// [`StateMachine::installs`]): a [`folio::Watcher`] on the old store gets nothing more,
    /// so its owner watches [`Node::store`] again from the watcher's
    /// [`next_revision`](folio::Watcher::next_revision).
    pub fn installs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sm.installs()
    }

    /// Cuts this member off from its peers (`true`) or joins it to them again (`false`): while
    /// cut, every call between it and another member fails unsent, either way, as if the
    /// network between them were down, and its clients are still served from its own store.
    /// For tests and failure drills: a member held back this way falls behind while it runs
    /// (and its watchers with it), and catches up, from the log or a snapshot, once joined.
    pub fn isolate(&self, cut: bool) {
        self.cut.set(cut);
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
            let leader = match self.proposer.write(&self.raft, command.clone()).await {
                Ok(r) => return Ok(r),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f.leader_node,
                Err(e) => return Err(NodeError::Unknown(e.to_string())),
            };
            if let Some(leader) = leader {
                let mut c = self.client_to(&leader.addr);
                let answer = match self.cut.check() {
                    Ok(()) => c.call(frame(KIND_WRITE, &command)).await,
                    Err(status) => Err(status),
                };
                match answer {
                    Ok(answer) => match unframe::<WriteResult>(answer.get_ref()) {
                        Ok(Ok(r)) => return Ok(r),
                        // It was not the leader any more: it appended nothing.
                        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {}
                        Ok(Err(e)) => return Err(NodeError::Unknown(e.to_string())),
                        Err(e) => return Err(NodeError::Unknown(e.to_string())),
                    },
                    Err(status) if not_sent(&status) => self.forget_client(),
                    Err(status) => {
                        self.forget_client();
                        return Err(NodeError::Unknown(status.to_string()));
                    }
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

    /// A client to the member at `addr` (the leader), kept for the next call.
    fn client_to(&self, addr: &str) -> RaftClient<Channel> {
        let mut kept = self.leader_client.lock().expect("leader client lock");
        match &*kept {
            Some((a, c)) if a == addr => c.clone(),
            _ => {
                let c = client(addr);
                *kept = Some((addr.to_string(), c.clone()));
                c
            }
        }
    }

    /// Drops the kept client after a failed call (the next call connects anew, so that a
    /// refused connection is seen as one).
    fn forget_client(&self) {
        *self.leader_client.lock().expect("leader client lock") = None;
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
                let mut c = self.client_to(&leader.addr);
                let answer = match self.cut.check() {
                    Ok(()) => c.call(frame(KIND_READ_INDEX, &())).await,
                    Err(status) => Err(status),
                };
                match answer {
                    Ok(answer) => {
                        if let Ok(Ok(index)) = unframe::<ReadIndexResult>(answer.get_ref()) {
                            return Ok(index.unwrap_or(0));
                        }
                    }
                    Err(_) => self.forget_client(),
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
