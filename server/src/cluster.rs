//! etcd's Cluster service: MemberList answers with the one member, or with every member of a
//! replicated cluster (their peer URLs from Raft, their names and client URLs as they published
//! them). Membership changes are refused: a single server has no peers to add or remove, and a
//! cluster's members are the ones it was started with.

use tonic::{Request, Response, Status};

use crate::errors;
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use crate::state::Shared;

/// The Cluster service.
pub struct ClusterService {
    shared: Shared,
}

impl ClusterService {
    /// A Cluster service on `shared`.
    pub fn new(shared: Shared) -> ClusterService {
        ClusterService { shared }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(errors::unsupported("MemberAdd on a single-member server"))
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(errors::unsupported(
            "MemberRemove on a single-member server",
        ))
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(errors::unsupported(
            "MemberUpdate on a single-member server",
        ))
    }

    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let s = &self.shared;
        if let Some(m) = s.member() {
            return Ok(Response::new(MemberListResponse {
                header: s.header_now(),
                members: m.members()?,
            }));
        }
        Ok(Response::new(MemberListResponse {
            header: s.header_now(),
            members: vec![Member {
                id: s.member_id(),
                name: s.name().to_string(),
                // A single member has no peers; etcd's default peer URL stands in.
                peer_ur_ls: vec!["http://localhost:2380".to_string()],
                client_ur_ls: s.client_urls().to_vec(),
                is_learner: false,
            }],
        }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(errors::unsupported(
            "MemberPromote on a single-member server",
        ))
    }
}
