//! A member of a replicated cluster: the server's store as the state machine of a
//! [`folio_raft::Node`], with etcd's cluster behaviour around it.
//!
//! - **Identity.** A member's id is [`crate::config::member_id`] of its name (FNV-1a 64), the
//!   same on every member and across restarts; the cluster id hashes `--initial-cluster-token`
//!   and the sorted member list. The raft node id is the member id.
//! - **Bootstrap.** With `--initial-cluster-state new` every member of `--initial-cluster`
//!   initializes Raft with the whole list (openraft accepts the same initial membership on every
//!   member; a member that already has a log refuses it, which is how a restart rejoins). With
//!   `existing` it only starts and waits to hear from the cluster's leader.
//! - **Attributes.** Each member publishes its name and client URLs through Raft
//!   ([`folio_raft::Command::SetMember`], as etcd publishes its member attributes), so MemberList
//!   on any member lists every member's client URLs, and a follower knows where the leader
//!   serves clients.
//! - **Writes** go through [`folio_raft::Node::write`] (a follower forwards them to the leader).
//!   **Reads** are served by the member's own store, after [`folio_raft::Node::read_barrier`]
//!   unless the request is serializable.
//! - **Leases.** Grant and revoke are log entries. Expiry is decided by the leader alone, by its
//!   own table of deadlines ([`LeaderLeases`]) on the server's lease clock, and replicated as a
//!   `LeaseRevoke`: a follower never expires a lease, and no member calls the store's own
//!   expiry or keep-alive (which would write outside the log). A member that becomes leader
//!   gives every lease its full TTL from then (etcd's `Promote`), so a change of leader never
//!   expires a lease early. Keep-alive and TimeToLive are answered by the leader: a follower
//!   forwards them to the leader's client URL, once (a forwarded request that reaches a member
//!   that is not the leader gets `etcdserver: not leader`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use folio::{Clock, Store};
use folio_raft::{Command, Node, NodeConfig, NodeError, Refusal, Response as RaftResponse};
use parking_lot::Mutex;
use tokio::sync::watch;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::config::ClusterPlan;
use crate::errors;
use crate::pb::etcdserverpb::lease_client::LeaseClient;
use crate::pb::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, Member as PbMember,
};

/// The gRPC metadata key a follower sets on a request it forwards to the leader.
pub const FORWARDED: &str = "folio-forwarded";

/// The data directory's subdirectory that holds a member's Raft log, store and snapshots.
pub const MEMBER_DIR: &str = "member";

/// The store's file in [`MEMBER_DIR`] (the state machine's name for it).
pub const STORE_FILE: &str = "store.folio";

/// A replicated member (see the module docs).
pub struct Member {
    node: Arc<Node>,
    id: u64,
    cluster_id: u64,
    name: String,
    client_urls: Vec<String>,
    /// `--initial-cluster`: names and peer URLs by id, for members that have not published yet.
    initial: BTreeMap<u64, (String, String)>,
    leases: LeaderLeases,
    /// A channel to the leader's client URL, for forwarded lease requests.
    leader_channel: Mutex<Option<(String, Channel)>>,
}

impl Member {
    /// Starts the member `plan` describes, its Raft data in `dir`, serving clients on
    /// `client_urls`; leases expire by `clock`.
    pub async fn start(
        plan: &ClusterPlan,
        dir: &Path,
        name: &str,
        client_urls: Vec<String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Member>, String> {
        let listen: SocketAddr = tokio::net::lookup_host(&plan.listen_peer_addr)
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", plan.listen_peer_addr))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", plan.listen_peer_addr))?;
        let config = NodeConfig::new(plan.id, listen, dir.join(MEMBER_DIR))
            .snapshot_every(plan.snapshot_count, plan.snapshot_catchup_entries);
        let node = Node::start(config)
            .await
            .map_err(|e| format!("cannot start the raft member: {e}"))?;
        if plan.new {
            let members: BTreeMap<u64, String> =
                plan.peers.iter().map(|p| (p.id, p.addr.clone())).collect();
            match node.initialize(members).await {
                Ok(()) => crate::info!(
                    "initialized a new cluster of {} members: {}",
                    plan.peers.len(),
                    plan.peers
                        .iter()
                        .map(|p| format!("{}={}", p.name, p.url))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                // A member with a log already belongs to its cluster: it rejoins it.
                Err(e) => crate::info!("rejoining the cluster from the data directory ({e})"),
            }
        }
        Ok(Arc::new(Member {
            node: Arc::new(node),
            id: plan.id,
            cluster_id: plan.cluster_id,
            name: name.to_string(),
            client_urls,
            initial: plan
                .peers
                .iter()
                .map(|p| (p.id, (p.name.clone(), p.url.clone())))
                .collect(),
            leases: LeaderLeases::new(clock),
            leader_channel: Mutex::new(None),
        }))
    }

