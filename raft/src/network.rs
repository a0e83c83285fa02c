//! The members' gRPC service: one unary method, `folio.raft.Raft/Call`, whose [`Frame`] names
//! the request and carries it as JSON (and a snapshot chunk's bytes as they are, beside it).
//!
//! Requests: the three Raft RPCs (append entries, vote, one snapshot chunk), a client write
//! forwarded by a follower to the leader, and a read-index request (a follower asks the leader
//! for the index a linearizable read must wait for). A snapshot travels as one chunk per call:
//! the leader sends the next only once the follower has written the last (backpressure), and
//! neither holds more than a chunk in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{EntryPayload, LogId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use crate::{NodeId, Peer, TypeConfig};

mod generated {
    include!(concat!(env!("OUT_DIR"), "/folio.raft.Raft.rs"));
}
pub(crate) use generated::raft_client::RaftClient;
pub(crate) use generated::raft_server::{Raft as RaftService, RaftServer};

/// One request or answer between members.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    /// What the request is (one of the `KIND_*` constants); answers echo it.
    #[prost(uint32, tag = "1")]
    pub kind: u32,
    /// The request or answer, as JSON.
    #[prost(bytes = "vec", tag = "2")]
    pub json: Vec<u8>,
    /// A snapshot chunk's bytes (empty otherwise).
    #[prost(bytes = "vec", tag = "3")]
    pub data: Vec<u8>,
}

pub(crate) const KIND_APPEND: u32 = 1;
pub(crate) const KIND_VOTE: u32 = 2;
pub(crate) const KIND_SNAPSHOT: u32 = 3;
pub(crate) const KIND_WRITE: u32 = 4;
pub(crate) const KIND_READ_INDEX: u32 = 5;

/// How long a call between members may take before it counts as lost.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest gRPC message a member sends or takes (tonic refuses a larger one).
pub(crate) const MESSAGE_BYTES_MAX: usize = 64 << 20;

/// The most bytes of entries (as encoded, estimated from above) one append-entries message
/// carries. openraft caps a message by its number of entries only (`max_payload_entries`,
/// 300), and 40 values of 1.5 MiB pass [`MESSAGE_BYTES_MAX`]; a request over this cap is sent
/// as its longest prefix under it (at least one entry) and answered as openraft's
/// `PartialSuccess`, and openraft sends the rest next. It is far below the gRPC limit because
/// openraft 0.9.25 gives each append-entries call its heartbeat interval (100 ms here) and
/// then drops it and sends it again: a message must be encoded, sent, decoded and synced
/// into the follower's log well within that (4 MiB took 30 to 70 ms in a test build).
pub(crate) const APPEND_BYTES_MAX: usize = 4 << 20;

/// Room for the rest of an append-entries message beside its entries (vote, log ids, the
/// frame).
const APPEND_OVERHEAD_MAX: usize = 64 << 10;

const _: () = assert!(APPEND_BYTES_MAX + APPEND_OVERHEAD_MAX < MESSAGE_BYTES_MAX);

pub(crate) fn frame<T: Serialize>(kind: u32, v: &T) -> Frame {
    Frame {
        kind,
        json: serde_json::to_vec(v).expect("openraft's messages serialize"),
        data: Vec::new(),
    }
}

pub(crate) fn unframe<T: DeserializeOwned>(f: &Frame) -> Result<T, tonic::Status> {
    serde_json::from_slice(&f.json)
        .map_err(|e| tonic::Status::invalid_argument(format!("malformed frame {}: {e}", f.kind)))
}

/// A client to one member, connecting on first use.
pub(crate) fn client(addr: &str) -> RaftClient<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .expect("a member address is host:port")
        .connect_timeout(Duration::from_millis(500))
        .timeout(CALL_TIMEOUT);
    RaftClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX)
}

/// Whether a failed call surely never reached the member (it could not connect, or this
/// member is [`Cut`] off), so that sending it again cannot make it happen twice.
pub(crate) fn not_sent(status: &tonic::Status) -> bool {
    let text = format!("{status:?}");
    status.code() == tonic::Code::Unavailable
        && (text.contains("tcp connect error")
            || text.contains("Connection refused")
            || text.contains(CUT_OFF))
}

