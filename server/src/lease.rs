//! etcd's Lease service: Grant, Revoke, the KeepAlive stream, TimeToLive and Leases; and the
//! task that revokes leases whose TTL ran out (etcd checks every 500 ms).

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::errors::from_folio;
use crate::pb::etcdserverpb::lease_server::Lease;
use crate::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::state::Shared;

/// How often leases whose TTL ran out are revoked (etcd's `leaseRevokeRate` loop: 500 ms).
pub const EXPIRY_CHECK: Duration = Duration::from_millis(500);

/// The shortest TTL a lease is granted, in seconds: etcd's `minLeaseTTL` at its default flags,
/// one and a half election timeouts (1.5 x 1 s) rounded up to whole seconds. etcd raises a
/// shorter TTL (0 and negative ones too) to it rather than refuse it.
pub const LEASE_TTL_MIN: i64 = 2;
const _: () = assert!(LEASE_TTL_MIN >= 1 && LEASE_TTL_MIN <= folio::limits::LEASE_TTL_MAX);

/// The Lease service.
pub struct LeaseService {
    shared: Shared,
}

impl LeaseService {
    /// A Lease service on `shared`.
    pub fn new(shared: Shared) -> LeaseService {
        LeaseService { shared }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut r = request.into_inner();
        r.ttl = r.ttl.max(LEASE_TTL_MIN);
        self.shared.check_quota(0)?;
        if let Some(m) = self.shared.member() {
            let done = m
                .write(folio_raft::Command::LeaseGrant {
                    id: r.id,
                    ttl: r.ttl,
                })
                .await?;
            let Some(folio_raft::OpResult::LeaseGranted { id, ttl }) = done.results.first() else {
                return Err(Status::internal(
                    "etcdserver: a lease grant answered no lease",
                ));
            };
            return Ok(Response::new(LeaseGrantResponse {
                header: self.shared.header(done.revision),
                id: *id,
                ttl: *ttl,
                error: String::new(),
            }));
        }
        self.shared
            .blocking(move |s| {
                let g = s.store().lease_grant(r.id, r.ttl).map_err(from_folio)?;
                Ok(Response::new(LeaseGrantResponse {
                    header: s.header_now(),
                    id: g.id,
                    ttl: g.ttl,
                    error: String::new(),
                }))
            })
            .await
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let id = request.into_inner().id;
        if let Some(m) = self.shared.member() {
            let done = m.write(folio_raft::Command::LeaseRevoke { id }).await?;
            return Ok(Response::new(LeaseRevokeResponse {
                header: self.shared.header(done.revision),
            }));
        }
        self.shared
            .blocking(move |s| {
                let rev = s.store().lease_revoke(id).map_err(from_folio)?;
                Ok(Response::new(LeaseRevokeResponse {
                    header: s.header(rev),
                }))
            })
            .await
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let forwarded = request.metadata().contains_key(crate::member::FORWARDED);
        let mut incoming = request.into_inner();
        let (out, rx) = mpsc::channel(16);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while let Some(Ok(req)) = incoming.next().await {
                let id = req.id;
                if let Some(m) = shared.member() {
                    // The leader renews; a follower forwards (see `member`).
                    let answer =
                        m.keep_alive(id, forwarded)
                            .await
                            .map(|ttl| LeaseKeepAliveResponse {
                                header: shared.header_now(),
                                id,
                                ttl,
                            });
                    let failed = answer.is_err();
                    if out.send(answer).await.is_err() || failed {
                        break;
                    }
                    continue;
                }
                // etcd: a lease that does not exist answers TTL 0, not an error.
                let answer = shared
                    .blocking(move |s| match s.store().lease_keep_alive(id) {
                        Ok(ttl) => Ok(ttl),
                        Err(folio::Error::LeaseNotFound { .. }) => Ok(0),
                        Err(e) => Err(from_folio(e)),
                    })
                    .await
                    .map(|ttl| LeaseKeepAliveResponse {
                        header: shared.header_now(),
                        id,
                        ttl,
                    });
                let failed = answer.is_err();
                if out.send(answer).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let forwarded = request.metadata().contains_key(crate::member::FORWARDED);
        let r = request.into_inner();
        if let Some(m) = self.shared.member() {
            let mut answer = m.time_to_live(r.id, r.keys, forwarded).await?;
            answer.header = self.shared.header_now();
            return Ok(Response::new(answer));
        }
        self.shared
            .blocking(move |s| {
                let resp = match s.store().lease_time_to_live(r.id, r.keys) {
                    Ok(st) => LeaseTimeToLiveResponse {
                        header: s.header_now(),
                        id: st.id,
                        ttl: st.ttl,
                        granted_ttl: st.granted_ttl,
                        keys: st.keys,
                    },
                    // etcd: a lease that does not exist answers TTL -1, not an error.
                    Err(folio::Error::LeaseNotFound { .. }) => LeaseTimeToLiveResponse {
                        header: s.header_now(),
                        id: r.id,
                        ttl: -1,
                        ..LeaseTimeToLiveResponse::default()
                    },
                    Err(e) => return Err(from_folio(e)),
                };
                Ok(Response::new(resp))
            })
            .await
    }

    async fn lease_leases(
        &self,
        _: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.shared
            .blocking(|s| {
                let ids = s.store().leases().map_err(from_folio)?;
                Ok(Response::new(LeaseLeasesResponse {
                    header: s.header_now(),
                    leases: ids.into_iter().map(|id| LeaseStatus { id }).collect(),
                }))
            })
            .await
    }
}

/// Revokes leases whose TTL ran out, every [`EXPIRY_CHECK`], until `stop`. A replicated
/// member leaves expiry to the leader ([`crate::member::Member::lease_expirer`]).
pub async fn expirer(shared: Shared, mut stop: watch::Receiver<bool>) {
    if let Some(m) = shared.member() {
        return m.clone().lease_expirer(stop).await;
    }
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(EXPIRY_CHECK) => {}
        }
        let expired = shared
            .blocking(|s| s.store().expire_leases().map_err(from_folio))
            .await;
        match expired {
            Ok(ids) if !ids.is_empty() => {
                let ids: Vec<String> = ids.iter().map(|id| format!("{id:x}")).collect();
                crate::info!("leases expired and revoked: {}", ids.join(", "));
            }
            Ok(_) => {}
            Err(e) => crate::warn!("lease expiry failed: {}", e.message()),
        }
    }
}