    /// The member's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The Raft node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The member's store as it is now.
    pub fn store(&self) -> Store {
        self.node.store()
    }

    /// The member's Raft status: leader, term, indexes.
    pub fn status(&self) -> folio_raft::Status {
        self.node.status()
    }

    /// Whether this member leads now.
    pub fn is_leader(&self) -> bool {
        self.status().is_leader
    }

    /// Writes `command` through the leader; a command the store refused is etcd's error.
    pub async fn write(&self, command: Command) -> Result<RaftResponse, Status> {
        let r = self.node.write(command).await.map_err(node_error)?;
        match r.refusal {
            None if r.error.is_none() => Ok(r),
            refusal => Err(refused(refusal, r.error.as_deref().unwrap_or_default())),
        }
    }

    /// Waits until the member's store holds every write acknowledged before the call.
    pub async fn barrier(&self) -> Result<(), Status> {
        self.node.read_barrier().await.map_err(node_error)
    }

    /// Every member: the voters Raft knows, with the names and client URLs they published.
    pub fn members(&self) -> Result<Vec<PbMember>, Status> {
        let published = folio_raft::members(&self.store()).map_err(errors::from_folio)?;
        let mut voters = self.node.members();
        if voters.is_empty() {
            // Not initialized yet: the flags' list.
            voters = self
                .initial
                .iter()
                .map(|(id, (_, url))| (*id, url.trim_start_matches("http://").to_string()))
                .collect();
        }
        Ok(voters
            .into_iter()
            .map(|(id, addr)| {
                let info = published.get(&id);
                let name = match (info, self.initial.get(&id)) {
                    (Some(i), _) => i.name.clone(),
                    (None, Some((n, _))) => n.clone(),
                    (None, None) => String::new(),
                };
                let client_urls = if id == self.id {
                    self.client_urls.clone()
                } else {
                    info.map(|i| i.client_urls.clone()).unwrap_or_default()
                };
                PbMember {
                    id,
                    name,
                    peer_ur_ls: vec![format!("http://{addr}")],
                    client_ur_ls: client_urls,
                    is_learner: false,
                }
            })
            .collect())
    }