const CUT_OFF: &str = "the member is cut off from its peers";

/// Whether a member is cut off from its peers ([`crate::Node::isolate`]): while it is, every
/// call between it and another member, either way, fails before it is sent, as if the network
/// between them were down.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cut(Arc<AtomicBool>);

impl Cut {
    pub(crate) fn set(&self, cut: bool) {
        self.0.store(cut, Ordering::SeqCst);
    }

    /// `Err` (a call that was never sent) while the member is cut off.
    pub(crate) fn check(&self) -> Result<(), tonic::Status> {
        if self.0.load(Ordering::SeqCst) {
            return Err(tonic::Status::unavailable(CUT_OFF));
        }
        Ok(())
    }
}

/// Makes the clients openraft replicates through.
#[derive(Clone, Debug, Default)]
pub struct Network {
    pub(crate) cut: Cut,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Peer) -> Connection {
        Connection {
            target,
            client: client(&node.addr),
            cut: self.cut.clone(),
        }
    }
}

/// openraft's connection to one member.
#[derive(Debug)]
pub struct Connection {
    target: NodeId,
    client: RaftClient<Channel>,
    cut: Cut,
}

impl Connection {
    async fn call<Res, E>(
        &mut self,
        request: Frame,
    ) -> Result<Res, RPCError<NodeId, Peer, RaftError<NodeId, E>>>
    where
        Res: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer = match self.cut.check() {
            Ok(()) => self.client.call(request).await,
            Err(status) => Err(status),
        };
        let answer = answer.map_err(|status| {
            if not_sent(&status) {
                RPCError::Unreachable(Unreachable::new(&status))
            } else {
                RPCError::Network(NetworkError::new(&status))
            }
        })?;
        let result: Result<Res, RaftError<NodeId, E>> =
            unframe(answer.get_ref()).map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Peer, RaftError<NodeId>>> {
        let (rpc, sent) = within_cap(rpc, APPEND_BYTES_MAX);
        let answer = self.call(frame(KIND_APPEND, &rpc)).await?;
        Ok(match (answer, sent) {
            // The follower holds the prefix sent: openraft sends the rest next.
            (AppendEntriesResponse::Success, Some(last)) => {
                AppendEntriesResponse::PartialSuccess(Some(last))
            }
            (answer, _) => answer,
        })
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Peer, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let data = std::mem::take(&mut rpc.data);
        let mut f = frame(KIND_SNAPSHOT, &rpc);
        f.data = data;
        self.call(f).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Peer, RaftError<NodeId>>> {
        self.call(frame(KIND_VOTE, &rpc)).await
    }
}

/// `rpc` cut to its longest prefix of entries whose encoding stays within `cap` bytes (at least
/// one entry), and the log id of the last entry kept if it was cut (`None` if it was not).
pub(crate) fn within_cap(
    mut rpc: AppendEntriesRequest<TypeConfig>,
    cap: usize,
) -> (AppendEntriesRequest<TypeConfig>, Option<LogId<NodeId>>) {
    // An estimate from the keys and values (as base64, with room for the rest of the entry),
    // not an encoding: this runs inside openraft's timeout for the call (its heartbeat
    // interval), and encoding 40 entries of 1.5 MiB to measure them took longer than that.
    let sizes: Vec<usize> = rpc.entries.iter().map(entry_size_bound).collect();
    if sizes.iter().sum::<usize>() <= cap {
        return (rpc, None);
    }
    let mut total = 0;
    let kept = sizes
        .iter()
        .take_while(|s| {
            total += **s;
            total <= cap
        })
        .count()
        .max(1);
    rpc.entries.truncate(kept);
    let last = rpc.entries.last().map(|e| e.log_id);
    (rpc, last)
}

/// An upper bound of an entry's size as JSON: keys and values as base64 (4/3), a command's
/// other fields within [`crate::Command::size_hint`]'s allowance, and room for the log id.
fn entry_size_bound(e: &openraft::Entry<TypeConfig>) -> usize {
    match &e.payload {
        EntryPayload::Normal(c) => c.size_hint() / 2 * 3 + 1024,
        _ => 64 << 10,
    }
}