    /// Publishes this member's name and client URLs through Raft until the store holds them
    /// (retrying while there is no leader), or until `stop`.
    pub async fn publish(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mine = folio_raft::MemberInfo {
            name: self.name.clone(),
            client_urls: self.client_urls.clone(),
        };
        loop {
            let held = folio_raft::members(&self.store())
                .ok()
                .and_then(|m| m.get(&self.id).cloned());
            if held.as_ref() == Some(&mine) {
                return;
            }
            let command = Command::SetMember {
                id: self.id,
                name: mine.name.clone(),
                client_urls: mine.client_urls.clone(),
            };
            let written = tokio::select! {
                _ = stop.changed() => return,
                w = self.node.write(command) => w,
            };
            match written {
                Ok(_) => {
                    crate::info!(
                        "published member {:x} ({}) with client URLs {}",
                        self.id,
                        self.name,
                        self.client_urls.join(",")
                    );
                    return;
                }
                Err(e) => crate::warn!("publishing this member's attributes failed: {e}"),
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// The leader's term, if this member leads now.
    fn leading_term(&self) -> Option<u64> {
        let s = self.status();
        s.is_leader.then_some(s.term)
    }

    /// Revokes, through Raft, the leases whose deadline passed, while this member leads: every
    /// [`crate::lease::EXPIRY_CHECK`] until `stop`.
    pub async fn lease_expirer(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(crate::lease::EXPIRY_CHECK) => {}
            }
            let Some(term) = self.leading_term() else {
                self.leases.forget();
                continue;
            };
            let due = match self.leases.sync(&self.store(), term) {
                Ok(()) => self.leases.due(),
                Err(e) => {
                    crate::warn!("lease expiry: {e}");
                    continue;
                }
            };
            for id in due {
                match self.write(Command::LeaseRevoke { id }).await {
                    Ok(r) => crate::info!(
                        "lease {id:x} expired; revoked through raft at revision {}",
                        r.revision
                    ),
                    // Revoked by a client meanwhile.
                    Err(e) if e.code() == tonic::Code::NotFound => {}
                    Err(e) => crate::warn!("revoking expired lease {id:x}: {}", e.message()),
                }
            }
        }
    }

    /// A channel to the leader's client URL, or etcd's "no leader".
    fn leader_channel(&self) -> Result<Channel, Status> {
        let status = self.status();
        let leader = status.leader.ok_or_else(errors::no_leader)?;
        let published = folio_raft::members(&self.store()).map_err(errors::from_folio)?;
        let url = published
            .get(&leader)
            .and_then(|i| i.client_urls.first().cloned())
            .ok_or_else(errors::no_leader)?;
        let mut cached = self.leader_channel.lock();
        if let Some((u, c)) = cached.as_ref()
            && *u == url
        {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(url.clone())
            .map_err(|e| Status::unavailable(format!("etcdserver: leader URL {url}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5))
            .connect_lazy();
        *cached = Some((url, channel.clone()));
        Ok(channel)
    }

    /// Renews lease `id` as the leader, or forwards the renewal to it. Answers the TTL, or 0 for
    /// a lease that does not exist or has expired (etcd's answer).
    pub async fn keep_alive(&self, id: i64, forwarded: bool) -> Result<i64, Status> {
        if let Some(term) = self.leading_term() {
            self.leases
                .sync(&self.store(), term)
                .map_err(errors::from_folio)?;
            return Ok(self.leases.renew(id));
        }
        if forwarded {
            return Err(errors::not_leader());
        }
        let mut client = LeaseClient::new(self.leader_channel()?);
        let mut request = tonic::Request::new(tokio_stream::once(LeaseKeepAliveRequest { id }));
        request
            .metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        let mut answers = client.lease_keep_alive(request).await?.into_inner();
        match answers.message().await? {
            Some(a) => Ok(a.ttl),
            None => Err(errors::no_leader()),
        }
    }

    /// Lease `id`'s status as the leader knows it (forwarded to the leader from a follower);
    /// etcd's TTL -1 for a lease that does not exist.
    pub async fn time_to_live(
        &self,
        id: i64,
        keys: bool,
        forwarded: bool,
    ) -> Result<LeaseTimeToLiveResponse, Status> {
        if let Some(term) = self.leading_term() {
            let store = self.store();
            self.leases.sync(&store, term).map_err(errors::from_folio)?;
            return Ok(match store.lease_time_to_live(id, keys) {
                Ok(st) => LeaseTimeToLiveResponse {
                    header: None,
                    id,
                    ttl: self.leases.left(id),
                    granted_ttl: st.granted_ttl,
                    keys: st.keys,
                },
                Err(folio::Error::LeaseNotFound { .. }) => LeaseTimeToLiveResponse {
                    id,
                    ttl: -1,
                    ..LeaseTimeToLiveResponse::default()
                },
                Err(e) => return Err(errors::from_folio(e)),
            });
        }
        if forwarded {
            return Err(errors::not_leader());
        }
        let mut client = LeaseClient::new(self.leader_channel()?);
        let mut request = tonic::Request::new(LeaseTimeToLiveRequest { id, keys });
        request
            .metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        Ok(client.lease_time_to_live(request).await?.into_inner())
    }

    /// Stops the member's Raft and its peer listener (its files stay; a start on the same data
    /// directory brings it back).
    pub async fn shutdown(&self) {
        if let Err(e) = self.node.shutdown().await {
            crate::warn!("stopping raft: {e}");
        }
    }
}

/// etcd's error for a member that could not do a request.
pub fn node_error(e: NodeError) -> Status {
    match e {
        NodeError::Store(e) => errors::from_folio(e),
        NodeError::NoLeader(_) => errors::no_leader(),
        NodeError::Unknown(_) => errors::timed_out(),
        NodeError::Raft(m) => Status::unavailable(format!("etcdserver: raft: {m}")),
    }
}

/// etcd's error for a command the store refused.
fn refused(refusal: Option<Refusal>, message: &str) -> Status {
    match refusal {
        Some(Refusal::Compacted) => errors::compacted(),
        Some(Refusal::FutureRevision) => errors::future_rev(),
        Some(Refusal::DuplicateKey) => errors::duplicate_key(),
        Some(Refusal::LeaseNotFound) => errors::lease_not_found(),
        Some(Refusal::LeaseExists) => errors::lease_exists(),
        Some(Refusal::LeaseTtl) => errors::lease_ttl_too_large(),
        Some(Refusal::TooLarge) => errors::request_too_large(),
        Some(Refusal::Invalid) => Status::invalid_argument(format!("etcdserver: {message}")),
        _ => Status::unknown(format!("etcdserver: {message}")),
    }
}

/// The leader's lease deadlines, on the server's lease clock (see the module docs).
pub struct LeaderLeases {
    clock: Arc<dyn Clock>,
    table: Mutex<LeaseTable>,
}

#[derive(Default)]
struct LeaseTable {
    /// The term this member led in when the deadlines were set.
    term: Option<u64>,
    /// Lease id → (granted TTL in seconds, deadline).
    deadlines: HashMap<i64, (i64, Duration)>,
}

impl LeaderLeases {
    fn new(clock: Arc<dyn Clock>) -> LeaderLeases {
        LeaderLeases {
            clock,
            table: Mutex::new(LeaseTable::default()),
        }
    }

    /// Forgets every deadline: this member does not lead.
    fn forget(&self) {
        *self.table.lock() = LeaseTable::default();
    }

    /// Brings the table to the store's leases, for a member leading in `term`: a new term
    /// starts every lease afresh, a lease new to the table gets its TTL from now, and a lease
    /// the store no longer holds leaves it.
    fn sync(&self, store: &Store, term: u64) -> folio::Result<()> {
        let ids = store.leases()?;
        let now = self.clock.now();
        let mut t = self.table.lock();
        if t.term != Some(term) {
            *t = LeaseTable {
                term: Some(term),
                deadlines: HashMap::new(),
            };
        }
        t.deadlines.retain(|id, _| ids.binary_search(id).is_ok());
        for id in ids {
            if let std::collections::hash_map::Entry::Vacant(v) = t.deadlines.entry(id)
                && let Ok(st) = store.lease_time_to_live(id, false)
            {
                v.insert((st.granted_ttl, now + ttl(st.granted_ttl)));
            }
        }
        Ok(())
    }

    /// The leases whose deadline has passed, in id order.
    fn due(&self) -> Vec<i64> {
        let now = self.clock.now();
        let mut due: Vec<i64> = self
            .table
            .lock()
            .deadlines
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(id, _)| *id)
            .collect();
        due.sort_unstable();
        due
    }

    /// Renews lease `id`: its TTL, or 0 if it is unknown or past its deadline.
    fn renew(&self, id: i64) -> i64 {
        let now = self.clock.now();
        let mut t = self.table.lock();
        match t.deadlines.get_mut(&id) {
            Some((granted, deadline)) if *deadline > now => {
                *deadline = now + ttl(*granted);
                *granted
            }
            _ => 0,
        }
    }

    /// Whole seconds left on lease `id`, -1 if unknown or expired.
    fn left(&self, id: i64) -> i64 {
        let now = self.clock.now();
        match self.table.lock().deadlines.get(&id) {
            Some((_, d)) if *d > now => i64::try_from((*d - now).as_secs()).unwrap_or(i64::MAX),
            _ => -1,
        }
    }
}

fn ttl(secs: i64) -> Duration {
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}
